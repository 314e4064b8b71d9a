"""The project's import rules and size limits, read from the source with ast (nothing here imports the project)."""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tests.support.processes import REPO_ROOT

SRC = REPO_ROOT / "src"
SCRIPTS = REPO_ROOT / "scripts"
# Files that are data, not project code: a model folder saved by an earlier version bundles its own `tasks`.
NOT_CODE = (SRC / "tests" / "data",)
PRODUCTION = ("models", "tasks", "pipelines", "serving", "scripts", "app")
PROJECT = (*PRODUCTION, "tests")

MANIFESTS = "tasks.deploy.manifests"
# The manifest builders turn values into Kubernetes objects; deploying, registry look-ups and
# process control belong to their callers (supervise is process control as well).
MANIFESTS_MUST_NOT_REACH = (
    "tasks.deploy.kubernetes",
    "tasks.deploy.local",
    "tasks.deploy.processes",
    "tasks.deploy.supervise",
    "tasks.registry",
    "models.registry",
)
MANIFESTS_MUST_NOT_IMPORT = ("kubernetes", "subprocess")
# Calls that read the file system (names of functions or methods).
FILE_READS = frozenset(
    {"open", "read_text", "read_bytes", "iterdir", "glob", "rglob", "listdir", "scandir", "walk", "get_data",
     "exists", "is_file", "is_dir"}
)

MAX_LINES = 400
MAX_MODEL_SERVER_LINES = 120


@dataclass(frozen=True)
class Import:
    source: str
    target: str  # a project module (the most specific one that exists) or an external dotted name
    path: Path
    line: int
    # Under `if TYPE_CHECKING:`: not run, but still a dependency (a cycle through one is a design
    # cycle that annotations merely hide), so the rules count it and the messages say so.
    type_only: bool = False

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}" + (", type-checking only" if self.type_only else "")


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: list[Import] = field(default_factory=list)


def top(name: str) -> str:
    return name.split(".", 1)[0]


