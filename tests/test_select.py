"""The rules that pick what is registered, and the baselines' linear models as the registered model runs them."""

import numpy as np
import pytest

from videoclf.search.crossval import OutOfFold
from videoclf.search.select import Candidate, ensemble_selection, one_standard_error, select
from videoclf.summaries import LinearHead, summarize

LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
FOLD = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])


def _oof(correct: list[int], confidence: float = 0.8) -> OutOfFold:
    """Probabilities right (``confidence`` on the true class) on the rows in ``correct``, wrong elsewhere."""
    out = np.full((len(LABELS), 3), (1 - confidence) / 2, np.float32)
    for row, label in enumerate(LABELS):
        out[row, label if row in correct else (label + 1) % 3] = confidence
    return OutOfFold(out, FOLD)


def _candidate(key, score, se, family="gru", weights=1000, oof=None, kind="trial"):
    return Candidate(kind, key, score, se, family, weights, oof)


def test_one_standard_error_takes_the_simplest_within_the_best_s_error():
    best = _candidate("1", 0.606, 0.059, "attention", 50_000)
    near_trial = _candidate("2", 0.59, 0.05, "pooled", 20_000)
    baseline = _candidate("step_stats_logreg", 0.583, 0.060, "linear", 40, kind="baseline")
    far = _candidate("pooled_logreg", 0.40, 0.02, "linear", 10, kind="baseline")
    chosen = one_standard_error([best, near_trial, baseline, far])
    assert chosen.single is baseline and chosen.rule == "one_se"
    assert "within one standard error" in chosen.reason and "baseline step_stats_logreg" in chosen.reason
    # out of reach: the best stays
    assert one_standard_error([_candidate("1", 0.654, 0.039), baseline]).single.key == "1"
    # among linear models, fewer weights first; a holdout split (no error) keeps the best
    assert one_standard_error([best, near_trial]).single is near_trial
    assert one_standard_error([_candidate("1", 0.7, 0.0), _candidate("2", 0.69, 0.0, "linear", 5)]).single.key == "1"
    # a loss objective: lower is better
    low, high = _candidate("1", 0.5, 0.1, "gru"), _candidate("2", 0.58, 0.1, "pooled")
    assert one_standard_error([low, high], higher_is_better=False).single is high
    assert select("best", [low, high], LABELS, higher_is_better=False).single is low


def test_ensemble_selection_combines_complementary_candidates_and_says_it_is_optimistic():
    a = _candidate("1", 0.667, 0.1, oof=_oof([0, 1, 2, 3, 4, 5, 6, 7]))  # right on the first 8 rows
    b = _candidate("2", 0.667, 0.1, oof=_oof([4, 5, 6, 7, 8, 9, 10, 11], 0.9))  # right on the last 8
    c = _candidate("pooled_logreg", 0.5, 0.1, "linear", 10, _oof([0, 1, 2, 3, 8, 9, 10, 11], 0.7), "baseline")
    chosen = ensemble_selection([a, b, c], LABELS)
    weights = {candidate.key: weight for candidate, weight in chosen.members}
    assert len(weights) >= 2 and sum(weights.values()) == pytest.approx(1.0)
    mean = sum(w * cand.out_of_fold.probabilities for cand, w in chosen.members)
    assert chosen.score == pytest.approx(np.mean([(mean[FOLD == f].argmax(1) == LABELS[FOLD == f]).mean()
                                                  for f in range(3)]))
    assert chosen.score > 0.667 and chosen.optimistic and "optimistic" in chosen.reason
    assert "+" in chosen.key and chosen.describe().startswith("ensemble of")
    # one candidate clearly best everywhere: the ensemble is that candidate alone
    perfect = _candidate("3", 1.0, 0.0, oof=_oof(list(range(12)), 0.95))
    assert ensemble_selection([a, perfect, c], LABELS).single is perfect
    # candidates from before out-of-fold predictions were kept: the best of them, said plainly
    old = ensemble_selection([_candidate("1", 0.7, 0.1), _candidate("2", 0.6, 0.1)], LABELS)
    assert old.single.key == "1" and "before they were kept" in old.reason


