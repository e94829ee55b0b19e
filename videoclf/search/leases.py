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
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc

TUNER_KEY = "videoclf-tuner"
TRIAL_KEY = "videoclf-trial"
ATTEMPT_KEY = "videoclf-attempt"
HEARTBEAT_KEY = "videoclf-heartbeat"
LEASE_KEY = "videoclf-lease"  # trailing metadata: "lost" when the caller's attempt is no longer the trial's
LOST = "lost"
LOST_STATUS = "LOST"  # a lost attempt's MLflow run status tag (videoclf.tracking.STATUS_TAG)
SERVER_THREADS = 8  # answers at once (the oracle's own methods still run one at a time)


class LeaseLost(Exception):
    """This worker's attempt at a trial lost its lease: another worker runs the trial now."""


@dataclass
class LeaseBook:
    """The chief's view of its workers: the current attempt of every trial, the last sign of life of every
    worker, and what to do with a worker gone silent. Guarded by the oracle's own lock where it touches the
    oracle (KerasTuner's ``synchronized``)."""

    oracle: object
    lease_seconds: float
    trial_attempts: int
    on_lost: object = None  # (trial_id, reason, failed: bool) -> None; the chief ends the trial's run
    clock: object = time.monotonic
    attempts: dict = field(default_factory=dict)  # trial id -> current attempt number
    holders: dict = field(default_factory=dict)  # tuner id -> (trial id, attempt) it holds
    seen: dict = field(default_factory=dict)  # tuner id -> chief clock at its last call
    lost_log: list = field(default_factory=list)  # what was declared lost or refused (for the console and tests)

    def __post_init__(self):
        self._lock = threading.Lock()

    def heard(self, tuner_id: str | None) -> None:
        if tuner_id:
            with self._lock:
                self.seen[tuner_id] = self.clock()

    def assigned(self, tuner_id: str, trial_id: str) -> int:
        """A trial handed to a worker: a new attempt (a worker restarted under the same id gets a new one too)."""
        with self._lock:
            attempt = self.attempts.get(trial_id, 0) + 1
            self.attempts[trial_id] = attempt
            self.holders[tuner_id] = (trial_id, attempt)
            self.seen[tuner_id] = self.clock()
            return attempt

    def current(self, tuner_id: str | None, trial_id: str, attempt: str | None) -> bool:
        """Whether a call about ``trial_id`` comes from the attempt that holds it. A call without our metadata (a
        plain KerasTuner worker) is taken as current: leases then do not apply to it."""
        if tuner_id is None or attempt is None:
            return True
        with self._lock:
            return self.holders.get(tuner_id) == (trial_id, int(attempt)) and \
                self.attempts.get(trial_id) == int(attempt)

    def refused(self, tuner_id: str, trial_id: str, attempt: str, what: str) -> None:
        line = (f"refused {what} for trial {trial_id} from {tuner_id} (attempt {attempt}): its lease lapsed, "
                f"the trial is at attempt {self.attempts.get(trial_id, '?')} now")
        self.lost_log.append(line)
        print(line, flush=True)

    def reap(self) -> list[str]:
        """Declares every worker silent for longer than the lease lost (see the module docstring); returns their
        ids."""
        from keras_tuner.src.engine.oracle import synchronized

        return synchronized(lambda oracle: self._reap())(self.oracle)

    def _reap(self) -> list[str]:
        now, oracle, lost = self.clock(), self.oracle, []
        for tuner_id in list(oracle.tuner_ids):
            with self._lock:
                last = self.seen.setdefault(tuner_id, now)  # first noticed now: its lease starts now
            if now - last <= self.lease_seconds:
                continue
            lost.append(tuner_id)
            oracle.tuner_ids.discard(tuner_id)
            trial = oracle.ongoing_trials.pop(tuner_id, None)
            with self._lock:
                self.holders.pop(tuner_id, None)
                self.seen.pop(tuner_id, None)
            if trial is None:
                self._say(f"worker {tuner_id} silent for {now - last:.0f} s: declared lost (it held no trial)")
                continue
            attempt = self.attempts.get(trial.trial_id, 1)
            reason = (f"worker {tuner_id} silent for {now - last:.0f} s (lease {self.lease_seconds:g} s) during "
                      f"attempt {attempt} of {self.trial_attempts}")
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


def _metadata(context) -> dict[str, str]:
    return {item.key: item.value for item in context.invocation_metadata() or ()}


