"""KubernetesExecutor task pods on the simulated cluster: the pod template the deployed Airflow chart put into
the cluster, merged with a task's executor_config by Airflow's own PodGenerator.construct_pod (what the
executor calls), created with the scheduler's service-account token (what the executor runs as), then
placed by the real kube-scheduler on kwok's nodes: the system pool, and the GPU pool labelled
sluice.io/node-pool=gpu, tainted nvidia.com/gpu=present:NoSchedule, one nvidia.com/gpu each.
"""

from __future__ import annotations

import configparser
import json
import uuid
from collections.abc import Iterator

import pytest
import yaml

from tests.cluster.conftest import SimCluster
from tests.cluster.fixtures_serving import condition, get_json, token_kubeconfig
from tests.support.processes import REPO_ROOT, wait_until

pytestmark = pytest.mark.slow
NAMESPACE = "airflow"
GPU_POOL = "sluice.io/node-pool=gpu"
OVERRIDES = REPO_ROOT / "variables" / "dev" / "airflow_pod_overrides.json"


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(str(REPO_ROOT / "src" / "pipelines"), bundle_path=REPO_ROOT / "src")
    assert dag_id in bag.dags, bag.import_errors
    return bag.dags[dag_id]


@pytest.fixture(scope="module")
def executor_configs(airflow_db) -> dict[str, dict]:
    """task id -> executor_config of train_model, parsed with the dev environment's pod override file."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLUICE_POD_OVERRIDES_FILE", str(OVERRIDES))
        dag = load_dag("train_model")
    return {task.task_id: task.executor_config for task in dag.tasks}


@pytest.fixture(scope="module")
def chart_config(sim_cluster: SimCluster, deployed_cluster: dict, tmp_path_factory) -> dict:
    """The pod template file and airflow.cfg of the deployed chart, as the scheduler pod mounts them."""
    maps = get_json(sim_cluster, "configmaps", "-n", NAMESPACE)["items"]
    holding = [m for m in maps if "pod_template_file.yaml" in (m.get("data") or {})]
    assert len(holding) == 1, [m["metadata"]["name"] for m in maps]
    data = holding[0]["data"]
    template = tmp_path_factory.mktemp("airflow") / "pod_template_file.yaml"
    template.write_text(data["pod_template_file.yaml"])
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read_string(data["airflow.cfg"])
    return {"template": template, "cfg": cfg["kubernetes_executor"]}


@pytest.fixture(scope="module")
def core_api(sim_cluster: SimCluster, deployed_cluster: dict, tmp_path_factory):
    """A CoreV1Api with the token of the scheduler's service account (the KubernetesExecutor runs there)."""
    from kubernetes import client, config

    path = token_kubeconfig(sim_cluster, "airflow-scheduler", NAMESPACE, tmp_path_factory.mktemp("scheduler"))
    return client.CoreV1Api(config.new_client_from_config(str(path)))


@pytest.fixture(scope="module")
def created(sim_cluster: SimCluster) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    if names:
        sim_cluster.kubectl("delete", "pod", *names, "-n", NAMESPACE, "--wait=false", "--ignore-not-found")


def nodes(cluster: SimCluster, selector: str) -> set[str]:
    return {n["metadata"]["name"] for n in get_json(cluster, "nodes", "-l", selector)["items"]}


def launch(chart_config: dict, core_api, created: list[str], task_id: str, executor_config: dict | None) -> str:
    """What the KubernetesExecutor does for one task instance: construct the pod, create it."""
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    cfg = chart_config["cfg"]
    name = f"train-model-{task_id.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    pod = PodGenerator.construct_pod(
        dag_id="train_model", task_id=task_id, pod_id=name, try_number=1, map_index=0,
        kube_image=f"{cfg['worker_container_repository']}:{cfg['worker_container_tag']}", date=None,
        args=["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string", "{}"],
        pod_override_object=PodGenerator.from_obj(executor_config),
        base_worker_pod=PodGenerator.deserialize_model_file(str(chart_config["template"])),
        namespace=cfg.get("namespace", NAMESPACE), scheduler_job_id="1", run_id="manual__sim",
    )
    core_api.create_namespaced_pod(pod.metadata.namespace, PodGenerator.serialize_pod(pod))
    created.append(name)
    return name


def scheduling(cluster: SimCluster, name: str) -> dict:
    """The pod once the scheduler has decided (PodScheduled True, or False as Unschedulable)."""
    found: dict = {}

    def decided() -> bool:
        pod = get_json(cluster, "pod", name, "-n", NAMESPACE)
        found.update(pod)
        return condition(pod, "PodScheduled") is not None

    wait_until(decided, timeout=120, what=f"a scheduling decision for pod {name}")
    return found