def test_a_linear_head_gives_scikit_learn_s_probabilities(rng=np.random.default_rng(3)):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = rng.normal(size=(30, 6, 5)).astype(np.float16)
    stored = rng.integers(1, 7, 30)
    for row, n in enumerate(stored):
        features[row, n:] = 0
    for classes in (3, 2):
        labels = rng.integers(0, classes, 30)
        for summary in ("frame_mean_std", "step_size_statistics"):
            x = summarize(summary, features, stored)
            pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000)).fit(x, labels)
            head = LinearHead.from_pipeline(summary, pipeline, num_classes=4)  # a class unseen in training: 0
            ours = head.probabilities(features.astype(np.float32), stored)
            assert ours.shape == (30, 4) and np.all(ours[:, classes:] == 0)
            np.testing.assert_allclose(ours[:, :classes], pipeline.predict_proba(x), atol=1e-6)


def test_a_linear_head_round_trips_through_plain_arrays(tmp_path):
    head = LinearHead("motion_statistics", np.zeros(4), np.ones(4), np.arange(12.0).reshape(3, 4), np.ones(3),
                      np.array([0, 2, 3]), 4)
    head.save(tmp_path / "head.npz")
    back = LinearHead.load(tmp_path / "head.npz")  # no pickle: allow_pickle=False
    assert back.summary == "motion_statistics" and back.stream == "motion" and back.num_classes == 4
    np.testing.assert_array_equal(back.coef, head.coef)
    np.testing.assert_array_equal(back.class_index, head.class_index)


