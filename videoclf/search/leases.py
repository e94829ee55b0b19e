"""Trial leases for KerasTuner's distributed mode: a lost worker never pins the chief, a late result is never merged.

KerasTuner's chief keeps a dead worker's trial in ``ongoing_trials`` and its id
in ``tuner_ids`` for ever, so a worker lost without a restart (preemption, an
OOM kill, a drained node) stalls the search. Here, without changing its wire
protocol (gRPC metadata rides beside the messages, so a plain KerasTuner worker
still works):

* each assignment of a trial to a worker is an **attempt**, numbered by the
  chief and told to the worker in the ``CreateTrial`` answer's trailing metadata;
* the worker's every call carries its tuner id, trial and attempt, and a
  heartbeat thread calls the chief every ``lease_seconds / 6`` (a ``GetTrial``
  marked as a heartbeat), also while a long step runs;
* the chief's reaper, on its own timer, declares a worker silent for longer
  than ``tuning.lease_seconds`` lost: its trial goes back to the queue for the
  next free worker (or, after ``tuning.trial_attempts`` attempts, ends FAILED),
  its MLflow run ends FAILED saying why, and its id leaves ``tuner_ids``, so the
  search ends when its budget is done;
* an update or result from an attempt that lost its lease is refused (and
  said), never merged; the worker learns it from the answer's trailing
  metadata (and from its heartbeats), stops the trial and ends its own run.

Time is measured on the chief's clock alone (when a call arrives), so the
hosts' clocks need not agree.

The chief can be killed and started again with the same command: its oracle
state, trial files and this book (``leases.json``) are written atomically
(temporary file, fsync, rename), and a restarted chief gives every trial that
was running back to the worker that holds it, with a fresh lease, instead of
queueing it to run twice (KerasTuner's own reload). Workers wait for the chief
meanwhile (saying so once) and carry on.
"""

from __future__ import annotations

import collections
import datetime
import functools
import json
import os
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc

TUNER_KEY = "videoclf-tuner"
TRIAL_KEY = "videoclf-trial"
ATTEMPT_KEY = "videoclf-attempt"
HEARTBEAT_KEY = "videoclf-heartbeat"
PROGRESS_KEY = "videoclf-progress"  # epochs the caller's attempt has ended (the no-progress limit reads it)
LEASE_KEY = "videoclf-lease"  # trailing metadata: "lost" when the caller's attempt is no longer the trial's
LOST = "lost"
RECORDED = ("COMPLETED", "FAILED")  # KerasTuner trial statuses of a trial that is over (never queued again)
ENDED = (*RECORDED, "INVALID")  # after a result was recorded (INVALID: waiting for a retry)
LOST_STATUS = "LOST"  # a lost attempt's MLflow run status tag (videoclf.tracking.STATUS_TAG)
LEASES_FILE = "leases.json"  # the chief's book, in the tuner's project folder
SEARCH_OVER_FILE = "search_over"  # left in the project folder by a chief that served its whole budget
SERVER_THREADS = 8
IDLE_SECONDS = 1.0  # how long a worker told to wait (the budget handed out, trials still running) waits to ask again
WAIT_KEY = "videoclf-wait"  # trailing metadata of an IDLE answer: seconds the worker waits before asking again
RECONNECT_SECONDS = 600.0  # how long a worker's call waits for a chief that stopped answering  # answers at once (the oracle's own methods still run one at a time)


def _silence_condition_prints() -> None:
    """KerasTuner 1.4.8 prints a conditional hyperparameter's parent value every time it is sent over gRPC
    (``conditions.Parent.to_proto``): lines like "gru" on every worker's console. That module's only ``print`` is
    shadowed by a module global; nothing else changes."""
    from keras_tuner.src.engine import conditions

    conditions.print = lambda *args, **kwargs: None


_silence_condition_prints()


class LeaseLost(Exception):
    """This worker's attempt at a trial lost its lease: another worker runs the trial now."""


class SearchOver(Exception):
    """No chief answers and the last one left word that the search is over: this worker has nothing to wait for."""


