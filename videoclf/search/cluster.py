"""A chief plus N KerasTuner workers on one machine (many cores or GPUs), with KerasTuner's own protocol.

The chief serves the oracle over gRPC (``KERASTUNER_TUNER_ID=chief``); each
worker (``tuner0``, ``tuner1``, ...) is an ordinary ``videoclf tune`` process
that runs trials and logs them under the chief's MLflow parent run. On a
cluster, start the same command yourself in each role (see README).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from videoclf.config import Config
from videoclf.dataset import load_split
from videoclf.data.source import ensure_data
from videoclf.search.run import SearchResult, run_search


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_with_local_workers(config: Config, name: str, worker_args: list[str], workers: int) -> SearchResult | None:
    """Extracts features once, starts ``workers`` worker processes, and runs the chief here."""
    from mlflow.tracking import MlflowClient

    ensure_data(config)
    vocabulary = load_split(config, "train")[1]  # extract once, before workers read the cache
    load_split(config, "test", vocabulary)
    MlflowClient().search_experiments()  # create a fresh SQLite store before several processes open it
    roles = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(_free_port())}
    os.environ.update(roles, KERASTUNER_TUNER_ID="chief")
    procs = [subprocess.Popen([sys.executable, "-m", "videoclf", "tune", *worker_args],
                              env={**os.environ, **roles, "KERASTUNER_TUNER_ID": f"tuner{i}"})
             for i in range(workers)]
    try:
        return run_search(config, name)
    finally:
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.terminate()
        for key in (*roles, "KERASTUNER_TUNER_ID"):
            os.environ.pop(key, None)
