"""MLflow bookkeeping for a search: one parent run, one nested run per KerasTuner trial.

Everything goes through ``MlflowClient`` with explicit run ids (no global
"active run"), so hooks can be called from anywhere and a resumed search
can find what an earlier process logged: trial runs carry the search id and
the KerasTuner trial id as tags.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from videoclf.versions import installed_versions

SEARCH_TAG = "videoclf_search_id"
FINISHED_TAG = "videoclf_finished"  # on a parent run whose whole job ended: what it finished (a fingerprint)
TRIAL_TAG = "kt_trial_id"
STATUS_TAG = "kt_status"
ROLE_TAG = "videoclf_role"
SCORE_METRIC = "score"  # a trial run's objective value
SCORE_SE_METRIC = "score_se"  # its standard error over folds
TRIAL_SECONDS_METRIC = "trial_seconds"
PACKAGES = ("videoclf", "tensorflow", "keras", "keras-tuner", "mlflow", "opencv-python-headless", "numpy",
            "h5py")


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI; None for any other store."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def open_store() -> MlflowClient:
    """A client on the configured store, checked once; a fresh SQLite store is initialised under a file lock.

    Two processes creating one SQLite store at once leave it half-migrated for good, so the first access
    (which creates the tables) is serialised. A store that cannot be read is one clear error.
    """
    from filelock import FileLock
    from sqlalchemy.exc import SQLAlchemyError

    from videoclf.errors import TrackingStoreError

    uri = mlflow.get_tracking_uri()
    database = sqlite_file(uri)
    lock = FileLock(str(database) + ".init.lock") if database is not None and database.parent.is_dir() else None
    try:
        with lock or contextlib.nullcontext():
            client = MlflowClient()
            client.search_experiments(max_results=1)
    except (MlflowException, SQLAlchemyError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingStoreError(
            f"Cannot open the MLflow tracking store {uri}: {reason}. If it is a local SQLite file that was "
            f"truncated or corrupted, move it aside (e.g. mv mlflow.db mlflow.db.broken) to start a new store, "
            f"or restore a backup; set MLFLOW_TRACKING_URI to use another store.") from None
    return client


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # MLflow's UI opens on training runs


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id, created if needed (marked for MLflow's training view, not its GenAI one); another
    process creating it at the same moment is fine."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags=EXPERIMENT_KIND)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if "mlflow.experimentKind" not in experiment.tags:  # one we created before the tag, or the user did
        for key, value in EXPERIMENT_KIND.items():
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def finished_parent_run(experiment_name: str, search_id: str, fingerprint: str):
    """The latest parent run of ``search_id``, if it FINISHED and its job finished with ``fingerprint``."""
    client = open_store()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.{SEARCH_TAG} = '{search_id}' and tags.{ROLE_TAG} = 'search'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if runs and runs[0].info.status == "FINISHED" and runs[0].data.tags.get(FINISHED_TAG) == fingerprint:
        return runs[0]
    return None


def package_versions() -> dict[str, str]:
    return installed_versions(PACKAGES)


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a.b": "1"}`` for MLflow params."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out


class SearchTracker:
    """The MLflow side of one search (see module docstring)."""

    def __init__(self, experiment_name: str, search_id: str, run_name: str, worker: bool = False,
                 wait_for_parent_s: float = 300.0):
        self.client = open_store()
        self.search_id = search_id
        self.experiment_name = experiment_name
        self.owns_parent = True
        self.experiment_id = experiment_id(self.client, experiment_name)
        self.parent_run_id = (self._chief_parent_run(wait_for_parent_s) if worker
                              else self._parent_run(run_name))
        self._trial_runs: dict[str, str] = {}
        self._trial_started: dict[str, float] = {}

    # -- parent run ------------------------------------------------------
    def _parent_run(self, run_name: str) -> str:
        # Under `mlflow run` the project run is the parent when it lives in the
        # configured experiment; otherwise it gets a tag pointing at our parent.
        # A re-run of the same search reuses its latest parent (a resume).
        env_run = os.environ.get("MLFLOW_RUN_ID")
        if env_run and self.client.get_run(env_run).info.experiment_id == self.experiment_id:
            self.owns_parent = False
            self.client.update_run(env_run, name=run_name)  # instead of MLflow's random project-run name
            self.client.set_tag(env_run, SEARCH_TAG, self.search_id)
            self.client.set_tag(env_run, ROLE_TAG, "search")
            return env_run
        self.owns_parent = True
        previous = self.client.search_runs(
            [self.experiment_id], f"tags.{SEARCH_TAG} = '{self.search_id}' and tags.{ROLE_TAG} = 'search'",
            order_by=["attributes.start_time DESC"], max_results=1)
        if previous:
            run_id = previous[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            if "error" in previous[0].data.tags:  # the stopped attempt's error: this attempt starts clean
                self.client.delete_tag(run_id, "error")
        else:
            run_id = self.client.create_run(self.experiment_id, run_name=run_name,
                                            tags={SEARCH_TAG: self.search_id, ROLE_TAG: "search"}).info.run_id
        if env_run:
            self.client.set_tag(env_run, "videoclf_search_run", run_id)
            print(f"MLflow: search logged in experiment '{self.experiment_name}' (run {run_id}); "
                  f"this project run links to it (tag videoclf_search_run)", flush=True)
        return run_id

    def _chief_parent_run(self, wait_s: float) -> str:
        """A distributed worker logs its trials under the parent run the chief created."""
        self.owns_parent = False
        deadline = time.monotonic() + wait_s
        while True:
            found = self.client.search_runs(
                [self.experiment_id], f"tags.{SEARCH_TAG} = '{self.search_id}' and tags.{ROLE_TAG} = 'search' "
                "and attributes.status = 'RUNNING'", order_by=["attributes.start_time DESC"], max_results=1)
            if found:
                return found[0].info.run_id
            if time.monotonic() > deadline:
                from videoclf.errors import VideoclfError

                raise VideoclfError(f"no running parent run for search {self.search_id} after {wait_s:.0f}s: "
                                   "start the chief (KERASTUNER_TUNER_ID=chief) with the same config")
            time.sleep(1)

    def log_setup(self, *, config: dict, space: dict, tuner: str, weights: dict, dataset_table, dataset_digest: str,
                  dataset_source: str) -> None:
        """Full config, search space, versions, commit, weights and the dataset input."""
        params = flatten(config)
        existing = self.client.get_run(self.parent_run_id).data.params
        fresh = [Param(k, v[:6000]) for k, v in params.items() if k not in existing]
        for start in range(0, len(fresh), 100):
            self.client.log_batch(self.parent_run_id, params=fresh[start: start + 100])
        tags = {"tuner": tuner, "extractor.weights": weights["kind"], "extractor.weights_digest": weights["digest"],
                **{f"version.{k}": v for k, v in package_versions().items()}}
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        self.client.log_batch(self.parent_run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        self.client.log_dict(self.parent_run_id, config, "config.json")
        self.client.log_dict(self.parent_run_id, space, "search_space.json")
        with warnings.catch_warnings():  # source-kind ambiguity and int-column hints are noise here
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(dataset_table, source=dataset_source, name="train",
                                              digest=dataset_digest)
        from mlflow.entities import DatasetInput, InputTag

        self.client.log_inputs(self.parent_run_id, datasets=[DatasetInput(
            dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "train")])])

    @contextlib.contextmanager
    def logging_to_parent(self):
        """The parent run is MLflow's active run for the block (for ``log_model``, which logs to the active run)
        and stays RUNNING after it: its end is :meth:`parent_status`'s to decide."""
        with mlflow.start_run(run_id=self.parent_run_id):
            yield
        self.client.update_run(self.parent_run_id, status="RUNNING")  # start_run's exit ended it

    def artifact_store(self) -> str:
        """Where the parent run's artifacts (reports, the registered model) are written."""
        return self.client.get_run(self.parent_run_id).info.artifact_uri

    def finish(self, status: str = "FINISHED") -> None:
        if self.owns_parent:  # `mlflow run` ends its own project run
            self.client.set_terminated(self.parent_run_id, status)

    @contextlib.contextmanager
    def parent_status(self):
        """The parent run's end status follows from how the block exits (as MLflow's ``ActiveRun``)."""
        try:
            yield self
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):  # the store may be what failed: the error raised is what matters
                self.finish("KILLED")
            raise
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self.client.set_tag(self.parent_run_id, "error", f"{type(exc).__name__}: {exc}"[:5000])
                self.finish("FAILED")
            raise
        else:
            self.finish("FINISHED")

    def trial_run_id(self, trial_id: str) -> str | None:
        runs = self._existing_trial_runs(trial_id)
        return runs[0].info.run_id if runs else None

    def tag_trial(self, trial_id: str, key: str, value: str) -> None:
        run_id = self.trial_run_id(trial_id)
        if run_id:
            self.client.set_tag(run_id, key, value)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.parent_run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def save_trials_view(self, hyperparameters: list[str]) -> None:
        """The search's saved view in MLflow's UI: its trials by score (``videoclf.ui_views``)."""
        from videoclf.ui_views import save_trials_view

        save_trials_view(self.client, self.experiment_id, self.search_id, hyperparameters)

    def search_curves(self, metrics=("val_accuracy", "train_accuracy", "val_loss", "train_loss")
                      ) -> dict[str, dict[str, list[float]]]:
        """Per-epoch curves of every finished trial of this search, from MLflow: ``{trial_id: {metric: values}}``."""
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.{SEARCH_TAG} = '{self.search_id}' and tags.{ROLE_TAG} = 'trial' "
            "and attributes.status = 'FINISHED'")
        out = {}
        for run in runs:
            curves = {}
            for metric in metrics:
                history = sorted(self.client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
                if history:
                    curves[metric] = [m.value for m in history]
            out[run.data.tags[TRIAL_TAG]] = curves
        return out

    # -- trial runs ------------------------------------------------------
    def _existing_trial_runs(self, trial_id: str):
        return self.client.search_runs(
            [self.experiment_id], f"tags.{SEARCH_TAG} = '{self.search_id}' and tags.{TRIAL_TAG} = '{trial_id}'")

    def trial_started(self, trial_id: str, params: dict[str, Any]) -> None:
        # A run left by a crashed attempt of this trial is replaced: one run per trial. It is ended first (KILLED,
        # tagged why), so no run is left RUNNING, deleted or not (a deleted run can be restored).
        for stale in self._existing_trial_runs(trial_id):
            if stale.info.status == "RUNNING":
                self.client.set_tag(stale.info.run_id, STATUS_TAG, "REPLACED")
                self.client.set_tag(stale.info.run_id, "error", "its process stopped mid-trial; the trial ran again")
                self.client.set_terminated(stale.info.run_id, "KILLED")
            self.client.delete_run(stale.info.run_id)
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial_id}", tags={
            "mlflow.parentRunId": self.parent_run_id, SEARCH_TAG: self.search_id, TRIAL_TAG: trial_id,
            STATUS_TAG: "RUNNING", ROLE_TAG: "trial"})
        self._trial_runs[trial_id] = run.info.run_id
        self._trial_started[trial_id] = time.perf_counter()
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def trial_curves(self, trial_id: str, curves: dict[str, list[float]], fold_scores: list[float]) -> None:
        """Per-epoch curves (mean over folds, ``step=epoch``), each fold's score (``step=fold``) and the score's
        standard error over folds (``score_se``: how far apart two trials must be to be told apart)."""
        from videoclf.evaluation import standard_error

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, epoch) for name, values in curves.items()
                   for epoch, value in enumerate(values)]
        metrics += [Metric("fold_score", float(score), now, fold) for fold, score in enumerate(fold_scores)]
        if len(fold_scores) > 1:
            metrics.append(Metric(SCORE_SE_METRIC, standard_error(fold_scores), now, 0))
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self._trial_runs[trial_id], metrics=metrics[start: start + 1000])

    def trial_file(self, trial_id: str, file: Path | str, artifact_path: str | None = None) -> None:
        """A file of the running trial (its out-of-fold predictions) as an artifact of its run."""
        self.client.log_artifact(self._trial_runs[trial_id], str(file), artifact_path)

    def trial_ended(self, trial_id: str, status: str, score: float | None, best_epoch: int | None,
                    message: str | None) -> None:
        run_id = self._trial_runs.pop(trial_id)
        metrics = {TRIAL_SECONDS_METRIC: time.perf_counter() - self._trial_started.pop(trial_id)}
        if score is not None:
            metrics[SCORE_METRIC] = score
        if best_epoch is not None:
            metrics["best_epoch"] = best_epoch
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                              tags=[RunTag(STATUS_TAG, status)])
        if message:
            self.client.set_tag(run_id, "error", message.strip().splitlines()[-1][:5000])
            self.client.log_text(run_id, message, "error.txt")
        self.client.set_terminated(run_id, "FINISHED" if status == "COMPLETED" else "FAILED")

    def trial_lost(self, trial_id: str, reason: str) -> None:
        """This worker's attempt at a trial lost its lease: its own run ends FAILED, tagged LOST and why (the run may
        already be gone: the next attempt replaces it)."""
        from videoclf.search.leases import LOST_STATUS

        run_id = self._trial_runs.pop(trial_id, None)
        self._trial_started.pop(trial_id, None)
        if run_id is None:
            return
        with contextlib.suppress(MlflowException):
            self._end_lost(run_id, reason, LOST_STATUS)

    def trial_runs_lost(self, trial_id: str, reason: str) -> None:
        """The chief declared a trial's attempt lost: the trial's RUNNING runs end FAILED, tagged LOST and why."""
        from videoclf.search.leases import LOST_STATUS

        for run in self._existing_trial_runs(trial_id):
            if run.info.status == "RUNNING":
                self._end_lost(run.info.run_id, reason, LOST_STATUS)

    def _end_lost(self, run_id: str, reason: str, status: str) -> None:
        self.client.log_batch(run_id, tags=[RunTag(STATUS_TAG, status), RunTag("error", f"lost: {reason}")])
        self.client.set_terminated(run_id, "FAILED")

    def log_artifact_files(self, files: dict[str, Path | str], artifact_path: str | None = None) -> None:
        for file in files.values():
            self.client.log_artifact(self.parent_run_id, str(file), artifact_path)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.parent_run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


class NullTracker:
    """The tracker of an untracked search (``track=False``): every call does nothing, so the job reads the same."""

    parent_run_id = None

    def __init__(self, search_id: str):
        self.search_id = search_id

    @contextlib.contextmanager
    def parent_status(self):
        yield self

    @contextlib.contextmanager
    def logging_to_parent(self):
        yield

    def artifact_store(self) -> str:
        return "(not tracked)"

    def search_curves(self, *args, **kwargs) -> dict:
        return {}

    def trial_run_id(self, trial_id: str) -> None:
        return None

    def _nothing(self, *args, **kwargs) -> None:
        return None

    log_setup = set_tags = log_metrics = log_artifact_files = tag_trial = save_trials_view = _nothing
    trial_started = trial_curves = trial_file = trial_ended = finish = trial_lost = trial_runs_lost = _nothing

