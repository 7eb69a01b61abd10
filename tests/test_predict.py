"""Predict mode: arithmetic on synthetic tables, sourced defaults, seed quotes, and an all-failed study.

The arithmetic tests are pure (no pipeline). One module-scoped run renders the seed study on
this CPU machine (every measure job fails its GPU guard) and checks the report still shows
predictions, labelled as such, with every number in their sentences cited.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, copy_workflow, snakemake
from opbreak import predict as P
from opbreak import seed_check as S
from opbreak.aggregate import aggregate
from opbreak.provenance import _nvidia_driver_present

SEED_TEXT = ROOT.parent / "shared/seed/lightllm-static-perf-analysis.zh.md"
EFF = ROOT / "config/efficiencies.yaml"


def _theory(rows):
    cols = ["config", "phase", "op", "t_bound_ms", "measured_ms", "modeled"]
    return pd.DataFrame(rows, columns=cols).assign(bound="compute")


def _eff(value=0.5):
    doc = yaml.safe_load(EFF.read_text())
    for cls in doc["efficiencies"].values():
        for e in cls.values():
            e["value"] = value
    return P.efficiency_table(doc)


# ----------------------------------------------------------------------------- arithmetic
def test_op_classes_cover_every_model_op():
    from opbreak.ops import MODEL_OPS

    for phase in ("prefill", "decode"):
        assert all(P.op_class(o, phase) in P.classes_of(phase) for o in MODEL_OPS)
    assert P.op_class("attention", "decode") == "attention_decode"
    assert P.op_class("host_gap", "decode") is None
    with pytest.raises(KeyError, match="not in opbreak.ops"):  # a new op needs its entry, not a silent None
        P.op_class("rotary", "decode")


def test_calibrate_is_time_weighted_and_skips_modeled():
    t = _theory(
        [
            ("a", "prefill", "qkv_proj", 1.0, 2.0, False),
            ("a", "prefill", "ffn", 3.0, 4.0, False),
            ("a", "prefill", "all_reduce", 5.0, 5.0, True),
            ("a", "prefill", "host_gap", 0.0, 9.0, False),
        ]
    )
    cal = P.calibrate(t, label="x").set_index(["op_class", "phase"])
    assert math.isclose(cal.loc[("gemm", "prefill"), "efficiency"], 4.0 / 6.0)
    assert ("collective", "prefill") not in cal.index  # a modeled time is not evidence


def test_merge_replaces_per_class_only():
    d = _eff(0.5)
    cal = pd.DataFrame([dict(op_class="gemm", phase="prefill", efficiency=0.8, calibration="c", source="s")])
    m = P.merge_efficiencies(d, cal).set_index(["op_class", "phase"])
    assert m.loc[("gemm", "prefill"), "efficiency"] == 0.8 and m.loc[("gemm", "prefill"), "calibration"] == "c"
    assert m.loc[("gemm", "decode"), "efficiency"] == 0.5 and len(m) == len(d)


def test_predict_ops_divides_and_labels():
    t = _theory(
        [
            ("m", "prefill", "ffn", 2.0, 5.0, False),
            ("m", "prefill", "all_reduce", 1.0, 1.0, True),
            ("p", "prefill", "ffn", 4.0, np.nan, False),
            ("p", "prefill", "o_proj", 0.0, np.nan, False),
        ]
    )
    phases = pd.DataFrame([dict(config="m", phase="prefill", median_ms=6.0)])
    pred = P.predict_ops(t, _eff(0.5), P.measured_configs(phases))
    r = pred.set_index(["config", "op"])
    assert r.loc[("m", "ffn"), "predicted_ms"] == 4.0 and r.loc[("p", "ffn"), "predicted_ms"] == 8.0
    assert set(pred.loc[pred["config"] == "p", "status"]) == {"predicted"}  # never labelled measured
    assert np.isnan(r.loc[("m", "all_reduce"), "measured_ms"])  # a modeled time is no measurement
    assert (pred["predicted_ms"] >= 0).all()
    s = pred["predicted_share"].dropna()
    assert ((s >= 0) & (s <= 1)).all()
    assert np.allclose(pred.groupby("config")["predicted_share"].sum(), 1.0)
    no_ops = pd.DataFrame(columns=["config", "phase", "op", "median_ms"])
    ph = P.predict_phases(pred, t.assign(efficiency=np.nan), no_ops, phases, 0.05).set_index("config")
    assert math.isclose(ph.loc["m", "predicted_over_measured"], 4.0 / 6.0)  # modeled collective not compared
    assert np.isnan(ph.loc["p", "measured_ms"])
    pairs = P.predict_pairs(pred, ph.reset_index(), [{"a": "m", "b": "p"}]).set_index("op")
    assert math.isclose(pairs.loc["ffn", "predicted_speedup"], 2.0)


def test_efficiency_file_needs_a_source_for_every_value():
    doc = yaml.safe_load(EFF.read_text())
    del doc["efficiencies"]["gemm"]["decode"]["source"]
    with pytest.raises(P.EfficiencyError, match="gemm.decode.source"):
        P.efficiency_table(doc)


def test_default_efficiencies_are_the_committed_h100_evidence():
    """Compute classes: recomputed from the file config/efficiencies.yaml cites."""
    ops = pd.read_csv(ROOT / "docs/examples/single-gpu/report/tables/ops.csv")
    ops = ops[ops["config"].isin(["h100-7b-tp1", "h100-70b-etp4", "h100-70b-etp8"])]  # the file's 3 H100 configs
    cal = P.calibrate(ops).set_index(["op_class", "phase"])["efficiency"]
    defaults, _ = P.load_efficiencies(EFF)
    for r in defaults.itertuples():
        if r.op_class != "collective":
            assert f"{cal[(r.op_class, r.phase)]:.3g}" == f"{r.efficiency:.3g}", (r.op_class, r.phase)


# ----------------------------------------------------------------------------- seed claims
def test_seed_claims_quote_the_seed_exactly():
    claims = S.load_claims(ROOT / "config/seed_claims.yaml")
    assert len(claims) >= 10
    if not SEED_TEXT.exists():
        pytest.skip("seed text not beside the repository")
    text = SEED_TEXT.read_text()
    for c in claims:
        assert c["quote"] in text and c["section"] in text, c["id"]


def test_seed_claim_arithmetic():
    pred = pd.DataFrame(
        [
            ("a", "prefill", "ffn", 1.0),
            ("b", "prefill", "ffn", 2.0),
            ("a", "prefill", "all_reduce", 0.5),
            ("b", "prefill", "all_reduce", 0.5),
        ],
        columns=["config", "phase", "op", "predicted_ms"],
    )
    claims = [
        dict(
            id="s",
            section="x",
            quote="q",
            kind="speedup",
            phase="prefill",
            a="a",
            b="b",
            ops=["ffn"],
            seed_value=2.0,
            analogue=dict(what="w", a_value=1.0, b_value=4.0),
        ),
        dict(
            id="d",
            section="x",
            quote="q",
            kind="differ_by",
            phase="prefill",
            a="a",
            b="b",
            ops=["ffn", "all_reduce"],
            seed_value=0.6,
        ),
        dict(
            id="m",
            section="x",
            quote="q",
            kind="at_most",
            phase="prefill",
            a="a",
            b="b",
            ops=["all_reduce"],
            seed_value=1.0,
        ),
        dict(id="p", section="x", quote="q", kind="dominant_op", phase="prefill", configs=["a", "zz"], expect_op="ffn"),
    ]
    out = S.evaluate(claims, pred, 0.25).set_index(["id", "config"])
    s = out.loc[("s", "a vs b")]
    assert s["predicted_value"] == 2.0 and s["predicted_agrees"] and s["analogue_value"] == 4.0
    assert not s["analogue_agrees"]
    assert math.isclose(out.loc[("d", "a vs b"), "predicted_value"], 1.0 / 1.5)
    assert out.loc[("m", "a vs b"), "predicted_agrees"]
    assert out.loc[("p", "a"), "predicted_op"] == "ffn" and out.loc[("p", "a"), "predicted_agrees"]
    assert out.loc[("p", "zz"), "status"] == "config not in this study"


# ----------------------------------------------------------------------------- all-failed study
def test_aggregate_of_all_failed_jobs_is_empty_not_an_error(tmp_path):
    import json

    spec = {"name": "c", "device": "cuda", "num_gpus": 1}
    prov = tmp_path / "p.json"
    prov.write_text(json.dumps(dict(config="c", repeat=0, status="failed", error="no GPU", spec=spec)))
    out = aggregate([(tmp_path / "o.csv", tmp_path / "s.csv", prov)], {"c": spec}, 0.1)
    assert out["ops_summary"].empty and "median_ms" in out["ops_summary"]
    assert list(out["failures"]["error"]) == ["no GPU"]


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    if _nvidia_driver_present():
        pytest.skip("a GPU host would try to run the seed's configs")
    wf = copy_workflow(tmp_path_factory.mktemp("seed") / "wf")
    snakemake(
        wf, "-k", "report/all.md", "--configfile", "config/studies/seed.yaml", "--config", "repeats=1", timeout=600
    )
    return wf


def test_all_failed_seed_study_renders_predictions(seed_run):
    wf = seed_run
    md = (wf / "report/all.md").read_text()
    assert "0 of 8 declared configs have data" in md
    assert md.count("predicted only") == 8 and "has no CUDA" in md  # status and the failure reason
    pred = pd.read_csv(wf / "results/theory/predicted.csv")
    assert set(pred["status"]) == {"predicted"} and pred["measured_ms"].isna().all()
    assert (pred["predicted_ms"] >= 0).all() and pred["predicted_share"].between(0, 1).all()
    for png in re.findall(r"\((figures/predicted_[^)]+)\)", md):
        assert (wf / "report" / png).exists()
    claims = pd.read_csv(wf / "results/theory/seed_claims.csv")
    assert claims["status"].eq("predicted").all()


def test_predicted_sentences_cite_their_numbers(seed_run):
    from test_report import NUM, _evidence, _lookup

    wf = seed_run
    md = (wf / "report/all.md").read_text()
    ev = _evidence(md)
    sec = md.split("## Predictions")[1].split("## Conclusions")[0]
    bullets = [ln for ln in sec.splitlines() if ln.startswith("- ")]
    assert len(bullets) >= 10
    study = yaml.safe_load((ROOT / "config/studies/seed.yaml").read_text())
    names = sorted(study["configs"], key=lambda c: -len(c["name"]))
    labels = [p["label"] for p in study["pairs"]]
    for b in bullets:
        refs = re.findall(r"\[(E\d+)\]\(#e\d+\)", b)
        text = re.sub(r"\[E\d+\]\(#e\d+\)", "", b)
        text = re.sub(r"(`+).*?\1", "", text)
        for n in [c["name"] for c in names] + labels:
            text = text.replace(n, "")
        cited = set()
        for r in refs:
            cited.update(NUM.findall(ev[r]["shown"]))
            e = ev[r]
            assert math.isclose(float(_lookup(wf, e["table"], e["row"], e["column"])), float(e["value"]), rel_tol=1e-12)
        missing = [x for x in NUM.findall(text) if x not in cited]
        assert not missing, (missing, b)


def test_measured_config_sentences_cite_every_number():
    """Pure: a measured and a predicted-only config, the sentence numbers are exactly the cited cells."""
    from test_report import NUM

    from opbreak import report as rep
    from opbreak.report import predict as RP

    ph = pd.DataFrame(
        [
            dict(
                config="m",
                phase="prefill",
                status="measured",
                predicted_ms=12.5,
                measured_ms=10.0,
                predicted_over_measured=1.25,
                host_bound_share=0.01,
                calibration="default",
            ),
            dict(
                config="m",
                phase="decode",
                status="measured",
                predicted_ms=30.0,
                measured_ms=60.0,
                predicted_over_measured=0.5,
                host_bound_share=0.4,
                calibration="default",
            ),
            dict(
                config="p",
                phase="prefill",
                status="predicted",
                predicted_ms=7.0,
                measured_ms=np.nan,
                predicted_over_measured=np.nan,
                host_bound_share=np.nan,
                calibration="default",
            ),
        ]
    )
    trace = rep.EvidenceLog()
    out = RP.phase_sentences({"predicted_phases": ph}, ["m", "p"], trace, measured_only_in_table=False)
    assert len(out) == 3 and "not measured" in out[-1].text and "host-bound" in out[1].text
    # in the report a measured config's prediction stands in the totals table only
    assert len(RP.phase_sentences({"predicted_phases": ph}, ["m", "p"], rep.EvidenceLog())) == 1
    for s in out:
        text = s.text.replace("**m**", "").replace("**p**", "")
        shown = {x for e in s.evidence for x in NUM.findall(trace.rows[int(e[1:]) - 1].shown)}
        assert set(NUM.findall(text)) <= shown, s.text


def test_calibrate_from_a_committed_study():
    spec = {"tables": "docs/examples/single-gpu/report/tables", "configs": ["h100-7b-tp1"], "label": "7b"}
    cal = P.calibration_from(spec, ROOT)
    assert set(cal["calibration"]) == {"7b"} and "h100-7b-tp1" in cal["source"].iloc[0]
    merged = P.merge_efficiencies(P.load_efficiencies(EFF)[0], cal)
    assert set(merged.loc[merged["op_class"] == "collective", "calibration"]) == {"default"}  # no measured collective
    with pytest.raises(P.EfficiencyError, match="not found"):
        P.calibration_from("no/such/folder", ROOT)
