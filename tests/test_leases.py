"""Trial leases in KerasTuner's distributed mode: a silent worker loses its trial, its late result is refused."""

import threading
import time

import keras_tuner as kt
import pytest

from videoclf.search.leases import LeaseBook, hold_leases, serve

from conftest import free_port


def _chief(tmp_path, monkeypatch, lease_seconds: float, trial_attempts: int, max_trials: int = 2):
    """A real oracle served with leases on loopback, in a thread; returns (oracle, book, lost trials, thread)."""
    port = free_port()
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("score", "max"), max_trials=max_trials, seed=1)
    oracle._set_project_dir(str(tmp_path), "leases")
    space = kt.HyperParameters()
    space.Int("x", 0, 1000)
    oracle.update_space(space)
    lost = []
    book = LeaseBook(oracle, lease_seconds, trial_attempts, on_lost=lambda *args: lost.append(args))
    thread = threading.Thread(target=serve, args=(oracle, book, f"127.0.0.1:{port}", 0.05), daemon=True)
    thread.start()
    return oracle, book, lost, thread


def _worker(tuner_id: str, monkeypatch, lease_seconds: float):
    from keras_tuner.src.distribute.oracle_client import OracleClient

    monkeypatch.setenv("KERASTUNER_TUNER_ID", tuner_id)
    client = OracleClient(kt.oracles.RandomSearchOracle(objective=kt.Objective("score", "max"), max_trials=1))
    return client, hold_leases(client, lease_seconds)


def _wait(condition, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_silent_worker_loses_its_trial_to_the_next_and_its_late_result_is_refused(tmp_path, monkeypatch):
    oracle, book, lost, chief = _chief(tmp_path, monkeypatch, lease_seconds=1.0, trial_attempts=3)
    silent, silent_lease = _worker("tuner0", monkeypatch, 1.0)
    trial = silent.create_trial("tuner0")
    silent_lease.began(trial.trial_id)
    assert silent_lease.attempt == 1
    silent_lease.stop_beating()  # the worker goes quiet (a lost node), its process still there
    _wait(lambda: lost)
    assert lost[0][0] == trial.trial_id and not lost[0][2]  # retried, not failed
    assert "tuner0" not in oracle.tuner_ids and "tuner0" not in oracle.ongoing_trials

    live, live_lease = _worker("tuner1", monkeypatch, 1.0)
    again = live.create_trial("tuner1")
    live_lease.began(again.trial_id)
    assert again.trial_id == trial.trial_id and live_lease.attempt == 2
    time.sleep(2.0)  # the live worker's heartbeats hold its lease past the grace period
    assert oracle.ongoing_trials["tuner1"].trial_id == trial.trial_id and len(lost) == 1

    silent.update_trial(trial.trial_id, {"score": 999.0})  # the late worker reports: refused, never merged
    assert silent_lease.lost and not oracle.get_trial(trial.trial_id).metrics.exists("score")
    with pytest.raises(Exception, match="lost its lease"):
        silent_lease.check()
    ended = kt.engine.trial.Trial(oracle.get_space(), trial.trial_id, "COMPLETED")
    silent.end_trial(ended)
    assert oracle.ongoing_trials["tuner1"].trial_id == trial.trial_id  # still running on the live worker

    live.update_trial(trial.trial_id, {"score": 1.0})
    live.end_trial(ended)
    assert not live_lease.lost and oracle.get_trial(trial.trial_id).score == 1.0
    assert oracle.get_trial(trial.trial_id).status == "COMPLETED" and oracle.end_order == [trial.trial_id]
    assert any("refused a result" in line for line in book.lost_log)

    live_lease.ended()
    second = live.create_trial("tuner1")
    live_lease.began(second.trial_id)
    live.update_trial(second.trial_id, {"score": 2.0})
    live.end_trial(kt.engine.trial.Trial(oracle.get_space(), second.trial_id, "COMPLETED"))
    assert live.create_trial("tuner1").status == "STOPPED"
    chief.join(timeout=20)  # budget done, nobody alive holds a trial: the chief ends by itself
    assert not chief.is_alive()
    live_lease.stop_beating()


def test_a_trial_lost_on_its_last_attempt_ends_failed(tmp_path, monkeypatch):
    oracle, book, lost, chief = _chief(tmp_path, monkeypatch, lease_seconds=0.5, trial_attempts=1, max_trials=1)
    silent, silent_lease = _worker("tuner0", monkeypatch, 0.5)
    trial = silent.create_trial("tuner0")
    silent_lease.stop_beating()
    _wait(lambda: lost)
    assert lost[0][2] and oracle.get_trial(trial.trial_id).status == "FAILED"
    assert "no attempts left" in oracle.get_trial(trial.trial_id).message
    assert not oracle._retry_queue
    live, live_lease = _worker("tuner1", monkeypatch, 0.5)
    assert live.create_trial("tuner1").status == "STOPPED"  # the budget is spent: nothing runs it again
    chief.join(timeout=20)
    assert not chief.is_alive()
    live_lease.stop_beating()
