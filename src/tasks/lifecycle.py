"""What the shared training DAG needs to know of a use case: where its prepared partitions are, how its
candidates are planned and trained, which registered model they go to, how the best is chosen, and how the
evaluation gate scores and decides.

The tasks themselves (choose the partition, lineage, plan, train, register the best, evaluate, promote) are
one DAG for every use case (pipelines/_lifecycle.py); train_model and train_images name a use case here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.evaluation.evaluate import Scoring
    from tasks.evaluation.gate import GateRules

TABULAR = "wachttijden"
IMAGE = "xray"


@dataclass(frozen=True)
class UseCase:
    """One use case as the lifecycle tasks see it."""

    name: str
    dataset: str  # preprocessed/<dataset>/run=... and the ledger's folder
    prepare_dag: str  # the DAG that writes its partitions (named in "run it first" messages)
    train_config_setting: str  # the Settings field with its train config (the Variable)
    candidates: Callable[[dict], list[dict]]  # train config -> candidate settings (ValueError/TypeError: bad config)
    train: Callable[..., dict]  # (lake, partition, candidate, *, tracking_uri, tags, require_gpu) -> result
    model_setting: str  # the Settings field naming its registered model
    metric: str  # the validation metric the best candidate is chosen by
    higher_is_better: bool
    description: str  # of the registered model, when it is created
    gate_rules: Callable[[Any], GateRules]  # settings -> the gate's thresholds (ValueError when out of range)
    scoring: Callable[[], Scoring]  # how the gate scores a registered model on a partition's test split

    def model_name(self, settings: Any) -> str:
        return str(getattr(settings, self.model_setting))

    def train_config(self, settings: Any) -> dict:
        return dict(getattr(settings, self.train_config_setting) or {})


def _tabular_candidates(config: dict) -> list[dict]:
    from tasks.training.train import candidates_from_config

    return candidates_from_config(config)


def _tabular_train(*args: Any, **kwargs: Any) -> dict:
    from tasks.training.train import train_candidate

    return train_candidate(*args, **kwargs)


def _image_candidates(config: dict) -> list[dict]:
    from tasks.training.train_images import candidates_from_config

    return candidates_from_config(config)


def _image_train(*args: Any, **kwargs: Any) -> dict:
    from tasks.training.train_images import train_architecture

    return train_architecture(*args, **kwargs)


def _tabular_rules(settings: Any) -> GateRules:
    from tasks.evaluation.gate import GateRules

    return GateRules.of(settings)


def _tabular_scoring() -> Scoring:
    from tasks.evaluation.evaluate import TABULAR as scoring

    return scoring


def _image_rules(settings: Any) -> GateRules:
    from tasks.training.train_images import gate_rules

    return gate_rules(settings)


def _image_scoring() -> Scoring:
    from tasks.training.train_images import SCORING

    return SCORING


USE_CASES: dict[str, UseCase] = {
    TABULAR: UseCase(
        TABULAR, "wachttijden", "prepare_dataset", "train_config", _tabular_candidates, _tabular_train, "model_name",
        "mae", False,
        "Waiting time (weeks) per care type and region.", _tabular_rules, _tabular_scoring,
    ),
    IMAGE: UseCase(
        IMAGE, "xray", "prepare_images", "xray_train_config", _image_candidates, _image_train, "xray_model_name",
        "auc", True,
        "Chest X-ray-like scans: normal vs pneumonia-like (synthetic unless real data is given).",
        _image_rules, _image_scoring,
    ),
}


def use_case(name: str) -> UseCase:
    try:
        return USE_CASES[name]
    except KeyError:
        raise ValueError(f"use_case must be one of {sorted(USE_CASES)}, not {name!r}") from None
