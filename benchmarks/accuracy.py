"""Champion vs baselines on each embedded data set, side by side in one run: test accuracy with 95% intervals.

For every config (default: the demo and the photo-motion set) this runs the
config's full search as ``videoclf tune`` does (data generated and features
extracted first if missing; a fresh tuner folder and MLflow store, so nothing
resumes), then prints the champion's and each baseline's selection score and
test accuracy with its bootstrap interval, the winner's mean ± std over its
final seeds, whether it beats each baseline by more than the interval, and
the wall time of each search.

usage: python benchmarks/accuracy.py [CONFIG ...] [--set KEY=VALUE ...]   (run from the repository root;
       e.g. --set extractor.precision=int8 to compare int8 features with the README's float32 figures)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=["experiments/demo.yaml", "experiments/photo_motion.yaml"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override applied to every config (like videoclf tune --set)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))
    from videoclf.console import quiet_tensorflow
    from videoclf.config import load_config
    from videoclf.search.run import run_search

    quiet_tensorflow()
    rows = []
    with tempfile.TemporaryDirectory(prefix="videoclf-accuracy-") as tmp:
        for path in args.configs:
            name = Path(path).stem
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / f'{name}.db'}"
            config = load_config(path, [*args.overrides, f"tuning.directory={Path(tmp) / f'tuner-{name}'}"])
            started = time.perf_counter()
            result = run_search(config, name=name, progress=False)
            rows.append((name, result, time.perf_counter() - started))
    print(f"\n{'=' * 100}\nchampion vs baselines, {os.cpu_count()} CPU cores, one run")
    for name, result, seconds in rows:
        champion = result.evaluation
        seeds = result.final.seed_metrics()
        print(f"\n{name}: {len(champion.labels)} test videos, {len(champion.classes)} classes, search {seconds:.0f} s "
              f"(features cached or extracted before it)")
        print(f"  {'model':72s} {'selection':>9s}  test accuracy [95% CI]")
        chosen = result.best_hyperparameters
        label = ", ".join(str(chosen[k]) for k in ("family", "streams", "inputs") if k in chosen)
        selection = result.final.selection
        if not result.final.registers_best_trial:
            label = f"{selection.rule}: {selection.describe()}"[:60]
        print(f"  {'champion (' + label + ')':72s} "
              f"{selection.score:9.3f}  {champion.accuracy:.3f} [{champion.interval[0]:.3f}, "
              f"{champion.interval[1]:.3f}]  (the mean of {int(seeds['final_seeds'])} seeds; each alone "
              f"{seeds['test_accuracy_seed_mean']:.3f} ± {seeds['test_accuracy_seed_std']:.3f}; ECE {champion.ece:.3f})")
        for baseline in result.baselines:
            test = baseline.test
            margin = champion.accuracy - test.accuracy
            half_width = (champion.interval[1] - champion.interval[0]) / 2
            verdict = "more than" if margin > half_width else "not more than"
            overlap = "intervals disjoint" if champion.interval[0] > test.interval[1] else "intervals overlap"
            print(f"  {baseline.description:72s} {baseline.validation:9.3f}  {test.accuracy:.3f} "
                  f"[{test.interval[0]:.3f}, {test.interval[1]:.3f}]  champion {margin:+.3f}: {verdict} the "
                  f"champion's interval half-width {half_width:.3f}; {overlap}")


if __name__ == "__main__":
    main()
