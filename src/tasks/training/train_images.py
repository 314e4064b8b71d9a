"""Training one xray architecture on a prepared partition's TFRecord shards, and scoring xray models for the gate."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.xray.architectures import ARCHITECTURES
from models.xray.schema import CLASSES, POSITIVE_CLASS
from tasks.data.datalake import DataLake
from tasks.data.prepare_images import download_split, read_manifest
from tasks.evaluation.evaluate import Scoring
from tasks.evaluation.gate import ROC_AUC, ClassifierScore, Decision, GateRules, decide
from tasks.registry import require_tracking_server
from tasks.training.device import DEVICE_TAG, training_device

EXPERIMENT = "xray"
POSITIVE = CLASSES.index(POSITIVE_CLASS)


@dataclass(frozen=True)
class ImageCandidate:
    """One architecture's training settings (xray_train_config: shared keys, `architectures` to choose)."""

    name: str
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 3e-3
    width: int | None = None  # filters of the first layer; None: the architecture's default
    seed: int = 42

    def __post_init__(self) -> None:
        if self.name not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.name!r}; choose from {sorted(ARCHITECTURES)}")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate < 0:
            raise ValueError(f"{self.name}: epochs and batch_size must be 1 or more and learning_rate 0 or more")


def candidates_from_config(config: dict[str, Any]) -> list[dict[str, Any]]:
    """One candidate per architecture (all three unless `architectures` names some), sharing the other keys."""
    config = dict(config or {})
    names = config.pop("architectures", list(ARCHITECTURES))
    return [asdict(ImageCandidate(name=name, **config)) for name in names]


def positive_probability(model, images: np.ndarray) -> np.ndarray:
    return model.predict_batch(images)[:, POSITIVE]


def train_architecture(
    lake: DataLake, partition: str, candidate_settings: dict[str, Any], *, tracking_uri: str,
    tags: dict[str, str] | None = None, require_gpu: bool = False,
) -> dict[str, Any]:
    """Train, score and log one architecture to MLflow; its run, model URI and validation/test scores."""
    candidate = ImageCandidate(**candidate_settings)
    require_tracking_server(tracking_uri)
    device = training_device(require_gpu=require_gpu)

    import keras
    import mlflow

    from models.xray.architectures import build
    from models.xray.model import XrayModel, log_pyfunc_model
    from models.xray.records import dataset, read_arrays

    keras.utils.set_random_seed(candidate.seed)
    with tempfile.TemporaryDirectory(prefix="xray-train-") as scratch:
        shards = {s: download_split(lake, partition, s, Path(scratch) / s) for s in ("train", "validation", "test")}
        counts = {s: n["total"] for s, n in read_manifest(lake, partition)["splits"].items()}
        train_images = counts["train"]
        train = dataset(shards["train"], batch_size=candidate.batch_size, shuffle=True, seed=candidate.seed,
                        records=train_images)
        validation = dataset(shards["validation"], batch_size=candidate.batch_size, records=counts["validation"])
        arrays = {s: read_arrays(shards[s]) for s in ("validation", "test")}

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(EXPERIMENT)
        run_tags = {"partition": partition, DEVICE_TAG: device, **(tags or {})}
        with mlflow.start_run(run_name=candidate.name, tags=run_tags) as run:
            mlflow.log_params({**asdict(candidate), "partition": partition, "train_images": train_images})
            model = build(candidate.name, width=candidate.width, learning_rate=candidate.learning_rate)
            start = time.perf_counter()
            history = model.fit(train, validation_data=validation, epochs=candidate.epochs, verbose=2).history
            seconds = time.perf_counter() - start
            wrapped = XrayModel(model)
            scores = {s: ClassifierScore.of(positive_probability(wrapped, x), y == POSITIVE)
                      for s, (x, y) in arrays.items()}
            for step, values in enumerate(zip(*history.values(), strict=True)):
                mlflow.log_metrics(dict(zip(history.keys(), map(float, values), strict=True)), step=step)
            mlflow.log_metrics({f"{s}_{k}": float(v) for s, score in scores.items()
                                for k, v in asdict(score).items() if k != "confusion"})
            mlflow.log_metric("train_images_per_s", train_images * candidate.epochs / seconds)
            mlflow.log_figure(confusion_figure(scores["test"], candidate.name), "confusion_matrix.png")
            info = log_pyfunc_model(model)
    return {
        "candidate": candidate.name, "run_id": run.info.run_id, "model_uri": info.model_uri,
        "validation": asdict(scores["validation"]), "test": asdict(scores["test"]), "seconds": seconds,
    }


def confusion_figure(score: ClassifierScore, title: str):
    """The test split's confusion matrix (rows: actual class, columns: predicted class)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    matrix = np.asarray(score.confusion)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center")
    ax.set_xticks(range(len(CLASSES)), CLASSES)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"{title}: test AUC {score.auc:.3f}")
    fig.tight_layout()
    plt.close(fig)
    return fig


# The gate's side: the test split as arrays, a registered model's P(positive) through the fast path the
# server uses, and the decision on ROC AUC (no slices: the images carry no attributes to slice by).
def _test_split(lake: DataLake, partition: str) -> tuple[np.ndarray, np.ndarray]:
    from models.xray.records import read_arrays

    with tempfile.TemporaryDirectory(prefix="xray-test-") as scratch:
        return read_arrays(download_split(lake, partition, "test", Path(scratch)))


def _predict(uri: str, test: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    from models.xray.model import load_served_model

    model, _ = load_served_model(uri)
    return positive_probability(model, test[0])


def _score_and_decide(test, challenger: np.ndarray, champion: np.ndarray | None, rules: GateRules) -> Decision:
    positive = test[1] == POSITIVE
    theirs = ClassifierScore.of(champion, positive) if champion is not None else None
    return decide(ClassifierScore.of(challenger, positive), theirs, (), rules)


SCORING = Scoring(_test_split, _predict, _score_and_decide)


def gate_rules(settings: Any) -> GateRules:
    return GateRules(margin=float(settings.xray_promotion_margin), slice_columns=(), objective=ROC_AUC)
