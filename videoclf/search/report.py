"""What the job says about its result: the trials table, champion vs baselines, the verdict, the leaderboard
(the parent run's description), the metrics and files logged to the parent run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from videoclf.tempfiles import private_folder
from videoclf.config import Config
from videoclf.console import markdown_table, plural
from videoclf.evaluation import format_report, write_report_files
from videoclf.mistakes import MISTAKES_TABLE, log_mistakes, mistakes
from videoclf.registered.registry import Registration
from videoclf.search.baselines import BaselineResult
from videoclf.search.crossval import OUT_OF_FOLD_TABLE
from videoclf.search.final import FinalModels
from videoclf.search.importance import importance_text, write_importance_plot
from videoclf.dataset import NO_GROUPS
from videoclf.search.prepare import GROUPING_WARNING, PreparedData
from videoclf.tracking import SearchTracker
from videoclf.ui_views import trials_path
from videoclf.streams import APPEARANCE

SUMMARY_COLUMNS = ("trial", "status", "score", "score_se", "family", "streams", "inputs", "temporal_centering",
                   "seq_length", "learning_rate")


@dataclass(frozen=True)
class Outcome:
    """A finished search's result, as reported: the winning trial, every trial, the final models, the baselines."""

    name: str
    best: object  # the winning KerasTuner trial
    trials: pd.DataFrame
    data: PreparedData
    final: FinalModels
    baselines: list[BaselineResult]
    importance: pd.DataFrame | str = "not computed"  # see videoclf.search.importance

    @property
    def completed(self) -> int:
        return int((self.trials.status == "COMPLETED").sum()) if len(self.trials) else 0

    def trial_labels(self) -> dict[str, str]:
        """What each trial was, for the training-curves legend: family, streams and appearance inputs."""
        def label(row) -> str:
            parts = [row.get("family"), row.get("streams"), row.get("inputs")]
            return ", ".join(str(p) for p in parts if isinstance(p, str))

        return {str(row["trial"]): label(row) for _, row in self.trials.iterrows()}

    @property
    def selection_score(self) -> tuple[float, float]:
        """The registered model's selection score and its standard error over folds."""
        selection = self.final.selection
        return (selection.score, selection.se) if selection else (self.best.score, score_error(self.best))

    @property
    def comparison(self) -> pd.DataFrame:
        return comparison_table(self.best, self.final, self.baselines, self.data.protocol)

    @property
    def verdict(self) -> str:
        score, se = self.selection_score
        return verdict(score, self.final, self.baselines, se, best_trial=self.best)

    @property
    def disagreement(self) -> str | None:
        return disagreement(self.selection_score[0], self.final.registered, self.data.train.grouping)


def trials_table(oracle) -> pd.DataFrame:
    rows = []
    for trial in oracle.trials.values():
        row = {"trial": trial.trial_id, "status": str(trial.status),
               "score": np.nan if trial.score is None else round(trial.score, 4),
               "score_se": round(score_error(trial), 4) if trial.score is not None else np.nan}
        row.update(trial.hyperparameters.values)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("score", ascending=False, na_position="last") if len(table) else table


def registered_label(final: FinalModels) -> str:
    """What the registered model is, in a table row."""
    if final.selection is None or final.registers_best_trial:
        seeds = f" (mean of {len(final.models)} seeds)" if len(final.models) > 1 else ""
        return f"champion (search winner){seeds}"
    return f"registered ({final.selection.rule}): {final.selection.describe()}"


