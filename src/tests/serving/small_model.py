"""Train and save a small wachttijden model from generated rows, for serving tests and the benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.wachttijden.schema import FEATURES, OPEN_FEATURES, TARGET

# A few categories per feature are enough to exercise lookup, one-hot and unknown-category paths.
CATEGORIES: dict[str, list[str]] = {
    "TYPE_WACHTTIJD": ["Behandeling", "Diagnostiek", "Poliklinisch consult"],
    "SPECIALISME": ["Cardiologie", "Dermatologie", "Oogheelkunde", "Orthopedie", "Urologie"],
    "ROAZ_REGIO": [
        "Acute Zorgregio Oost",
        "Netwerk Acute Zorg Noordwest",
        "ROAZ Zuid-Holland Zuid",
        "Traumacentrum Noord",
    ],
    "TYPE_ZORGINSTELLING": ["Ziekenhuis", "Zelfstandig behandelcentrum"],
}


def generated_rows(n: int, seed: int) -> pd.DataFrame:
    """Random feature rows with a target that depends on the categories (so two seeds disagree a little)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.choice(values, size=n) for name, values in CATEGORIES.items()})
    effect = sum(frame[name].map({v: i for i, v in enumerate(values)}) for name, values in CATEGORIES.items())
    frame[TARGET] = 3.0 + 1.5 * effect + rng.normal(0, 1, size=n)
    return frame


# Like the train task: some open-feature values masked as unseen, a background sample for explanations.
OOV_FRACTION = 0.05
BACKGROUND_ROWS = 50


def save_small_model(path: Path, *, seed: int, work_dir: Path, rows: int = 2000, epochs: int = 2) -> Path:
    """Fit `build_model` briefly on generated rows and save it as an MLflow pyfunc folder at `path`."""
    import keras

    from models.wachttijden.model import build_model, mask_for_oov, save_pyfunc_model, to_model_inputs

    keras.utils.set_random_seed(seed)
    frame = generated_rows(rows, seed)
    model = build_model(CATEGORIES, target_mean=float(frame[TARGET].mean()))
    fitted = mask_for_oov(frame, OPEN_FEATURES, OOV_FRACTION, seed)
    model.fit(
        to_model_inputs(fitted), fitted[TARGET].to_numpy(np.float32), epochs=epochs, batch_size=64, verbose=0
    )
    background = frame.sample(n=BACKGROUND_ROWS, random_state=seed)
    return save_pyfunc_model(
        path, model, CATEGORIES, frame[list(FEATURES)], work_dir=work_dir, open_features=OPEN_FEATURES,
        background={name: background[name].tolist() for name in FEATURES},
    )


# Two rows in the small models' vocabularies, for request bodies in the router and soak tests.
SAMPLE_ROWS = [
    {
        "TYPE_WACHTTIJD": "Behandeling",
        "SPECIALISME": "Cardiologie",
        "ROAZ_REGIO": "Acute Zorgregio Oost",
        "TYPE_ZORGINSTELLING": "Ziekenhuis",
    },
    {
        "TYPE_WACHTTIJD": "Diagnostiek",
        "SPECIALISME": "Urologie",
        "ROAZ_REGIO": "Traumacentrum Noord",
        "TYPE_ZORGINSTELLING": "Zelfstandig behandelcentrum",
    },
]
