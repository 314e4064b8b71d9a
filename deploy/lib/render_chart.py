"""Render a Helm chart offline with helm-python-sdk, as `helm template` would, for dry-runs and tests."""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
from pathlib import Path
from typing import Any

# What rendering imports, by package name. Imported where used, so that main() can name what is
# missing (without .venv the deploy scripts fall back to python3, which usually lacks them).
REQUIRED = {"yaml": "PyYAML", "helm_python": "helm-python-sdk"}
SETUP_COMMAND = "scripts/setup.sh dev"

# Helm's own install order (pkg/release/util/kind_sorter.go), so a rendered file reads, and
# applies, in the order `helm upgrade --install` would create the objects.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]


# Kinds helm installs without a namespace; every other object gets the release namespace.
CLUSTER_SCOPED = {
    "Namespace", "PriorityClass", "StorageClass", "PersistentVolume", "CustomResourceDefinition",
    "ClusterRole", "ClusterRoleBinding", "IngressClass", "APIService", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}


def missing_packages() -> list[str]:
    """The packages rendering needs that this Python cannot import."""
    return [package for module, package in REQUIRED.items() if importlib.util.find_spec(module) is None]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge like Helm merges -f files: maps recurse, everything else (lists too) is replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_values(values_files: list[str | Path], sets: list[str] | None = None) -> dict[str, Any]:
    """Combine values files in order, then --set expressions, the way the helm CLI does."""
    import helm_python
    import yaml

    values: dict[str, Any] = {}
    for path in values_files:
        values = deep_merge(values, yaml.safe_load(Path(path).read_text()) or {})
    for expression in sets or []:
        values = deep_merge(values, helm_python.parse_set_string(expression))
    return values


def render_sources(
    chart_path: str | Path, values: dict[str, Any], *, name: str, namespace: str
) -> list[tuple[str, dict[str, Any]]]:
    """Schema-check the values, render, and return (template, object) pairs in Helm's install order."""
    import helm_python
    import yaml

    with helm_python.Chart.load(str(chart_path)) as chart:
        chart.validate_schema(values)
        manifests = chart.render(values, name=name, namespace=namespace, is_install=True)
    pairs = []
    for template in sorted(manifests):
        if not template.endswith((".yaml", ".yml", ".json")):
            continue
        for doc in yaml.safe_load_all(manifests[template]):
            if not doc:
                continue
            # What `helm install --namespace` does to objects that name none.
            if doc.get("kind") not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {}).setdefault("namespace", namespace)
            pairs.append((template, doc))
    order = {kind: index for index, kind in enumerate(INSTALL_ORDER)}
    # sorted() is stable, so objects of one kind keep their template order, as in Helm.
    return sorted(pairs, key=lambda pair: order.get(pair[1].get("kind", ""), len(order)))


def render(
    chart_path: str | Path, values: dict[str, Any], *, name: str, namespace: str
) -> list[dict[str, Any]]:
    """The rendered objects alone, for tests."""
    return [obj for _, obj in render_sources(chart_path, values, name=name, namespace=namespace)]


def dump(pairs: list[tuple[str, dict[str, Any]]]) -> str:
    """Multi-document YAML with `# Source:` comments, like `helm template`."""
    import yaml

    return "".join(
        f"---\n# Source: {template}\n" + yaml.safe_dump(obj, sort_keys=False) for template, obj in pairs
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("chart", help="chart directory or .tgz archive")
    parser.add_argument("--name", required=True, help="release name")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="key=value (repeatable)")
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    args = parser.parse_args(argv)

    missing = missing_packages()
    if missing:
        # One line, no traceback: the deploy scripts stop on it and the user reads only this.
        print(f"error: {sys.executable} cannot render Helm charts offline, it lacks {' and '.join(missing)}: "
              f"run `{SETUP_COMMAND}` (it creates .venv, which the deploy scripts use) or set PYTHON to a "
              "Python that has them", file=sys.stderr)
        return 2
    values = load_values(args.values, args.sets)
    text = dump(render_sources(args.chart, values, name=args.name, namespace=args.namespace))
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