@pytest.mark.slow
def test_every_candidate_keeps_out_of_fold_predictions_and_mixed_models_predict_as_tested(
        tmp_path, make_config, tracking_uri, monkeypatch):
    """A tiny search on two views of each video registering by ensemble selection: trials and baselines keep their
    out-of-fold predictions (trial runs, the parent run); the registered model reads each view as the cache holds it
    and predicts the test videos as the job tested it (the mean over views); and a model mixing a Keras trial with
    linear baselines on both streams predicts their weighted mean of probabilities."""
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from videoclf.config import load_config
    from videoclf.dataset import load_split
    from videoclf.features.backbones import resolve_weights
    from videoclf.registered.writer import log_members
    from videoclf.search.final import Member
    from videoclf.search.run import run_search
    from videoclf.streams import uses_appearance, uses_motion

    from conftest import TINY_SEARCH, trial_runs

    monkeypatch.chdir(tmp_path)
    config = load_config(make_config({**TINY_SEARCH, "training.cv_folds": 3, "tuning.select": "ensemble",
                                      "motion.enabled": True, "tuning.max_trials": 2,
                                      "search.streams": ["appearance", "motion"],
                                      "tuning.baselines": ["step_stats_logreg", "motion_logreg"],
                                      "sampling.views": 2}))
    result = run_search(config, "picked", progress=False)
    client = MlflowClient()
    for run in trial_runs(client, result.search_id):
        table = pd.read_csv(client.download_artifacts(run.info.run_id, "out_of_fold.csv", str(tmp_path)))
        assert len(table) == 30 and set(table.fold) == {0, 1, 2}  # every training video validated once
        np.testing.assert_allclose(table.drop(columns=["video", "label", "fold"]).sum(axis=1), 1, atol=1e-4)
    kept = {a.path for a in client.list_artifacts(result.parent_run_id, "baselines")}
    assert kept == {"baselines/step_stats_logreg.out_of_fold.csv", "baselines/motion_logreg.out_of_fold.csv"}
    version = client.get_model_version("videoclf-test", result.registration.version)
    assert version.tags["selection_rule"] == "ensemble" and "optimistic" in version.description
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["selection_rule"] == "ensemble" and parent.data.tags["registered_members"]

    test, _ = load_split(config, "test", resolve_weights(config.extractor))
    videos = [str(config.data.root / key) for key in test.keys]
    registered = mlflow.pyfunc.load_model(f"models:/videoclf-test/{result.registration.version}")
    classes = list(registered.unwrap_python_model().classes)
    stream = registered.unwrap_python_model().settings.stream
    assert registered.unwrap_python_model().sampling.views == 2
    for index, cached in enumerate(test.every_view()):
        clips, errors = registered.unwrap_python_model().streams(videos, index)
        assert not errors and len(test.every_view()) == 2
        if uses_motion(stream):
            np.testing.assert_allclose(clips.motion, cached.motion, atol=1e-4)
        if uses_appearance(stream):
            np.testing.assert_allclose(clips.features, cached.features.astype(np.float32), atol=0.05)
    answer = registered.predict(pd.DataFrame({"video_path": videos}))
    np.testing.assert_allclose(answer[classes].to_numpy(), result.evaluation.probabilities, atol=5e-3)
    windows = registered.predict(pd.DataFrame({"video_path": videos[:1]}), params={"window_seconds": 100.0})
    np.testing.assert_allclose(windows[classes].to_numpy()[-1], result.evaluation.probabilities[0], atol=5e-3)

    by_name = {b.name: b for b in result.baselines}
    best = result.final
    trial = Member("trial", 0.5, best.ensemble, result.best_hyperparameters.get("streams", "appearance"),
                   int(result.best_hyperparameters["seq_length"]), best.best_trial.probabilities)
    mixed = [trial] + [Member(name, 0.25, b.model, b.stream, b.seq_length, b.test_probabilities)
                       for name, b in by_name.items()]
    expected = sum(m.weight * np.asarray(m.test_probabilities) for m in mixed)
    # LiteRT on this CPU, and the Keras models (what a GPU runs)
    for runtime in ("auto", "tensorflow"):
        logged = config.model_copy(update={"extractor": config.extractor.model_copy(update={"runtime": runtime})})
        with mlflow.start_run():
            info = log_members(logged, resolve_weights(config.extractor), mixed, tuple(classes))
        model = mlflow.pyfunc.load_model(info.model_uri)
        served = model.unwrap_python_model()
        assert served.settings.stream == "appearance+motion" and len(served.members) == 3
        assert [m.kind for m in served.settings.members] == ["keras", "linear", "linear"]
        np.testing.assert_allclose(model.predict(pd.DataFrame({"video_path": videos}))[classes].to_numpy(),
                                   expected, atol=5e-3)


def test_the_report_says_when_validation_and_test_disagree_and_what_a_registered_baseline_is():
    from types import SimpleNamespace

    from videoclf.search.report import disagreement, verdict
    from videoclf.search.select import Selection

    held_back = SimpleNamespace(accuracy=0.489, interval=(0.422, 0.561))  # issue 29's winner on new footage
    warning = disagreement(0.606, held_back, "the CSV's group column")
    assert warning.startswith("WARNING: validation and test disagree") and "0.606" in warning
    assert "'group' column" in warning and "tuning.select: one_se" in warning
    assert disagreement(0.55, held_back, "x") is None  # within the test interval: chance explains it

    baseline = _candidate("step_stats_logreg", 0.583, 0.060, "linear", 40, kind="baseline")
    final = SimpleNamespace(selection=Selection("one_se", ((baseline, 1.0),), 0.583, 0.060, "why"),
                            registered=SimpleNamespace(accuracy=0.633), best_trial=SimpleNamespace(accuracy=0.489))
    best_trial = SimpleNamespace(trial_id="07", score=0.606, metrics=SimpleNamespace(
        exists=lambda name: name == "score_se", get_last_value=lambda name: 0.059))
    said = verdict(0.583, final, [], 0.060, best_trial=best_trial)
    assert said.startswith("registered the") and "(rule one_se)" in said and "best trial 07" in said
    assert "0.606 ± 0.059 vs 0.583 ± 0.060" in said and "test 0.489 vs 0.633" in said
