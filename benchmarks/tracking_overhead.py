"""MLflow tracking overhead: the same small search with tracking on and off, in one run.

Both searches use the demo data and its cached features (extracted first, not
timed), the same seeds and the same trials; the only difference is the
MLflow parent run, nested trial runs and per-epoch metric logging (into a
SQLite store, MLflow's default). Model registration is left out of both:
it happens once per search, not per trial.

usage: python benchmarks/tracking_overhead.py [--trials 6] [--epochs 15] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from videoclf.config import load_config  # noqa: E402
from videoclf.data.source import ensure_data  # noqa: E402
from videoclf.dataset import load_split  # noqa: E402
from videoclf.search.run import run_search  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="videoclf-bench-") as tmp:
        tmp = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        base = [f"tuning.max_trials={args.trials}", f"training.epochs={args.epochs}",
                "training.early_stopping_patience=null", "tuning.overwrite=true"]
        config = load_config(REPO / "experiments" / "demo.yaml", base)
        ensure_data(config)
        load_split(config, "train", progress=False)  # features cached before timing
        load_split(config, "test", progress=False)
        times = {"off": [], "on": []}
        for repeat in range(args.repeats):
            for mode in ("off", "on"):  # alternate, so drift hits both alike
                run_config = load_config(REPO / "experiments" / "demo.yaml",
                                         base + [f"tuning.directory={tmp / f'tuner-{mode}-{repeat}'}"])
                started = time.perf_counter()
                result = run_search(run_config, f"bench-{mode}", track=mode == "on", register_model=False,
                                    progress=False)
                times[mode].append(time.perf_counter() - started)
                assert len(result.trials) == args.trials
    off, on = min(times["off"]), min(times["on"])
    per_trial_off, per_trial_on = off / args.trials, on / args.trials
    print(f"search: {args.trials} trials x {args.epochs} epochs on the demo features, best of {args.repeats}")
    print(f"tracking off: {off:7.2f} s   ({per_trial_off:.2f} s a trial)")
    print(f"tracking on : {on:7.2f} s   ({per_trial_on:.2f} s a trial)")
    print(f"overhead: {(on - off) / off:+.1%} of search time, {per_trial_on - per_trial_off:+.3f} s a trial "
          f"(target <= 5%)")


if __name__ == "__main__":
    main()
