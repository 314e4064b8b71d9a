"""Moving `champion` against a real MLflow server: previous-champion, stale decisions, rollback, retries."""

from __future__ import annotations

import uuid

import pytest

from tasks.evaluation.promotion import NothingToPromote, choose_version, promote
from tasks.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    StaleChampion,
    alias_version,
    move_champion,
    register_best,
)
from tests.support.processes import free_port


@pytest.fixture
def registry(mlflow_server, mlflow_client_env):
    """A registered model of its own with three versions (no aliases); yields (client, name)."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    name = f"promotion-{uuid.uuid4().hex[:8]}"
    experiment = client.create_experiment(name)
    client.create_registered_model(name)
    for _ in range(3):
        run = client.create_run(experiment)
        client.log_text(run.info.run_id, "not a model", "model/README")
        client.set_terminated(run.info.run_id)
        client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
    return client, name


def aliases(client, name) -> dict[str, str]:
    return {alias: alias_version(client, name, alias) for alias in (CHAMPION, PREVIOUS_CHAMPION)}


def test_a_missing_model_or_alias_is_none(registry):
    client, name = registry
    assert alias_version(client, "no-such-model-" + uuid.uuid4().hex, CHAMPION) is None
    assert alias_version(client, name, CHAMPION) is None


def test_a_failed_request_is_never_taken_for_no_champion(mlflow_client_env, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException):
        alias_version(MlflowClient(f"http://127.0.0.1:{free_port()}"), "wachttijden", CHAMPION)


def test_the_replaced_champion_keeps_previous_champion(registry):
    client, name = registry
    assert move_champion(client, name, "1", expected_champion=None) == {
        "champion": "1", "previous_champion": None, "moved": True}
    assert move_champion(client, name, "2", expected_champion="1")["moved"]
    assert aliases(client, name) == {CHAMPION: "2", PREVIOUS_CHAMPION: "1"}
    # Done already (a retried task): nothing changes.
    assert move_champion(client, name, "2", expected_champion="1") == {
        "champion": "2", "previous_champion": "1", "moved": False}
    assert aliases(client, name) == {CHAMPION: "2", PREVIOUS_CHAMPION: "1"}


def test_a_decision_against_a_champion_that_has_moved_is_refused(registry):
    client, name = registry
    move_champion(client, name, "1")
    move_champion(client, name, "2")
    with pytest.raises(StaleChampion, match="version 2, not 1"):
        move_champion(client, name, "3", expected_champion="1")
    with pytest.raises(StaleChampion):
        move_champion(client, name, "3", expected_champion=None)
    assert aliases(client, name) == {CHAMPION: "2", PREVIOUS_CHAMPION: "1"}


def test_a_version_that_does_not_exist_moves_nothing(registry):
    from mlflow.exceptions import MlflowException

    client, name = registry
    move_champion(client, name, "1")
    with pytest.raises(MlflowException):
        move_champion(client, name, "9")
    assert aliases(client, name) == {CHAMPION: "1", PREVIOUS_CHAMPION: None}


def test_rollback_restores_the_previous_champion_and_a_second_one_undoes_it(registry, mlflow_server):
    client, name = registry
    uri = mlflow_server
    with pytest.raises(NothingToPromote, match="no previous-champion"):
        choose_version(tracking_uri=uri, model_name=name, rollback=True)
    move_champion(client, name, "1")
    move_champion(client, name, "3")
    choice = choose_version(tracking_uri=uri, model_name=name, rollback=True)
    assert (choice["version"], choice["champion_version"]) == ("1", "3")
    event = promote(tracking_uri=uri, model_name=name, version=choice["version"],
                    expected_champion=choice["champion_version"], reason=choice["reason"], promoted_by="test/1")
    assert event == {"model_name": name, "version": "1", "previous_version": "3", "moved": True,
                     "reason": "rollback from version 3 to the previous-champion"}
    assert aliases(client, name) == {CHAMPION: "1", PREVIOUS_CHAMPION: "3"}
    assert client.get_model_version(name, "1").tags["sluice.promotion.by"] == "test/1"
    # The same move again (a retry of the task) does not roll back a second time.
    again = promote(tracking_uri=uri, model_name=name, version="1", expected_champion="3", reason="r",
                    promoted_by="test/1")
    assert not again["moved"] and aliases(client, name) == {CHAMPION: "1", PREVIOUS_CHAMPION: "3"}
    undo = choose_version(tracking_uri=uri, model_name=name, rollback=True)
    assert undo["version"] == "3"


@pytest.mark.parametrize(("version", "rollback", "message"), [
    (None, False, "either a version number or rollback"), ("2", True, "either a version number or rollback"),
    ("99", False, "has no version 99"),
])
def test_a_manual_promotion_names_exactly_one_existing_version(registry, mlflow_server, version, rollback, message):
    _, name = registry
    with pytest.raises(NothingToPromote, match=message):
        choose_version(tracking_uri=mlflow_server, model_name=name, version=version, rollback=rollback)


def test_registering_the_best_sets_challenger_and_never_champion(registry, mlflow_server):
    client, name = registry
    run_id = client.get_model_version(name, "2").run_id
    best = {"candidate": "c", "run_id": run_id, "model_uri": f"runs:/{run_id}/model", "validation": {"mae": 1.0}}
    registered = register_best([best], tracking_uri=mlflow_server, model_name=name,
                               tags={"sluice.data.partition": "run=x"})
    assert registered["version"] == "2" and registered["aliases"] == [CHALLENGER]
    assert alias_version(client, name, CHALLENGER) == "2"
    assert alias_version(client, name, CHAMPION) is None  # not even the first model: only a promotion moves it
    assert client.get_model_version(name, "2").tags["sluice.data.partition"] == "run=x"
