"""A chief plus N KerasTuner workers on one machine (many cores or GPUs), with KerasTuner's own protocol.

The chief serves the oracle over gRPC (``KERASTUNER_TUNER_ID=chief``); each
worker (``tuner0``, ``tuner1``, ...) is an ordinary ``videoclf tune`` process
that runs trials and logs them under the chief's MLflow parent run. On a
cluster, start the same command yourself in each role (see README).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading

from videoclf.config import Config
from videoclf.search.run import SearchResult, run_search


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_with_local_workers(config: Config, name: str, worker_args: list[str], workers: int) -> SearchResult | None:
    """Runs the chief here, with ``workers`` worker processes started once the data is prepared (so they find the
    features cached) and stopped when the search ends."""
    roles = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(_free_port())}

    @contextlib.contextmanager
    def local_workers():
        from videoclf.tracking import open_store

        open_store()  # create a fresh SQLite store before several processes open it
        supervisor = _Supervisor([sys.executable, "-m", "videoclf", "tune", *worker_args], {**os.environ, **roles},
                                 workers)
        supervisor.start()
        try:
            yield
        finally:
            supervisor.stop()

    os.environ.update(roles, KERASTUNER_TUNER_ID="chief")
    try:
        return run_search(config, name, alongside=local_workers)
    finally:
        for key in (*roles, "KERASTUNER_TUNER_ID"):
            os.environ.pop(key, None)


class _Supervisor(threading.Thread):
    """Keeps N workers alive while the chief searches.

    A worker that dies is started again under the same ``tunerN`` id: the
    chief's oracle hands it the trial the dead one was running, so the trial
    finishes (its stale MLflow run is replaced) and the chief is not left
    waiting for it. Restarts are bounded per worker.
    """

    def __init__(self, command: list[str], env: dict[str, str], workers: int, max_restarts: int = 3):
        super().__init__(daemon=True)
        self.command, self.env, self.max_restarts = command, env, max_restarts
        self.procs = {f"tuner{i}": self._spawn(f"tuner{i}") for i in range(workers)}
        self.restarts = dict.fromkeys(self.procs, 0)
        self._stopping = threading.Event()

    def _spawn(self, tuner_id: str) -> subprocess.Popen:
        return subprocess.Popen(self.command, env={**self.env, "KERASTUNER_TUNER_ID": tuner_id})

    def run(self) -> None:
        while not self._stopping.wait(1.0):
            for tuner_id, proc in list(self.procs.items()):
                code = proc.poll()
                if code not in (None, 0) and self.restarts[tuner_id] < self.max_restarts:
                    self.restarts[tuner_id] += 1
                    print(f"worker {tuner_id} exited with {code}; restarting it "
                          f"({self.restarts[tuner_id]}/{self.max_restarts})", flush=True)
                    self.procs[tuner_id] = self._spawn(tuner_id)

    def stop(self) -> None:
        self._stopping.set()
        self.join()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.terminate()