def gpu_override_without(executor_config: dict, field: str) -> dict:
    """The train task's pod_override with one of its scheduling fields removed."""
    import copy

    pod = copy.deepcopy(executor_config["pod_override"])
    setattr(pod.spec, field, None)
    return {"pod_override": pod}


@pytest.fixture(scope="module")
def train_pod(sim_cluster, chart_config, core_api, created, executor_configs) -> dict:
    """One train_candidate pod, as the executor launches it, once the scheduler has placed it."""
    name = launch(chart_config, core_api, created, "train_candidate", executor_configs["train_candidate"])
    return scheduling(sim_cluster, name)


class TestTrainPodOnTheGpuPool:
    def test_should_merge_the_override_into_the_charts_template(self, train_pod, chart_config):
        template = yaml.safe_load(chart_config["template"].read_text())
        base = next(c for c in train_pod["spec"]["containers"] if c["name"] == "base")
        pins = dict(line.split("=", 1) for line in (REPO_ROOT / "deploy" / "versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
        assert base["image"] == f"{pins['AIRFLOW_IMAGE_REPOSITORY']}:{pins['AIRFLOW_GPU_IMAGE_TAG']}"
        assert base["resources"]["limits"]["nvidia.com/gpu"] == "1"
        overrides = json.loads(OVERRIDES.read_text())["train_model"]
        assert base["resources"]["requests"]["memory"] == overrides["memory_request"]
        assert train_pod["spec"]["nodeSelector"] == overrides["node_selector"]
        # The template's own parts survive the merge: its mounts, env and service account.
        template_base = next(c for c in template["spec"]["containers"] if c["name"] == "base")
        assert {m["mountPath"] for m in template_base.get("volumeMounts", [])} <= {
            m["mountPath"] for m in base.get("volumeMounts", [])}
        assert {e["name"] for e in template_base.get("env", [])} <= {e["name"] for e in base.get("env", [])}
        assert train_pod["spec"]["serviceAccountName"] == template["spec"]["serviceAccountName"]

    def test_should_be_placed_on_the_gpu_pool_by_the_scheduler(self, sim_cluster, train_pod):
        assert condition(train_pod, "PodScheduled")["status"] == "True", condition(train_pod, "PodScheduled")
        assert train_pod["spec"]["nodeName"] in nodes(sim_cluster, GPU_POOL)
        name = train_pod["metadata"]["name"]
        wait_until(lambda: get_json(sim_cluster, "pod", name, "-n", NAMESPACE)["status"]["phase"] == "Running",
                   timeout=120, what=f"pod {name} running")

    def test_should_wait_for_the_one_gpu_while_another_training_pod_holds_it(
            self, sim_cluster, chart_config, core_api, created, executor_configs, train_pod):
        gpu_nodes = nodes(sim_cluster, GPU_POOL)
        assert gpu_nodes == {train_pod["spec"]["nodeName"]}  # one GPU node, its one GPU taken by train_pod
        name = launch(chart_config, core_api, created, "train_candidate", executor_configs["train_candidate"])
        scheduled = condition(scheduling(sim_cluster, name), "PodScheduled")
        assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
        assert "Insufficient nvidia.com/gpu" in scheduled["message"]


class TestPodsWithoutTheToleration:
    def test_should_never_place_a_gpu_pool_pod_without_the_toleration(self, sim_cluster, chart_config, core_api,
                                                                       created, executor_configs):
        config = gpu_override_without(executor_configs["train_candidate"], "tolerations")
        name = launch(chart_config, core_api, created, "train_candidate", config)
        scheduled = condition(scheduling(sim_cluster, name), "PodScheduled")
        assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
        # "1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's node affinity/selector": the one
        # node of the pool is refused for its taint, which is the GPU taint (the system pool has none).
        assert "1 node(s) had untolerated taint" in scheduled["message"]
        tainted = {n["metadata"]["name"]: n["spec"].get("taints", []) for n in get_json(sim_cluster, "nodes")["items"]
                   if n["spec"].get("taints")}
        assert set(tainted) == nodes(sim_cluster, GPU_POOL)
        assert all(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for ts in tainted.values() for t in ts)

    def test_should_place_other_tasks_on_the_system_pool(self, sim_cluster, chart_config, core_api, created,
                                                         executor_configs):
        assert not executor_configs["plan_candidates"]  # no override: the template alone
        name = launch(chart_config, core_api, created, "plan_candidates", executor_configs["plan_candidates"])
        pod = scheduling(sim_cluster, name)
        assert condition(pod, "PodScheduled")["status"] == "True", condition(pod, "PodScheduled")
        assert pod["spec"]["nodeName"] not in nodes(sim_cluster, GPU_POOL)
        assert pod["spec"]["nodeName"] in nodes(sim_cluster, "sluice.io/node-pool=system")
        assert not any(t.get("key") == "nvidia.com/gpu" for t in pod["spec"].get("tolerations", []))
