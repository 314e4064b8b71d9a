"""What a trained model logs for explanations: the background sample it carries, and a global feature importance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from models.wachttijden.schema import FEATURES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from models.wachttijden.model import WachttijdenModel

# Training rows the model carries as the reference of its explanations. With categorical features
# the server evaluates only the distinct parts of it per coalition; 100 rows is shap's usual advice
# for a background, and keeps an explanation to a few hundred model rows per explained row.
BACKGROUND_ROWS = 100
# Validation rows whose mean |Shapley value| per feature is the logged global importance.
IMPORTANCE_ROWS = 500


def background_sample(train: pd.DataFrame, *, seed: int, rows: int = BACKGROUND_ROWS) -> dict[str, list[str]]:
    """A random sample of the training rows' features, as columns of strings."""
    sample = train.sample(n=min(rows, len(train)), random_state=seed)
    return {name: sample[name].astype(str).tolist() for name in FEATURES}


def feature_importance(
    model: WachttijdenModel, rows: pd.DataFrame, background: dict[str, list[str]], *, seed: int,
    max_rows: int = IMPORTANCE_ROWS,
) -> dict[str, float]:
    """Mean |exact Shapley value| per feature (in weeks) over up to `max_rows` of `rows`, against `background`."""
    from models.wachttijden.shapley import shapley_values

    sample = rows.sample(n=min(max_rows, len(rows)), random_state=seed)
    columns = {name: sample[name].astype(str).tolist() for name in FEATURES}
    return shapley_values(model.predict_columns, columns, background, FEATURES).mean_abs()


def importance_figure(importance: dict[str, float], title: str) -> Figure:
    """A horizontal bar per feature, the most important on top."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    ranked = sorted(importance.items(), key=lambda item: item[1])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh([name for name, _ in ranked], [value for _, value in ranked])
    ax.set_xlabel("mean |Shapley value| (weeks)")
    ax.set_title(f"{title}: feature importance")
    fig.tight_layout()
    plt.close(fig)
    return fig
