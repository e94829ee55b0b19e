"""Which hyperparameters mattered: how much each explains the selection score across a search's trials.

As W&B's parameter-importance panel: a random forest fitted from the trials'
hyperparameters to their scores, each hyperparameter's permutation importance
(how much the forest's fit worsens when its values are shuffled among the
trials), beside the rank correlation of numeric ones with the score. With a
handful of trials this is a hint about where to search next, not evidence:
the table says how many trials it rests on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_TRIALS = 4  # fewer completed trials: no table, the reason instead
NOT_HYPERPARAMETERS = {"trial", "status", "score", "score_se", "best_epoch", "tuner/epochs",
                       "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id"}


def hyperparameter_importance(trials: pd.DataFrame, seed: int = 0) -> pd.DataFrame | str:
    """One row per hyperparameter that varied among the completed trials, most important first: ``importance``
    (permutation importance of a random forest, mean over repeats), ``importance_std`` and ``correlation`` (Spearman,
    numeric hyperparameters only). A string saying why when there are too few trials or nothing varied."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    done = trials[(trials.status == "COMPLETED") & trials.score.notna()] if len(trials) else trials
    if len(done) < MIN_TRIALS:
        return f"{len(done)} completed trials: too few to tell which hyperparameters mattered (at least {MIN_TRIALS})"
    columns = [c for c in done.columns if c not in NOT_HYPERPARAMETERS and done[c].nunique(dropna=False) > 1]
    if not columns:
        return "no hyperparameter varied among the completed trials"
    encoded = pd.DataFrame({c: _encoded(done[c]) for c in columns})
    scores = done.score.to_numpy(float)
    forest = RandomForestRegressor(n_estimators=200, min_samples_leaf=1, random_state=seed).fit(encoded, scores)
    result = permutation_importance(forest, encoded, scores, n_repeats=20, random_state=seed)
    correlation = [_rank_correlation(done[c], scores) if _numeric(done[c]) else np.nan for c in columns]
    table = pd.DataFrame({"hyperparameter": columns, "importance": result.importances_mean,
                          "importance_std": result.importances_std, "correlation": correlation})
    return table.sort_values("importance", ascending=False, ignore_index=True)


def _rank_correlation(values: pd.Series, scores: np.ndarray) -> float:
    """Spearman's rank correlation over the trials where a (conditional) hyperparameter was active; NaN where it
    is undefined (fewer than 3 such trials, or one value only)."""
    active = values.notna().to_numpy()
    if active.sum() < 3 or values[active].nunique() < 2:
        return np.nan
    return float(pd.Series(values[active].to_numpy(float)).rank().corr(pd.Series(scores[active]).rank()))


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _encoded(values: pd.Series) -> np.ndarray:
    """Numbers as they are (inactive conditional ones: -1); anything else as category codes."""
    if _numeric(values):
        return values.astype(float).fillna(-1.0).to_numpy()
    return pd.Categorical(values.astype(str)).codes.astype(float)


def importance_text(table: pd.DataFrame | str, trials: int) -> str:
    """The console's table, with its caveat."""
    if isinstance(table, str):
        return f"hyperparameter importance: {table}"
    lines = [f"hyperparameter importance over {trials} trials (random forest permutation importance; "
             "correlation: Spearman, numeric ones; a hint with few trials, not evidence):"]
    lines += [f"  {row.hyperparameter:22s} {row.importance:7.4f} ± {row.importance_std:.4f}"
              + (f"   correlation {row.correlation:+.2f}" if np.isfinite(row.correlation) else "")
              for row in table.itertuples()]
    return "\n".join(lines)


def write_importance_plot(table: pd.DataFrame, path, trials: int):
    """A horizontal bar per hyperparameter, most important on top."""
    from videoclf.evaluation import _pyplot

    plt = _pyplot()
    shown = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(shown) + 1.5))
    ax.barh(shown.hyperparameter, shown.importance, xerr=shown.importance_std, color="steelblue", alpha=0.8)
    ax.set_xlabel("permutation importance (fit lost when shuffled)")
    ax.set_title(f"which hyperparameters explained the score ({trials} trials)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
