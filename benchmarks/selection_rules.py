"""What each selection rule registers, and how it tests, side by side on the same trials in one run.

For every config (default: the demo, photo-motion, and photo-motion with a
test split filmed unlike training) this runs the config's full search once
(a fresh tuner folder; data generated and features extracted first if
missing), then applies each rule of ``tuning.select`` to the same finished
trials and baselines (the tuner resumes: no trial runs again), refits what
the rule chose and tests it. It prints, per data set: each rule's registered
model with its selection score and test accuracy [95% CI], the best single
trial, each baseline, whether the registered model is clearly worse than the
best-testing baseline (its interval's upper end below that baseline's
accuracy), and the wall time of the search and of each rule's final steps.

usage: python benchmarks/selection_rules.py [CONFIG ...] [--rules best,one_se,ensemble] [--set KEY=VALUE ...]
       (run from the repository root)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["experiments/demo.yaml", "experiments/photo_motion.yaml", "experiments/photo_motion_shift.yaml"]


def _interval(evaluation) -> str:
    return f"{evaluation.accuracy:.3f} [{evaluation.interval[0]:.3f}, {evaluation.interval[1]:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=CONFIGS)
    parser.add_argument("--rules", default="best,one_se,ensemble")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))
    from videoclf.config import load_config
    from videoclf.console import quiet_tensorflow
    from videoclf.search.run import run_search

    quiet_tensorflow()
    rules = args.rules.split(",")
    report = []
    with tempfile.TemporaryDirectory(prefix="videoclf-rules-") as tmp:
        for path in args.configs:
            name = Path(path).stem
            results = {}
            for rule in rules:
                config = load_config(path, [*args.overrides, f"tuning.directory={Path(tmp) / name}",
                                            f"tuning.select={rule}"])
                started = time.perf_counter()
                results[rule] = (run_search(config, name=name, track=False, register_model=False, progress=False),
                                 time.perf_counter() - started)
            report.append((name, results))
    print(f"\n{'=' * 110}\nselection rules on the same trials, {os.cpu_count()} CPU cores, one run")
    for name, results in report:
        first, first_seconds = next(iter(results.values()))
        evaluation = first.final.best_trial
        print(f"\n{name}: {len(evaluation.labels)} test videos, {len(evaluation.classes)} classes; the first rule's "
              f"job {first_seconds:.0f} s (search included), each later rule's final steps alone:")
        best_baseline = max(first.baselines, key=lambda b: b.test.accuracy)
        for rule, (result, seconds) in results.items():
            selection, registered = result.final.selection, result.final.registered
            worse = registered.interval[1] < best_baseline.test.accuracy
            print(f"  {rule:9s} {selection.describe()[:70]:70s} {selection.score:.3f} ± {selection.se:.3f}  "
                  f"{_interval(registered)}  {seconds:5.0f} s"
                  f"{'  CLEARLY WORSE than ' + best_baseline.name if worse else ''}")
        trial = first.final
        print(f"  {'best single trial':80s} {first.best_val_score:.3f}          {_interval(trial.best_trial)}")
        for baseline in first.baselines:
            print(f"  {baseline.description[:80]:80s} {baseline.validation:.3f} ± {baseline.validation_se:.3f}  "
                  f"{_interval(baseline.test)}")


if __name__ == "__main__":
    main()
