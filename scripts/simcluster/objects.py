"""The cluster objects a fresh simulated cluster gets: kwok nodes (a system pool and a GPU pool shaped like
the README's real GPU pool) and a default StorageClass whose claims kwok binds."""

from __future__ import annotations

SYSTEM_NODES = ("sim-system-0", "sim-system-1")
GPU_NODES = ("sim-gpu-0",)
GPU_POOL_LABEL = {"sluice.io/node-pool": "gpu"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
NODE_CAPACITY = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "200Gi"}
GPU_CAPACITY = {**NODE_CAPACITY, "nvidia.com/gpu": "1"}


def _node(name: str, labels: dict[str, str], taints: list[dict[str, str]]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            # kwok's convention for nodes it fakes; --manage-all-nodes takes them regardless.
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                       "type": "kwok", **labels},
        },
        "spec": {"taints": taints},
    }


def nodes() -> list[dict]:
    system = [_node(n, {"sluice.io/node-pool": "system"}, []) for n in SYSTEM_NODES]
    gpu = [_node(n, dict(GPU_POOL_LABEL), [dict(GPU_TAINT)]) for n in GPU_NODES]
    return system + gpu


def node_capacity(name: str) -> dict[str, str]:
    """What a node reports as capacity and allocatable (status, so patched after the node exists)."""
    return GPU_CAPACITY if name in GPU_NODES else NODE_CAPACITY


def storage_class() -> dict:
    # kwok's pvc-provision stage binds only claims of class "kwok-volume", so the default class has that
    # name: a chart's claim without a class gets it from the DefaultStorageClass admission plugin.
    name = "kwok-volume"
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kwok.x-k8s.io/volume",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def marker() -> dict:
    """Tells deploy-*.sh they talk to the simulated cluster (they then drop webhook registrations and
    skip the steps that need a running container; see deploy/lib/common.sh `is_simulated`)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "sluice-simulated-cluster", "namespace": "kube-public"},
        "data": {"simulator": "kwok", "network": "only 127.0.0.0/8 is dialled; pod and service IPs are labels"},
    }


# A Service of type LoadBalancer gets 127.0.0.1 as its ingress address, as a cloud controller would give
# it an address: Helm's --wait (and users' scripts) wait for one. Nothing listens there; it is a label.
LOAD_BALANCER_STAGE = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: service-load-balancer
spec:
  resourceRef:
    apiGroup: v1
    kind: Service
  selector:
    matchExpressions:
    - key: '.spec.type'
      operator: 'In'
      values: ['LoadBalancer']
    - key: '.status.loadBalancer.ingress'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      loadBalancer:
        ingress:
        - ip: 127.0.0.1
          ipMode: VIP
"""