@dataclass
class LeaseBook:
    """The chief's view of its workers: the current attempt of every trial, the last sign of life of every
    worker, and what to do with a worker gone silent. Guarded by the oracle's own lock where it touches the
    oracle (KerasTuner's ``synchronized``)."""

    oracle: object
    lease_seconds: float
    trial_attempts: int
    on_lost: object = None  # (trial_id, reason, failed: bool) -> None; the chief ends the trial's run
    trial_timeout: float | None = None  # an attempt running longer is stopped (tuning.trial_timeout)
    progress_timeout: float | None = None  # an attempt with no epoch ending for this long is stopped
    clock: object = time.monotonic
    attempts: dict = field(default_factory=dict)  # trial id -> current attempt number
    holders: dict = field(default_factory=dict)  # tuner id -> (trial id, attempt) it holds
    seen: dict = field(default_factory=dict)  # tuner id -> chief clock at its last call
    started: dict = field(default_factory=dict)  # tuner id -> chief clock when its attempt was handed out
    progress: dict = field(default_factory=dict)  # tuner id -> (epochs it reported, chief clock when that changed)
    lost_log: list = field(default_factory=list)  # what was declared lost or refused (for the console and tests)
    path: str | None = None  # where the book is kept (leases.json in the project folder), for a restarted chief
    stopped: set = field(default_factory=set)  # workers told the search is over
    restarted_at: float | None = None  # chief clock when a restarted chief took its book back (resume)

    def __post_init__(self):
        self._lock = threading.Lock()

    def told_to_stop(self, tuner_id: str) -> None:
        with self._lock:
            self.stopped.add(tuner_id)

    def everyone_told(self) -> bool:
        """Whether every worker heard from within its lease was told the search is over (a restarted chief knows an
        idle worker only by its heartbeats: it must not leave that worker calling a chief that is gone)."""
        now = self.clock()
        if self.restarted_at is not None and now - self.restarted_at <= self.lease_seconds:
            return False  # a restarted chief hears every live worker (their heartbeats) within a lease first
        with self._lock:
            return all(tuner_id in self.stopped or now - last > self.lease_seconds
                       for tuner_id, last in self.seen.items())

    def _persist(self) -> None:
        """The attempts and who holds what, written atomically (caller holds ``_lock``)."""
        if self.path:
            write_atomically(self.path, json.dumps({"attempts": self.attempts, "holders": self.holders}))

    def resume(self) -> list[str]:
        """After a chief restart: every trial still running goes back to the worker that held it (out of the queue
        KerasTuner's reload put it in), with a fresh lease; returns those trials."""
        from keras_tuner.src.engine import trial as trial_module

        _mend_display(self.oracle)
        if not self.path or not os.path.exists(self.path):
            return []
        with open(self.path) as fh:
            state = json.load(fh)
        oracle, now, kept = self.oracle, self.clock(), []
        self.restarted_at = now
        for trial_id in list(oracle._retry_queue):  # ended before the kill, saved as ended only in its trial file
            if oracle.trials[trial_id].status in RECORDED:
                oracle._retry_queue.remove(trial_id)
                if trial_id not in oracle.end_order:
                    oracle.end_order.append(trial_id)
        with self._lock:
            self.attempts.update({k: int(v) for k, v in state["attempts"].items()})
            for tuner_id, (trial_id, attempt) in state["holders"].items():
                trial = oracle.trials.get(trial_id)
                if trial is None or trial.status != trial_module.TrialStatus.RUNNING or \
                        self.attempts.get(trial_id) != attempt:
                    continue
                if trial_id in oracle._retry_queue:
                    oracle._retry_queue.remove(trial_id)
                oracle.ongoing_trials[tuner_id] = trial
                oracle.tuner_ids.add(tuner_id)
                self.holders[tuner_id] = (trial_id, int(attempt))
                self.seen[tuner_id] = self.started[tuner_id] = now
                self.progress[tuner_id] = (None, now)
                kept.append(trial_id)
            self._persist()
        oracle.save()
        if kept:
            self._say(f"chief restarted: trial(s) {', '.join(kept)} stay with their workers (each has "
                      f"{self.lease_seconds:g} s to be heard from)")
        return kept

    def heard(self, tuner_id: str | None, progress: str | None = None) -> None:
        """A call from ``tuner_id``: a sign of life, and (``progress``) how many epochs its attempt has ended."""
        if tuner_id:
            with self._lock:
                now = self.clock()
                self.seen[tuner_id] = now
                if progress is not None and self.progress.get(tuner_id, (None,))[0] != progress:
                    self.progress[tuner_id] = (progress, now)

    def assigned(self, tuner_id: str, trial_id: str) -> int:
        """A trial handed to a worker: a new attempt (a worker restarted under the same id gets a new one too)."""
        with self._lock:
            attempt = self.attempts.get(trial_id, 0) + 1
            self.attempts[trial_id] = attempt
            self.holders[tuner_id] = (trial_id, attempt)
            now = self.clock()
            self.seen[tuner_id] = self.started[tuner_id] = now
            self.progress[tuner_id] = ("0", now)
            self._persist()
            return attempt

    def _verdict(self, tuner_id: str, now: float, holds_trial: bool) -> str | None:
        """Why ``tuner_id`` loses what it holds now (silent past its lease; its attempt past the time limit or
        without an epoch ending for too long), or None."""
        with self._lock:
            last = self.seen.setdefault(tuner_id, now)  # first noticed now: its lease starts now
            started = self.started.get(tuner_id, now)
            _, moved = self.progress.get(tuner_id, (None, now))
        if now - last > self.lease_seconds:
            return f"worker {tuner_id} silent for {now - last:.0f} s (lease {self.lease_seconds:g} s)"
        if holds_trial and self.trial_timeout is not None and now - started > self.trial_timeout:
            return (f"worker {tuner_id}'s attempt ran {now - started:.0f} s, past tuning.trial_timeout "
                    f"({self.trial_timeout:g} s)")
        if holds_trial and self.progress_timeout is not None and now - moved > self.progress_timeout:
            return (f"worker {tuner_id} ended no epoch for {now - moved:.0f} s (tuning.trial_progress_timeout "
                    f"{self.progress_timeout:g} s): hung")
        return None

    def current(self, tuner_id: str | None, trial_id: str, attempt: str | None) -> bool:
        """Whether a call about ``trial_id`` comes from the attempt that holds it. A call without our metadata (a
        plain KerasTuner worker) is taken as current: leases then do not apply to it."""
        if tuner_id is None or attempt is None:
            return True
        with self._lock:
            return self.holders.get(tuner_id) == (trial_id, int(attempt)) and \
                self.attempts.get(trial_id) == int(attempt)

    def refused(self, tuner_id: str, trial_id: str, attempt: str, what: str) -> None:
        line = (f"refused {what} for trial {trial_id} from {tuner_id} (attempt {attempt}): the attempt was taken "
                f"back (its lease lapsed or a time limit passed); the trial is at attempt "
                f"{self.attempts.get(trial_id, '?')} now")
        self._say(line)

    def reap(self) -> list[str]:
        """Declares every worker silent for longer than the lease lost (see the module docstring); returns their
        ids."""
        from keras_tuner.src.engine.oracle import synchronized

        return synchronized(lambda oracle: self._reap())(self.oracle)

    def _reap(self) -> list[str]:
        now, oracle, lost = self.clock(), self.oracle, []
        for tuner_id in list(oracle.tuner_ids):
            why = self._verdict(tuner_id, now, tuner_id in oracle.ongoing_trials)
            if why is None:
                continue
            lost.append(tuner_id)
            oracle.tuner_ids.discard(tuner_id)  # a worker that still runs joins again with its next request
            trial = oracle.ongoing_trials.pop(tuner_id, None)
            with self._lock:
                for book in (self.holders, self.seen, self.started, self.progress):
                    book.pop(tuner_id, None)
                self._persist()
            if trial is None:
                self._say(f"{why}: declared lost (it held no trial)")
                continue
            attempt = self.attempts.get(trial.trial_id, 1)
            reason = f"{why} during attempt {attempt} of {self.trial_attempts}"
            failed = attempt >= self.trial_attempts
            if failed:
                from keras_tuner.src.engine import trial as trial_module

                trial.status = trial_module.TrialStatus.FAILED
                trial.message = f"lost: {reason}; no attempts left (tuning.trial_attempts)"
                oracle.end_order.append(trial.trial_id)
                oracle._save_trial(trial)
            else:
                oracle._retry_queue.append(trial.trial_id)
            oracle.save()
            self._say(f"trial {trial.trial_id} lost: {reason}; "
                      + ("it ends FAILED" if failed else "it goes to the next free worker"))
            if self.on_lost is not None:
                try:
                    self.on_lost(trial.trial_id, reason, failed)
                except Exception as exc:  # noqa: BLE001 - tracking trouble must not stop the reaper
                    print(f"could not end the lost attempt's run of trial {trial.trial_id}: {exc}", flush=True)
        return lost

    def _say(self, line: str) -> None:
        self.lost_log.append(line)
        print(line, flush=True)


