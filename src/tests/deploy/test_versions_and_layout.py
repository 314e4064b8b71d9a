"""One pin file, diff-only environment layers, and a worker image built from the pinned base."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tasks.deploy.versions import VERSIONS_FILE, read_versions
from tests.deploy.conftest import COMPONENTS, DEPLOY_DIR, ENVIRONMENTS, PLACEHOLDER, REPO_ROOT

VERSION_KEYS = [k for k in read_versions() if k.endswith(("_VERSION", "_TAG", "_IMAGE"))]


class TestPins:
    def test_python_and_the_scripts_read_the_same_pin_file(self):
        assert VERSIONS_FILE == DEPLOY_DIR / "versions.env"
        assert 'source "$DEPLOY_DIR/versions.env"' in (DEPLOY_DIR / "lib" / "common.sh").read_text()

    def test_every_pin_has_a_concrete_value(self, versions):
        for key in VERSION_KEYS:
            assert versions[key] and versions[key] != "latest" and "*" not in versions[key], key

    def test_kserve_and_airflow_versions_are_the_ones_the_project_targets(self, versions):
        assert versions["KSERVE_VERSION"].startswith("v0.21.")
        assert versions["AIRFLOW_CHART_VERSION"] == "1.19.0"
        assert versions["ECK_OPERATOR_VERSION"].startswith("3.5.")
        assert versions["ELASTIC_STACK_VERSION"].split(".")[0] in {"8", "9"}
        assert versions["MLFLOW_IMAGE_TAG"].startswith("v3.17.2")

    def test_scripts_and_values_repeat_no_version(self, versions):
        """Versions live in deploy/versions.env only; the files that use them must not copy them."""
        pins = {versions[k] for k in VERSION_KEYS if len(versions[k]) >= 5}
        # deploy/model/ and its scripts belong to the serving layer, which pins its own image.
        ours = [p for p in DEPLOY_DIR.rglob("*") if p.suffix in {".yaml", ".sh", ".json"}
                and "model" not in p.relative_to(DEPLOY_DIR).parts]
        checked = [*(REPO_ROOT / f"deploy-{c}.sh" for c in [*COMPONENTS, "cluster"]), REPO_ROOT / "Dockerfile", *ours]
        for path in checked:
            text = path.read_text()
            for pin in pins:
                assert pin not in text, f"{path.relative_to(REPO_ROOT)} repeats {pin} from versions.env"

    def test_placeholders_are_versions_or_filebeat_runtime_variables(self, overlay_rendered):
        runtime = {"NODE_NAME", "FILEBEAT_ES_PASSWORD"}
        for env in ENVIRONMENTS:
            for component in COMPONENTS:
                text = yaml.safe_dump_all(overlay_rendered(env, component))
                assert set(PLACEHOLDER.findall(text)) <= runtime, (env, component)

    def test_stack_version_reaches_every_elastic_resource(self, overlay_rendered, versions):
        for obj in overlay_rendered("dev", "elasticsearch"):
            if obj["apiVersion"].split("/")[0].endswith("k8s.elastic.co"):
                assert obj["spec"]["version"] == versions["ELASTIC_STACK_VERSION"], obj["kind"]

    def test_mlflow_chart_defaults_match_the_pins(self, versions):
        chart = yaml.safe_load((REPO_ROOT / "charts" / "mlflow" / "Chart.yaml").read_text())
        values = yaml.safe_load((REPO_ROOT / "charts" / "mlflow" / "values.yaml").read_text())
        assert chart["version"] == versions["MLFLOW_CHART_VERSION"]
        assert values["image"]["tag"] == versions["MLFLOW_IMAGE_TAG"]
        assert values["postgresql"]["image"]["tag"] == versions["POSTGRES_IMAGE_TAG"]
        assert versions["MLFLOW_IMAGE_TAG"].lstrip("v").startswith(chart["appVersion"])


OVERLAYS = sorted(p.parent.relative_to(DEPLOY_DIR / "overlays") for p in DEPLOY_DIR.glob("overlays/*/*/*.yaml"))


class TestDiffOnlyLayers:
    @pytest.mark.parametrize("overlay", OVERLAYS, ids=str)
    def test_an_overlay_patches_its_base_and_nothing_else(self, overlay):
        env, component = overlay.parts
        assert env in ENVIRONMENTS and component in COMPONENTS
        kustomization = yaml.safe_load((DEPLOY_DIR / "overlays" / overlay / "kustomization.yaml").read_text())
        assert kustomization["resources"] == [f"../../../base/{component}"]
        assert set(kustomization) <= {"apiVersion", "kind", "resources", "labels", "patches"}
        # An overlay that only relabels is not a difference: environments differ in one place per component.
        assert kustomization.get("patches"), f"overlays/{overlay} has no patch"

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_a_component_differs_by_values_files_or_by_an_overlay_never_both(self, component):
        has_overlay = any((DEPLOY_DIR / "overlays" / env / component).is_dir() for env in ENVIRONMENTS)
        env_values = [path for env in ENVIRONMENTS for path in DEPLOY_DIR.glob(f"{component}/*-{env}.yaml")]
        has_env_values = bool(env_values)
        assert not (has_overlay and has_env_values), f"{component} has both env values files and overlays"

    @pytest.mark.parametrize("values_file", sorted(p.relative_to(DEPLOY_DIR) for p in DEPLOY_DIR.glob("*/*-*.yaml")
                                                   if p.stem.rsplit("-", 1)[-1] in ENVIRONMENTS), ids=str)
    def test_environment_values_hold_only_differences(self, values_file):
        path = DEPLOY_DIR / values_file
        base = path.with_name(path.stem.rsplit("-", 1)[0] + ".yaml")
        assert base.exists(), f"{values_file} has no base values file"

        def leaves(tree, prefix=()):
            if isinstance(tree, dict) and tree:
                for key, value in tree.items():
                    yield from leaves(value, (*prefix, key))
            else:
                yield prefix, tree

        base_leaves = dict(leaves(yaml.safe_load(base.read_text())))
        same = [".".join(k) for k, v in leaves(yaml.safe_load(path.read_text())) if base_leaves.get(k, object()) == v]
        assert not same, f"{values_file} repeats the base for {same}"


class TestWorkerImage:
    def test_dockerfile_builds_from_the_pinned_base_without_a_default(self, versions):
        text = (REPO_ROOT / "Dockerfile").read_text()
        assert re.search(r"^ARG AIRFLOW_BASE_IMAGE$", text, re.M)
        assert re.search(r"^FROM \$\{AIRFLOW_BASE_IMAGE\}$", text, re.M)
        assert versions["AIRFLOW_BASE_IMAGE"] == f"apache/airflow:{versions['AIRFLOW_VERSION']}-python3.11"
        assert "requirements.txt" in text and "USER airflow" in text

    def test_requirements_pin_the_same_airflow(self, versions):
        pins = (REPO_ROOT / "requirements.txt").read_text()
        assert f"apache-airflow=={versions['AIRFLOW_VERSION']}" in pins.splitlines()

    def test_build_context_is_only_the_requirements(self):
        lines = [line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                 if line and not line.startswith("#")]
        assert lines == ["*", "!requirements.txt", "!requirements-gpu.txt"]
        copied = {source for op, rest in dockerfile_instructions() if op == "COPY" for source in copy_sources(rest)}
        assert copied == {"requirements.txt", "requirements-gpu.txt"}

    def test_tf_variant_selects_the_requirements_the_image_installs(self):
        assert installed_requirements({}) == REPO_ROOT / "requirements.txt"
        assert installed_requirements({"TF_VARIANT": "cpu"}) == REPO_ROOT / "requirements.txt"
        assert installed_requirements({"TF_VARIANT": "gpu"}) == REPO_ROOT / "requirements-gpu.txt"
        with pytest.raises(KeyError):  # no such file in the image: the build fails
            installed_requirements({"TF_VARIANT": "rocm"})

    def test_gpu_requirements_are_the_cpu_ones_with_tensorflow_for_cuda(self):
        cpu, gpu = pins(REPO_ROOT / "requirements.txt"), pins(REPO_ROOT / "requirements-gpu.txt")
        assert "tensorflow" not in cpu and "tensorflow-cpu" not in gpu
        assert gpu["tensorflow"] == cpu["tensorflow-cpu"]
        assert f"tensorflow[and-cuda]=={cpu['tensorflow-cpu']}" in (REPO_ROOT / "requirements-gpu.in").read_text()
        cuda = {name for name in gpu if name.startswith("nvidia-")}
        assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12"} <= cuda
        # Every other package, Airflow included, at the CPU image's pin.
        assert {k: v for k, v in gpu.items() if k not in cuda | {"tensorflow"}} == {
            k: v for k, v in cpu.items() if k != "tensorflow-cpu"}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of ./Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO_ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split()[0].upper(), line.partition(" ")[2].strip()) for line in lines
            if line and not line.startswith("#")]


def copy_sources(arguments: str) -> list[str]:
    return [part for part in arguments.split() if not part.startswith("--")][:-1]


def installed_requirements(build_args: dict[str, str]) -> Path:
    """The repository file the image's `pip install -r` reads, for these build arguments: ARGs
    declared after FROM with their defaults, COPY destinations, `${NAME}` expanded as docker does."""
    args: dict[str, str] = {}
    copied: dict[str, str] = {}
    installs: list[str] = []
    for op, rest in dockerfile_instructions():
        if op == "FROM":
            args = {}  # an ARG before FROM is not visible in the stage
        elif op == "ARG":
            name, _, default = rest.partition("=")
            args[name] = build_args.get(name, default)
        elif op == "COPY":
            destination = rest.split()[-1]
            for source in copy_sources(rest):
                copied[destination + Path(source).name if destination.endswith("/") else destination] = source
        elif op == "RUN" and "pip install" in rest:
            target = re.search(r"-r\s+(\S+)", rest).group(1).strip('"')
            installs.append(re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m, known=args: known[m[1] or m[2]], target))
    (target,) = installs
    return REPO_ROOT / copied[target]


def pins(path: Path) -> dict[str, str]:
    """name -> version of a compiled requirements file."""
    found = (re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line) for line in path.read_text().splitlines())
    return {m[1].lower(): m[2] for m in found if m}
