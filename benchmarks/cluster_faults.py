"""What losing machines costs a distributed search, side by side in one run (issue 30).

Search scenarios on the demo, in this order, each with its own tuner folder
and SQLite store (features cached before timing), a chief and workers started
as README's cluster section says, every worker on one TensorFlow thread:

* ``1 worker`` and ``2 workers``, nothing failing;
* ``worker lost``: tuner1 SIGKILLed while both workers are mid-trial, never
  started again: when the chief declared it lost, when its trial started
  again elsewhere (its new MLflow run), how many of its folds were read back;
* ``chief restarted``: the chief SIGKILLed after the first finished trial and
  started again at once: when it served again;
* ``chaos``: seeded, the chief first as above, then ``--faults`` more of the
  chief or a worker at random points, each started again after a pause.

Each prints its wall seconds and its ratio to ``2 workers``. Then the chief's
answer time: a chief serving a plain oracle (trials that only sleep) to 1 and
to ``--askers`` workers asking at once (threads of this process, each with
its heartbeats), the median and 95th percentile of every call.

usage: python benchmarks/cluster_faults.py [--trials 4] [--epochs 15] [--lease 30] [--seed 7] [--faults 3]
       [--askers 16] [--only SCENARIO ...]      (run from the repository root)
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from videoclf.search.leases import LEASES_FILE  # noqa: E402
from videoclf.search.tuner import FOLD_CHECKPOINTS  # noqa: E402

SCENARIOS = ("1 worker", "2 workers", "worker lost", "chief restarted", "chaos")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """A chief and workers of one search on loopback; every output line kept with the time it was printed."""

    def __init__(self, tmp: Path, name: str, args):
        self.folder = tmp / name.replace(" ", "-")
        self.folder.mkdir()
        self.uri = f"sqlite:///{self.folder / 'mlflow.db'}"
        self.command = [sys.executable, "-m", "videoclf", "tune", "--config", str(REPO / "experiments/demo.yaml"),
                        "--set", f"tuning.max_trials={args.trials}", "--set", f"training.epochs={args.epochs}",
                        "--set", "training.early_stopping_patience=null", "--set", "tuning.final_seeds=1",
                        "--set", f"tuning.lease_seconds={args.lease}",
                        "--set", f"tuning.directory={self.folder / 'tuner'}",
                        "--set", f"tracking.experiment_name=bench-{self.folder.name}"]
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": self.uri,
                    "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(_free_port())}
        self.procs: dict[str, subprocess.Popen] = {}
        self.lines: list[tuple[float, str, str]] = []  # (time, role, line)
        self.started = time.monotonic()

    def start(self, role: str) -> None:
        one_thread = {} if role == "chief" else {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
                                                 "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(self.command, cwd=REPO, env={**self.env, **one_thread, "KERASTUNER_TUNER_ID": role},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs[role] = proc
        threading.Thread(target=self._read, args=(role, proc), daemon=True).start()

    def _read(self, role: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append((time.monotonic(), role, line.rstrip()))

    def kill(self, role: str) -> float:
        self.procs[role].kill()
        self.procs[role].wait()
        return time.monotonic()

    def first(self, pattern: str, after: float = 0.0, role: str | None = None) -> tuple[float, re.Match] | None:
        for at, who, line in list(self.lines):
            match = re.search(pattern, line)
            if at >= after and match and (role is None or who == role):
                return at, match
        return None

    def trial_runs(self):
        from mlflow.tracking import MlflowClient

        from videoclf.tracking import ROLE_TAG

        client = MlflowClient(self.uri)
        try:
            experiment = client.get_experiment_by_name(f"bench-{self.folder.name}")
            return client.search_runs([experiment.experiment_id], f"tags.{ROLE_TAG} = 'trial'") if experiment else []
        except Exception:  # noqa: BLE001 - the store is being created
            return []

    def victim_ended_a_fold(self, victim: str = "tuner1") -> bool:
        """Whether ``victim``'s trial (the chief's lease book says which) has a finished fold on the shared folder."""
        import json

        for book in (self.folder / "tuner").glob(f"*/{LEASES_FILE}"):
            try:
                held = json.loads(book.read_text())["holders"].get(victim)
            except (OSError, ValueError):
                continue
            if held and list(book.parent.glob(f"trial_{held[0]}/{FOLD_CHECKPOINTS}-*/fold-*.npz")):
                return True
        return False

    def count(self, status: str) -> int:
        return sum(run.info.status == status for run in self.trial_runs())

    def wait_for(self, condition, seconds: float = 900.0) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline or self.procs["chief"].poll() not in (None, 0):
                raise SystemExit(f"{self.folder.name}: timed out or the chief failed\n" + self.tail())
            time.sleep(0.2)

    def finish(self) -> float:
        code = self.procs["chief"].wait(timeout=1800)
        for role, proc in self.procs.items():
            proc.wait(timeout=300)
        if code != 0:
            raise SystemExit(f"{self.folder.name}: the chief exited {code}\n" + self.tail())
        return time.monotonic() - self.started

    def tail(self) -> str:
        return "\n".join(f"{who}: {line}" for _, who, line in self.lines[-40:])


def _search(tmp: Path, name: str, args) -> tuple[float, str]:
    """Runs one scenario; returns its wall seconds and what it measured besides."""
    cluster = Cluster(tmp, name, args)
    workers = ["tuner0"] if name == "1 worker" else ["tuner0", "tuner1"]
    for role in ["chief", *workers]:
        cluster.start(role)
    note = ""
    if name == "worker lost":
        cluster.wait_for(lambda: cluster.count("RUNNING") == 2)
        cluster.wait_for(cluster.victim_ended_a_fold)  # so the move shows what finished folds save
        killed, wall = cluster.kill("tuner1"), time.time()
        cluster.wait_for(lambda: cluster.first(r"trial (\S+) lost: worker tuner1", killed))
        lost_at, match = cluster.first(r"trial (\S+) lost: worker tuner1", killed)
        trial = match.group(1)
        cluster.wait_for(lambda: any(r.data.tags.get("kt_trial_id") == trial and r.info.start_time > wall * 1000
                                     for r in cluster.trial_runs()))
        again = min(r.info.start_time for r in cluster.trial_runs()
                    if r.data.tags.get("kt_trial_id") == trial and r.info.start_time > wall * 1000) / 1000
        seconds = cluster.finish()
        read_back = cluster.first(rf"trial {trial}: (\d+ of \d+) folds read back")
        note = (f"death -> declared lost {lost_at - killed:.1f} s (lease {args.lease:g} s), -> running elsewhere "
                f"{again - wall:.1f} s; folds read back: {read_back[1].group(1) if read_back else 'none'}")
    elif name in ("chief restarted", "chaos"):
        rng = random.Random(args.seed)
        cluster.wait_for(lambda: cluster.count("FINISHED") >= 1)
        faults = [("chief", 0.0)] + ([(rng.choice(("chief", "tuner0", "tuner1")), rng.uniform(5.0, 20.0))
                                      for _ in range(args.faults)] if name == "chaos" else [])
        said, served = [], []
        for victim, delay in faults:
            time.sleep(delay)
            if cluster.procs["chief"].poll() is not None:
                break
            if victim != "chief" and (cluster.procs[victim].poll() is not None or
                                      cluster.count("FINISHED") > args.trials - 2):
                continue
            killed = cluster.kill(victim)
            said.append(victim)
            if name == "chaos":
                time.sleep(rng.uniform(0.0, 3.0))
            cluster.start(victim)
            if victim == "chief":
                cluster.wait_for(lambda: cluster.first("chief restarted|the chief answers again", killed)
                                 or cluster.procs["chief"].poll() is not None)
                hit = cluster.first("chief restarted|the chief answers again", killed)
                served.append(f"{hit[0] - killed:.1f} s" if hit else "- (no worker left waiting)")
        seconds = cluster.finish()
        note = f"killed: {', '.join(said)}; chief killed -> serving again {', '.join(served)}"
    else:
        seconds = cluster.finish()
    runs = cluster.trial_runs()
    finished = sorted(r.data.tags.get("kt_trial_id") for r in runs if r.info.status == "FINISHED")
    if len(finished) != args.trials or len(set(finished)) != args.trials:
        raise SystemExit(f"{name}: trials {finished}, expected {args.trials} each once\n" + cluster.tail())
    return seconds, note


_CHIEF = """
import os, sys, keras_tuner as kt
from videoclf.search.leases import LeaseBook, serve
oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("score", "max"), max_trials=100000, seed=1)
oracle._set_project_dir(sys.argv[1], "answers")
space = kt.HyperParameters(); space.Int("x", 0, 10**9); oracle.update_space(space)
serve(oracle, LeaseBook(oracle, 30.0, 3), "127.0.0.1:" + sys.argv[2])
"""


def _answer_times(askers: int, seconds: float, tmp: Path) -> dict[str, list[float]]:
    """Each asker runs trials that only sleep (create, 3 updates 50 ms apart, end) against a chief in its own
    process; every call's time, by call."""
    import keras_tuner as kt
    from keras_tuner.src.distribute.oracle_client import OracleClient
    from keras_tuner.src.engine import trial as trial_module

    from videoclf.search.leases import hold_leases

    port = str(_free_port())
    folder = tmp / f"answers-{askers}"
    chief = subprocess.Popen([sys.executable, "-c", _CHIEF, str(folder), port], cwd=REPO,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update(KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=port)
    times: dict[str, list[float]] = {"CreateTrial": [], "UpdateTrial": [], "EndTrial": []}
    clients = []
    for index in range(askers):
        os.environ["KERASTUNER_TUNER_ID"] = f"asker{index}"
        client = OracleClient(kt.oracles.RandomSearchOracle(objective=kt.Objective("score", "max"), max_trials=1))
        clients.append((client, hold_leases(client, 30.0)))
    clients[0][0].get_space()  # the chief is up
    stop = time.monotonic() + seconds
    barrier = threading.Barrier(askers)

    def timed(name, call, *args):
        started = time.perf_counter()
        out = call(*args)
        times[name].append(time.perf_counter() - started)
        return out

    def ask(client, lease):
        barrier.wait()  # all at once
        while time.monotonic() < stop:
            trial = timed("CreateTrial", client.create_trial, client.tuner_id)
            lease.began(trial.trial_id)
            for step in range(3):
                time.sleep(0.05)
                timed("UpdateTrial", client.update_trial, trial.trial_id, {"score": float(step)}, step)
            trial.status = trial_module.TrialStatus.COMPLETED
            timed("EndTrial", client.end_trial, trial)
            lease.ended()

    threads = [threading.Thread(target=ask, args=pair) for pair in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _, lease in clients:
        lease.stop_beating()
    chief.kill()
    chief.wait()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lease", type=float, default=30.0, help="tuning.lease_seconds (default: the config's)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--faults", type=int, default=3, help="chaos: faults after the first chief kill")
    parser.add_argument("--askers", type=int, default=16)
    parser.add_argument("--answer-seconds", type=float, default=20.0)
    parser.add_argument("--only", nargs="*", choices=[*SCENARIOS, "answers"], default=None)
    args = parser.parse_args()
    wanted = args.only or [*SCENARIOS, "answers"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "videoclf", "extract", "--config", str(REPO / "experiments/demo.yaml")],
                   cwd=REPO, env=env, check=True, capture_output=True)
    print(f"demo search, {args.trials} trials x {args.epochs} epochs, lease {args.lease:g} s, {os.cpu_count()} CPU "
          "cores (chief + workers on one TensorFlow thread each; features cached; test and registration included)",
          flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="videoclf-bench-") as tmp:
        for name in (s for s in SCENARIOS if s in wanted):
            seconds, note = _search(Path(tmp), name, args)
            results[name] = seconds
            base = results.get("2 workers")
            ratio = f"{seconds / base:5.2f}x of 2 workers" if base else ""
            print(f"{name:16s} {seconds:7.1f} s  {ratio}  {note}", flush=True)
        if "answers" in wanted:
            print(f"\nchief answer time (trials that only sleep; {args.answer_seconds:g} s of asking; ms median / p95)")
            for askers in (1, args.askers):
                times = _answer_times(askers, args.answer_seconds, Path(tmp))
                cells = "  ".join(f"{name} {1000 * statistics.median(v):6.1f} / "
                                  f"{1000 * statistics.quantiles(v, n=20)[-1]:6.1f} ({len(v)})"
                                  for name, v in times.items() if len(v) > 1)
                print(f"{askers:3d} asking: {cells}", flush=True)


if __name__ == "__main__":
    main()
