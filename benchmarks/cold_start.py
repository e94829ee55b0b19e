"""Using the registered model from a cold process: this checkout's commit beside an earlier one, in one run.

Each side is a fresh ``git clone`` at its commit with its own MLflow store and runtime cache. In it, the
side's own code registers the same kind of model the demo's search registers (EfficientNet-Lite0 ImageNet
features + the motion stream, a GRU, three seeds averaged), then three cold-process timings are taken,
each the median of ``--repeats`` runs:

- ``videoclf predict`` of two videos;
- ``mlflow.pyfunc.load_model`` + ``predict`` of the same two videos (as a notebook would);
- ``videoclf serve`` from start to its first answered ``/ping``.

Prints each figure, the ratios, and whether TensorFlow was imported by the pyfunc path.

usage: python benchmarks/cold_start.py [--base REV] [--repeats 3]   (default base: the main of 2026-12-01)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from clones import fresh_clone, head_commit  # benchmarks/clones.py, beside this script
BEFORE = "b931280"  # main before the LiteRT sequence models and lazy imports
MODEL = "models:/bench/1"

# Run inside each clone with its own code: a model like the demo's champion, logged and registered.
REGISTER = """
import sys
import numpy as np, mlflow
from videoclf.config import load_config
from videoclf.features.backbones import resolve_weights
from videoclf.model import build_sequence_model, seed_ensemble
import os, videoclf
if os.path.isdir(os.path.join(os.path.dirname(videoclf.__file__), "registered")):  # (an editable install of
    from videoclf.registered.writer import log_registered_model as log_model  # another layout must not answer)
else:  # the layout before videoclf/registered
    from videoclf.video_model import log_video_model as log_model
config = load_config("experiments/demo.yaml")
models = [build_sequence_model(num_features=1280, num_classes=5, family="gru", inputs="frames+deltas",
                               stream="appearance+motion", motion_dim=36, frame_units=64, gru_units=(32,),
                               normalizer=(np.zeros(1280), np.ones(1280)),
                               motion_normalizer=(np.zeros(36), np.ones(36)))
          for _ in range(3)]
with mlflow.start_run():
    info = log_model(config, resolve_weights(config.extractor), seed_ensemble(models),
                     ("Blink", "Grow", "Shrink", "TurnBlue", "TurnRed"), 20, None, "appearance+motion")
mlflow.register_model(info.model_uri, "bench")
"""

PYFUNC = """
import json, sys, time
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model({model!r})
model.predict(pd.DataFrame({{"video_path": {videos!r}}}))
print(json.dumps({{"tensorflow": "tensorflow" in sys.modules}}))
"""


def _write_videos(folder: Path) -> list[str]:
    import cv2
    import numpy as np

    paths = []
    for index in range(2):
        path = folder / f"v_Grow_g0{index + 1}_c01.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
        for t in range(60):
            frame = np.full((120, 160, 3), 40 + index * 60, np.uint8)
            cv2.circle(frame, (80, 60), 10 + t // 3, (0, 200, 255), -1)
            writer.write(frame)
        writer.release()
        paths.append(str(path))
    return paths


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _timed(command: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed in {cwd}:\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def _serve_to_first_ping(cwd: Path, env: dict) -> float:
    port = _free_port()
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "videoclf", "serve", "--model", MODEL, "--port", str(port)],
                              cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
                return time.perf_counter() - started
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"videoclf serve exited in {cwd}") from None
                time.sleep(0.05)
    finally:
        os.killpg(server.pid, 9)
        server.wait()


def measure(commit: str, folder: Path, videos: list[str], repeats: int) -> dict[str, float | bool]:
    fresh_clone(commit, folder)
    env = {**os.environ, "PYTHONPATH": str(folder), "VIDEOCLF_RUNTIME_CACHE": str(folder / ".runtimes"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    _timed([sys.executable, "-c", REGISTER], folder, env)
    predict = [sys.executable, "-m", "videoclf", "predict", *videos, "--model", MODEL]
    pyfunc = [sys.executable, "-c", PYFUNC.format(model=MODEL, videos=videos)]
    runs = {"predict": [], "pyfunc": [], "serve": []}
    imported = None
    for _ in range(repeats):
        runs["predict"].append(_timed(predict, folder, env)[0])
        seconds, out = _timed(pyfunc, folder, env)
        runs["pyfunc"].append(seconds)
        imported = json.loads(out.strip().splitlines()[-1])["tensorflow"]
        runs["serve"].append(_serve_to_first_ping(folder, env))
    return {**{name: statistics.median(values) for name, values in runs.items()}, "tensorflow": imported}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BEFORE, help="the earlier commit to measure beside HEAD")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    head = head_commit()
    with tempfile.TemporaryDirectory(prefix="videoclf-cold-") as tmp:
        videos = _write_videos(Path(tmp))
        results = {label: measure(commit, Path(tmp) / label, videos, args.repeats)
                   for label, commit in (("base", args.base), ("head", head))}
    base, new = results["base"], results["head"]
    print(f"cold start, {os.cpu_count()} cores, median of {args.repeats}: {head} vs {args.base}")
    for name, what in (("predict", "videoclf predict, 2 videos"), ("pyfunc", "pyfunc load_model + predict"),
                       ("serve", "videoclf serve to first /ping")):
        print(f"  {what:32s} {new[name]:6.2f} s vs {base[name]:6.2f} s  ({base[name] / new[name]:.2f}x faster)")
    print(f"  TensorFlow imported by the pyfunc path: {new['tensorflow']} vs {base['tensorflow']}")


if __name__ == "__main__":
    main()
