"""A team setup on loopback: PostgreSQL, `mlflow server` on it, a chief and two KerasTuner workers."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from videoclf.config import load_config
from videoclf.search.run import search_id_for

from conftest import TINY_SEARCH, cli_env, free_port, trial_runs, wait_until_up, worker_pid

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None) if Path("/usr/lib/postgresql").is_dir() \
    else None
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif((PG_BIN is None or shutil.which("runuser") is None) and not os.environ.get("CI"),
                       reason="Debian postgresql not installed; .ci/run installs it"),
]


def _as_postgres(*args, **kwargs):
    return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, args)], check=True, capture_output=True,
                          text=True, timeout=120, **kwargs)


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL on 127.0.0.1 (trust auth), stopped and deleted at the end."""
    # Outside pytest's tmp tree: the server runs as user postgres, which cannot enter root's 0700 folders.
    data = Path(tempfile.mkdtemp(prefix="videoclf-pg-"))
    shutil.chown(data, "postgres", "postgres")
    _as_postgres(PG_BIN / "initdb", "-D", data, "--auth=trust", "-U", "postgres")
    port = free_port()
    server = subprocess.Popen(["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(data), "-p",
                               str(port), "-k", str(data), "-h", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                   capture_output=True)
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline and server.poll() is None, "postgres did not start"
            time.sleep(0.5)
        _as_postgres(PG_BIN / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "mlflow")
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def tracking_server(postgres, tmp_path, monkeypatch):
    """`mlflow server` on the PostgreSQL store with a proxied artifact folder, as a team runs it."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres, "--artifacts-destination",
         str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{uri}/health", server)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


def test_chief_and_workers_log_to_a_tracking_server_on_postgres(tmp_path, make_config, tracking_server):
    epochs = 30
    path = make_config({**TINY_SEARCH, "tuning.max_trials": 4, "training.epochs": epochs, "search.batch_size": [2]})
    env = cli_env()
    chief = subprocess.Popen([sys.executable, "-m", "videoclf", "tune", "--config", str(path), "--local-workers",
                              "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    client = MlflowClient(tracking_server)
    search_id = search_id_for(load_config(path), "cfg")
    victim, deadline = None, time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and chief.poll() is None:
        try:
            running = [r for r in trial_runs(client, search_id) if r.info.status == "RUNNING"]
        except Exception:  # noqa: BLE001 - the experiment may not exist yet
            running = []
        victim = worker_pid("tuner1", chief.pid) if running else None
        time.sleep(0.2)
    assert victim, "no worker was found running a trial"
    os.kill(victim, signal.SIGKILL)  # mid-search: its trial must still end up logged exactly once
    output, _ = chief.communicate(timeout=600)
    assert chief.returncode == 0, output[-4000:]
    runs = trial_runs(client, search_id)
    assert len(runs) == 4 and len({r.data.tags["kt_trial_id"] for r in runs}) == 4
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1
    assert all(r.info.status == "FINISHED" for r in runs)  # none left RUNNING
    assert all(len(client.get_metric_history(r.info.run_id, "val_accuracy")) == epochs for r in runs)
    champion = client.get_model_version_by_alias("videoclf-test", "champion")
    assert [v.version for v in client.search_model_versions("name = 'videoclf-test'")] == [champion.version]
    assert (tmp_path / "artifacts").is_dir()  # the model went through the server's artifact proxy


def _roles(config_path, cwd, tracking_uri):
    """``start(tuner_id)``: ``videoclf tune`` in that role (README's cluster commands) on one chief address, its
    output captured."""
    roles = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port())}
    command = [sys.executable, "-m", "videoclf", "tune", "--config", str(config_path)]

    def start(tuner_id: str) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=cwd, env=cli_env(**roles, KERASTUNER_TUNER_ID=tuner_id,
                                                              MLFLOW_TRACKING_URI=tracking_uri),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    return start


def test_a_worker_killed_mid_trial_and_never_restarted_does_not_stall_the_search(tmp_path, make_config,
                                                                                 tracking_server):
    """A chief and two workers started as README's cluster section says, logging to `mlflow server`; one worker
    is SIGKILLed mid-trial and never restarted: the search finishes by itself, every trial once, one version."""
    tracking_uri = tracking_server
    path = make_config({**TINY_SEARCH, "tuning.max_trials": 3, "training.epochs": 30, "search.batch_size": [2],
                        "tuning.lease_seconds": 4.0})
    start = _roles(path, tmp_path, tracking_uri)
    chief = start("chief")
    workers = {tuner_id: start(tuner_id) for tuner_id in ("tuner0", "tuner1")}
    client = MlflowClient(tracking_uri)
    search_id = search_id_for(load_config(path), "cfg")
    deadline, victim = time.monotonic() + 300, workers["tuner1"]
    while time.monotonic() < deadline and chief.poll() is None:
        try:
            running = [r for r in trial_runs(client, search_id) if r.info.status == "RUNNING"]
        except Exception:  # noqa: BLE001 - the experiment may not exist yet
            running = []
        if len(running) == 2:  # both workers are mid-trial
            break
        time.sleep(0.2)
    assert chief.poll() is None, "the search ended before both workers were mid-trial"
    os.kill(victim.pid, signal.SIGKILL)  # and never started again
    victim.wait()
    output, _ = chief.communicate(timeout=600)
    assert chief.returncode == 0, output[-4000:]
    assert "lost: worker tuner1 silent" in output, output[-4000:]
    survivor, _ = workers["tuner0"].communicate(timeout=120)
    assert workers["tuner0"].returncode == 0, survivor[-4000:]
    runs = trial_runs(client, search_id)
    assert len(runs) == 3 and len({r.data.tags["kt_trial_id"] for r in runs}) == 3
    assert all(r.info.status == "FINISHED" for r in runs)  # the lost attempt's run was ended, then replaced
    champion = client.get_model_version_by_alias("videoclf-test", "champion")
    assert [v.version for v in client.search_model_versions("name = 'videoclf-test'")] == [champion.version]