def _mend_display(oracle) -> None:
    """KerasTuner's display notes a trial's start and number only after ``create_trial`` saved the state: a chief
    killed before the next save reloads without them, and ending that trial would raise ``KeyError`` inside the
    oracle's lock. Its number is its place in ``start_order``, as KerasTuner counts; its start, now."""
    display, now = oracle._display, datetime.datetime.now()
    for number, trial_id in enumerate(oracle.start_order, 1):
        display.trial_start.setdefault(trial_id, now)
        display.trial_number.setdefault(trial_id, number)


def write_atomically(path: str, text: str) -> None:
    """``text`` into ``path`` whole or not at all: a temporary file beside it, fsynced, then renamed over it."""
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, path)


def save_atomically(oracle) -> None:
    """Makes the chief's oracle write its state and its trial files atomically (KerasTuner writes them in place,
    so a chief killed mid-write would leave a file it cannot reload)."""
    def save():
        write_atomically(oracle._get_oracle_fname(), json.dumps(oracle.get_state()))

    def save_trial(trial):
        write_atomically(os.path.join(oracle._get_trial_dir(trial.trial_id), "trial.json"),
                         json.dumps(trial.get_state()))

    oracle.save, oracle._save_trial = save, save_trial


def _keep_waiting(oracle, tuner_id: str) -> bool:
    """Keeps ``tuner_id`` among the live workers (KerasTuner dropped it when it answered STOPPED) while other
    workers still hold trials, one of which may be lost and queued again; returns whether it does. Under the
    oracle's lock."""
    from keras_tuner.src.engine.oracle import synchronized

    def check(oracle) -> bool:
        if any(holder != tuner_id for holder in oracle.ongoing_trials):
            oracle.tuner_ids.add(tuner_id)
            return True
        return False

    return synchronized(check)(oracle)


