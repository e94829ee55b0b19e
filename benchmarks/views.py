"""What cached views (``sampling.views``) buy and cost, side by side in one run.

For every config (default: photo-motion with a test split filmed unlike
training, then the demo) and every number of views asked for (default 1 and
2), in that order, on a fresh feature cache shared by the runs of one config:

* extraction: the seconds to fill the caches the run adds (the first run: the
  plain view; each later one: its further views only);
* the main job: the config's full search on a fresh tuner folder, its final
  refits and baselines (untracked), wall seconds, and its ratio to one view's;
* what it registers (by the config's ``tuning.select``): selection score ±
  standard error and test accuracy [95% bootstrap interval], beside the best
  single trial and the best baseline on test;
* request time: the registered model logged to a throw-away MLflow store,
  loaded, warmed up on one video, then timed predicting ``--request-videos``
  test videos one request each (the median).

usage: python benchmarks/views.py [CONFIG ...] [--views 1,2] [--set KEY=VALUE ...] [--request-videos 8]
       (run from the repository root)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["experiments/photo_motion_shift.yaml", "experiments/demo.yaml"]


def _interval(evaluation) -> str:
    return f"{evaluation.accuracy:.3f} [{evaluation.interval[0]:.3f}, {evaluation.interval[1]:.3f}]"


def _extract(config) -> float:
    from videoclf.data.ensure import ensure_data
    from videoclf.features.backbones import resolve_weights
    from videoclf.features.extract import extract_split

    ensure_data(config)
    started = time.perf_counter()
    for split in ("train", "test"):
        extract_split(config, split, resolve_weights(config.extractor), progress=False)
    return time.perf_counter() - started


def _request_seconds(config, result, tmp: Path, count: int) -> float:
    """Median seconds of one-video requests to the registered members, logged and loaded as a user would."""
    import mlflow
    import pandas as pd

    from videoclf.features.backbones import resolve_weights
    from videoclf.registered.writer import log_members

    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    with mlflow.start_run():
        info = log_members(config, resolve_weights(config.extractor), list(result.final.members),
                           tuple(result.evaluation.classes))
    model = mlflow.pyfunc.load_model(info.model_uri)
    videos = [str(config.data.root / key) for key in _test_keys(config)][: count + 1]
    model.predict(pd.DataFrame({"video_path": videos[:1]}))  # warm-up: first calls trace and allocate
    times = []
    for video in videos[1:]:
        started = time.perf_counter()
        model.predict(pd.DataFrame({"video_path": [video]}))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=CONFIGS)
    parser.add_argument("--views", default="1,2")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--request-videos", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))
    from videoclf.config import load_config
    from videoclf.console import quiet_tensorflow
    from videoclf.search.run import run_search

    quiet_tensorflow()
    counts = [int(n) for n in args.views.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="videoclf-views-") as tmp:
        for path in args.configs:
            name = Path(path).stem
            for count in counts:
                work = Path(tmp) / f"{name}-{count}"
                work.mkdir()
                config = load_config(path, [*args.overrides, f"cache.dir={Path(tmp) / ('cache-' + name)}",
                                            f"tuning.directory={work / 'tuner'}", f"sampling.views={count}"])
                extraction = _extract(config)
                started = time.perf_counter()
                result = run_search(config, name=name, track=False, register_model=False, progress=False)
                job = time.perf_counter() - started
                rows.append((name, count, extraction, job, result,
                             _request_seconds(config, result, work, args.request_videos)))
                print(f"{name} views={count}: extraction {extraction:.0f} s, job {job:.0f} s, "
                      f"registered {_interval(result.final.registered)}", flush=True)
    print(f"\n{'=' * 110}\ncached views, {os.cpu_count()} CPU cores, one run; each config's runs share one fresh "
          "cache (a later run extracts its further views only)")
    for name in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == name]
        base_job, base_request = mine[0][3], mine[0][5]
        evaluation = mine[0][4].final.best_trial
        print(f"\n{name}: {len(evaluation.labels)} test videos, {len(evaluation.classes)} classes")
        for _, count, extraction, job, result, request in mine:
            final, selection = result.final, result.final.selection
            best_baseline = max(result.baselines, key=lambda b: b.test.accuracy)
            print(f"  views={count}: extraction {extraction:6.0f} s  job {job:5.0f} s ({job / base_job:.2f}x)  "
                  f"request {request:5.2f} s ({request / base_request:.2f}x)")
            print(f"    registered ({selection.rule}) {selection.describe()[:60]:60s} {selection.score:.3f} ± "
                  f"{selection.se:.3f} → {_interval(final.registered)}")
            print(f"    best single trial {_interval(final.best_trial)}; best baseline on test "
                  f"{best_baseline.name} {_interval(best_baseline.test)}")


def _test_keys(config) -> list[str]:
    from videoclf.data.videos import split_videos

    return [video.key for video in split_videos(config, "test")[0]]


if __name__ == "__main__":
    main()
