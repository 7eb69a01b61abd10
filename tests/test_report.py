"""The report (step 4) rendered from a real small CPU run of the pipeline.

One module-scoped run: the workflow copied to a temp dir, a tiny two-config study
(TP1 vs TP2 over gloo, 3 repeats, an all-reduce sweep) run through
``snakemake report/all.md``. Then:

* every figure the Markdown links exists and is a valid PNG (and every PNG is linked);
* every number in a generated sentence equals the table cell it cites (re-read here
  from the CSVs), and every cited cell is printed in the evidence table;
* a declared config with no rows (and a pair using it) renders as missing;
* config strings and labels are escaped.
"""

from __future__ import annotations

import copy
import math
import re
import struct
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, copy_workflow, snakemake
from opbreak import report as rep
from opbreak.config import schema
from opbreak.ops import OP_COLORS, OPS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABEL = "TP2 vs TP1 `gloo` | <i>x</i>"
NUM = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e[+-]?\d+)?")
# The report's settings as rules/report.smk passes them for a study that sets none: the schema's defaults.
REPORT_PARAMS = {k: schema()["properties"][k]["default"] for k in ("unstable_cv", "ratio_flag")}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("report") / "wf")
    cfg = yaml.safe_load((ROOT / "tests/data/tiny.yaml").read_text())
    cfg["repeats"] = 3
    cfg["pairs"] = [{"a": "t2", "b": "t1", "label": LABEL}]
    cfg["allreduce_sweep"] = {"sizes": [4096, 65536, 1048576], "iters": 5}
    (wf / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    snakemake(wf, "report/all.md", timeout=300)
    return wf, cfg


def _paths(wf: Path) -> dict:
    paths = {k: str(wf / p) for k, p in rep.TABLE_PATHS.items()}
    paths["provenance"] = str(wf / "results/aggregate/provenance.json")
    return paths


def _section(md: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", md, flags=re.S | re.M)
    assert m, f"section {title!r} missing"
    return m.group(1)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _uncode(cell: str) -> str:
    m = re.fullmatch(r"(`+) ?(.*?) ?\1", cell)
    return m.group(2).replace("\\|", "|") if m else cell


def _evidence(md: str) -> dict:
    rows = {}
    for line in _section(md + "\n## end\n", "Evidence").splitlines():
        if not line.startswith("| <a id="):
            continue
        eid, table, row, column, value, shown = _cells(line)
        eid = re.sub(r"<a id=\"[^\"]+\"></a>", "", eid)
        rows[eid] = dict(
            table=_uncode(table),
            row=row.replace("\\", ""),
            column=_uncode(column),
            value=_uncode(value),
            shown=shown.replace("\\", ""),
        )
    return rows


def _lookup(wf: Path, table: str, row: str, column: str):
    df = pd.read_csv(wf / table, dtype=str, keep_default_na=False)
    mask = pd.Series(True, index=df.index)
    for part in row.split(", "):
        k, v = part.split("=", 1)
        col = df[k]
        try:
            fv = float(v)
            mask &= col.map(lambda x, fv=fv: x != "" and math.isclose(float(x), fv, rel_tol=1e-12))
        except ValueError:
            mask &= col == v
    hits = df[mask]
    assert len(hits) == 1, f"{table}: row {row} matches {len(hits)} rows"
    return hits.iloc[0][column]


# ----------------------------------------------------------------------------- figures
def test_every_figure_exists_and_is_a_png(run):
    wf, _ = run
    md_path = wf / "report/all.md"
    md = md_path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) >= 10, links
    for link in links:
        assert not link.startswith("/") and ".." not in link, f"image path not relative: {link}"
        p = md_path.parent / link
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC, f"{link} is not a PNG"
        w, h = struct.unpack(">II", data[16:24])
        assert w >= 300 and h >= 150, f"{link}: {w}x{h} too small"
        from PIL import Image

        with Image.open(p) as im:
            im.verify()
    on_disk = {f"figures/{p.name}" for p in (wf / "report/figures").glob("*.png")}
    assert on_disk == set(links), f"unlinked or missing figures: {on_disk ^ set(links)}"


# ----------------------------------------------------------------------------- traceability
def test_every_cited_number_is_the_table_cell(run):
    wf, _ = run
    ev = _evidence((wf / "report/all.md").read_text())
    assert len(ev) >= 10
    for eid, e in ev.items():
        cell = _lookup(wf, e["table"], e["row"], e["column"])
        assert math.isclose(float(cell), float(e["value"]), rel_tol=1e-12), (eid, cell, e)
        shown = {f(float(cell)) for f in rep.FORMATS.values()}
        assert e["shown"] in shown, (eid, e["shown"], shown)


def test_evidence_ids_are_numbered_as_a_reader_meets_them(run):
    """E1, E2, ... in the order the body first cites them (the Evidence table lists them in that order)."""
    wf, _ = run
    md = (wf / "report/all.md").read_text()
    body = md.split("\n## Evidence", 1)[0]
    first = list(dict.fromkeys(int(i) for i in re.findall(r"\[E(\d+)\]\(#e\d+\)", body)))
    assert len(first) >= 10 and first == sorted(first), first[:40]


def test_every_number_in_a_sentence_is_cited(run):
    wf, cfg = run
    md = (wf / "report/all.md").read_text()
    ev = _evidence(md)
    names = sorted([c["name"] for c in cfg["configs"]] + [rep.md_escape(LABEL)], key=len, reverse=True)
    bullets = [ln for ln in _section(md, "Conclusions").splitlines() if ln.startswith("- ")]
    assert len(bullets) >= 6
    topics = {"largest share": False, "speedup": False, "ring model": False}
    for b in bullets:
        refs = re.findall(r"\[(E\d+)\]\(#e\d+\)", b)
        text = re.sub(r"\[E\d+\]\(#e\d+\)", "", b)
        text = re.sub(r"(`+).*?\1", "", text)  # op names, column names
        for n in names:
            text = text.replace(n, "")
        nums = NUM.findall(text)
        cited = set()
        for r in refs:
            assert r in ev, f"sentence cites {r}, not in the evidence table: {b}"
            cited.update(NUM.findall(ev[r]["shown"]))
        missing = [x for x in nums if x not in cited]
        assert not missing, f"numbers {missing} not from the cited rows {refs}: {b}"
        if nums:
            assert refs, f"sentence with numbers but no evidence: {b}"
        for k in topics:
            topics[k] |= k in b
    assert all(topics.values()), topics  # dominant op, pair speedups and the all-reduce model all concluded


def test_dominant_op_matches_table(run):
    wf, _ = run
    ops = pd.read_csv(wf / "results/aggregate/ops_summary.csv")
    md = (wf / "report/all.md").read_text()
    rows = {ln.split(" | ")[0][2:]: ln for ln in _section(md, "Answers").splitlines() if ln.startswith("| ")}
    for (cfg, phase), g in ops.dropna(subset=["share"]).groupby(["config", "phase"]):
        top = g.loc[g["share"].idxmax()]
        cells = _cells(rows[cfg])
        assert cells[1 if phase == "prefill" else 3].startswith(f"`{top['op']}` {rep.f_pct(top['share'])}")


# ----------------------------------------------------------------------------- missing configs, escaping
def test_missing_config_renders(run, tmp_path):
    wf, cfg = run
    ghost = "ghost|`x`<b>[y](z)"
    pairs = copy.deepcopy(cfg["pairs"]) + [{"a": ghost, "b": "t1", "label": "ghost vs t1"}]
    out = tmp_path / "r" / "all.md"
    rep.render(
        _paths(wf),
        out,
        out.parent / "figures",
        ["t1", "t2", ghost],
        pairs,
        "tiny",
        ROOT / "report/templates/all.md.j2",
        {**REPORT_PARAMS, "unstable_cv": 0.5},
    )
    md = out.read_text()
    miss = md.split("### Missing or failed configs")[1].split("###")[0]
    assert rep.md_escape(ghost) in miss and "no rows in `ops_summary.csv`" in miss
    assert "**missing**" in md
    assert "not compared: " + rep.md_escape(ghost) + " has no data" in md
    assert "<b>" not in md and "](z)" not in md and "`x`" not in md
    assert "\\|" in md  # the pipe is escaped, not a table column
    assert "ghost" not in {p.name for p in (out.parent / "figures").glob("*.png")}


def test_renders_without_theory_and_without_data(tmp_path, run):
    wf, _ = run
    paths = _paths(wf)
    for k in ("theory_ops", "pairs", "vanilla", "allreduce", "decode_steps", "ceilings"):
        paths[k] = str(tmp_path / "absent.csv")
    out = tmp_path / "a" / "all.md"
    rep.render(
        paths,
        out,
        out.parent / "figures",
        ["t1", "t2"],
        [{"a": "t2", "b": "t1"}],
        "tiny",
        ROOT / "report/templates/all.md.j2",
        REPORT_PARAMS,
    )
    assert "## Theory" in out.read_text()
    empty = {k: str(tmp_path / "none.csv") for k in list(rep.TABLE_PATHS) + ["provenance"]}
    out2 = tmp_path / "b" / "all.md"
    rep.render(
        empty, out2, out2.parent / "figures", ["t1"], [], "tiny", ROOT / "report/templates/all.md.j2", REPORT_PARAMS
    )
    md = out2.read_text()
    assert "0 of 1 declared configs have data" in md and "No conclusions" in md


def test_escaping():
    assert rep.md_escape("a|b<c>`d`*e_[f](g)\nh") == "a\\|b\\<c\\>\\`d\\`\\*e\\_\\[f\\]\\(g\\) h"
    assert rep.md_code("x`y") == "``x`y``"
    assert rep.md_code("`") == "`` ` ``"
    assert rep.md_code("a|b") == "`a\\|b`"
    assert rep.slug("../etc/passwd x") == "etc_passwd_x"


def test_one_colour_per_operator():
    assert tuple(OP_COLORS) == OPS
    assert len(set(OP_COLORS.values())) == len(OPS)


def test_methods_show_modeled_ops_and_layer_scaling(run, tmp_path):
    """An emulated-TP, truncated-depth config: Methods says what was modeled and how layers were scaled."""
    wf, _ = run
    t = rep.read_tables(_paths(wf))
    ops = t["ops_summary"]
    ar = (ops["config"] == "t2") & (ops["op"] == "all_reduce")
    ops.loc[ar, ["median_ms", "ci_lo_ms", "ci_hi_ms", "cv", "share"]] = float("nan")
    ops.loc[ar, "modeled"] = True
    ops.loc[ops["config"] == "t2", "layer_scale"] = 40.0
    for p in t["provenance"]:
        if p["config"] == "t2":
            p["spec"] = {**p["spec"], "num_layers": 2, "model_layers": 80, "emulate_tp": True}
    ctx = rep.build_context(t, ["t1", "t2"], [], "tiny", {}, REPORT_PARAMS)
    m = {x["config"]: dict(x["items"]) for x in ctx["methods"]}
    assert "`all_reduce`" in m["t2"]["measured vs modeled"] and m["t1"]["measured vs modeled"] == "all ops measured"
    assert (
        "2 of 80 layers measured" in m["t2"]["truncated-layer scaling"] and "40" in m["t2"]["truncated-layer scaling"]
    )
    assert any(s.topic == "modeled" and "`all_reduce`" in s.text for s in ctx["sentences"])
    assert "modeled" in ctx["per_config"][1]["phases"][0]["table"]
    # the first screen says the depth: scaled numbers above, the probe's stack as run
    depth = ctx["answers"]["depth"]
    assert "t2 ran 2 of 80 layers" in depth and "× 40" in depth and "2-layer stack as run" in depth
    assert "t1" not in depth


def test_depth_note_only_for_truncated_configs():
    from opbreak.report.answers import depth_note

    specs = {"a": dict(num_layers=4, model_layers=32), "b": dict(num_layers=32, model_layers=32), "c": {}}
    assert depth_note(specs, ["b", "c"]) == ""
    note = depth_note(specs, ["a", "b"])
    assert note.startswith("a ran 4 of 32 layers") and "× 8" in note and note.count(" ran ") == 1