def _metadata(context) -> dict[str, str]:
    return {item.key: item.value for item in context.invocation_metadata() or ()}


def leased_servicer(oracle, book: LeaseBook):
    """KerasTuner's ``OracleServicer`` that numbers attempts, hears heartbeats and refuses stale attempts."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer
    from keras_tuner.src.engine import trial as trial_module

    service = protos.get_service()

    def _hear(context) -> dict[str, str]:
        data = _metadata(context)
        book.heard(data.get(TUNER_KEY), data.get(PROGRESS_KEY))
        return data

    def releasing(handler):
        """KerasTuner's ``synchronized`` does not release the oracle's lock when an oracle method raises: one failed
        call would then hang the chief for ever. The lock is released here if this thread still holds it."""
        @functools.wraps(handler)
        def call(self, request, context):
            from keras_tuner.src.engine.oracle import LOCKS, THREADS

            try:
                return handler(self, request, context)
            except Exception:
                if THREADS[oracle] == threading.current_thread().name:
                    THREADS[oracle] = None
                    LOCKS[oracle].release()
                raise
        return call

    class LeasedServicer(OracleServicer):
        @releasing
        def GetSpace(self, request, context):
            _hear(context)
            return super().GetSpace(request, context)

        @releasing
        def CreateTrial(self, request, context):
            book.heard(request.tuner_id)
            stopping = self.stop_triggered
            response = super().CreateTrial(request, context)
            held = oracle.ongoing_trials.get(request.tuner_id)
            if trial_module.Trial.from_proto(response.trial).status == trial_module.TrialStatus.STOPPED:
                if _keep_waiting(oracle, request.tuner_id):
                    # the budget is handed out, not done: the worker waits (on its side, so no server thread
                    # sleeps) and asks again (IDLE: KerasTuner's own "ask again")
                    self.stop_triggered = stopping
                    context.set_trailing_metadata(((WAIT_KEY, str(IDLE_SECONDS)),))
                    return service.CreateTrialResponse(trial=trial_module.Trial(
                        oracle.get_space(), status=trial_module.TrialStatus.IDLE).to_proto())
                book.told_to_stop(request.tuner_id)
            elif held is not None and held.trial_id == response.trial.trial_id:  # handed out to run
                attempt = book.assigned(request.tuner_id, response.trial.trial_id)
                context.set_trailing_metadata(((ATTEMPT_KEY, str(attempt)),))
            return response

        def _stale(self, context, trial_id: str, what: str) -> bool | None:
            """False: the call is the current attempt's; True: refused (a lost attempt's); None: a repeat of what
            this attempt already reported for an ended trial (sent again after a chief restart): answered, not
            applied twice."""
            data = _hear(context)
            trial, attempt = oracle.trials.get(trial_id), data.get(ATTEMPT_KEY)
            if attempt is not None and trial is not None and trial.status in ENDED and \
                    book.attempts.get(trial_id) == int(attempt):
                return None
            if book.current(data.get(TUNER_KEY), trial_id, attempt):
                return False
            book.refused(data.get(TUNER_KEY), trial_id, data.get(ATTEMPT_KEY), what)
            context.set_trailing_metadata(((LEASE_KEY, LOST),))
            return True

        @releasing
        def UpdateTrial(self, request, context):
            if self._stale(context, request.trial_id, "an update") is not False:
                return service.UpdateTrialResponse(trial=oracle.get_trial(request.trial_id).to_proto())
            return super().UpdateTrial(request, context)

        @releasing
        def EndTrial(self, request, context):
            if self._stale(context, request.trial.trial_id, "a result") is not False:
                return service.EndTrialResponse()
            return super().EndTrial(request, context)

        @releasing
        def GetTrial(self, request, context):
            data = _hear(context)
            if HEARTBEAT_KEY in data:  # a heartbeat: a sign of life, and the lease's state in return
                if data.get(TRIAL_KEY) and not book.current(data.get(TUNER_KEY), data[TRIAL_KEY],
                                                            data.get(ATTEMPT_KEY)):
                    context.set_trailing_metadata(((LEASE_KEY, LOST),))
                return service.GetTrialResponse()
            return super().GetTrial(request, context)

    return LeasedServicer(oracle)


def serve(oracle, book: LeaseBook, address: str, poll_seconds: float = 0.5) -> None:
    """The chief's oracle server (KerasTuner's ``start_server``, with leases): answers until the budget is done and
    no worker holds a trial or is still alive; the reaper runs between polls."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import exit_chief

    save_atomically(oracle)
    over_file = os.path.join(oracle._project_dir, SEARCH_OVER_FILE)
    if os.path.exists(over_file):  # served again (more trials to run): workers must wait for this chief
        os.remove(over_file)
    book.resume()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=SERVER_THREADS))
    servicer = leased_servicer(oracle, book)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(address)
    server.start()
    try:
        while True:
            time.sleep(poll_seconds)
            book.reap()
            # a restarted chief whose workers were told to stop before it died hears from none: it ends a lease later
            done = servicer.stop_triggered or (book.restarted_at is not None and budget_done(oracle))
            if done and exit_chief(oracle) and book.everyone_told():
                break
    finally:
        server.stop(grace=5)
    write_atomically(over_file, "the chief served its whole budget; a worker started now has nothing to run\n")


