"""Figures: a safe file name per figure (:func:`figure_plan`), then drawing them.

:func:`make_figures` is the report's only writer of images.
"""

from __future__ import annotations

from pathlib import Path

from .decode import decode_figures
from .host import host_figures
from .markdown import slug
from .predict import predict_figures

FIXED = ("decode_steps", "phase_totals", "stability_cv", "repeat_spread", "roofline", "efficiency", "allreduce")


def figure_plan(configs, pairs_decl) -> dict:
    """key -> file name, unique and safe whatever the config names are."""
    plan, used = {}, set()

    def add(key, stem):
        name, i = stem, 2
        while name in used:
            name, i = f"{stem}-{i}", i + 1
        used.add(name)
        plan[key] = f"{name}.png"

    for c in configs:
        add(("pie", c), f"pie_{slug(c)}")
    for i, p in enumerate(pairs_decl):
        add(("pair_bars", i), f"pair{i + 1}_bars_{slug(p['a'], 24)}_vs_{slug(p['b'], 24)}")
        add(("pair_speedup", i), f"pair{i + 1}_speedup_{slug(p['a'], 24)}_vs_{slug(p['b'], 24)}")
    for k in FIXED:
        add(k, k)
    return plan


def make_figures(t: dict, configs, pairs_decl, fig_dir, unstable_cv: float, rel_dir="figures") -> dict:
    """Draw every figure; returns key -> relative path for the template (only figures that were drawn).

    ``unstable_cv`` is the study's threshold (config ``unstable_cv``), marked on the CV heatmap."""
    # matplotlib is imported when figures are drawn, not when opbreak.report is
    from .plots.allreduce import allreduce
    from .plots.ops import pie_config
    from .plots.pairs import pair_bars, pair_speedup
    from .plots.roofline import efficiency, roofline
    from .plots.stability import repeat_spread, stability_cv
    from .plots.totals import decode_steps, phase_totals

    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    plan = figure_plan(configs, pairs_decl)
    ops = t["ops_summary"]
    present = [c for c in configs if c in set(ops["config"])]
    modeled = t["theory_ops"][t["theory_ops"]["modeled"]] if len(t["theory_ops"]) else t["theory_ops"]
    done = {}

    def draw(key, fn, *args):
        path = fig_dir / plan[key]
        fn(*args, path)
        done[key] = f"{rel_dir}/{plan[key]}"

    for c in present:
        draw(("pie", c), pie_config, ops, modeled, c)
    for i, p in enumerate(pairs_decl):
        if p["a"] in present and p["b"] in present:
            label = p.get("label") or f"{p['a']} vs {p['b']}"
            draw(("pair_bars", i), pair_bars, ops, p["a"], p["b"], label)
            draw(("pair_speedup", i), pair_speedup, t["pairs"], label, p["a"], p["b"])
    if present:  # a study with no measurement draws no measured figure (no placeholders)
        draw("decode_steps", decode_steps, t["steps"], t["decode_steps"], present)
        draw("phase_totals", phase_totals, t["phase_summary"], t["phase_totals"], present)
        draw(
            "stability_cv",
            lambda o, u, path: stability_cv(o, u, path, present),
            ops[ops["config"].isin(present)],
            unstable_cv,
        )
        draw("repeat_spread", repeat_spread, t["phase_totals"], t["phase_summary"], present)
        draw("roofline", roofline, t["theory_ops"], t["ceilings"], present)
        draw("efficiency", efficiency, t["theory_ops"][t["theory_ops"]["config"].isin(present)], present)
        if t["allreduce"]["config"].isin(present).any():
            draw("allreduce", allreduce, t["allreduce"], present)

    def draw_named(key, fn, *args, name):
        plan[key] = f"{name}.png"
        draw(key, fn, *args)

    decode_figures(t, present, draw_named, slug)
    predict_figures(t, configs, draw_named, slug)
    host_figures(t, present, draw_named)
    return done
