"""Where MLflow's UI opens on a search: a saved view of its trials, sorted by the score.

MLflow 3.17 opens an experiment on its GenAI overview unless the link says
``workflowType=machine_learning`` (the experiment's kind tag does not decide it;
the workflow switch does, from the URL or the browser). Its Runs tab keeps named
views (MLflow 3.15+) as experiment tags ``mlflow.sharedViewState.<id>``, each a
JSON envelope ``{name, createdAt, updatedAt, state}`` whose ``state`` is the
Runs tab's state, deflate-compressed (the form MLflow's own demo generator
writes, ``mlflow/demo/generators/saved_views.py``); ``viewStateShareKey=<id>``
opens one. A search saves one: its trial runs only, sorted by score, the score
and the searched hyperparameters as columns, every trial drawn in the charts
(MLflow draws 10 by default) and a parallel-coordinates chart of the score
against the hyperparameters the search varies.
"""

from __future__ import annotations

import base64
import json
import time
import zlib

from videoclf.tracking import (ROLE_TAG, SCORE_METRIC, SCORE_SE_METRIC, SEARCH_TAG, STATUS_TAG,
                               TRIAL_SECONDS_METRIC)

SAVED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # an experiment tag per saved Runs-tab view
PRIMARY_METRIC_TAG = "mlflow.experiment.primaryMetric.name"  # the metric MLflow charts first
VIEW_KEY = "viewStateShareKey"  # the URL parameter that opens a saved view
TRAINING_RUNS = "workflowType=machine_learning"  # the URL parameter that opens MLflow's training view, not GenAI
CHARTS = "compareRunsMode=CHART"  # the URL parameter that opens the Runs tab on its charts
MAX_AXES = 8  # hyperparameters on the parallel-coordinates chart (more are unreadable)
_DEFLATE = "deflate;"


def trials_view_id(search_id: str) -> str:
    return f"videoclf-{search_id}"


def varied_hyperparameters(hyperparameters) -> list[str]:
    """The names of a KerasTuner space's hyperparameters that take more than one value, in declaration order."""
    from keras_tuner.src.engine.hyperparameters import Choice, Fixed, Float, Int

    def varies(hp) -> bool:
        if isinstance(hp, Choice):
            return len(hp.values) > 1
        if isinstance(hp, (Int, Float)):
            return hp.min_value != hp.max_value
        return not isinstance(hp, Fixed)  # Boolean

    return [hp.name for hp in hyperparameters.space if varies(hp)]


def trials_view_state(search_id: str, hyperparameters: list[str]) -> dict:
    """The Runs tab's state for one search's trials (MLflow 3.17's keys; the rest keep their defaults)."""
    section = "videoclf-score"
    axes = hyperparameters[:MAX_AXES]
    return {
        "searchFilter": f"tags.{SEARCH_TAG} = '{search_id}' and tags.{ROLE_TAG} = 'trial'",
        "orderByKey": f"metrics.`{SCORE_METRIC}`", "orderByAsc": False, "startTime": "ALL",
        "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
        "selectedColumns": [f"metrics.`{SCORE_METRIC}`", f"metrics.`{SCORE_SE_METRIC}`", f"tags.`{STATUS_TAG}`",
                            *(f"params.`{name}`" for name in hyperparameters), f"metrics.`{TRIAL_SECONDS_METRIC}`"],
        "columnOrder": [], "columnWidths": {},
        "runsHiddenMode": "SHOW_ALL",  # every trial's curve, not the first 10
        "viewMaximized": False, "runListHidden": False, "isAccordionReordered": False,
        "useGroupedValuesInCharts": True, "hideEmptyCharts": True, "groupBy": None, "groupsExpanded": {},
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
        "compareRunSections": [{"uuid": section, "name": "Score by hyperparameter", "display": True,
                                "isReordered": False, "deleted": False, "isGenerated": False},
                               # MLflow's own section, named as it names it: it fills it with a chart a metric
                               {"uuid": "videoclf-metrics", "name": "Model metrics", "display": True,
                                "isReordered": False, "deleted": False, "isGenerated": True}],
        "compareRunCharts": [{"uuid": f"{section}-parallel", "type": "PARALLEL", "runsCountToCompare": 100,
                              "metricSectionId": section, "deleted": False, "isGenerated": False,
                              "displayName": f"{SCORE_METRIC} by hyperparameter", "selectedParams": axes,
                              "selectedMetrics": [SCORE_METRIC], "showAllRuns": True}] if axes else [],
    }


def encode_view(name: str, state: dict, now_ms: int) -> str:
    packed = base64.b64encode(zlib.compress(json.dumps(state, separators=(",", ":")).encode())).decode("ascii")
    return json.dumps({"name": name, "createdAt": now_ms, "updatedAt": now_ms, "state": _DEFLATE + packed},
                      separators=(",", ":"))


def decode_view(value: str) -> tuple[str, dict]:
    """A saved view's name and state, as MLflow's UI reads the tag (deflated or plain JSON state)."""
    envelope = json.loads(value)
    state = envelope["state"]
    if state.startswith(_DEFLATE):
        state = zlib.decompress(base64.b64decode(state[len(_DEFLATE):])).decode()
    return envelope["name"], json.loads(state)


def trials_view_name(search_id: str) -> str:
    return f"videoclf: search {search_id}, trials by {SCORE_METRIC}"


def save_trials_view(client, experiment_id: str, search_id: str, hyperparameters: list[str]) -> None:
    """Saves (or replaces) the search's view on its experiment."""
    client.set_experiment_tag(experiment_id, SAVED_VIEW_TAG_PREFIX + trials_view_id(search_id), encode_view(
        trials_view_name(search_id), trials_view_state(search_id, hyperparameters), int(time.time() * 1000)))
    client.set_experiment_tag(experiment_id, PRIMARY_METRIC_TAG, SCORE_METRIC)


def run_url(experiment_id: str, run_id: str, port: int = 5000) -> str:
    return f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_RUNS}"


def trials_path(experiment_id: str, search_id: str, charts: bool = False) -> str:
    """The search's saved view, as a link within the UI (a run's description links to it this way)."""
    query = f"{VIEW_KEY}={trials_view_id(search_id)}&{TRAINING_RUNS}" + (f"&{CHARTS}" if charts else "")
    return f"#/experiments/{experiment_id}/runs?{query}"


def trials_url(experiment_id: str, search_id: str, port: int = 5000, charts: bool = False) -> str:
    return f"http://127.0.0.1:{port}/{trials_path(experiment_id, search_id, charts)}"