def budget_done(oracle) -> bool:
    """Every trial of ``max_trials`` recorded: a chief restarted after its workers were told to stop (and left)
    would otherwise wait for a worker to ask before ending."""
    with_budget = bool(oracle.max_trials) and len(oracle.trials) >= oracle.max_trials
    return with_budget and not oracle._retry_queue and all(t.status in RECORDED for t in oracle.trials.values())


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                   "wait_for_ready", "compression")), grpc.ClientCallDetails):
    pass


class LeaseHolder(grpc.UnaryUnaryClientInterceptor):
    """The worker's side: stamps every call with its tuner id, trial and attempt; keeps the attempt the chief
    gave; notes a lost lease from any answer; and beats while the worker lives."""

    def __init__(self, tuner_id: str, lease_seconds: float, over_file: str | None = None):
        self.tuner_id, self.lease_seconds = tuner_id, lease_seconds
        self.over_file = over_file  # the chief's word that the search is over (SEARCH_OVER_FILE)
        self.trial_id: str | None = None
        self.attempt: int | None = None
        self.lost = False
        self.epochs = 0  # epochs this attempt has ended (its progress, for the chief's no-progress limit)
        self._stop = threading.Event()
        self._stub = None
        self._away = False  # the chief stopped answering (said once, until it answers again)

    def stamps(self, heartbeat: bool = False) -> list[tuple[str, str]]:
        out = [(TUNER_KEY, self.tuner_id)]
        if self.trial_id is not None and self.attempt is not None:
            out += [(TRIAL_KEY, self.trial_id), (ATTEMPT_KEY, str(self.attempt)), (PROGRESS_KEY, str(self.epochs))]
        return out + ([(HEARTBEAT_KEY, "1")] if heartbeat else [])

    def intercept_unary_unary(self, continuation, details, request):
        heartbeat = any(key == HEARTBEAT_KEY for key, _ in details.metadata or ())
        # not gRPC's wait_for_ready (KerasTuner asks for it, up to an hour a call): this loop waits for the chief
        # itself, bounded, saying so, and noticing when the search is over
        stamped = _Details(details.method, details.timeout, list(details.metadata or ()) + self.stamps()
                           if not heartbeat else list(details.metadata), details.credentials, False,
                           details.compression)
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            call = continuation(stamped, request)
            try:
                trailing = dict(call.trailing_metadata() or ())
                call.result()
            except grpc.RpcError as exc:
                # the chief died with this call in flight: it is sent again once a chief answers (a result the dead
                # chief had recorded is recognised as sent twice), within RECONNECT_SECONDS
                if heartbeat or exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    return call
                if self.over_file and os.path.exists(self.over_file):
                    raise SearchOver(f"worker {self.tuner_id}: no chief answers and the search is over "
                                     f"({self.over_file}); nothing left to run") from None
                self._chief_away()
                time.sleep(1.0)
                continue
            break
        self._chief_back()
        if WAIT_KEY in trailing:  # the chief said to wait before asking again
            time.sleep(float(trailing[WAIT_KEY]))
        if details.method.endswith("/CreateTrial") and ATTEMPT_KEY in trailing:
            self.trial_id, self.attempt, self.lost = None, int(trailing[ATTEMPT_KEY]), False
        if trailing.get(LEASE_KEY) == LOST:
            self.lost = True
        return call

    def _chief_away(self) -> None:
        if not self._away:
            self._away = True
            print(f"worker {self.tuner_id}: the chief does not answer; waiting for it (a running trial goes on, its "
                  f"result is sent when the chief is back; at most {RECONNECT_SECONDS:.0f} s a call)", flush=True)

    def _chief_back(self) -> None:
        if self._away:
            self._away = False
            print(f"worker {self.tuner_id}: the chief answers again", flush=True)

    def began(self, trial_id: str) -> None:
        self.trial_id, self.epochs = trial_id, 0

    def progressed(self) -> None:
        """One more epoch ended (told to the chief with the next call or heartbeat)."""
        self.epochs += 1

    def ended(self) -> None:
        self.trial_id, self.attempt, self.lost = None, None, False

    def check(self) -> None:
        """Raises :class:`LeaseLost` when another worker runs this trial now."""
        if self.lost:
            raise LeaseLost(f"trial {self.trial_id}: {self.tuner_id}'s attempt {self.attempt} lost its lease (the "
                            "chief did not hear from it in time, or a time limit passed); the trial runs again "
                            "elsewhere")

    def start_beating(self, stub) -> None:
        self._stub = stub
        threading.Thread(target=self._beat, name="videoclf-lease", daemon=True).start()

    def stop_beating(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        from keras_tuner.src import protos

        interval = max(0.2, self.lease_seconds / 6)
        while not self._stop.wait(interval):
            try:
                call = self._stub.GetTrial.with_call(
                    protos.get_service().GetTrialRequest(trial_id=self.trial_id or ""),
                    metadata=self.stamps(heartbeat=True), timeout=max(1.0, interval))
                if dict(call[1].trailing_metadata() or ()).get(LEASE_KEY) == LOST and self.trial_id is not None:
                    self.lost = True
            except grpc.RpcError:  # the chief is away (restarting, or the network is): the next beat tries again
                self._chief_away()
                continue
            self._chief_back()


def hold_leases(client, lease_seconds: float, over_file: str | None = None) -> LeaseHolder:
    """Fits a worker's KerasTuner ``OracleClient`` with a :class:`LeaseHolder` (its calls stamped, its heartbeats
    started; ``over_file``: where the chief says the search is over); returns the holder."""
    from keras_tuner.src import protos

    holder = LeaseHolder(client.tuner_id, lease_seconds, over_file)
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    client.stub = protos.get_service_grpc().OracleStub(grpc.intercept_channel(grpc.insecure_channel(address),
                                                                              holder))
    holder.start_beating(client.stub)
    return holder
