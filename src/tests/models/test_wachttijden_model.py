"""The wachttijden model's one check of categories against its vocabularies, on every input shape it gets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.wachttijden.schema import FEATURES
from tests.serving.small_model import CATEGORIES


@pytest.fixture(scope="module")
def model():
    from models.wachttijden.model import WachttijdenModel, build_model

    return WachttijdenModel(build_model(CATEGORIES, hidden_units=(4,)), CATEGORIES)


def known_columns(rows: int = 3) -> dict[str, list[str]]:
    return {name: [values[i % len(values)] for i in range(rows)] for name, values in CATEGORIES.items()}


def test_known_values_have_no_unknown_categories_in_any_container(model):
    columns = known_columns()
    assert model.unknown_categories(columns) == {}
    assert model.unknown_categories(pd.DataFrame(columns)) == {}
    assert model.unknown_categories({k: np.asarray(v).reshape(-1, 1) for k, v in columns.items()}) == {}


@pytest.mark.parametrize("container", [list, np.asarray, pd.Series, lambda v: np.asarray(v, dtype=object)[:, None]])
def test_unknown_values_are_named_sorted_and_once_per_feature(model, container):
    columns = known_columns(4)
    columns["ROAZ_REGIO"][1:] = ["Zeeland", "Atlantis", "Zeeland"]
    columns["SPECIALISME"][0] = 320  # not a string: reported as its text, never silently matched
    unknown = model.unknown_categories({k: container(v) for k, v in columns.items()})
    assert unknown == {"SPECIALISME": ["320"], "ROAZ_REGIO": ["Atlantis", "Zeeland"]}
    assert list(unknown) == [f for f in FEATURES if f in unknown]  # in feature order