def comparison_table(best, final: FinalModels, baselines: list[BaselineResult], protocol: str) -> pd.DataFrame:
    """The registered model, the best single trial (when it is not the registered one) and the baselines side by
    side: selection score ± its standard error over folds, test accuracy and its 95% interval."""
    selection = final.selection
    score, se = (selection.score, selection.se) if selection else (best.score, score_error(best))
    optimistic = " (optimistic: chosen on these predictions)" if selection and selection.optimistic else ""
    rows = [{"model": registered_label(final) + optimistic, "selection": score, "se": se,
             "test": final.registered.accuracy, "test_ci": final.registered.interval}]
    if not final.registers_best_trial:
        seeds = f", mean of {len(final.models)} seeds" if len(final.models) > 1 else ""
        rows.append({"model": f"best single trial (trial {best.trial_id}: {best.hyperparameters.get('family')} on "
                              f"{best.hyperparameters.values.get('streams', APPEARANCE)}{seeds})",
                     "selection": best.score, "se": score_error(best), "test": final.best_trial.accuracy,
                     "test_ci": final.best_trial.interval})
    rows += [{"model": b.description, "selection": b.validation, "se": b.validation_se, "test": b.test.accuracy,
              "test_ci": b.test.interval} for b in baselines]
    table = pd.DataFrame(rows)
    table[f"selection ({protocol})"] = [f"{v:.3f} ± {se:.3f}" if se else f"{v:.3f}"
                                        for v, se in zip(table.pop("selection"), table.pop("se"))]
    table["test accuracy [95% CI]"] = [f"{t:.3f} [{lo:.3f}, {hi:.3f}]" for t, (lo, hi) in
                                       zip(table.pop("test"), table.pop("test_ci"))]
    return table


def best_baseline(baselines: list[BaselineResult]) -> BaselineResult | None:
    """The baseline with the best selection score (the one the champion must beat)."""
    return max(baselines, key=lambda b: b.validation) if baselines else None


