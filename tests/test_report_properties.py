"""The report on studies it has never seen: random studies and synthetic tables, checked for invariants.

A ``hypothesis`` generator draws a study (2-4 configs: TP 1/2/4, GPU or CPU, NVLink or the
host-memory path, emulated twins, failed configs, missing and modeled ops, unstable repeats, pairs)
and its aggregate and theory tables; predictions come from the real predict step
(:mod:`opbreak.predict`). The report is built by its own functions (no snakemake) and checked:

* every number in a generated sentence is a cell it cites (or a key of a cited row), and every
  cited value is that cell of the table;
* no sentence lists an op and then denies it (no fixed clauses);
* the disagreements ranking holds measured rows only, stable before unstable;
* no NaN, inf, negative time or "0 ms" prediction is printed;
* the answers section exists and fits one screen;
* every figure renders (a smaller run, figures are the slow part);
* the seed's quotes appear exactly (non-breaking spaces kept).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from opbreak import predict as P
from opbreak import report as rep
from opbreak.contract import TABLES
from opbreak.ops import COLLECTIVE_OPS, PHASES
from opbreak.report.tables import normalize

NAMES = ("alpha", "bravo", "charlie", "delta")  # no digits: a config name is never taken for a number
MODEL_OPS = ("embedding", "attn_norm", "qkv_proj", "attention", "o_proj", "ffn_norm", "ffn", "lm_head", "sampling")
FRAMEWORK = ("host_gap", "unattributed")
NUM = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[+-]?\d+)?")
ANSWER_LINES = 45  # one screen
PARAMS = {"unstable_cv": 0.1, "ratio_flag": 0.25}
TEMPLATE = ROOT / "report/templates/all.md.j2"
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


# ----------------------------------------------------------------------------- the generator
@st.composite
def studies(draw):
    n = draw(st.integers(2, 4))
    cfgs = []
    for i in range(n):
        tp = draw(st.sampled_from([1, 2, 4]))
        gpu = draw(st.sampled_from(["H100-SXM", "H100-SXM", "cpu"]))
        cfgs.append(
            dict(
                name=f"{NAMES[i]}-{'cpu' if gpu == 'cpu' else 'gpu'}-tp{'xyz'[[1, 2, 4].index(tp)]}",
                tp=tp,
                gpu=gpu,
                emulate=tp > 1 and gpu != "cpu" and draw(st.booleans()),
                transport=draw(st.sampled_from(["auto", "no-p2p"])) if tp > 1 else "auto",
                failed=draw(st.integers(0, 5)) == 0,
                sweep=tp > 1 and draw(st.booleans()),
                ranks=draw(st.booleans()),
            )
        )
    pairs, seen = [], set()
    for _ in range(draw(st.integers(0, 3))):
        a, b = draw(st.permutations(range(n)))[:2]
        if (a, b) not in seen:
            seen.add((a, b))
            pairs.append({"a": cfgs[a]["name"], "b": cfgs[b]["name"], "label": f"{NAMES[a]} vs {NAMES[b]} |x|"})
    seed = draw(st.integers(0, 2**31 - 1))
    return cfgs, pairs, seed


def _stat(rng, med, unstable):
    cv = float(rng.uniform(0.12, 0.8) if unstable else rng.uniform(0.0, 0.09))
    half = med * cv * rng.uniform(0.5, 1.5)
    return dict(
        median_ms=med,
        mean_ms=med * (1 + cv / 3),
        std_ms=med * cv,
        iqr_ms=med * cv,
        cv=cv,
        ci_lo_ms=max(med - half, med * 0.05),
        ci_hi_ms=med + half,
        n=3,
        n_outliers=int(rng.integers(0, 2)),
        unstable=unstable,
        repeats_for_5pct=float(rng.integers(2, 40)),
    )


def tables(study) -> dict:
    """Synthetic aggregate and theory tables for a drawn study (contract columns, plausible values)."""
    cfgs, pairs, seed = study
    rng = np.random.default_rng(seed)
    ops, ps, th, ar, split, prov, fail, steps, totals = [], [], [], [], [], [], [], [], []
    for c in cfgs:
        spec = dict(
            gpu=c["gpu"],
            tp=c["tp"],
            emulate_tp=c["emulate"],
            transport=c["transport"],
            backend="x",
            batch=8,
            input_len=128,
            output_len=16,
            dtype="float16",
            model={"name": "m"},
        )
        host = str(rng.choice(["host-a", "host-b"]))  # pairs across hosts get the host note
        for r in range(3):
            prov.append(
                dict(
                    config=c["name"],
                    repeat=r,
                    host=host,
                    spec=spec,
                    host_after=dict(cpu_model="CPU X", cpus_usable=4, loadavg=[float(rng.uniform(0, 4))]),
                )
            )
        if c["failed"]:
            fail.append(dict(config=c["name"], repeat=0, error="guard: no GPU", path="p"))
            prov = [p for p in prov if p["config"] != c["name"]]
            continue
        for phase in PHASES:
            names = [o for o in MODEL_OPS if rng.uniform() > 0.15] + list(FRAMEWORK)
            if c["tp"] > 1:
                names += list(COLLECTIVE_OPS)
            rows = []
            for op in names:
                modeled = c["emulate"] and op in COLLECTIVE_OPS
                med = float(np.exp(rng.uniform(np.log(0.01), np.log(500))))
                rows.append(
                    dict(
                        config=c["name"],
                        phase=phase,
                        op=op,
                        calls=4,
                        modeled=modeled,
                        layer_scale=1.0,
                        **_stat(rng, math.nan if modeled else med, rng.uniform() < 0.25),
                    )
                )
            tot = sum(r["median_ms"] for r in rows if not r["modeled"])
            for r in rows:
                r["phase_median_ms"] = tot
                r["share"] = r["median_ms"] / tot if not r["modeled"] else math.nan
            ops += rows
            ps.append(dict(config=c["name"], phase=phase, **_stat(rng, tot, rng.uniform() < 0.2)))
            for r in rows:
                if r["op"] in FRAMEWORK:
                    continue
                coll = r["op"] in COLLECTIVE_OPS
                tb = float(np.exp(rng.uniform(np.log(0.005), np.log(300))))
                meas = tb if r["modeled"] else r["median_ms"]
                th.append(
                    dict(
                        config=c["name"],
                        phase=phase,
                        op=r["op"],
                        flops=1e9,
                        bytes=1e8,
                        comm_bytes=1e6 * coll,
                        calls_theory=4,
                        intensity=10.0,
                        t_compute_ms=tb,
                        t_memory_ms=tb / 2,
                        t_link_ms=tb if coll else math.nan,
                        t_bound_ms=tb,
                        bound="link" if coll else str(rng.choice(["compute", "memory"])),
                        measured_ms=meas,
                        modeled=r["modeled"],
                        efficiency=math.nan if r["modeled"] else tb / meas,
                        achieved_tflops=1e9 / (meas / 1e3) / 1e12,
                        achieved_GBps=1e8 / (meas / 1e3) / 1e9,
                        peak_tflops=989.0,
                        mem_bw_GBps=3350.0,
                        link_GBps=300.0,
                        ceiling_source="measured" if c["gpu"] == "cpu" else "datasheet",
                        link_source="fit" if c["sweep"] else ("none" if c["transport"] != "auto" else "catalog"),
                        t_link_catalog_ms=math.nan if c["transport"] != "auto" or c["gpu"] == "cpu" else tb,
                    )
                )
            if c["tp"] > 1:
                ar.append(
                    dict(
                        config=c["name"],
                        kind="phase",
                        phase=phase,
                        n=c["tp"],
                        size_bytes=65536,
                        measured_ms=math.nan if c["emulate"] else float(rng.uniform(0.01, 2)),
                        model_ms=float(rng.uniform(0.01, 2)),
                        alpha_us=5.0,
                        bw_GBps=100.0,
                        source="fit",
                        t_latency_ms=float(rng.uniform(0.001, 1)),
                        t_bandwidth_ms=float(rng.uniform(0.001, 1)),
                    )
                )
            if c["ranks"] and c["gpu"] != "cpu":
                for rank in range(1 if c["emulate"] else c["tp"]):
                    parts = rng.dirichlet(np.ones(4)) if c["tp"] > 1 else np.array([*rng.dirichlet(np.ones(2)), 0, 0])
                    comp, host, tr, wait = parts[0], parts[1], parts[2], parts[3]
                    wall = tot
                    row = dict(
                        config=c["name"],
                        rank=rank,
                        phase=phase,
                        wall_ms=wall,
                        steps=16,
                        repeats=3,
                        wait_capped=False,
                        wall_per_step_ms=wall / 16,
                    )
                    for k, v in (("compute", comp), ("transfer", tr), ("wait", wait), ("host_idle", host)):
                        row[f"{k}_ms"], row[f"{k}_per_step_ms"], row[f"{k}_share"] = wall * v, wall * v / 16, v
                    split.append(row)
            for rep_ in range(3):
                totals.append(
                    dict(config=c["name"], repeat=rep_, phase=phase, e2e_ms=tot * rng.uniform(0.9, 1.1), steps=16)
                )
        for s in range(4):
            steps.append(dict(config=c["name"], repeat=0, phase="decode", step=s, context_len=129 + s, e2e_ms=1.0 + s))
    ops_df, th_df = pd.DataFrame(ops), pd.DataFrame(th)
    pr = []
    for p in pairs:
        oa, ob = (
            ops_df[ops_df["config"] == p["a"]] if len(ops_df) else ops_df,
            ops_df[ops_df["config"] == p["b"]] if len(ops_df) else ops_df,
        )
        if oa.empty or ob.empty:
            continue
        for phase in PHASES:
            ia = oa[oa["phase"] == phase].set_index("op")
            ib = ob[ob["phase"] == phase].set_index("op")
            items = [(op, ia.loc[op], ib.loc[op]) for op in ia.index if op in ib.index]
            pa = pd.DataFrame(ps)
            ea = pa[(pa["config"] == p["a"]) & (pa["phase"] == phase)].iloc[0]
            eb = pa[(pa["config"] == p["b"]) & (pa["phase"] == phase)].iloc[0]
            items.append(("end_to_end", ea, eb))
            for op, ra, rb in items:
                modeled = bool(ra.get("modeled", False)) or bool(rb.get("modeled", False))
                ta = rng.uniform(0.01, 100) if modeled else ra["median_ms"]
                tb = rng.uniform(0.01, 100) if modeled else rb["median_ms"]
                sp = tb / ta
                theory = float(np.exp(rng.uniform(-2, 2)))
                mot = sp / theory
                pr.append(
                    dict(
                        label=p["label"],
                        a=p["a"],
                        b=p["b"],
                        phase=phase,
                        op=op,
                        view="modeled" if modeled else "wall",
                        time_a_ms=ta,
                        time_b_ms=tb,
                        speedup=sp,
                        speedup_lo=math.nan if modeled else sp * rng.uniform(0.5, 0.99),
                        speedup_hi=math.nan if modeled else sp * rng.uniform(1.01, 1.6),
                        bound="mixed" if op == "end_to_end" else ("link" if op in COLLECTIVE_OPS else "memory"),
                        resource_ratio=1.0,
                        theory_speedup=theory,
                        measured_over_theory=mot,
                        flagged=abs(mot - 1) > PARAMS["ratio_flag"],
                        modeled=modeled,
                    )
                )
    raw = dict(
        ops_summary=ops_df,
        phase_summary=pd.DataFrame(ps),
        theory_ops=th_df,
        pairs=pd.DataFrame(pr),
        allreduce=pd.DataFrame(ar),
        phase_split=pd.DataFrame(split),
        failures=pd.DataFrame(fail),
        steps=pd.DataFrame(steps),
        phase_totals=pd.DataFrame(totals),
    )
    t = {}
    for name, (_, cols) in TABLES.items():
        df = raw.get(name)
        t[name] = normalize(name, df if df is not None and len(df) else pd.DataFrame(columns=cols))
    eff, threshold = P.load_efficiencies(ROOT / "config/efficiencies.yaml")
    if len(th_df):
        pred = P.predict_ops(th_df, eff, P.measured_configs(t["phase_summary"]))
        phases = P.predict_phases(pred, th_df, t["ops_summary"], t["phase_summary"], threshold)
        t["predicted"] = normalize("predicted", pred)
        t["predicted_phases"] = normalize("predicted_phases", phases)
        t["predicted_pairs"] = normalize("predicted_pairs", P.predict_pairs(pred, phases, pairs))
    t["efficiencies"] = normalize("efficiencies", eff)
    t["provenance"] = prov
    return t


def build(study, figures=None):
    cfgs, pairs, _ = study
    t = tables(study)
    names = [c["name"] for c in cfgs]
    declared = {c["name"]: dict(gpu=c["gpu"], tp=c["tp"], backend="x") for c in cfgs}
    ctx = rep.build_context(t, names, pairs, "random", figures or {}, PARAMS, declared)
    md = rep.environment(TEMPLATE.parent).get_template(TEMPLATE.name).render(**ctx)
    return t, ctx, re.sub(r"\n{3,}", "\n\n", md)


# ----------------------------------------------------------------------------- invariants
def all_sentences(ctx) -> list:
    a = ctx["answers"]
    return (
        [p["s"] for p in a["pairs"]]
        + list(a["why"])
        + list(a["predicted_pairs"])
        + list(a["graph"])
        + list(ctx["sentences"])
        + list(ctx["decode"]["sentences"])
        + list(ctx["predict"]["sentences"])
        + list(ctx["predict"]["seed_sentences"])
    )


def _cell(t, e):
    df = t[e.table]
    mask = pd.Series(True, index=df.index)
    for k, v in e.key.items():
        mask &= df[k].map(
            lambda x, v=v: x == v or (isinstance(x, float) and isinstance(v, float) and math.isclose(x, v))
        )
    hits = df[mask]
    assert len(hits) == 1, (e, len(hits))
    return hits.iloc[0][e.column]


def check_sentences(t, ctx):
    ev = {e.id: e for e in ctx["evidence"]}
    for e in ev.values():
        cell = _cell(t, e)
        assert math.isclose(float(cell), float(e.value), rel_tol=1e-12), e
        assert e.shown == rep.FORMATS[e.fmt](float(cell)), e
    for s in all_sentences(ctx):
        text = re.sub(r"(`+).*?\1", "", s.text)  # op names
        text = re.sub(r"\*\*[^*]*\*\*", "", text)  # config names and labels (bold)
        allowed = set()
        for eid in s.evidence:
            allowed.update(NUM.findall(ev[eid].shown))
            allowed.update(str(v) for v in ev[eid].key.values())
            allowed.update(NUM.findall(" ".join(str(v) for v in ev[eid].key.values())))
            allowed.update(str(int(v)) for v in ev[eid].key.values() if isinstance(v, float) and v.is_integer())
        allowed.update({"3", "15"})  # the twin and model tolerances, printed as "3 %" and "15 %"
        missing = [x for x in NUM.findall(text) if x not in allowed]
        assert not missing, f"numbers {missing} not from the cited cells {s.evidence}: {s.text}"
        assert not re.search(r"not among them|not established|is not among", s.text), s.text


def check_disagreements(t, ctx):
    rows = [ln for ln in ctx["disagreement_table"].splitlines()[2:] if ln.startswith("|")]
    assert "(modeled)" not in ctx["disagreement_table"]
    seen_unstable = False
    pr = t["pairs"]
    for ln in rows:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]]
        label, phase, op = cells[0].replace("\\", ""), cells[1], cells[2].strip("`")
        q = pr[(pr["label"] == label) & (pr["phase"] == phase) & (pr["op"] == op)]
        assert len(q) and not q["modeled"].any(), ln
        unstable = cells[-1] == "**unstable**"
        assert not (seen_unstable and not unstable), "a stable row ranks after an unstable one"
        seen_unstable |= unstable


def check_printed(md):
    assert not re.search(r"\bnan\b|\binf\b|NaN", md), re.search(r".{40}(\bnan\b|\binf\b|NaN).{40}", md)
    assert not re.search(r"(?<![\w.,])-\d[\d,.]* ms", md), "negative time printed"
    for ln in md.splitlines():
        if "predicted" in ln.lower():
            assert not re.search(r"(?<![\w.,])0 ms", ln), f"a 0 ms prediction: {ln}"


def check_answers(md):
    assert md.count("## Answers") == 1
    block = md.split("## Answers", 1)[1].split("**Contents:**", 1)[0]
    assert len(block.strip().splitlines()) <= ANSWER_LINES, block


@settings(max_examples=200, **SETTINGS)
@given(studies())
def test_random_studies_keep_the_invariants(study):
    t, ctx, md = build(study)
    check_sentences(t, ctx)
    check_disagreements(t, ctx)
    check_printed(md)
    check_answers(md)
    for c in study[0]:
        p = t["predicted"][t["predicted"]["config"] == c["name"]] if len(t["predicted"]) else []
        if c["gpu"] == "cpu" and len(p):
            assert p["predicted_ms"].isna().all() and (p["calibration"] == P.NO_CALIBRATION).all()
            assert f"{c['name']}**: {P.NO_CALIBRATION}" in md.replace("\\", "")


@settings(max_examples=6, **SETTINGS)
@given(studies())
def test_random_studies_draw_every_figure(tmp_path_factory, study):
    from PIL import Image

    cfgs, pairs, _ = study
    t = tables(study)
    out = tmp_path_factory.mktemp("fig")
    names = [c["name"] for c in cfgs]
    figs = rep.make_figures(t, names, pairs, out, 0.1, "figures")
    ctx = rep.build_context(t, names, pairs, "random", figs, PARAMS)
    md = rep.environment(TEMPLATE.parent).get_template(TEMPLATE.name).render(**ctx)
    links = re.findall(r"!\[[^\]]*\]\(figures/([^)]+)\)", md)
    assert set(links) == {p.name for p in out.glob("*.png")}
    for name in links:
        with Image.open(out / name) as im:
            im.verify()
    if not any(not c["failed"] for c in cfgs):
        assert not [x for x in links if not x.startswith("predicted")], "placeholder figures for a study with no data"


def test_seed_quotes_render_exactly():
    """Each claim's quote reaches the rendered report unchanged (non-breaking spaces kept)."""
    claims = yaml.safe_load((ROOT / "config/seed_claims.yaml").read_text())
    claims = claims.get("claims", claims) if isinstance(claims, dict) else claims
    rows = [
        dict(
            id=c["id"],
            config="",
            section=c["section"],
            quote=c["quote"],
            kind=c.get("kind", ""),
            reading=c.get("reading", ""),
            status="",
        )
        for c in claims
    ]
    assert any("\u00a0" in r["quote"] for r in rows)  # the case that broke
    t = tables(
        (
            [
                dict(
                    name="a",
                    tp=1,
                    gpu="H100-SXM",
                    emulate=False,
                    transport="auto",
                    failed=False,
                    sweep=False,
                    ranks=False,
                )
            ],
            [],
            1,
        )
    )
    t["seed_claims"] = normalize("seed_claims", pd.DataFrame(rows))
    ctx = rep.build_context(t, ["a"], [], "q", {}, PARAMS)
    md = rep.environment(TEMPLATE.parent).get_template(TEMPLATE.name).render(**ctx)
    plain = re.sub(r"\\(.)", r"\1", md)
    for r in rows:
        assert r["quote"] in plain, r["id"]


@pytest.mark.parametrize("gpu", ["cpu"])
def test_cpu_is_not_predicted_with_gpu_efficiencies(gpu):
    study = (
        [dict(name="x", tp=2, gpu=gpu, emulate=False, transport="auto", failed=False, sweep=True, ranks=False)],
        [],
        3,
    )
    t = tables(study)
    assert t["predicted_phases"]["status"].eq("not predicted").all()
