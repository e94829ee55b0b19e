"""Hosts of their own: network namespaces joined by a virtual switch, as README's cluster section runs a team setup.

One host runs PostgreSQL and `mlflow server` (artifacts proxied by the server), one the chief, two the workers; each
reaches the others only by their addresses. The test's shared folder stands in for a network filesystem (data,
feature cache, tuning directory). Needs root and iproute2, as CI has.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from videoclf.config import load_config
from videoclf.search.run import search_id_for

from conftest import TINY_SEARCH, cli_env, free_port, trial_runs
from servers import HAVE_POSTGRES, mlflow_server, postgres


def _can_make_hosts() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"videoclf-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if made:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return made


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAVE_POSTGRES and not os.environ.get("CI"),
                       reason="Debian postgresql not installed; .ci/run installs it"),
    pytest.mark.skipif(not _can_make_hosts(), reason="network namespaces need root and iproute2 (ip netns add)"),
]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Hosts:
    """Network namespaces named after ``names``, each with one interface on a bridge in a switch namespace, plus a
    link from this (the operator's) namespace to the switch; deleted with everything they run on ``close``."""

    def __init__(self, names: tuple[str, ...]):
        tag = os.getpid() % 10000
        self.subnet = f"10.{200 + tag % 50}.{tag % 250}"
        self.switch = f"vc{tag}-sw"
        self.namespaces = {name: f"vc{tag}-{name}" for name in names}
        self.addresses = {name: f"{self.subnet}.{index + 1}" for index, name in enumerate(names)}
        self.operator = f"{self.subnet}.254"
        _ip("netns", "add", self.switch)
        try:
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for index, name in enumerate(names):
                namespace, inside, port = self.namespaces[name], f"vc{tag}h{index}", f"vc{tag}p{index}"
                _ip("netns", "add", namespace)
                _ip("link", "add", inside, "type", "veth", "peer", "name", port)
                _ip("link", "set", inside, "netns", namespace)
                self._plug(port)
                _ip("-n", namespace, "addr", "add", f"{self.addresses[name]}/24", "dev", inside)
                _ip("-n", namespace, "link", "set", inside, "up")
                _ip("-n", namespace, "link", "set", "lo", "up")
            here, port = f"vc{tag}op", f"vc{tag}pop"
            _ip("link", "add", here, "type", "veth", "peer", "name", port)
            self._plug(port)
            _ip("addr", "add", f"{self.operator}/24", "dev", here)
            _ip("link", "set", here, "up")
        except Exception:
            self.close()
            raise

    def _plug(self, port: str) -> None:
        _ip("link", "set", port, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", port, "master", "br0")
        _ip("-n", self.switch, "link", "set", port, "up")

    def on(self, name: str) -> tuple[str, ...]:
        """The command prefix that runs a command on host ``name``."""
        return ("ip", "netns", "exec", self.namespaces[name])

    def kill_everything_on(self, name: str) -> list[int]:
        """SIGKILLs every process of host ``name`` (the host is lost); returns their pids."""
        listed = subprocess.run(["ip", "netns", "pids", self.namespaces[name]], capture_output=True, text=True)
        pids = [int(pid) for pid in listed.stdout.split()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def close(self) -> None:
        for name in self.namespaces:
            self.kill_everything_on(name)
        for namespace in (*self.namespaces.values(), self.switch):  # deleting the switch takes the links with it
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


@pytest.fixture
def hosts():
    made = Hosts(("tracking", "chief", "worker0", "worker1"))
    try:
        yield made
    finally:
        made.close()


def test_a_team_on_hosts_of_their_own_survives_losing_a_worker_host(tmp_path, make_config, hosts, monkeypatch):
    """README's cluster steps on four hosts: `extract --shard I/2` on the two worker hosts, then the search (the
    chief on its host, a worker on each worker host, MLflow on the tracking host, reached by address only); every
    process of one worker host is killed mid-trial and never comes back: the search finishes by itself, every
    trial once and FINISHED, the model through the server's artifact proxy, one version."""
    path = make_config({**TINY_SEARCH, "tuning.max_trials": 3, "training.epochs": 30, "search.batch_size": [2],
                        "tuning.lease_seconds": 6.0})
    run = [sys.executable, "-m", "videoclf"]
    shards = [subprocess.Popen([*hosts.on(f"worker{i}"), *run, "extract", "--config", str(path), "--shard", f"{i}/2"],
                               cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True) for i in range(2)]
    for shard in shards:
        output, _ = shard.communicate(timeout=600)
        assert shard.returncode == 0, output[-3000:]
        assert "/2)" in output and "extracted now" in output, output[-3000:]
    with postgres(run_in=hosts.on("tracking")) as backend, \
            mlflow_server(backend, tmp_path / "artifacts", hosts.addresses["tracking"],
                          run_in=hosts.on("tracking")) as tracking_uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        roles = {"KERASTUNER_ORACLE_IP": hosts.addresses["chief"], "KERASTUNER_ORACLE_PORT": str(free_port()),
                 "MLFLOW_TRACKING_URI": tracking_uri}
        logs = tmp_path / "logs"
        logs.mkdir()

        def start(host: str, tuner_id: str) -> subprocess.Popen:
            return subprocess.Popen([*hosts.on(host), *run, "tune", "--config", str(path)], cwd=tmp_path,
                                    env=cli_env(**roles, KERASTUNER_TUNER_ID=tuner_id),
                                    stdout=open(logs / f"{tuner_id}.log", "w"), stderr=subprocess.STDOUT)

        chief = start("chief", "chief")
        workers = {"tuner0": start("worker0", "tuner0"), "tuner1": start("worker1", "tuner1")}
        client = MlflowClient(tracking_uri)
        search_id = search_id_for(load_config(path), "cfg")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and chief.poll() is None:
            try:
                running = [r for r in trial_runs(client, search_id) if r.info.status == "RUNNING"]
            except Exception:  # noqa: BLE001 - the experiment may not exist yet
                running = []
            if len(running) == 2:  # both workers are mid-trial
                break
            time.sleep(0.2)
        assert chief.poll() is None, "the search ended before both workers were mid-trial"
        assert hosts.kill_everything_on("worker1"), "nothing ran on worker1"  # the host is lost for good
        workers["tuner1"].wait(timeout=30)

        def tail(name: str) -> str:
            return (logs / f"{name}.log").read_text()[-4000:]

        assert chief.wait(timeout=600) == 0, tail("chief")
        assert "lost: worker tuner1 silent" in (logs / "chief.log").read_text(), tail("chief")
        assert workers["tuner0"].wait(timeout=120) == 0, tail("tuner0")
        runs = trial_runs(client, search_id)
        assert len(runs) == 3 and len({r.data.tags["kt_trial_id"] for r in runs}) == 3
        assert all(r.info.status == "FINISHED" for r in runs)
        champion = client.get_model_version_by_alias("videoclf-test", "champion")
        assert [v.version for v in client.search_model_versions("name = 'videoclf-test'")] == [champion.version]
        assert (tmp_path / "artifacts").is_dir()  # the model went through the server's artifact proxy
