"""The editor's debug configurations point at what exists in this tree."""

from __future__ import annotations

import ast
import json
import re

from tests.support.processes import REPO_ROOT

LAUNCH = REPO_ROOT / ".vscode" / "launch.json"


def launch_config() -> dict:
    # launch.json is JSON with // comments (VS Code's JSONC); none of its strings contains "//" here.
    text = "\n".join(re.sub(r"^\s*//.*$", "", line) for line in LAUNCH.read_text().splitlines())
    return json.loads(text)


def dag_ids() -> set[str]:
    ids = set()
    for path in (REPO_ROOT / "src" / "pipelines").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "dag_id" and isinstance(node.value, ast.Constant):
                ids.add(node.value.value)
    return ids


def test_every_program_and_module_exists():
    for config in launch_config()["configurations"]:
        if "program" in config:
            assert (REPO_ROOT / config["program"].replace("${workspaceFolder}/", "")).is_file(), config["name"]
        if "module" in config:
            module = REPO_ROOT / "src" / (config["module"].replace(".", "/") + ".py")
            assert module.is_file(), f"{config['name']}: {module} is missing"


def test_the_dag_choices_are_the_dags_in_src_pipelines():
    (choice,) = [i for i in launch_config()["inputs"] if i["id"] == "dagId"]
    assert set(choice["options"]) == dag_ids()
