"""Raw files for the drift and retraining tests: the generated data as it is, resampled, or shifted."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

from models.wachttijden.schema import SEPARATOR, TARGET
from tasks.data.generate import ENCODING, generate

ROWS, SEED = 3_000, 7  # the session's small_raw_csv


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(sep=SEPARATOR, index=False).encode(ENCODING)


def base_frame() -> pd.DataFrame:
    return generate(ROWS, seed=SEED)


def resampled(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same distribution, other rows: a bootstrap sample (new bytes, so new content for the ledger)."""
    rng = np.random.default_rng(seed)
    return frame.iloc[rng.integers(0, len(frame), len(frame))].reset_index(drop=True)


def shifted(frame: pd.DataFrame, seed: int, *, weeks: int = 6, treatment_share: float = 0.8) -> pd.DataFrame:
    """Most rows become treatment waits (TYPE_WACHTTIJD) and every valid wait grows by `weeks`."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    known = out["TYPE_WACHTTIJD"].isin(["Polikliniek", "Behandeling", "Diagnostiek"])
    moved = known & (rng.random(len(out)) < treatment_share)
    out.loc[moved, "TYPE_WACHTTIJD"] = "Behandeling"
    weeks_now = pd.to_numeric(out[TARGET], errors="coerce")
    valid = weeks_now.between(0, 104 - weeks)
    out.loc[valid, TARGET] = (weeks_now[valid] + weeks).astype(int).astype(str)
    # A marker column value so two shifted files from the same seed never share content by accident.
    out["OPMERKING"] = uuid.uuid4().hex[:8]
    return out
