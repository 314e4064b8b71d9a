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


def register_champion(client, *, tag_partition: str | None, param_partition: str | None = None, name: str = "") -> str:
    """A model version with the champion alias (its model is a placeholder: the check never loads it)."""
    name = name or f"drift-test-{uuid.uuid4().hex[:8]}"
    experiment = client.create_experiment(f"{name}-training")
    run_id = client.create_run(experiment).info.run_id
    if param_partition:
        client.log_param(run_id, "partition", param_partition)
    client.log_text(run_id, "placeholder", "model/MLmodel")
    client.set_terminated(run_id)
    client.create_registered_model(name)
    tags = {"sluice.data.partition": tag_partition} if tag_partition else {}
    version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, tags=tags)
    client.set_registered_model_alias(name, "champion", version.version)
    return name
