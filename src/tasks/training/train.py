"""The train_model stage: fit candidate Keras models and track them in MLflow (tasks.registry registers the best)."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.wachttijden.schema import FEATURES, OPEN_FEATURES, TARGET
from tasks.data.datalake import DataLake
from tasks.data.prepare import read_split
from tasks.registry import require_tracking_server
from tasks.training.device import DEVICE_TAG, training_device
from tasks.training.importance import background_sample, feature_importance, importance_figure

EXPERIMENT = "wachttijden"


@dataclass(frozen=True)
class Candidate:
    """One model configuration to try; candidates train in parallel as mapped tasks."""

    name: str
    hidden_units: tuple[int, ...] = (64, 32)
    learning_rate: float = 1e-3
    epochs: int = 5
    batch_size: int = 256
    seed: int = 42
    # Share of training rows whose open features (SPECIALISME) are masked as unseen, so the model's
    # out-of-vocabulary bucket learns an answer for new values; 0 leaves it untrained, and the model
    # then declares no open features (the server refuses unseen values as for closed ones).
    oov_fraction: float = 0.02

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Candidate:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown candidate setting(s) {sorted(unknown)}; allowed: {sorted(known)}")
        if "hidden_units" in values:
            values = {**values, "hidden_units": tuple(int(u) for u in values["hidden_units"])}
        return cls(**values)


DEFAULT_CANDIDATES = (
    Candidate("compact", hidden_units=(32,), learning_rate=3e-3),
    Candidate("wide", hidden_units=(128, 64), learning_rate=1e-3),
)


def candidates_from_config(train_config: dict[str, Any]) -> list[dict[str, Any]]:
    """Candidate settings from the `train_config` Variable: shared defaults plus a list of candidates."""
    shared = {k: v for k, v in train_config.items() if k != "candidates"}
    listed = train_config.get("candidates") or [asdict(c) for c in DEFAULT_CANDIDATES]
    # Validate now so a typo fails the planning task, not every training task.
    return [asdict(Candidate.from_dict({**c, **shared})) for c in listed]


@dataclass
class Metrics:
    mae: float
    rmse: float

    @classmethod
    def of(cls, predicted: np.ndarray, actual: np.ndarray) -> Metrics:
        error = predicted.astype(np.float64) - actual.astype(np.float64)
        return cls(float(np.abs(error).mean()), float(np.sqrt((error**2).mean())))


@dataclass
class TrainResult:
    candidate: str
    run_id: str
    model_uri: str
    validation: Metrics
    test: Metrics
    epoch_seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vocabularies_of(frame: pd.DataFrame) -> dict[str, list[str]]:
    return {name: sorted(frame[name].astype(str).unique().tolist()) for name in FEATURES}


def fit(train: pd.DataFrame, validation: pd.DataFrame, candidate: Candidate):
    """Train one candidate; returns the Keras model, its vocabularies, history and seconds per epoch."""
    import keras

    from models.wachttijden.model import build_model, mask_for_oov, to_model_inputs

    keras.utils.set_random_seed(candidate.seed)
    vocabularies = vocabularies_of(train)
    model = build_model(
        vocabularies, hidden_units=candidate.hidden_units, learning_rate=candidate.learning_rate,
        target_mean=float(train[TARGET].mean()),
    )
    if candidate.oov_fraction > 0:
        train = mask_for_oov(train, OPEN_FEATURES, candidate.oov_fraction, candidate.seed)
    timer = _epoch_timer()
    history = model.fit(
        to_model_inputs(train), train[TARGET].to_numpy(np.float32),
        validation_data=(to_model_inputs(validation), validation[TARGET].to_numpy(np.float32)),
        epochs=candidate.epochs, batch_size=candidate.batch_size, verbose=0, shuffle=True,
        callbacks=[timer, keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)],
    )
    return model, vocabularies, history.history, timer.seconds


def train_candidate(
    lake: DataLake, partition: str, candidate_settings: dict[str, Any], *, tracking_uri: str,
    run_name_prefix: str = "", tags: dict[str, str] | None = None, require_gpu: bool = False,
) -> dict[str, Any]:
    """Train, evaluate and log one candidate to MLflow. Returns its run and hold-out metrics.

    A tracking server that does not answer, or no visible GPU when `require_gpu` is on
    (tasks.training.device.GpuUnavailable), fails this at once, before minutes of training are spent.
    The device is recorded as the run tag `sluice.device`.
    """
    candidate = Candidate.from_dict(candidate_settings)
    require_tracking_server(tracking_uri)
    device = training_device(require_gpu=require_gpu)

    import mlflow

    from models.wachttijden.model import WachttijdenModel, log_pyfunc_model

    train, validation, test = (read_split(lake, partition, s) for s in ("train", "validation", "test"))
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    run_tags = {"partition": partition, DEVICE_TAG: device, **(tags or {})}
    with mlflow.start_run(run_name=f"{run_name_prefix}{candidate.name}", tags=run_tags) as run:
        mlflow.log_params({**asdict(candidate), "partition": partition, "train_rows": len(train)})
        model, vocabularies, history, epoch_seconds = fit(train, validation, candidate)
        wrapped = WachttijdenModel(model, vocabularies)
        scores = {
            "validation": Metrics.of(wrapped.predict_columns(validation), validation[TARGET].to_numpy()),
            "test": Metrics.of(wrapped.predict_columns(test), test[TARGET].to_numpy()),
        }
        for step, values in enumerate(zip(*history.values(), strict=True)):
            mlflow.log_metrics(dict(zip(history.keys(), map(float, values), strict=True)), step=step)
        mlflow.log_metrics({f"{split}_{k}": v for split, m in scores.items() for k, v in asdict(m).items()})
        mlflow.log_metric("seconds_per_epoch", float(np.mean(epoch_seconds)))
        mlflow.log_figure(training_curves(history, candidate.name), "training_curves.png")
        # The model carries its background sample, so the server can explain its predictions.
        background = background_sample(train, seed=candidate.seed)
        importance = feature_importance(wrapped, validation, background, seed=candidate.seed)
        mlflow.log_dict(importance, "feature_importance.json")
        mlflow.log_figure(importance_figure(importance, candidate.name), "feature_importance.png")
        with tempfile.TemporaryDirectory() as work:
            info = log_pyfunc_model(
                model, vocabularies, train, work_dir=Path(work), background=background,
                open_features=OPEN_FEATURES if candidate.oov_fraction > 0 else (),
            )
    return TrainResult(
        candidate.name, run.info.run_id, info.model_uri, scores["validation"], scores["test"], epoch_seconds
    ).to_dict()


def training_curves(history: dict[str, list[float]], title: str):
    """Loss and MAE per epoch, train vs validation."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "mae"), strict=True):
        ax.plot(history.get(metric, []), label="train")
        ax.plot(history.get(f"val_{metric}", []), label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
    fig.suptitle(f"{title}: training curves")
    fig.tight_layout()
    plt.close(fig)
    return fig


def _epoch_timer():
    """A Keras callback collecting wall seconds per epoch (built here so Keras loads only when training)."""
    import time

    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()
