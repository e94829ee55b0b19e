"""The README's main job, cold, from fresh clones: this checkout's commit beside an earlier one, in one run.

Each side is a fresh ``git clone`` of the repository at its commit, run as the
README says (``mlflow run . -e tune --env-manager local``) with an empty
runtime cache (the extractor is converted, as on a new machine), one after the
other on the same machine. Prints each wall time, exit status and the ratio.

usage: python benchmarks/main_job.py [--base REV]   (default base: the commit before the motion stream)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from clones import fresh_clone, head_commit  # benchmarks/clones.py, beside this script
BEFORE_MOTION = "3c68148"


def main_job(commit: str, folder: Path) -> tuple[float, int]:
    fresh_clone(commit, folder)
    env = {**os.environ, "VIDEOCLF_RUNTIME_CACHE": str(folder / ".runtimes"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.perf_counter()
    with open(folder.parent / f"{folder.name}.log", "w") as log:
        code = subprocess.run(["mlflow", "run", ".", "-e", "tune", "--env-manager", "local"], cwd=folder, env=env,
                              stdout=log, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - started, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BEFORE_MOTION, help="the earlier commit to run beside HEAD")
    args = parser.parse_args()
    head = head_commit()
    results = {}
    with tempfile.TemporaryDirectory(prefix="videoclf-main-job-") as tmp:
        for label, commit in (("base", args.base), ("head", head)):
            results[label] = (commit, *main_job(commit, Path(tmp) / label))
            print(f"{label} {commit}: {results[label][1]:.0f} s, exit {results[label][2]}", flush=True)
    (base, base_s, _), (_, head_s, _) = results["base"], results["head"]
    print(f"main job, {os.cpu_count()} cores: {head} {int(head_s // 60)} min {head_s % 60:.0f} s vs {base} "
          f"{int(base_s // 60)} min {base_s % 60:.0f} s ({base_s / head_s:.2f}x faster)")


if __name__ == "__main__":
    main()
