"""The package's shape: layers that import only downward (the import contract in pyproject.toml,
checked by import-linter, imports inside functions included), no import cycle at any level, no
module importing another's private name, no function over 60 lines."""

import ast
import pathlib
import shutil
import subprocess
import sys

import pytest

importlinter = pytest.importorskip(
    "importlinter", reason="import-linter is in the dev extra: pip install -e '.[dev]'"
)
grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (dev extra)")

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "a3c_jax"
MAX_FUNCTION_LINES = 60


def _lint_imports(cwd: pathlib.Path) -> subprocess.CompletedProcess:
    """import-linter's command over the package found from `cwd` (its pyproject.toml)."""
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(no_cache=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_import_contract_holds():
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Layers import only downward KEPT" in run.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The same contract over a copy of the package in which the core imports the command line
    from inside a function: import-linter names the broken layer."""
    shutil.copytree(PACKAGE, tmp_path / "a3c_jax", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    returns = tmp_path / "a3c_jax" / "core" / "returns.py"
    returns.write_text(
        returns.read_text() + "\n\ndef _upward():\n    from a3c_jax.cli import main\n\n"
        "    return main\n"
    )
    run = _lint_imports(tmp_path)
    assert run.returncode != 0
    assert "Layers import only downward BROKEN" in run.stdout
    assert "a3c_jax.core is not allowed to import a3c_jax.cli" in run.stdout


def _cycles(graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_at_any_level():
    graph = grimp.build_graph("a3c_jax", include_external_packages=False)
    assert "a3c_jax.cli.main" in graph.modules  # the graph is the package's
    assert graph.direct_import_exists(  # imports inside functions are in the graph
        importer="a3c_jax.config.config", imported="a3c_jax.envs.wrappers"
    )
    assert _cycles(graph) == []


def _modules() -> list[tuple[pathlib.Path, ast.Module]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(PACKAGE.rglob("*.py"))]


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent / dotted.replace(".", "/")
    return path.with_suffix(".py").exists() or path.is_dir()


def _module_names(tree: ast.Module) -> set[str]:
    """The names a module binds to modules of a3c_jax (`from a3c_jax.runs import chunked`)."""
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("a3c_jax")
        for alias in node.names
        if _is_module(f"{node.module}.{alias.name}")
    }


NAMEDTUPLE_METHODS = {"_replace", "_asdict", "_fields", "_make"}


def test_no_module_uses_another_modules_private_name():
    used = [
        f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}"
        for path, tree in _modules()
        for modules in [_module_names(tree)]
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in modules and node.attr.startswith("_")
        and not node.attr.startswith("__") and node.attr not in NAMEDTUPLE_METHODS
    ]  # fmt: skip
    assert used == []


def test_no_module_imports_another_modules_private_name():
    private = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{alias.name}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("a3c_jax")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
        and f"{node.module}.{alias.name}" != "a3c_jax._lazy"  # a module, not a name
    ]  # fmt: skip
    assert private == []


def test_no_function_is_longer_than_60_lines():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in [node.end_lineno - node.lineno + 1]
        if n > MAX_FUNCTION_LINES
    ]
    assert long == []