def leased_servicer(oracle, book: LeaseBook):
    """KerasTuner's ``OracleServicer`` that numbers attempts, hears heartbeats and refuses stale attempts."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    service = protos.get_service()

    class LeasedServicer(OracleServicer):
        def GetSpace(self, request, context):
            book.heard(_metadata(context).get(TUNER_KEY))
            return super().GetSpace(request, context)

        def CreateTrial(self, request, context):
            book.heard(request.tuner_id)
            response = super().CreateTrial(request, context)
            held = oracle.ongoing_trials.get(request.tuner_id)
            if held is not None and held.trial_id == response.trial.trial_id:  # handed out to run
                attempt = book.assigned(request.tuner_id, response.trial.trial_id)
                context.set_trailing_metadata(((ATTEMPT_KEY, str(attempt)),))
            return response

        def _stale(self, context, trial_id: str, what: str) -> bool:
            data = _metadata(context)
            book.heard(data.get(TUNER_KEY))
            if book.current(data.get(TUNER_KEY), trial_id, data.get(ATTEMPT_KEY)):
                return False
            book.refused(data.get(TUNER_KEY), trial_id, data.get(ATTEMPT_KEY), what)
            context.set_trailing_metadata(((LEASE_KEY, LOST),))
            return True

        def UpdateTrial(self, request, context):
            if self._stale(context, request.trial_id, "an update"):
                return service.UpdateTrialResponse(trial=oracle.get_trial(request.trial_id).to_proto())
            return super().UpdateTrial(request, context)

        def EndTrial(self, request, context):
            if self._stale(context, request.trial.trial_id, "a result"):
                return service.EndTrialResponse()
            return super().EndTrial(request, context)

        def GetTrial(self, request, context):
            data = _metadata(context)
            if HEARTBEAT_KEY in data:  # a heartbeat: a sign of life, and the lease's state in return
                book.heard(data.get(TUNER_KEY))
                if data.get(TRIAL_KEY) and not book.current(data.get(TUNER_KEY), data[TRIAL_KEY],
                                                            data.get(ATTEMPT_KEY)):
                    context.set_trailing_metadata(((LEASE_KEY, LOST),))
                return service.GetTrialResponse()
            book.heard(data.get(TUNER_KEY))
            return super().GetTrial(request, context)

    return LeasedServicer(oracle)


def serve(oracle, book: LeaseBook, address: str, poll_seconds: float = 0.5) -> None:
    """The chief's oracle server (KerasTuner's ``start_server``, with leases): answers until the budget is done and
    no worker holds a trial or is still alive; the reaper runs between polls."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import exit_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=SERVER_THREADS))
    servicer = leased_servicer(oracle, book)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(address)
    server.start()
    try:
        while True:
            time.sleep(poll_seconds)
            book.reap()
            if servicer.stop_triggered and exit_chief(oracle):
                break
    finally:
        server.stop(grace=5)


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                   "wait_for_ready", "compression")), grpc.ClientCallDetails):
    pass


class LeaseHolder(grpc.UnaryUnaryClientInterceptor):
    """The worker's side: stamps every call with its tuner id, trial and attempt; keeps the attempt the chief
    gave; notes a lost lease from any answer; and beats while the worker lives."""

    def __init__(self, tuner_id: str, lease_seconds: float):
        self.tuner_id, self.lease_seconds = tuner_id, lease_seconds
        self.trial_id: str | None = None
        self.attempt: int | None = None
        self.lost = False
        self._stop = threading.Event()
        self._stub = None

    def stamps(self, heartbeat: bool = False) -> list[tuple[str, str]]:
        out = [(TUNER_KEY, self.tuner_id)]
        if self.trial_id is not None and self.attempt is not None:
            out += [(TRIAL_KEY, self.trial_id), (ATTEMPT_KEY, str(self.attempt))]
        return out + ([(HEARTBEAT_KEY, "1")] if heartbeat else [])

    def intercept_unary_unary(self, continuation, details, request):
        heartbeat = any(key == HEARTBEAT_KEY for key, _ in details.metadata or ())
        stamped = _Details(details.method, details.timeout, list(details.metadata or ()) + self.stamps()
                           if not heartbeat else list(details.metadata), details.credentials,
                           details.wait_for_ready, details.compression)
        call = continuation(stamped, request)
        try:
            trailing = dict(call.trailing_metadata() or ())
        except grpc.RpcError:
            return call
        if details.method.endswith("/CreateTrial") and ATTEMPT_KEY in trailing:
            self.trial_id, self.attempt, self.lost = None, int(trailing[ATTEMPT_KEY]), False
        if trailing.get(LEASE_KEY) == LOST:
            self.lost = True
        return call

    def began(self, trial_id: str) -> None:
        self.trial_id = trial_id

    def ended(self) -> None:
        self.trial_id, self.attempt, self.lost = None, None, False

    def check(self) -> None:
        """Raises :class:`LeaseLost` when another worker runs this trial now."""
        if self.lost:
            raise LeaseLost(f"trial {self.trial_id}: {self.tuner_id}'s attempt {self.attempt} lost its lease "
                            "(the chief did not hear from it in time); another worker runs the trial now")

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
            except grpc.RpcError:
                pass  # the chief is away (restarting, or the network is): the next beat tries again


def hold_leases(client, lease_seconds: float) -> LeaseHolder:
    """Fits a worker's KerasTuner ``OracleClient`` with a :class:`LeaseHolder` (its calls stamped, its heartbeats
    started); returns the holder."""
    import os

    from keras_tuner.src import protos

    holder = LeaseHolder(client.tuner_id, lease_seconds)
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    client.stub = protos.get_service_grpc().OracleStub(grpc.intercept_channel(grpc.insecure_channel(address),
                                                                              holder))
    holder.start_beating(client.stub)
    return holder
