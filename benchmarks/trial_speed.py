"""The demo search's trials, this checkout's commit beside an earlier one, in one run: same trials, same scores?

Each side is a fresh ``git clone`` at its commit running the README's demo search (``experiments/demo.yaml``:
the same configurations, folds and seeds) untracked, on one shared data folder and feature cache (extracted
once, before either side is timed). The final refit keeps one seed and no baselines on both sides: the trials
are what is measured. Prints each side's total trial time, the ratio, and every trial's score side by side.

usage: python benchmarks/trial_speed.py [--base REV] [--trials 12]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from clones import fresh_clone, head_commit  # benchmarks/clones.py, beside this script
BEFORE = "b931280"  # main before one compiled model per trial, one-batch validation, steps per execution

SEARCH = """
import json, sys
from videoclf.config import load_config
from videoclf.search.run import run_search
config = load_config("experiments/demo.yaml", sys.argv[1:])
result = run_search(config, "trial-speed", track=False, register_model=False, progress=False)
print("RESULT " + json.dumps({"seconds": result.trial_seconds,
                              "scores": {str(t): s for t, s in zip(result.trials.trial, result.trials.score)}}))
"""


def run_side(commit: str, folder: Path, shared: Path, trials: int, extract_only: bool = False) -> dict:
    if not folder.exists():
        fresh_clone(commit, folder)
    env = {**os.environ, "PYTHONPATH": str(folder), "VIDEOCLF_RUNTIME_CACHE": str(shared / "runtimes"),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    overrides = [f"data.root={shared / 'data'}", f"cache.dir={shared / 'features_cache'}",
                 f"tuning.directory={folder / 'tuner'}", f"tuning.max_trials={trials}", "tuning.final_seeds=1",
                 "tuning.baselines=[]"]
    if extract_only:
        command = [sys.executable, "-m", "videoclf", "extract", *[a for o in overrides for a in ("--set", o)]]
        subprocess.run(command, cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
        return {}
    result = subprocess.run([sys.executable, "-c", SEARCH, *overrides], cwd=folder, env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise SystemExit(f"the search failed in {folder}:\n{result.stderr[-3000:]}")
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BEFORE, help="the earlier commit to run beside HEAD")
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    head = head_commit()
    with tempfile.TemporaryDirectory(prefix="videoclf-trials-") as tmp:
        shared = Path(tmp) / "shared"
        (shared / "data").mkdir(parents=True)  # an overridden data.root must exist: the demo is generated into it
        run_side(head, Path(tmp) / "head", shared, args.trials, extract_only=True)  # data and features, untimed
        results = {label: run_side(commit, Path(tmp) / label, shared, args.trials)
                   for label, commit in (("base", args.base), ("head", head))}
    base, new = results["base"], results["head"]
    base_s, head_s = sum(base["seconds"].values()), sum(new["seconds"].values())
    print(f"demo search, {args.trials} trials, {os.cpu_count()} cores: {head} {head_s:.0f} s vs {args.base} "
          f"{base_s:.0f} s of trials ({base_s / head_s:.2f}x faster)")
    same = 0
    for trial in sorted(base["scores"]):
        a, b = base["scores"][trial], new["scores"].get(trial)
        same += a == b
        print(f"  trial {trial}: score {b} vs {a}  {new['seconds'].get(trial, 0):5.1f} s vs "
              f"{base['seconds'][trial]:5.1f} s")
    print(f"  identical scores: {same} of {len(base['scores'])}")


if __name__ == "__main__":
    main()