def summary_columns(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials table as printed and shown in the UI (every column stays in ``trials.csv``)."""
    return trials[[c for c in SUMMARY_COLUMNS if c in trials.columns]]


def score_error(trial) -> float:
    """A finished trial's standard error over folds (0 for a holdout split, or a trial from before it existed)."""
    return float(trial.metrics.get_last_value("score_se")) if trial.metrics.exists("score_se") else 0.0


def verdict(best_score: float, final: FinalModels, baselines: list[BaselineResult], best_se: float = 0.0,
            best_trial=None) -> str:
    """One plain sentence: the registered model vs the best baseline on validation and on test, and whether
    validation can tell them apart at all (their difference against the registered model's standard error over
    folds). When the rule registered a baseline, says so and sets it beside the best trial."""
    selection = getattr(final, "selection", None)
    single = selection.single if selection else None
    if single is not None and single.kind == "baseline" and best_trial is not None:
        trial_se = score_error(best_trial)
        return (f"registered the {single.description} (rule {selection.rule}); best trial {best_trial.trial_id}: "
                f"validation {best_trial.score:.3f} ± {trial_se:.3f} vs {single.score:.3f} ± {single.se:.3f}, test "
                f"{final.best_trial.accuracy:.3f} vs {final.registered.accuracy:.3f}. The test split is scored once "
                "and does not choose between them.")
    top = best_baseline(baselines)
    if top is None:
        return "no baselines configured (tuning.baselines)"
    test_gap = final.registered.accuracy - top.test.accuracy
    scores = (f"validation {best_score:.3f} ± {best_se:.3f} vs {top.validation:.3f} ± {top.validation_se:.3f}, "
              f"test {final.registered.accuracy:.3f} vs {top.test.accuracy:.3f} ({test_gap:+.3f})")
    if best_se > 0 and abs(best_score - top.validation) <= best_se:
        return (f"champion indistinguishable from the {top.description} on validation: the difference "
                f"({best_score - top.validation:+.3f}) is within the champion's standard error over folds; "
                f"{scores}. The test split is scored once and does not choose between them.")
    if best_score > top.validation:
        return f"champion vs best baseline ({top.description}): {scores}"
    return (f"WARNING: no trial beat the best baseline on validation: {top.description} scored "
            f"{top.validation:.3f}, the best trial {best_score:.3f} (test {top.test.accuracy:.3f} vs "
            f"{final.registered.accuracy:.3f}). Widen the search space (search.family, search.inputs, "
            f"search.streams) or use the baseline.")


def disagreement(selection_score: float, registered, grouping: str) -> str | None:
    """A warning when the registered model tests below its selection score by more than the test interval
    explains (its selection score above the 95% interval's upper end), with what that suggests."""
    low, high = registered.interval
    if not selection_score > high:
        return None
    return (f"WARNING: validation and test disagree: the registered model was selected at {selection_score:.3f} "
            f"but tests at {registered.accuracy:.3f} [95% CI {low:.3f}, {high:.3f}], lower than chance among the "
            f"test videos explains. The test videos differ from the training videos in a way validation did not "
            f"see: its groups ({grouping}) may not capture it. If the test comes from other sources, cameras, "
            f"people or later recordings, give train.csv a 'group' column naming that (cross-validation then "
            f"leaves whole sources out), and prefer simpler models (tuning.select: one_se).")


def leaderboard_markdown(outcome: Outcome, registration: Registration | None, trials_link: str | None = None) -> str:
    """The parent run's description in the MLflow UI: champion vs baselines, the decision, trials best first
    (``trials_link``: the search's saved view of its trials, ``videoclf.ui_views``)."""
    lines = [f"### Search `{outcome.name}`: champion vs baselines", "", markdown_table(outcome.comparison), "",
             f"**{outcome.verdict}**", ""]
    if outcome.final.selection is not None:
        lines += [f"Registered by rule `{outcome.final.selection.rule}`: {outcome.final.selection.reason}.", ""]
    if outcome.disagreement:
        lines += [f"**{outcome.disagreement}**", ""]
    registered = outcome.final.registered
    wrong = int((registered.probabilities.argmax(axis=1) != registered.labels).sum())
    lines += [f"Misclassified test clips: {wrong} of {len(registered.labels)}" + (
        f", each with its frames and probabilities in the artifact `{MISTAKES_TABLE}` (most confident first)."
        if wrong else "."), ""]
    if registration is not None:
        decision = "holds" if registration.champion else "does not hold"
        lines += [f"Registered as **{registration.name} version {registration.version}**, which {decision} the "
                  f"alias: {registration.reason}.", ""]
    if outcome.data.train.grouping == NO_GROUPS:
        lines += [f"**Warning: {GROUPING_WARNING}**", ""]
    lines += ["#### Which hyperparameters mattered", "", importance_markdown(outcome), ""]
    lines += [f"#### Trials, best first ({outcome.data.protocol}, grouped by {outcome.data.train.grouping}; "
              f"winner: trial {outcome.best.trial_id})", ""]
    if trials_link:
        lines += [f"[Every trial by score: their curves and a parallel-coordinates chart]({trials_link})", ""]
    lines += [markdown_table(summary_columns(outcome.trials).head(30))]
    return "\n".join(lines)


def importance_markdown(outcome: Outcome) -> str:
    if isinstance(outcome.importance, str):
        return outcome.importance
    table = outcome.importance.rename(columns={"importance_std": "±", "correlation": "Spearman ρ"})
    return (f"Random-forest permutation importance over {outcome.completed} trials (a hint with few trials, not "
            f"evidence):\n\n{markdown_table(table)}")


def outcome_metrics(config: Config, outcome: Outcome) -> dict[str, float]:
    """The parent run's metrics: the registered model's test scores, each seed's, the selection, the baselines."""
    best, final = outcome.best, outcome.final
    score, se = outcome.selection_score
    metrics = {**final.registered.metrics(), **final.seed_metrics(),
               f"best_{config.tuning.objective}": best.score, "selection_score": score, "selection_score_se": se,
               "best_trial_selection": best.score, "best_trial_selection_se": score_error(best),
               "best_trial_test_accuracy": final.best_trial.accuracy, "registered_members": len(final.members) or 1,
               "trials_completed": int((outcome.trials.status == "COMPLETED").sum())}
    for b in outcome.baselines:
        metrics.update({f"baseline_{b.name}_selection": b.validation, f"baseline_{b.name}_selection_se": b.validation_se,
                        f"baseline_{b.name}_test_accuracy": b.test.accuracy,
                        f"baseline_{b.name}_test_ci_low": b.test.interval[0],
                        f"baseline_{b.name}_test_ci_high": b.test.interval[1]})
    top = best_baseline(outcome.baselines)
    if top is not None:
        metrics["champion_minus_best_baseline_selection"] = score - top.validation
        metrics["champion_minus_best_baseline_test"] = final.registered.accuracy - top.test.accuracy
    return metrics


def log_report(tracker: SearchTracker, config: Config, outcome: Outcome) -> None:
    """Metrics, tags and the evaluation files (plots, trials and baselines tables) on the parent run."""
    tracker.log_metrics(outcome_metrics(config, outcome))
    tracker.set_tags({"best_trial_id": outcome.best.trial_id, "selection_protocol": outcome.data.protocol,
                      "selection_digest": outcome.data.selection_digest, "grouping": outcome.data.train.grouping,
                      "champion_vs_baseline": outcome.verdict[:5000],
                      "selection_rule": outcome.final.selection.rule if outcome.final.selection else "best",
                      "registered_members": (outcome.final.selection.describe() if outcome.final.selection
                                             else f"trial {outcome.best.trial_id}")[:5000],
                      **({"validation_test_disagreement": outcome.disagreement[:5000]} if outcome.disagreement
                         else {}),
                      "best_trial_run_id": tracker.trial_run_id(outcome.best.trial_id) or ""})
    with private_folder("report") as tmp:
        tmp = Path(tmp)
        files = write_report_files(outcome.final.registered, tmp, tracker.search_curves(), title=outcome.name,
                                   highlight=outcome.best.trial_id, labels=outcome.trial_labels())
        outcome.trials.to_csv(tmp / "trials.csv", index=False)
        outcome.comparison.to_csv(tmp / "baselines.csv", index=False)
        files.update(trials=tmp / "trials.csv", baselines=tmp / "baselines.csv")
        if not isinstance(outcome.importance, str):
            outcome.importance.to_csv(tmp / "hyperparameter_importance.csv", index=False)
            files.update(importance=tmp / "hyperparameter_importance.csv", importance_plot=write_importance_plot(
                outcome.importance, tmp / "hyperparameter_importance.png", outcome.completed))
        tracker.log_artifact_files(files, "evaluation")
        registered = outcome.final.registered
        log_mistakes(tracker.client, tracker.parent_run_id, mistakes(
            [str(config.data.root / key) for key in outcome.data.test.keys], registered.labels,
            registered.probabilities, registered.classes))
        kept = {b.name: tmp / f"{b.name}.{OUT_OF_FOLD_TABLE}" for b in outcome.baselines if b.out_of_fold is not None}
        for b in outcome.baselines:
            if b.name in kept:
                b.out_of_fold.table(outcome.data.folds, outcome.data.vocabulary.classes).to_csv(kept[b.name],
                                                                                                index=False)
        tracker.log_artifact_files(kept, "baselines")


def log_registration(tracker: SearchTracker, outcome: Outcome, registration: Registration | None) -> None:
    """The registered version on the parent run and the winning trial, and the leaderboard as the description."""
    if registration:
        pointer = f"{registration.name}/{registration.version}"
        selection = outcome.final.selection
        trials = ([c.key for c, _ in selection.members if c.kind == "trial"] if selection
                  else [outcome.best.trial_id])
        for trial_id in trials:
            tracker.tag_trial(trial_id, "registered_model_version", pointer)
        tracker.set_tags({"registered_model_version": pointer})
    link = trials_path(tracker.experiment_id, tracker.search_id, charts=True) if tracker.parent_run_id else None
    tracker.set_tags({"mlflow.note.content": leaderboard_markdown(outcome, registration, link)})


def print_trials(config: Config, data: PreparedData, best, trials: pd.DataFrame) -> None:
    print("\ntrials (best first; every hyperparameter in the trial runs and evaluation/trials.csv):\n"
          + summary_columns(trials).head(20).to_string(index=False))
    print(f"\nwinner: trial {best.trial_id}, {data.protocol} {config.tuning.objective} {best.score:.4f}; "
          f"refitting on all {len(data.train)} training videos ({plural(config.tuning.final_seeds, 'seed')})",
          flush=True)


def print_outcome(outcome: Outcome) -> None:
    """Champion beside the baselines, the verdict, and the registered model's test report."""
    print("\n" + outcome.comparison.to_string(index=False))
    print(outcome.verdict)
    if outcome.disagreement:
        print(outcome.disagreement)
    final = outcome.final
    seeds = final.seed_metrics()
    each = ", ".join(f"{e.accuracy:.3f}" for e in final.evaluations)
    registered = (f"the mean of {int(seeds['final_seeds'])} seeds' probabilities; each seed alone: "
                  f"{seeds['test_accuracy_seed_mean']:.3f} ± {seeds['test_accuracy_seed_std']:.3f}, each {each}"
                  if len(final.models) > 1 else "one seed")
    if not final.registers_best_trial:
        registered = f"{final.selection.describe()}; the best trial's seeds: {each}"
    print(f"test split (registered model: {registered}):\n" + format_report(final.registered))
    print("\n" + importance_text(outcome.importance, outcome.completed))

