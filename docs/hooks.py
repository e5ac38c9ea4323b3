"""MkDocs hooks: the parts of the site generated from the code and the measurements.

- The results pages (`results/*.md`) and their plots are generated from `benchmarks/results/`
  by `benchmarks/render_results.py` at every build; they exist in no folder.
- Markers in a page are replaced when it is built:
  `<!-- results:SLUG -->` (every file of a benchmark), `<!-- results:scoreboard -->`,
  `<!-- results:algo NAME -->` (an algorithm's rows of the progression),
  `<!-- config:params NAME -->` (an algorithm's parameters), `<!-- config:fields -->` (every
  `Config` field), `<!-- config:algorithms -->` (the registry), `<!-- config:presets -->`
  (the environment presets and what they reach) and `<!-- errors:exit-codes -->`.

A marker that names nothing known fails the build (so a renamed benchmark or algorithm cannot
leave a page silently empty).
"""

from __future__ import annotations

import dataclasses
import io
import os
import posixpath
import re
import sys
import tokenize
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, ROOT)

import render_results  # noqa: E402  (benchmarks/, put on the path above)

# A marker stands alone on its line (one quoted in the text, in backticks, is left as it is).
MARKER = re.compile(r"^<!-- (results|config|errors):([\w-]+)(?: ([\w-]+))? -->$", re.MULTILINE)


# -- generated files --------------------------------------------------------------------------


