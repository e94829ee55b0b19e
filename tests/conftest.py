"""Shared fixtures: real videos written by OpenCV, small configs, a temp MLflow store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
MODEL = "models:/videoclf-test@champion"  # what the ``searched`` fixture registers


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
            **kwargs) -> subprocess.CompletedProcess:
    """Runs ``videoclf ARGS`` (or ``python ARGS`` when ``args[0]`` is a path to Python) as a user would: a fresh
    process in ``cwd``, this checkout on the path, TensorFlow's start-up lines off, output captured."""
    command = args if args and args[0] == sys.executable else [sys.executable, "-m", "videoclf", *args]
    return subprocess.run(command, cwd=cwd, env=cli_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a ``videoclf`` (or Python) child process: this checkout on the path, TensorFlow's
    start-up lines off, plus ``extra``."""
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


# A tiny demo search: a few clips, one holdout split; tests that are about CV/seeds/baselines ask for more.
TINY_SEARCH = {
    "data.demo": {"seed": 3, "train_groups": 3, "test_groups": 1, "clips_per_group": 2, "min_frames": 12,
                  "max_frames": 30},
    "training.validation_fraction": 0.34,
    "training.early_stopping_patience": None,
    "training.cv_folds": 1,  # one holdout split keeps these searches short; cross-validation is tested on its own
}


def trial_runs(client, search_id: str, experiment: str = "test"):
    """The nested trial runs of one search, from a real MLflow store."""
    from videoclf.tracking import ROLE_TAG, SEARCH_TAG

    experiment = client.get_experiment_by_name(experiment)
    return client.search_runs([experiment.experiment_id],
                              f"tags.{SEARCH_TAG} = '{search_id}' and tags.{ROLE_TAG} = 'trial'")


def worker_pid(tuner_id: str, parent: int) -> int | None:
    """The pid of the local worker process running as ``tuner_id`` under ``parent``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if ppid == parent and f"KERASTUNER_TUNER_ID={tuner_id}".encode() in environ:
            return int(entry.name)
    return None


def write_video(path: Path, n_frames: int, size=(64, 48), codec="MJPG", seed=0, fps=25) -> Path:
    """A real video whose frame t shows a bar at a position that encodes t."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {codec}"
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 255, 3)
    for t in range(n_frames):
        frame = np.empty((size[1], size[0], 3), np.uint8)
        frame[:] = background
        x = int((t / max(n_frames - 1, 1)) * (size[0] - 8))
        frame[:, x: x + 8] = (0, 0, 255)  # red in BGR
        writer.write(frame)
    writer.release()
    return path


def write_csv(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("video_name,tag\n" + "".join(f"{n},{t}\n" for n, t in rows))
    return path


def write_dataset(root: Path, n: int = 6, frames=(12, 30), test: int = 2) -> list[tuple[str, str]]:
    """A folder of ``n`` real videos of two classes (one group each, UCF101 names) with ``train.csv`` listing them
    all and ``test.csv`` the first ``test``; returns the rows."""
    rows = []
    for i in range(n):
        name = f"v_C{i % 2}_g{i:02d}_c01.avi"
        write_video(root / name, frames[i % len(frames)], seed=i)
        rows.append((name, f"C{i % 2}"))
    write_csv(root / "train.csv", rows)
    write_csv(root / "test.csv", rows[:test])
    return rows


@pytest.fixture
def make_config(tmp_path):
    """Writes a YAML config under tmp_path (small, fast defaults) and returns its path."""

    def _make(overrides: dict | None = None, name: str = "cfg.yaml") -> Path:
        config = {
            "data": {"root": str(tmp_path / "data")},
            "sampling": {"max_seq_length": 8, "image_size": 64},
            "extractor": {"name": "efficientnet_lite0", "weights": "imagenet", "batch_size": 8},
            "cache": {"dir": str(tmp_path / "cache")},
            "search": {"seq_length": [4, 8], "num_gru_layers": [1], "gru_units": [[8, 16]],
                       "batch_size": [8]},
            # one final seed and one baseline keep searches tiny; the tests about them ask for more
            "tuning": {"max_trials": 2, "directory": str(tmp_path / "tuner"), "final_seeds": 1,
                       "baselines": ["pooled_logreg"]},
            "training": {"epochs": 2},
            "tracking": {"experiment_name": "test", "registered_model_name": "videoclf-test"},
        }
        for dotted, value in (overrides or {}).items():
            node = config
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        return path

    return _make


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def searched(tmp_path_factory):
    """One tiny tracked search whose champion (``MODEL``: appearance + motion, two seeds averaged) the model-using
    tests share."""
    from videoclf.config import load_config
    from videoclf.search.run import run_search

    root = tmp_path_factory.mktemp("searched")
    config_path = root / "cfg.yaml"
    config_path.write_text(yaml.safe_dump({
        "data": {"root": str(root / "data"), "demo": {"seed": 5, "train_groups": 3, "test_groups": 1,
                                                      "clips_per_group": 2, "min_frames": 12, "max_frames": 30}},
        "sampling": {"max_seq_length": 8, "image_size": 64},
        "extractor": {"name": "efficientnet_lite0", "weights": "imagenet", "batch_size": 8},
        "cache": {"dir": str(root / "cache")},
        "motion": {"enabled": True},  # the champion reads both streams and averages two seeds
        "search": {"seq_length": [4], "num_gru_layers": [1], "gru_units": [[8]], "batch_size": [8],
                   "streams": ["appearance+motion"]},
        "tuning": {"max_trials": 1, "directory": str(root / "tuner"), "final_seeds": 2, "baselines": []},
        "training": {"epochs": 3, "validation_fraction": 0.34},
        "tracking": {"experiment_name": "test", "registered_model_name": "videoclf-test"},
    }))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:  # only while searching: users pass ``uri`` explicitly
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(root)  # MLflow's artifact store lands beside the database
        result = run_search(load_config(config_path), "searched", progress=False)
    return {"root": root, "uri": uri, "config": config_path, "result": result,
            "videos": sorted((root / "data").glob("v_*_g01_*.avi"))}


def searched_model(searched):
    """The searched champion, loaded in this process from its store (the tracking URI set only meanwhile)."""
    import mlflow

    mlflow.set_tracking_uri(searched["uri"])
    try:
        return mlflow.pyfunc.load_model(MODEL)
    finally:
        mlflow.set_tracking_uri(None)


def in_private_tmpfs(script: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Runs a shell ``script`` in a private user + mount namespace (where it may mount small tmpfs file systems;
    its first mount ends with ``|| exit 77``); skips the test where that is not permitted."""
    try:
        result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                                cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        pytest.skip("unshare is not installed")
    if result.returncode == 77 or "unshare:" in result.stderr[:300]:
        pytest.skip(f"cannot mount a private tmpfs here: {result.stderr[:200]}")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, seconds: float = 180) -> None:
    """Polls ``url`` until it answers; fails early if ``server`` exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            assert server.poll() is None, f"server for {url} exited"
            time.sleep(1)
    raise AssertionError(f"{url} did not answer within {seconds}s")
