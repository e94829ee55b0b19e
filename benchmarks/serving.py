"""Serving: latency of one video sent as bytes vs named by path, and requests/s with 1 and 2 workers, in one run.

The model is the demo config's (EfficientNet-Lite0 at 224 px, 20 frames a video)
with a small untrained GRU on top: the frame extractor dominates a request's
cost, so the sequence model's weights do not matter here. Videos are demo clips
(MJPG, 64–128 frames). Each server is a real ``videoclf serve`` process on
127.0.0.1; clients are threads in this process.

usage: python benchmarks/serving.py [--requests 20] [--seconds 20] [--clients 4]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from conftest import free_port, wait_until_up  # noqa: E402


def _model(tmp: Path) -> str:
    import mlflow

    from videoclf.config import load_config
    from videoclf.features.backbones import resolve_weights
    from videoclf.model import build_sequence_model
    from videoclf.registered.writer import log_video_model

    config = load_config(REPO / "experiments" / "demo.yaml")
    sequence = build_sequence_model(num_features=1280, num_classes=5, family="gru", inputs="frames", frame_units=64,
                                    gru_units=(32,))
    with mlflow.start_run():
        info = log_video_model(config, resolve_weights(config.extractor), sequence, ("A", "B", "C", "D", "E"), 20)
    return info.model_uri


def _post(url: str, payload: dict) -> float:
    body = json.dumps(payload).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as response:
        answer = json.loads(response.read())
    assert answer["predictions"][0]["error"] is None, answer
    return time.perf_counter() - started


def _server(model_uri: str, workers: int, root: Path, env: dict):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "videoclf", "serve", "--model", model_uri, "--port", str(port), "--workers",
         str(workers), "--allow-root", str(root), "--max-waiting", "64"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/ping", process, seconds=300)
    return process, url


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _throughput(url: str, payloads: list[dict], seconds: float, clients: int) -> float:
    for payload in payloads[:2]:  # warm every worker's model once or twice
        _post(url, payload)
    done, stop = [], time.perf_counter() + seconds

    def client(index: int) -> None:
        n = index
        while time.perf_counter() < stop:
            _post(url, payloads[n % len(payloads)])
            done.append(1)
            n += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(done) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="sequential requests per latency figure")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each throughput run")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients in the throughput runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="videoclf-serve-bench-") as tmp:
        tmp = Path(tmp)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.chdir(tmp)
        from videoclf.config import DemoConfig
        from videoclf.data.demo import generate_demo

        generate_demo(tmp / "videos", DemoConfig(train_groups=2, test_groups=1, clips_per_group=1), progress=False)
        videos = sorted((tmp / "videos").glob("*.avi"))
        model_uri = _model(tmp)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        by_path = [{"dataframe_split": {"columns": ["video_path"], "data": [[str(v)]]}} for v in videos]
        by_bytes = [{"dataframe_records": [{"video_bytes": base64.b64encode(v.read_bytes()).decode()}]}
                    for v in videos]
        sizes = [v.stat().st_size for v in videos]
        print(f"{len(videos)} demo videos, {statistics.median(sizes) / 1e6:.2f} MB median; "
              f"{args.requests} sequential requests per latency, {args.clients} clients for {args.seconds:.0f} s "
              f"per throughput run")

        process, url = _server(model_uri, 1, tmp / "videos", env)
        try:
            for payload in by_path[:2] + by_bytes[:2]:
                _post(url, payload)  # warm-up
            latency = {}
            for name, payloads in (("path", by_path), ("bytes", by_bytes)):
                latency[name] = statistics.median(_post(url, payloads[i % len(payloads)])
                                                  for i in range(args.requests))
            print(f"latency, one video: by path {latency['path'] * 1000:.0f} ms, by bytes "
                  f"{latency['bytes'] * 1000:.0f} ms (bytes/path {latency['bytes'] / latency['path']:.2f}x)")
            rates = {1: _throughput(url, by_bytes, args.seconds, args.clients)}
            print(f"server memory after the runs (1 worker): {_rss_mib(process.pid):.0f} MiB RSS")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        process, url = _server(model_uri, 2, tmp / "videos", env)
        try:
            rates[2] = _throughput(url, by_bytes, args.seconds, args.clients)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        print(f"requests/s (one video each, by bytes): 1 worker {rates[1]:.2f}, 2 workers {rates[2]:.2f} "
              f"(2/1 workers {rates[2] / rates[1]:.2f}x) on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
