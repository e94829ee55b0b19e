"""MLflow tracking overhead: the same small search with tracking on and off, in one run.

Both searches use the demo data and its cached features (extracted first, not
timed), the same seeds and the same trials; the only difference is the
MLflow parent run, nested trial runs and per-epoch metric logging (into a
SQLite store, MLflow's default). Model registration is left out of both:
it happens once per search, not per trial.

usage: python benchmarks/tracking_overhead.py [--trials 6] [--epochs 15] [--repeats 4]
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
from videoclf.data.ensure import ensure_data  # noqa: E402
from videoclf.features.extract import extract_split  # noqa: E402
from videoclf.features.backbones import resolve_weights  # noqa: E402
from videoclf.search.run import run_search  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="videoclf-bench-") as tmp:
        tmp = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        base = [f"tuning.max_trials={args.trials}", f"training.epochs={args.epochs}",
                "training.early_stopping_patience=null", "tuning.overwrite=true"]
        config = load_config(REPO / "experiments" / "demo.yaml", base)
        ensure_data(config)
        for split in ("train", "test"):  # features cached before timing
            extract_split(config, split, resolve_weights(config.extractor), progress=False)
        times = {"off": [], "on": []}
        trial_times = {"off": [], "on": []}
        in_mlflow = []
        order = [("off", "on") if r % 2 == 0 else ("on", "off") for r in range(args.repeats)]
        for repeat, modes in enumerate(order):
            for mode in modes:  # ABBA order: a slowdown over the process hits both modes alike
                run_config = load_config(REPO / "experiments" / "demo.yaml",
                                         base + [f"tuning.directory={tmp / f'tuner-{mode}-{repeat}'}"])
                started = time.perf_counter()
                result = run_search(run_config, f"bench-{mode}", track=mode == "on", register_model=False,
                                    progress=False)
                times[mode].append(time.perf_counter() - started)
                trial_times[mode].append(sum(result.trial_seconds.values()))
                if mode == "on":
                    in_mlflow.append(result.tracking_seconds)
                assert len(result.trial_seconds) == args.trials
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    off, on = mean(times["off"]), mean(times["on"])
    trials_off, trials_on = mean(trial_times["off"]), mean(trial_times["on"])
    print(f"search: {args.trials} trials x {args.epochs} epochs on the demo features, mean of {args.repeats} runs each (ABBA order)")
    print(f"{'':14s}{'trials':>10s}{'a trial':>10s}{'whole search':>14s}")
    for mode, trials, whole in (("tracking off", trials_off, off), ("tracking on", trials_on, on)):
        print(f"{mode:14s}{trials:9.2f}s{trials / args.trials:9.2f}s{whole:13.2f}s")
    print(f"per-trial overhead: {(trials_on - trials_off) / trials_off:+.1%} of trial time "
          f"({(trials_on - trials_off) / args.trials * 1000:+.0f} ms a trial; target <= 5%)")
    print(f"time inside MLflow calls during trials (measured directly): {mean(in_mlflow) / args.trials * 1000:.0f} ms "
          f"a trial = {mean(in_mlflow) / trials_on:.1%} of trial time")
    print(f"fixed cost per search (store setup, config/dataset logging, report plots and artifacts): "
          f"{(on - trials_on) - (off - trials_off):+.2f} s")


if __name__ == "__main__":
    main()
