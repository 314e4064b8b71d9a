"""The official Airflow chart rendered with our values: the fields the cluster depends on."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest
import yaml

from pipelines._common import train_executor_config
from tests.deploy.conftest import DEPLOY_DIR, REPO_ROOT, env_of, find, one

ENVS = ["dev", "prod"]
GIT_SYNC_MOUNT = "/opt/airflow/dags/repo/"


def cfg(rendered) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(one(rendered, "ConfigMap", "airflow-config")["data"]["airflow.cfg"])
    return parser


def pod_template(rendered) -> dict:
    return yaml.safe_load(one(rendered, "ConfigMap", "airflow-config")["data"]["pod_template_file.yaml"])


def containers(obj: dict, init: bool = False) -> list[dict]:
    spec = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"]
    return spec.get("initContainers" if init else "containers", [])


class TestValues:
    @pytest.mark.parametrize("env", ENVS)
    def test_values_pass_the_chart_schema(self, airflow_chart, airflow_values, helm_sdk, env):
        with helm_sdk.Chart.load(str(airflow_chart)) as chart:
            chart.validate_schema(airflow_values(env))

    def test_schema_catches_a_misspelt_git_sync_key(self, airflow_chart, airflow_values, helm_sdk):
        values = airflow_values("dev")
        values["dags"]["gitSync"]["subpath"] = values["dags"]["gitSync"].pop("subPath")
        with helm_sdk.Chart.load(str(airflow_chart)) as chart, pytest.raises(helm_sdk.HelmError, match="subpath"):
            chart.validate_schema(values)

    def test_values_hold_no_secret_material(self):
        for path in sorted((DEPLOY_DIR / "airflow").glob("values*.yaml")):
            values = yaml.safe_load(path.read_text())
            for key in ("fernetKey", "apiSecretKey", "jwtSecret", "webserverSecretKey"):
                assert values.get(key) is None, f"{path.name} sets {key}"
            assert "password" not in json.dumps(values.get("data", {})), path.name


class TestExecutorAndImage:
    @pytest.mark.parametrize("env", ENVS)
    def test_new_dags_start_unpaused_so_the_lifecycle_runs_by_itself(self, airflow_rendered, env):
        assert cfg(airflow_rendered(env))["core"]["dags_are_paused_at_creation"] == "False"

    @pytest.mark.parametrize("env", ENVS)
    def test_kubernetes_executor(self, airflow_rendered, env):
        assert cfg(airflow_rendered(env))["core"]["executor"] == "KubernetesExecutor"
        assert not find(airflow_rendered(env), "StatefulSet", "airflow-worker"), "no Celery workers"

    def test_worker_image_is_the_pinned_project_image(self, airflow_rendered, versions):
        image = f"{versions['AIRFLOW_IMAGE_REPOSITORY']}:{versions['AIRFLOW_IMAGE_TAG']}"
        assert pod_template(airflow_rendered("dev"))["spec"]["containers"][0]["image"] == image
        scheduler = one(airflow_rendered("dev"), "Deployment", "airflow-scheduler")
        assert containers(scheduler)[0]["image"] == image


class TestGitSync:
    @pytest.mark.parametrize("env", ENVS)
    def test_dags_folder_is_the_synced_src_folder(self, airflow_rendered, env):
        assert cfg(airflow_rendered(env))["core"]["dags_folder"] == GIT_SYNC_MOUNT + "src"

    @pytest.mark.parametrize("env", ENVS)
    def test_git_sync_repo_subpath_period_and_credentials(self, airflow_rendered, env):
        values = yaml.safe_load((DEPLOY_DIR / "airflow" / "values.yaml").read_text())["dags"]["gitSync"]
        git_sync = [c for c in containers(one(airflow_rendered(env), "Deployment", "airflow-dag-processor"))
                    if c["name"] == "git-sync"]
        assert len(git_sync) == 1, "the DAG processor needs a git-sync sidecar"
        env_vars = env_of(git_sync[0])
        assert env_vars["GITSYNC_REPO"]["value"] == values["repo"]
        assert env_vars["GITSYNC_PERIOD"]["value"] == values["period"] == "60s"
        assert values["subPath"] == "src"
        for key in ("GITSYNC_USERNAME", "GITSYNC_PASSWORD"):
            assert env_vars[key]["valueFrom"]["secretKeyRef"] == {"name": "sluice-git-credentials", "key": key}

    def test_task_pods_clone_the_same_checkout(self, airflow_rendered):
        template = pod_template(airflow_rendered("dev"))
        assert [c["name"] for c in template["spec"]["initContainers"]] == ["git-sync-init"]
        assert env_of(template["spec"]["containers"][0])["PYTHONPATH"]["value"] == GIT_SYNC_MOUNT + "src"

    def test_airflowignore_keeps_non_dag_code_out_of_parsing(self):
        ignored = (REPO_ROOT / "src" / ".airflowignore").read_text()
        for folder in ("tasks", "serving", "tests"):
            assert folder in ignored


class TestConnectionsAndVariables:
    @pytest.mark.parametrize("env", ENVS)
    def test_task_pods_get_mlflow_url_datalake_and_namespace(self, airflow_rendered, env):
        pod_env = env_of(pod_template(airflow_rendered(env))["spec"]["containers"][0])
        assert pod_env["AIRFLOW_VAR_MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.mlflow.svc.cluster.local:5000"
        assert pod_env["AIRFLOW_VAR_DATALAKE_URL"]["value"] == "wasb://wasb_datalake"
        assert pod_env["AIRFLOW_VAR_KSERVE_NAMESPACE"]["value"] == "models"
        assert pod_env["AIRFLOW_CONN_WASB_DATALAKE"]["valueFrom"]["secretKeyRef"] == {
            "name": "sluice-airflow-connections", "key": "AIRFLOW_CONN_WASB_DATALAKE"}

    @pytest.mark.parametrize("env", ENVS)
    def test_elasticsearch_host_and_keys_come_from_our_secrets(self, airflow_rendered, env):
        rendered = airflow_rendered(env)
        scheduler_env = env_of(containers(one(rendered, "Deployment", "airflow-scheduler"))[0])
        assert scheduler_env["AIRFLOW__ELASTICSEARCH__HOST"]["valueFrom"]["secretKeyRef"] == {
            "name": "sluice-airflow-elasticsearch", "key": "connection"}
        assert scheduler_env["AIRFLOW__CORE__FERNET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == (
            "sluice-airflow-fernet-key")
        generated = {s["metadata"]["name"] for s in find(rendered, "Secret")}
        for name in ("airflow-fernet-key", "airflow-jwt-secret", "airflow-api-secret-key",
                     "airflow-metadata", "airflow-elasticsearch"):
            assert name not in generated, f"chart generated {name}; it must come from deploy-airflow.sh"

    def test_admin_password_comes_from_a_secret(self, airflow_rendered):
        job = one(airflow_rendered("dev"), "Job", "airflow-create-user")
        container = containers(job)[0]
        assert "admin" not in " ".join(container["args"]).split("-p")[-1].replace("$AIRFLOW_ADMIN_PASSWORD", "")
        assert env_of(container)["AIRFLOW_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
            "sluice-airflow-admin")


class TestLogging:
    @pytest.mark.parametrize("env", ENVS)
    def test_remote_logging_to_elasticsearch(self, airflow_rendered, env):
        parsed = cfg(airflow_rendered(env))
        assert parsed["logging"]["remote_logging"] == "True"
        es = parsed["elasticsearch"]
        assert es["log_id_template"] == "{dag_id}-{task_id}-{run_id}-{map_index}-{try_number}"
        assert es["offset_field"] == "offset"
        assert es["host_field"] == "kubernetes.pod.name"
        assert es["index_patterns"] == "airflow-logs-*"
        assert parsed["elasticsearch_configs"]["verify_certs"] == "True"

    def test_ca_mounted_where_the_client_looks(self, airflow_rendered):
        rendered = airflow_rendered("dev")
        ca_dir = str(Path(cfg(rendered)["elasticsearch_configs"]["ca_certs"]).parent)
        for obj in [one(rendered, "Deployment", "airflow-api-server"), pod_template(rendered)]:
            mounts = {m["mountPath"]: m["name"] for m in containers(obj)[0]["volumeMounts"]}
            assert mounts.get(ca_dir) == "es-ca"

    def test_kibana_link_renders_for_a_log_id(self, airflow_rendered):
        frontend = cfg(airflow_rendered("dev"))["elasticsearch"]["frontend"]
        assert "sluice-airflow-task-logs" in frontend
        assert frontend.format(log_id="d-t-r--1-1").endswith("log_id:\"d-t-r--1-1\"'))")


class TestGpuPodOverride:
    @pytest.mark.parametrize("env", ENVS)
    def test_override_file_is_in_the_synced_checkout(self, airflow_rendered, env):
        pod_env = env_of(pod_template(airflow_rendered(env))["spec"]["containers"][0])
        path = pod_env["SLUICE_POD_OVERRIDES_FILE"]["value"]
        assert path.startswith(GIT_SYNC_MOUNT)
        assert path == f"{GIT_SYNC_MOUNT}variables/{env}/airflow_pod_overrides.json"
        assert pod_env["SLUICE_ENV"]["value"] == env
        repo_file = REPO_ROOT / path.removeprefix(GIT_SYNC_MOUNT)
        train = json.loads(repo_file.read_text())["train_model"]
        assert train["gpu_limit"] >= 1
        assert train["node_selector"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in train["tolerations"]

    @pytest.mark.parametrize("env", ENVS)
    def test_train_task_pod_runs_the_gpu_image_on_the_gpu_pool(self, airflow_rendered, versions, monkeypatch, env):
        """The train task's executor_config merged into the chart's pod template the way the
        KubernetesExecutor builds a task pod: the GPU image, the pool, the GPU, and a valid Pod."""
        kubernetes_validate = pytest.importorskip("kubernetes_validate")
        path = REPO_ROOT / "variables" / env / "airflow_pod_overrides.json"
        monkeypatch.setenv("SLUICE_POD_OVERRIDES_FILE", str(path))
        train = json.loads(path.read_text())["train_model"]
        cpu_image = f"{versions['AIRFLOW_IMAGE_REPOSITORY']}:{versions['AIRFLOW_IMAGE_TAG']}"
        gpu_image = f"{versions['AIRFLOW_IMAGE_REPOSITORY']}:{versions['AIRFLOW_GPU_IMAGE_TAG']}"
        assert gpu_image != cpu_image

        pod = task_pod(pod_template(airflow_rendered(env)), train_executor_config(), cpu_image)

        base = pod["spec"]["containers"][0]
        assert base["name"] == "base" and base["image"] == gpu_image
        assert base["resources"]["limits"]["nvidia.com/gpu"] == str(train["gpu_limit"])
        assert base["resources"]["requests"] == {"cpu": train["cpu_request"], "memory": train["memory_request"]}
        assert pod["spec"]["nodeSelector"] == train["node_selector"]
        assert train["tolerations"][0] in pod["spec"]["tolerations"]
        kubernetes_validate.validate(pod, versions["KUBERNETES_SCHEMA_VERSION"], strict=True)

    def test_an_override_without_image_keeps_the_worker_image(self, airflow_rendered, versions, monkeypatch, tmp_path):
        train = json.loads((REPO_ROOT / "variables" / "dev" / "airflow_pod_overrides.json").read_text())["train_model"]
        del train["image"]
        (tmp_path / "overrides.json").write_text(json.dumps({"train_model": train}))
        monkeypatch.setenv("SLUICE_POD_OVERRIDES_FILE", str(tmp_path / "overrides.json"))
        cpu_image = f"{versions['AIRFLOW_IMAGE_REPOSITORY']}:{versions['AIRFLOW_IMAGE_TAG']}"

        pod = task_pod(pod_template(airflow_rendered("dev")), train_executor_config(), cpu_image)

        assert pod["spec"]["containers"][0]["image"] == cpu_image
        assert pod["spec"]["nodeSelector"] == train["node_selector"]

    def test_an_image_naming_an_unknown_pin_fails_at_parse_time(self, monkeypatch, tmp_path):
        (tmp_path / "overrides.json").write_text(json.dumps({"train_model": {"image": "repo:${NO_SUCH_TAG}"}}))
        monkeypatch.setenv("SLUICE_POD_OVERRIDES_FILE", str(tmp_path / "overrides.json"))
        with pytest.raises(ValueError, match="pins no NO_SUCH_TAG"):
            train_executor_config()


def task_pod(template: dict, executor_config: dict, worker_image: str) -> dict:
    """The pod the KubernetesExecutor creates for a task: the provider's own construction from the
    pod template, the executor's worker image and the task's pod_override."""
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
    from kubernetes.client import ApiClient

    pod = PodGenerator.construct_pod(
        dag_id="train_model", task_id="train_candidate", pod_id="train-model-train-candidate", try_number=1,
        kube_image=worker_image, date=None, args=["airflow", "tasks", "run"],
        pod_override_object=executor_config.get("pod_override"),
        base_worker_pod=PodGenerator.deserialize_model_dict(template),
        namespace="airflow", scheduler_job_id="1",
    )
    return ApiClient().sanitize_for_serialization(pod)


class TestRbac:
    @pytest.mark.parametrize("env", ENVS)
    def test_no_cluster_wide_rights(self, airflow_rendered, overlay_rendered, env):
        for objects in (airflow_rendered(env), overlay_rendered(env, "airflow")):
            assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")

    @pytest.mark.parametrize("env", ENVS)
    def test_workers_manage_kserve_objects_in_models_only(self, airflow_rendered, overlay_rendered, env):
        overlay = overlay_rendered(env, "airflow")
        role = one(overlay, "Role", "airflow-kserve-manager")
        binding = one(overlay, "RoleBinding", "airflow-kserve-manager")
        assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "models"
        kserve_rules = [r for r in role["rules"] if r["apiGroups"] == ["serving.kserve.io"]]
        assert {"inferenceservices", "inferencegraphs"} <= {res for r in kserve_rules for res in r["resources"]}
        assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in role["rules"])

        worker_sa = pod_template(airflow_rendered(env))["spec"]["serviceAccountName"]
        assert one(airflow_rendered(env), "ServiceAccount", worker_sa)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": worker_sa, "namespace": "airflow"}]