def on_files(files: Files, config: Any) -> Files:
    """Adds the results pages and every plot of `benchmarks/results/` to the site."""
    pages = {"results/index.md": render_results.index()}
    pages.update({f"results/{s}.md": render_results.page(s) for s in render_results.BENCHMARKS})
    for uri, content in pages.items():
        files.append(File.generated(config, uri, content=content))
    for name in sorted(os.listdir(render_results.RESULTS)):
        if name.endswith(".png"):
            path = os.path.join(render_results.RESULTS, name)
            files.append(File.generated(config, f"results/img/{name}", abs_src_path=path))
    return files


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replaces every marker of `page` by what it names."""
    root = posixpath.relpath(".", posixpath.dirname(page.file.src_uri) or ".") + "/"
    root = "" if root == "./" else root
    img = root + "results/img/"

    def replace(match: re.Match[str]) -> str:
        kind, what, arg = match.groups()
        try:
            return render(kind, what, arg, img, root)
        except KeyError as error:
            raise ValueError(
                f"{page.file.src_uri}: {match.group(0)} names nothing: {error}"
            ) from error

    return MARKER.sub(replace, markdown)


def render(kind: str, what: str, arg: str | None, img: str, root: str) -> str:
    """The markdown a marker stands for (`img`, `root`: the paths to the plots and to the
    site's root from the page)."""
    if kind == "results":
        if what == "scoreboard":
            return render_results.scoreboard()
        if what == "algo":
            return algorithm_results(arg or "", img)
        return render_results.section(what, img=img, level=3)
    if kind == "errors" and what == "exit-codes":
        return exit_codes()
    if kind == "config":
        tables = {
            "params": lambda: parameters(arg or ""),
            "fields": fields_table,
            "algorithms": lambda: algorithms_table(root),
            "presets": presets_table,
        }
        return tables[what]()
    raise KeyError(what)


# -- from the code ----------------------------------------------------------------------------


def field_comments() -> dict[str, tuple[str, str]]:
    """`{field: (group, description)}` from the comments of `Config`'s source: a field's own
    trailing comment, else the comment block above it (shared by the fields under it); a block
    of at most three words ending in "." (`# Returns.`) names the group."""
    from a3c_jax.config import config as module

    with open(module.__file__) as f:
        source = f.read().split("class Config:", 1)[1]
    source = source.split("def __post_init__", 1)[0]
    out: dict[str, tuple[str, str]] = {}
    group, block, pending = "", [], False
    for line in source.splitlines():
        text = line.strip()
        if text.startswith("#"):
            if pending:
                block, pending = [], False
            block.append(text.lstrip("# ").strip())
            continue
        match = re.match(r"(\w+): [^=]+=.*", text)
        if not match:
            continue
        if block and len(" ".join(block).split()) <= 3 and block[-1].endswith("."):
            group, block = " ".join(block).rstrip("."), []
        trailing = comment_of(text)
        out[match.group(1)] = (group, trailing or " ".join(block))
        pending = True
    return out


def comment_of(line: str) -> str:
    tokens = tokenize.generate_tokens(io.StringIO(line + "\n").readline)
    return next((t.string.lstrip("# ").strip() for t in tokens if t.type == tokenize.COMMENT), "")


def value(v: Any) -> str:
    if isinstance(v, tuple):
        v = ",".join(str(x) for x in v)
    return f"`{v!r}`" if isinstance(v, str) else f"`{v}`"


def parameters(algo: str) -> str:
    """The algorithm's own defaults (its registry entry), then every field as `Config(algo=...)`
    resolves it on the default environment."""
    from a3c_jax.config import Config, presets, registry

    spec = registry.get(algo)
    config = Config(algo=algo)
    comments = field_comments()
    lines = [
        f"Generated from the code: `a3c_jax.config.registry.REGISTRY[{algo!r}]` and "
        f"`Config(algo={algo!r})` (environment `{config.env_name}`); an environment preset "
        "(`a3c_jax.config.presets.ENV_PRESETS`) or your own values override them.",
        "",
        f"Trainer: `{config.trainer}`; episodic: {'yes' if spec.episodic else 'no'}; "
        f"asynchronous: {'yes' if spec.asynchronous else 'no'}; trains on host environments: "
        f"{'yes' if spec.host else 'no'}.",
        "",
        "| what it sets | value | the global default |",
        "|---|---|---|",
    ]
    for name, v in spec.defaults.items():
        lines.append(f"| `{name}` | {value(v)} | {value(presets.DEFAULTS.get(name))} |")
    if not spec.defaults:
        lines.append("| (nothing: the global defaults) | | |")
    lines += ["", '??? info "Every `Config` field for this algorithm"', ""]
    lines.append("    | field | value | what it is |")
    lines.append("    |---|---|---|")
    for field in dataclasses.fields(config):
        v = getattr(config, field.name)
        lines.append(
            f"    | `{field.name}` | {value(v)} | {comments.get(field.name, ('', ''))[1]} |"
        )
    return "\n".join(lines)


def fields_table() -> str:
    from a3c_jax.config import Config, config, presets

    comments = field_comments()
    lines = ["| field | group | global default | traced in sweeps | what it is |"]
    lines.append("|---|---|---|---|---|")
    for field in dataclasses.fields(Config):
        default = field.default if field.default is not None else presets.DEFAULTS.get(field.name)
        group, text = comments.get(field.name, ("", ""))
        traced = "yes" if field.name in config.TRACED_FIELDS else ""
        lines.append(f"| `{field.name}` | {group} | {value(default)} | {traced} | {text} |")
    return "\n".join(lines)


def algorithms_table(root: str = "") -> str:
    from a3c_jax.config import Config, registry

    lines = ["| `algo` | trainer | episodic | host environments | its own defaults |"]
    lines.append("|---|---|---|---|---|")
    for name, spec in registry.REGISTRY.items():
        own = ", ".join(f"`{k}={v}`" for k, v in spec.defaults.items()) or "-"
        trainer = Config(algo=name).trainer
        lines.append(
            f"| [`{name}`]({root}algorithms/{name}.md) | `{trainer}` | "
            f"{'yes' if spec.episodic else 'no'} | {'yes' if spec.host else 'no'} | {own} |"
        )
    return "\n".join(lines)


def presets_table() -> str:
    from a3c_jax.config import presets

    lines = [
        "| environment | algo | what the preset sets | recorded greedy return (seeds, steps) |"
    ]
    lines.append("|---|---|---|---|")
    for (env, algo), settings in presets.ENV_PRESETS.items():
        own = ", ".join(f"`{k}={v}`" for k, v in settings.items())
        rec = presets.PRESET_RESULTS.get((env, algo))
        result = f"{rec['return']} ({rec['seeds']} seeds, {rec['env_steps']:,})" if rec else "-"
        lines.append(f"| {env} | `{algo}` | {own} | {result} |")
    return "\n".join(lines)


def exit_codes() -> str:
    from a3c_jax import errors

    lines = ["| exit code | raised as | what it means |", "|---:|---|---|"]
    for kind, code in errors.EXIT_CODES:
        doc = (kind.__doc__ or "").strip().splitlines()[0]
        lines.append(f"| {code} | `{kind.__name__}` | {doc} |")
    lines.append(
        "| 143 | SIGTERM | stopped like Ctrl-C: the running chunk finishes, a checkpoint is "
        "written |"
    )
    return "\n".join(lines)


def algorithm_results(algo: str, img: str) -> str:
    """The progression's rows for `algo` (and the parallelism runs for `a3c`), with provenance."""
    from a3c_jax.config import registry

    registry.get(algo)  # KeyError for an unknown name
    parts = []
    rows = [r for r in render_results.load("progression.json") if r["algo"] == algo]
    if rows:
        source = render_results.BENCHMARKS["progression"].sources["progression.json"]
        lines = [
            "| environment | budget (steps) | seeds | greedy return | seeds reaching the "
            "threshold | steps to threshold (median) | training steps/s (all seeds) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            steps = (
                render_results.fmt(r["steps_to_threshold"])
                if r["steps_to_threshold"]
                else "not reached"
            )
            lines.append(
                f"| {r['env']} | {r['budget']:,} | {r['seeds']} | {r['greedy_mean']:.1f} ± "
                f"{r['greedy_std']:.1f} | {r['seeds_reaching']}/{r['seeds']} "
                f"(≥ {r['threshold']:g}) "
                f"| {steps} | {r['steps_per_s']:,.0f} |"
            )
        lines += ["", render_results.provenance_line("progression.json", source, rows)]
        parts.append("\n".join(lines))
        parts.append(f"![learning curves of every algorithm]({img}progression.png)")
    if algo == "a3c":
        parts.append(render_results.section("parallelism", img=img, level=3))
    if algo == "a2c":
        parts.append("The presets (all `a2c`):\n\n" + render_results.scoreboard())
    return "\n\n".join(parts)
