"""The documentation cannot rot: the site builds with `--strict`, every example in the README and
the docs runs, every public name is in the API reference, and the README's scoreboard is the one
`benchmarks/render_results.py` renders from the results files.

Examples are the fenced `python` and `bash` blocks of README.md and docs/**/*.md. A page's
Python blocks run in order in one namespace (in this process, in a temporary folder); each bash
block runs in `bash -e` in that folder, with `a3c-jax` meaning `python -m a3c_jax` of this
checkout. A block preceded by `<!-- notest: REASON -->` is not run (it installs packages, needs
two machines, or is a full benchmark); `<!-- requires: MODULE -->` on a page's first line skips
the page, with the reason, where an optional extra is absent. Budgets are set in the examples'
text (`total_timesteps=4096` and less), so every page runs in seconds.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
NOTEST = re.compile(r"<!-- notest: (.+?) -->\s*$")
RUNNABLE = {"python": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
# Extras a page's examples need, by the module they import; the page is skipped without it.
EXTRAS = {"gymnasium": "gymnasium", "ray": "ray"}


class Block(NamedTuple):
    lang: str  # "python" or "bash"
    code: str
    line: int  # where the block starts in its page
    skip: str | None  # why it is not run (a notest comment), or None


def blocks(page: Path) -> list[Block]:
    """The page's runnable blocks, in order."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        lang = RUNNABLE.get(match.group(1))
        if lang is None:
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        notest = NOTEST.search(before)
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(lang, match.group(2), line, notest.group(1) if notest else None))
    return found


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


EXAMPLE_PAGES = [p for p in PAGES if any(b.skip is None for b in blocks(p))]


def test_the_collector_finds_examples_and_notest_reasons():
    readme = blocks(ROOT / "README.md")
    assert [b.lang for b in readme[:2]] == ["bash", "bash"]
    assert all(b.skip for b in readme[:2])  # the set-up commands: not run inside the tests
    assert any(b.lang == "python" and b.skip is None for b in readme)
    assert len(EXAMPLE_PAGES) >= 15


@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=page_id)
def test_examples_run(page: Path, tmp_path: Path, monkeypatch, cache_dir: Path):
    for module, extra in EXTRAS.items():
        if f"import {module}" in page.read_text() and importlib.util.find_spec(module) is None:
            pytest.skip(f"{page_id(page)} needs {module} (pip install -e '.[{extra}]')")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_example_{page.stem}"}
    for block in blocks(page):
        if block.skip:
            continue
        where = f"{page_id(page)}:{block.line}"
        if block.lang == "python":
            exec(compile(block.code, where, "exec"), namespace)  # the docs' own code
        else:
            run_shell(block.code, where, tmp_path, cache_dir)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """One persistent compilation cache for every shell example of this run."""
    return tmp_path_factory.mktemp("xla_cache")


def run_shell(code: str, where: str, cwd: Path, cache_dir: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["A3C_JAX_CACHE_DIR"] = str(cache_dir)
    prelude = f'a3c-jax() {{ "{sys.executable}" -m a3c_jax "$@"; }}\n'
    run = subprocess.run(
        ["bash", "-e", "-c", prelude + code],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, f"{where} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"


def test_site_builds_with_strict(tmp_path: Path):
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    for page in ("index.html", "results/index.html", "algorithms/a2c/index.html"):
        assert (site / page).exists(), page
    assert (site / "results" / "img" / "progression.png").exists()
    api = (site / "api" / "index.html").read_text()
    assert "Trains" in api and "Undiscounted returns" in api  # docstrings were rendered


def api_reference() -> tuple[set[str], str]:
    """The objects the API pages render (`::: path`) and the pages' text."""
    text = "\n".join(p.read_text() for p in sorted((ROOT / "docs" / "api").glob("*.md")))
    return set(re.findall(r"^::: ([\w.]+)", text, re.MULTILINE)), text


def test_every_public_name_is_in_the_api_reference():
    import a3c_jax

    rendered, text = api_reference()
    missing = []
    for name in a3c_jax.__all__:
        obj = getattr(a3c_jax, name)
        paths = {f"a3c_jax.{a3c_jax._NAMES[name]}.{name}"} if name in a3c_jax._NAMES else set()
        if isinstance(obj, type(a3c_jax)):
            paths.add(obj.__name__)
        elif hasattr(obj, "__qualname__"):
            paths.add(f"{obj.__module__}.{obj.__qualname__}")
        if not paths & rendered and f"## `{name}`" not in text:
            missing.append(name)
    assert not missing, f"public names not in docs/api/*.md: {missing}"


def test_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    first = blocks(ROOT / "README.md")[:2]
    assert first[0].code.strip() == (
        'pip install -e ".[dev]" && a3c-jax train --env CartPole-v1 --algo a2c'
    )
    assert first[1].code.strip() == "python -m pytest -q"
    assert "python -m pytest -q" in (ROOT / ".ci" / "run").read_text().splitlines()[-1]


def test_results_are_rendered_and_small():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import render_results
        import shrink_results
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert render_results.unlisted() == [], "results files on no page: add them to BENCHMARKS"
    assert render_results.update_readme(check=True), (
        "README.md's scoreboard is stale: python benchmarks/render_results.py"
    )
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        assert path.stat().st_size <= shrink_results.MAX_KB * 1024, path.name
    for slug in render_results.BENCHMARKS:
        page = render_results.page(slug)
        assert "**command:**" in page and "**Machine:**" in page, slug
