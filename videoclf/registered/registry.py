"""Registering a logged model (``videoclf.registered.writer`` logs it) and moving the champion alias.

The alias moves only when the new version beats the current champion's
*selection* score (validation or cross-validation) under the same selection
protocol (a digest of the training videos, labels and folds). The test split
never decides: test accuracy is recorded beside it, so test stays a test.
A search whose winner is already registered is not registered again.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient


# A version's tags (the registry's own vocabulary; ``videoclf.search.publish`` fills them)
DATA_ROOT_TAG = "data_root"  # the data folder it was trained on (absolute)
RUN_ID_TAG = "run_id"  # the search's parent run (its params hold the whole config)
SEARCH_ID_TAG = "search_id"  # the search that registered it
TRIAL_ID_TAG = "trial_id"  # what was registered: a trial, a baseline or an ensemble
TRIAL_RUN_ID_TAG = "trial_run_id"  # that trial's run, when it is one trial
SELECTION_RULE_TAG = "selection_rule"  # tuning.select
SELECTION_SCORE_TAG = "selection_score"  # validation / cross-validation score: what moves the alias
SELECTION_DIGEST_TAG = "selection_digest"  # the selection protocol: equal digests, comparable scores
TEST_ACCURACY_TAG = "test_accuracy"  # reported, never used to choose
TEST_SPLIT_DIGEST_TAG = "test_split_digest"


@dataclass(frozen=True)
class ModelIdentity:
    """Which model a URI names now: its registered name and version (an alias resolved), and the data folder it was
    trained on; None where unknown (a model folder; a version registered before its data folder was recorded and
    whose run is gone)."""

    uri: str
    name: str | None = None
    version: str | None = None
    data_root: str | None = None
    model_id: str | None = None  # MLflow's logged model behind the version (its metrics show on the model's page)

    def tags(self) -> dict[str, str]:
        """The name and version as run tags (an evaluation run's), where known."""
        out = {"registered_model": self.name, "model_version": self.version} if self.version else {}
        return {**out, **({"model_id": self.model_id} if self.model_id else {})}

    def describe(self) -> str:
        if self.version is None:
            return self.uri
        return f"{self.name} version {self.version} ({self.uri})" + (
            f", trained on {self.data_root}" if self.data_root else "")


def identify(uri: str) -> ModelIdentity:
    """The :class:`ModelIdentity` of ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` (anything else: the URI)."""
    if not uri.startswith("models:/"):
        return ModelIdentity(uri)
    path = uri[len("models:/"):]
    name, alias = path.split("@", 1) if "@" in path else (path.rsplit("/", 1)[0], None)
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias) if alias else \
            client.get_model_version(name, path.rsplit("/", 1)[1])
    except (MlflowException, IndexError):
        return ModelIdentity(uri)
    root = version.tags.get(DATA_ROOT_TAG)
    if root is None and version.tags.get(RUN_ID_TAG):
        try:
            root = client.get_run(version.tags[RUN_ID_TAG]).data.params.get("data.root")
        except MlflowException:
            root = None
    return ModelIdentity(uri, name, str(version.version), root, getattr(version, "model_id", None))


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    champion: bool
    reason: str
    model_uri: str


def _current_champion(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def existing_version(name: str, alias: str, tags: dict[str, str], selection_digest: str,
                     content_tag: str | None = None) -> Registration | None:
    """The version already registered for this search's winning trial, if any (a re-run registers nothing). With
    ``content_tag``, the version must also have been fitted on the same training files (a version registered before
    that tag existed matches without it)."""
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for version in versions:
        same_files = content_tag is None or version.tags.get(content_tag, tags[content_tag]) == tags[content_tag]
        if (version.tags.get(SEARCH_ID_TAG) == tags[SEARCH_ID_TAG] and
                version.tags.get(TRIAL_ID_TAG) == tags[TRIAL_ID_TAG] and
                version.tags.get(SELECTION_DIGEST_TAG) == selection_digest and same_files):
            holder = _current_champion(client, name, alias)
            champion = holder is not None and str(holder.version) == str(version.version)
            return Registration(name, str(version.version), champion, "this search's winner is already "
                                f"registered as version {version.version}; nothing new registered", version.source)
    return None


def registration_of(pointer: str | None, alias: str) -> Registration | None:
    """The registration a run's ``name/version`` pointer names, as it stands now (None if gone)."""
    if not pointer:
        return None
    name, _, version = pointer.rpartition("/")
    client = MlflowClient()
    try:
        model_version = client.get_model_version(name, version)
    except MlflowException:
        return None
    holder = _current_champion(client, name, alias)
    champion = holder is not None and str(holder.version) == str(version)
    reason = ("registered by this search" if champion else
              f"registered by this search; '{alias}' is now version {holder.version}" if holder else
              f"registered by this search; no version holds '{alias}'")
    return Registration(name, str(version), champion, reason, model_version.source)


def register(model_uri: str, *, name: str, alias: str, selection_score: float, selection_digest: str,
             higher_is_better: bool, test_accuracy: float, test_digest: str, tags: dict[str, str],
             description: str = "") -> Registration:
    """Registers ``model_uri`` under ``name`` with ``description`` (plus how to use it, shown on the version's
    page); gives it ``alias`` only if its selection score beats the holder's."""
    import mlflow

    client = MlflowClient()
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow's "Successfully registered" lines: the job says it
        version = mlflow.register_model(model_uri, name, tags={
            **tags, SELECTION_SCORE_TAG: f"{selection_score:.6f}", SELECTION_DIGEST_TAG: selection_digest,
            TEST_ACCURACY_TAG: f"{test_accuracy:.6f}", TEST_SPLIT_DIGEST_TAG: test_digest}).version
    usage = (f"Predict: `videoclf predict VIDEO --model models:/{name}/{version}`; serve: `videoclf serve --model "
             f"models:/{name}/{version}`; in Python: `mlflow.pyfunc.load_model(\"models:/{name}/{version}\")`.")
    client.update_model_version(name, version, description=f"{description}\n\n{usage}".strip())
    if not client.get_registered_model(name).description:  # the model's own page: what its versions are
        client.update_registered_model(name, description=(
            f"Video classifiers registered by videoclf searches: each version is what one search's selection rule "
            f"chose (a trial, a baseline or an ensemble), refitted on all its training videos; its description says "
            f"what it is, how it scored on validation and test, and how to use it. The alias '{alias}' moves to a "
            f"version only when its selection score beats the holder's under the same selection protocol (test "
            f"accuracy is reported, never used to choose). Use: `videoclf predict VIDEO --model models:/{name}@{alias}`"
            f" or `mlflow.pyfunc.load_model(\"models:/{name}@{alias}\")`."))
    holder = _current_champion(client, name, alias)
    if holder is None:
        champion, reason = True, f"first model with alias '{alias}'"
    elif holder.tags.get(SELECTION_DIGEST_TAG) != selection_digest:
        champion = False
        reason = (f"the current {alias} (version {holder.version}) was selected on other training data or folds, "
                  f"so the scores are not comparable; compare them yourself and move the alias with "
                  f"MlflowClient().set_registered_model_alias")
    else:
        held = float(holder.tags[SELECTION_SCORE_TAG])
        champion = selection_score > held if higher_is_better else selection_score < held
        reason = (f"selection score {selection_score:.4f} {'beats' if champion else 'does not beat'} "
                  f"{alias} version {holder.version} ({held:.4f}) under the same selection protocol "
                  f"(test accuracy {test_accuracy:.4f} is reported, never used to choose)")
    if champion:
        client.set_registered_model_alias(name, alias, version)
    return Registration(name, str(version), champion, reason, model_uri)
