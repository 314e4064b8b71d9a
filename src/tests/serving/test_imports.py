"""The serving package imports nothing of the project but itself and the use cases (`models`): its image has no more."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.processes import REPO_ROOT

SERVING = REPO_ROOT / "src" / "serving"
PROJECT_PACKAGES = {path.name for path in (REPO_ROOT / "src").iterdir() if (path / "__init__.py").is_file()}
ALLOWED = {"serving", "models"}


def project_imports(path: Path) -> set[str]:
    """Top-level project packages imported anywhere in `path` (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & PROJECT_PACKAGES
    return found


def test_serving_imports_only_serving_and_models():
    assert {"serving", "models", "tasks"} <= PROJECT_PACKAGES  # the check below would pass vacuously otherwise
    offending = {
        str(path.relative_to(SERVING)): sorted(project_imports(path) - ALLOWED) for path in sorted(SERVING.glob("*.py"))
    }
    assert {name: found for name, found in offending.items() if found} == {}