def within(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def module_files() -> Iterator[tuple[str, Path, bool]]:
    """(module name, file, is a package) for every .py under src/ (import root) and scripts/."""
    for root, prefix in ((SRC, ()), (SCRIPTS, ("scripts",))):
        for path in sorted(root.rglob("*.py")):
            if any(path.is_relative_to(skip) for skip in NOT_CODE) or "__pycache__" in path.parts:
                continue
            parts = (*prefix, *path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            yield ".".join(parts[:-1] if is_package else parts), path, is_package


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def nodes(tree: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below `tree`, and whether it sits in an `if TYPE_CHECKING:` block."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and is_type_checking(child.test):
            for statement in child.body:
                yield statement, True
                yield from nodes(statement, True)
            for statement in child.orelse:
                yield statement, type_only
                yield from nodes(statement, type_only)
            continue
        yield child, type_only
        yield from nodes(child, type_only)


def imported_names(module: Module, tree: ast.AST) -> Iterator[tuple[str, tuple[str, ...], int, bool]]:
    """(absolute module, names imported from it, line, type-checking only) for every import
    statement at any depth, and for importlib.import_module / __import__ calls with a literal name."""
    for node, type_only in nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node.lineno, type_only
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base, tuple(a.name for a in node.names), node.lineno, type_only
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            )
        ):
            yield node.args[0].value, (), node.lineno, type_only


def resolve(name: str, known: set[str]) -> str:
    """The most specific project module `name` lives in; an external name is returned unchanged."""
    if top(name) not in PROJECT:
        return name
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return name


@cache
def graph() -> dict[str, Module]:
    modules = {name: Module(name, path, is_package) for name, path, is_package in module_files()}
    known = set(modules)
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
        for base, names, line, type_only in imported_names(module, tree):
            # `from package import name` imports the submodule when one of that name exists.
            targets = [f"{base}.{n}" if f"{base}.{n}" in known else base for n in names] or [base]
            for target in dict.fromkeys(resolve(t, known) for t in targets):
                if target != module.name:
                    module.imports.append(Import(module.name, target, module.path, line, type_only))
    return modules


def violations(source_prefixes: Iterable[str], forbidden: Iterable[str]) -> list[str]:
    source_prefixes, forbidden = tuple(source_prefixes), tuple(forbidden)
    return [
        f"{i.source} imports {i.target} ({i.where})"
        for m in graph().values()
        if within(m.name, source_prefixes)
        for i in m.imports
        if within(i.target, forbidden)
    ]


def strongly_connected(names: Iterable[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (iterative, so deep graphs cannot overflow)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in names:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def shortest_cycle(start: str, members: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest import chain from `start` back to itself inside one component."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges.get(node, ()) & members):
            if child == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(came_from[chain[-1]])
                return [*reversed(chain), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    return [start]


def describe_chain(chain: list[str]) -> str:
    modules = graph()
    steps = []
    for source, target in zip(chain, chain[1:], strict=False):
        where = next(i.where for i in modules[source].imports if i.target == target)
        steps.append(f"{source} -> {target} ({where})")
    return "; ".join(steps)


def reach(start: str) -> dict[str, list[str]]:
    """Every project module `start` depends on, with the chain that gets there.

    Importing a module runs its parent packages first, so they (and what they import) count too;
    such a step shows as "<package> (package __init__)".
    """
    modules = graph()
    chains = {start: [start]}
    queue = deque([start])
    while queue:
        name = queue.popleft()
        parents = [".".join(name.split(".")[:end]) for end in range(1, name.count(".") + 1)]
        steps = [(p, f"{p} (package __init__)") for p in parents if p in modules]
        steps += [(i.target, i.target) for i in modules[name].imports if i.target in modules]
        for target, label in steps:
            if target not in chains:
                chains[target] = [*chains[name], label]
                queue.append(target)
    return chains


def module_path(name: str) -> Path:
    modules = graph()
    assert name in modules, f"{name} is missing: the module moved; update this test"
    return modules[name].path


def test_the_project_modules_have_no_import_cycle():
    modules = graph()
    production = [name for name in modules if top(name) in PRODUCTION]
    edges = {name: {i.target for i in modules[name].imports if top(i.target) in PRODUCTION} for name in production}
    cycles = []
    for component in strongly_connected(production, edges):
        chain = shortest_cycle(component[0], set(component), edges)
        cycles.append(f"{' -> '.join(chain)}: {describe_chain(chain)} (component: {', '.join(component)})")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_tasks_never_import_pipelines():
    found = violations(["tasks"], ["pipelines"])
    assert not found, "task code must not depend on the DAG layer:\n" + "\n".join(found)


def test_serving_imports_only_serving_and_models_of_the_project():
    found = violations(["serving"], [p for p in PROJECT if p not in ("serving", "models")])
    assert not found, "the model server image carries only serving and models:\n" + "\n".join(found)


# What the web app's image (src/app/Dockerfile) copies besides src/app: the schema, the upload reader, and the
# xray schema and scan generator (the X-ray page's samples).
APP_IMAGE_MODULES = ("models", "models.wachttijden", "models.wachttijden.schema", "tasks", "tasks.data",
                     "tasks.data.validation", "tasks.data.sniff", "models.xray", "models.xray.schema",
                     "models.xray.generate")


def test_the_web_app_reaches_only_what_its_image_carries():
    found = []
    for start in [name for name in graph() if top(name) == "app"]:
        for name, chain in reach(start).items():
            if top(name) != "app" and name not in APP_IMAGE_MODULES:
                found.append(f"{start} reaches {name}: {' -> '.join(chain)}")
    assert not found, "src/app/Dockerfile copies only app and APP_IMAGE_MODULES:\n" + "\n".join(found)


def test_the_web_app_image_copies_every_module_it_is_allowed_to_reach():
    """The other half of the rule above: each of APP_IMAGE_MODULES is a COPY source of src/app/Dockerfile that
    its ignore file lets into the build context."""
    dockerfile = SRC / "app" / "Dockerfile"
    copied = {source for line in dockerfile.read_text().splitlines() if line.startswith("COPY ")
              for source in line.split()[1:-1]}
    ignore = dockerfile.with_name("Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    for name in APP_IMAGE_MODULES:
        stem = "src/" + name.replace(".", "/")
        source = f"{stem}/__init__.py" if (REPO_ROOT / stem).is_dir() else f"{stem}.py"
        assert source in copied, f"{name}: src/app/Dockerfile does not copy {source}"
        assert source in allowed, f"{name}: src/app/Dockerfile.dockerignore keeps {source} out of the build context"


def test_models_import_nothing_else_of_the_project():
    found = violations(["models"], [p for p in PROJECT if p != "models"])
    assert not found, "a logged model carries only the models package:\n" + "\n".join(found)


def test_the_manifest_builders_reach_no_deploy_registry_or_process_code():
    modules = graph()
    module_path(MANIFESTS)
    found = []
    for name, chain in reach(MANIFESTS).items():
        via = " -> ".join(chain)
        if within(name, MANIFESTS_MUST_NOT_REACH):
            found.append(f"{MANIFESTS} reaches {name}: {via}")
        for i in modules[name].imports:
            if within(i.target, MANIFESTS_MUST_NOT_IMPORT):
                found.append(f"{MANIFESTS} reaches {i.target} ({i.where}): {via}")
    assert not found, "the manifest builders must stay pure:\n" + "\n".join(dict.fromkeys(found))


def test_the_manifest_builders_read_no_files():
    path = module_path(MANIFESTS)
    reads = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in FILE_READS:
                reads.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} calls {ast.unparse(func)}()")
    assert not reads, "the manifest builders take values, not files:\n" + "\n".join(reads)


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_production_file_is_over_400_lines():
    tests = SRC / "tests"
    long = {
        str(p.relative_to(REPO_ROOT)): n
        for p in sorted(SRC.rglob("*.py"))
        if not p.is_relative_to(tests) and (n := line_count(p)) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines (split them by concern): {long}"


def test_the_model_server_entry_point_stays_small():
    lines = line_count(SRC / "serving" / "model_server.py")
    assert lines < MAX_MODEL_SERVER_LINES, f"src/serving/model_server.py has {lines} lines"


def test_the_import_reader_resolves_relative_nested_and_dynamic_imports(tmp_path):
    source = (
        "from . import sibling\n"
        "from ..other import thing\n"
        "def later():\n"
        "    import subprocess\n"
        "    importlib.import_module('tasks.data.prepare')\n"
    )
    module = Module("tasks.deploy.example", tmp_path / "example.py", is_package=False)
    found = {(base, names) for base, names, _, _ in imported_names(module, ast.parse(source))}
    assert found == {
        ("tasks.deploy", ("sibling",)),
        ("tasks.other", ("thing",)),
        ("subprocess", ()),
        ("tasks.data.prepare", ()),
    }
    package = Module("tasks.deploy", tmp_path / "__init__.py", is_package=True)
    assert {b for b, _, _, _ in imported_names(package, ast.parse("from .manifests import x\n"))} == {
        "tasks.deploy.manifests"
    }
    typed = "if TYPE_CHECKING:\n    from serving import model\nelse:\n    import json\nimport os\n"
    assert [(b, t) for b, _, _, t in imported_names(package, ast.parse(typed))] == [
        ("serving", True), ("json", False), ("os", False)
    ]
    assert strongly_connected("abc", {"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert shortest_cycle("a", {"a", "b", "c"}, {"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
