"""Render: read the tables, draw the figures, fill the template, write report/all.md."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from .context import build_context
from .figures import make_figures
from .markdown import FORMATS, md_code, md_escape
from .tables import read_tables


def environment(template_dir):
    """A strict jinja2 environment (undefined names fail) with the escaping and number formats as filters."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_escape
    env.filters["code"] = md_code
    for name, f in FORMATS.items():
        env.filters[name] = f
    return env


def render(paths: dict, out_md, fig_dir, configs, pairs_decl, study, template, params: dict, declared=None) -> dict:
    """Read tables, draw figures, render the template to ``out_md``; returns stage timings (s).

    ``params``: the study's ``unstable_cv`` and ``ratio_flag``, as rules/report.smk passes them from the
    config (defaults in config/schema/config.schema.yaml)."""
    from ..io import atomic_write_text

    timings = {}
    t0 = time.perf_counter()
    t = read_tables(paths)
    timings["read"] = time.perf_counter() - t0
    out_md, fig_dir = Path(out_md), Path(fig_dir)
    rel = Path(_relpath(fig_dir, out_md.parent)).as_posix()
    t1 = time.perf_counter()
    figs = make_figures(t, configs, pairs_decl, fig_dir, float(params["unstable_cv"]), rel)
    timings["figures"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    ctx = build_context(t, configs, pairs_decl, study, figs, params, declared)
    template = Path(template)
    text = environment(template.parent).get_template(template.name).render(**ctx)
    text = re.sub(r"\n{3,}", "\n\n", text)
    atomic_write_text(out_md, text)
    copy_tables(paths, out_md.parent / "tables")
    timings["context+template"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    timings["n_figures"] = len(figs)
    return timings


def copy_tables(paths: dict, dst: Path) -> None:
    """Every table the report read, beside it in ``tables/`` (the report links them; bytes unchanged)."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for p in paths.values():
        if p and Path(p).is_file():
            target = dst / Path(p).name
            if not (target.exists() and target.read_bytes() == Path(p).read_bytes()):
                shutil.copyfile(p, target)


def _relpath(target: Path, start: Path) -> str:
    """Figure folder relative to the Markdown file, so the links work wherever the report is copied."""
    return os.path.relpath(target.resolve(), start.resolve())
