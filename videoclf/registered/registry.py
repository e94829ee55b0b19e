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
        if (version.tags.get("search_id") == tags["search_id"] and version.tags.get("trial_id") == tags["trial_id"]
                and version.tags.get("selection_digest") == selection_digest and same_files):
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
            **tags, "selection_score": f"{selection_score:.6f}", "selection_digest": selection_digest,
            "test_accuracy": f"{test_accuracy:.6f}", "test_split_digest": test_digest}).version
    usage = (f"Predict: `videoclf predict VIDEO --model models:/{name}/{version}`; serve: `videoclf serve --model "
             f"models:/{name}/{version}`; in Python: `mlflow.pyfunc.load_model(\"models:/{name}/{version}\")`.")
    client.update_model_version(name, version, description=f"{description}\n\n{usage}".strip())
    holder = _current_champion(client, name, alias)
    if holder is None:
        champion, reason = True, f"first model with alias '{alias}'"
    elif holder.tags.get("selection_digest") != selection_digest:
        champion = False
        reason = (f"the current {alias} (version {holder.version}) was selected on other training data or folds, "
                  f"so the scores are not comparable; compare them yourself and move the alias with "
                  f"MlflowClient().set_registered_model_alias")
    else:
        held = float(holder.tags["selection_score"])
        champion = selection_score > held if higher_is_better else selection_score < held
        reason = (f"selection score {selection_score:.4f} {'beats' if champion else 'does not beat'} "
                  f"{alias} version {holder.version} ({held:.4f}) under the same selection protocol "
                  f"(test accuracy {test_accuracy:.4f} is reported, never used to choose)")
    if champion:
        client.set_registered_model_alias(name, alias, version)
    return Registration(name, str(version), champion, reason, model_uri)
