"""Sluice's MLflow chart (charts/mlflow): lint, schema, and the fields the platform relies on."""

from __future__ import annotations

import pytest

from tests.deploy.conftest import REPO_ROOT, env_of, one

CHART = REPO_ROOT / "charts" / "mlflow"
ENVS = ["dev", "prod"]


def server(rendered) -> dict:
    return one(rendered, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]


class TestLintAndSchema:
    def test_helm_lint_strict_is_clean(self, helm_sdk):
        report = helm_sdk.lint(str(CHART), strict=True, kube_version="v1.33.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert report["total_charts_linted"] == 1
        assert not problems, problems
        assert not report["messages"], report["messages"]

    def test_chart_ships_a_values_schema(self, helm_sdk):
        with helm_sdk.Chart.load(str(CHART)) as chart:
            assert chart.schema is not None
            assert chart.version == chart.metadata["version"]

    @pytest.mark.parametrize("destination", ["/local/folder", "gs://bucket/x", "wasbs://missing-account"])
    def test_schema_rejects_unsupported_artifact_stores(self, helm_sdk, destination):
        with helm_sdk.Chart.load(str(CHART)) as chart, pytest.raises(helm_sdk.HelmError):
            chart.validate_schema({"artifacts": {"destination": destination, "existingSecret": "x"}})

    def test_schema_rejects_latest_tags(self, helm_sdk):
        with helm_sdk.Chart.load(str(CHART)) as chart, pytest.raises(helm_sdk.HelmError):
            chart.validate_schema({"image": {"repository": "ghcr.io/mlflow/mlflow", "tag": "latest"}})


class TestServer:
    @pytest.mark.parametrize("env", ENVS)
    def test_proxied_artifacts_on_blob_or_s3(self, mlflow_rendered, env):
        container = server(mlflow_rendered(env))
        assert "--serve-artifacts" in container["command"]
        destination = env_of(container)["MLFLOW_ARTIFACTS_DESTINATION"]["value"]
        assert destination.startswith(("wasbs://", "s3://"))
        assert container["envFrom"] == [{"secretRef": {"name": "sluice-mlflow-artifacts"}}]

    @pytest.mark.parametrize("env", ENVS)
    def test_backend_is_postgresql_with_password_from_a_secret(self, mlflow_rendered, env):
        env_vars = env_of(server(mlflow_rendered(env)))
        uri = env_vars["MLFLOW_BACKEND_STORE_URI"]["value"]
        assert uri.startswith("postgresql+psycopg2://mlflow:$(MLFLOW_DB_PASSWORD)@mlflow-postgresql:5432/")
        assert env_vars["MLFLOW_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "sluice-mlflow-db",
                                                                              "key": "password"}

    @pytest.mark.parametrize("env", ENVS)
    def test_probes_resources_and_security_context(self, mlflow_rendered, env):
        container = server(mlflow_rendered(env))
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/health"
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
        security = container["securityContext"]
        assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
        assert security["capabilities"]["drop"] == ["ALL"]

    def test_service_name_matches_the_airflow_tracking_uri(self, mlflow_rendered):
        service = one(mlflow_rendered("dev"), "Service", "mlflow")
        assert service["spec"]["ports"][0]["port"] == 5000

    def test_image_is_the_pinned_one(self, mlflow_rendered, versions):
        assert server(mlflow_rendered("dev"))["image"] == (
            f"{versions['MLFLOW_IMAGE_REPOSITORY']}:{versions['MLFLOW_IMAGE_TAG']}")


class TestDatabase:
    @pytest.mark.parametrize("env", ENVS)
    def test_persistent_postgresql(self, mlflow_rendered, env, versions):
        statefulset = one(mlflow_rendered(env), "StatefulSet", "mlflow-postgresql")
        claims = statefulset["spec"]["volumeClaimTemplates"]
        assert claims[0]["spec"]["resources"]["requests"]["storage"] == {"dev": "5Gi", "prod": "50Gi"}[env]
        container = statefulset["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"{versions['POSTGRES_IMAGE_REPOSITORY']}:{versions['POSTGRES_IMAGE_TAG']}"
        assert env_of(container)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "sluice-mlflow-db"
        assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/var/lib/postgresql/data"}

    def test_only_mlflow_reaches_the_database(self, mlflow_rendered):
        policy = one(mlflow_rendered("dev"), "NetworkPolicy", "mlflow-postgresql")
        (rule,) = policy["spec"]["ingress"]
        assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "mlflow"

    def test_external_database_replaces_the_statefulset(self, render_chart_module):
        values = {"postgresql": {"enabled": False},
                  "externalDatabase": {"host": "db.example.org", "port": 5432, "database": "mlflow",
                                       "username": "mlflow"}}
        objects = render_chart_module.render(CHART, values, name="mlflow", namespace="mlflow")
        assert not [o for o in objects if o["kind"] == "StatefulSet"]
        uri = env_of(server(objects))["MLFLOW_BACKEND_STORE_URI"]["value"]
        assert "@db.example.org:5432/mlflow" in uri
