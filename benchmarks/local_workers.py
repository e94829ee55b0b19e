"""Search speed-up with 2 local KerasTuner workers against 1, on the demo, in one run.

Features are extracted before timing; each search gets its own tuner folder
and MLflow store. On a 2-core machine both workers share the same two cores
(TensorFlow already uses both for one trial), so the gain is bounded by what
one trial leaves idle: Python overhead, small batches, I/O.

usage: python benchmarks/local_workers.py [--trials 8] [--epochs 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    base = [sys.executable, "-m", "videoclf", "tune", "--config", str(REPO / "experiments" / "demo.yaml"),
            "--set", f"tuning.max_trials={args.trials}", "--set", f"training.epochs={args.epochs}",
            "--set", "training.early_stopping_patience=null"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "videoclf", "extract"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="videoclf-bench-") as tmp:
        for workers in (1, 2):
            run_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{Path(tmp) / f'w{workers}.db'}"}
            started = time.perf_counter()
            subprocess.run(base + ["--set", f"tuning.directory={Path(tmp) / f'tuner-{workers}'}",
                                   "--local-workers", str(workers)], cwd=REPO, env=run_env, check=True,
                           capture_output=True)
            seconds[workers] = time.perf_counter() - started
    print(f"demo search, {args.trials} trials x {args.epochs} epochs, {os.cpu_count()} CPU cores "
          "(chief + workers, features cached, test and registration included)")
    for workers, value in seconds.items():
        print(f"{workers} worker{'s' if workers > 1 else ' '}: {value:6.1f} s")
    print(f"speed-up with 2 workers: {seconds[1] / seconds[2]:.2f}x")


if __name__ == "__main__":
    main()
