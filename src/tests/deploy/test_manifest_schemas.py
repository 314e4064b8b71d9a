"""Every object we render passes strict Kubernetes schemas, or the strict CRD schema of its kind."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import COMPONENTS, ENVIRONMENTS, crd_schema, one

SOURCES = [("overlay", env, c) for env in ENVIRONMENTS for c in COMPONENTS] + [
    (chart, env, None) for chart in ("airflow", "mlflow") for env in ENVIRONMENTS
]


def schema_errors(objects, shared, kubernetes_version: str) -> list[str]:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    errors = []
    for obj in objects:
        label = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        schema = crd_schema(shared, obj["apiVersion"], obj["kind"]) if "." in obj["apiVersion"].split("/")[0] else None
        if schema is not None:
            validator = jsonschema.validators.validator_for(schema)(schema)
            errors += [f"{label}: {e.json_path}: {e.message}" for e in validator.iter_errors(obj)]
            continue
        try:
            kubernetes_validate.validate(obj, kubernetes_version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{label}: no Kubernetes or CRD schema for {obj['apiVersion']} {obj['kind']}")
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{label}: {error.message} at {list(error.path)}")
    return errors


@pytest.fixture(scope="module")
def rendered(overlay_rendered, airflow_rendered, mlflow_rendered):
    def get(source, env, component):
        if source == "overlay":
            return overlay_rendered(env, component)
        if source == "airflow":
            objects = list(airflow_rendered(env))
            # The task pod template lives inside a ConfigMap; validate it as the Pod it becomes.
            config = one(objects, "ConfigMap", "airflow-config")["data"]
            return objects + [yaml.safe_load(config["pod_template_file.yaml"])]
        return mlflow_rendered(env)

    return get


@pytest.mark.parametrize(("source", "env", "component"), SOURCES)
def test_rendered_objects_pass_strict_schemas(rendered, shared, versions, source, env, component):
    objects = rendered(source, env, component)
    assert objects, "nothing rendered"
    errors = schema_errors(objects, shared, versions["KUBERNETES_SCHEMA_VERSION"])
    assert not errors, "\n".join(errors)


def test_strict_validation_catches_a_misplaced_field(shared, versions, overlay_rendered):
    """The validators are strict: an unknown field in a core kind or a custom kind is an error."""
    objects = [dict(o) for o in overlay_rendered("dev", "elasticsearch")
               if o["kind"] in ("Elasticsearch", "ServiceAccount")]
    for obj in objects:
        obj["spec" if obj["kind"] == "Elasticsearch" else "metadata"] = {
            **obj.get("spec" if obj["kind"] == "Elasticsearch" else "metadata", {}), "nodeSet": []}
    errors = schema_errors(objects, shared, versions["KUBERNETES_SCHEMA_VERSION"])
    assert len(errors) == 2, errors
