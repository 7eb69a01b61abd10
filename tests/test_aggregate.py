"""Aggregation keeps every repeat, scales truncated layers, rejects mislabelled results."""

import json

import pandas as pd
import pytest

from conftest import run_spec
from opbreak.aggregate import aggregate, scale_layers
from opbreak.checks import ProvenanceError, check_provenance
from opbreak.ops import CORE_OPS, LAYER_OPS


def spec(**over):
    return run_spec(**{**dict(name="c", device="cpu", num_gpus=0, tp=2, num_layers=2, model_layers=8, batch=1), **over})


def test_provenance_disagreeing_with_config_is_rejected():
    good = spec()
    check_provenance({"config": "c", "spec": dict(good)}, good, "p.json")
    with pytest.raises(ProvenanceError, match=r"batch: recorded 1 vs config 4"):
        check_provenance({"config": "c", "spec": dict(good)}, spec(batch=4), "p.json")
    with pytest.raises(ProvenanceError, match="measured under a different config"):
        check_provenance({"config": "other", "spec": dict(good)}, good, "p.json")


def test_gpu_count_in_provenance_is_checked():
    s = spec(device="cuda", num_gpus=4)
    with pytest.raises(ProvenanceError, match="ran on 2 devices"):
        check_provenance({"config": "c", "spec": dict(s), "device_count": 2}, s, "p.json")


def test_truncated_layers_are_scaled_to_real_depth():
    ops = pd.DataFrame(
        [
            dict(rank=0, phase="prefill", op=o, time_ms=1.0, calls=2, modeled=False, modeled_bytes=0)
            for o in ("embedding", "ffn", "all_reduce", "lm_head")
        ]
    )
    out, _ = scale_layers(ops, pd.DataFrame(dict(e2e_ms=[4.0])), spec())
    t = out.set_index("op")["time_ms"]
    assert t["ffn"] == pytest.approx(4.0)  # x 8/2
    assert t["embedding"] == 1.0 and t["lm_head"] == 1.0
    # 2L = 4 of the 5 all_reduce calls are per layer: 1 + 4/5 * 3
    assert t["all_reduce"] == pytest.approx(1 + 0.8 * 3)
    assert (out["layer_scale"] == 4).all()
    assert "ffn" in LAYER_OPS


def test_aggregate_end_to_end_on_synthetic_runs(tmp_path):
    s = spec(tp=1, model_layers=2)
    inputs = []
    for rep, scale in enumerate((1.0, 1.1, 0.9)):
        d = tmp_path / f"rep{rep}"
        d.mkdir()
        ops = pd.DataFrame(
            [
                dict(
                    rank=0,
                    phase=ph,
                    op=o,
                    time_ms=t * scale,
                    calls=1,
                    modeled=False,
                    modeled_bytes=0,
                    config="c",
                    repeat=rep,
                )
                for ph in ("prefill", "decode")
                # every core op present (opbreak.checks refuses a cut-off file); the others take no time
                for o, t in (
                    ("ffn", 3.0),
                    ("attention", 1.0),
                    *((x, 0.0) for x in CORE_OPS if x not in ("ffn", "attention")),
                )
            ]
        )
        steps = pd.DataFrame(
            [
                dict(
                    config="c",
                    repeat=rep,
                    rank=0,
                    phase=ph,
                    step=0,
                    context_len=1,
                    e2e_ms=4.0 * scale,
                    attributed_ms=4.0 * scale,
                )
                for ph in ("prefill", "decode")
            ]
        )
        ops.to_csv(d / "ops.csv", index=False)
        steps.to_csv(d / "steps.csv", index=False)
        (d / "prov.json").write_text(json.dumps({"config": "c", "spec": s, "host": "h"}))
        inputs.append((d / "ops.csv", d / "steps.csv", d / "prov.json"))
    t = aggregate(inputs, {"c": s}, unstable_cv=0.05)
    row = t["ops_summary"].set_index(["phase", "op"]).loc[("prefill", "ffn")]
    assert row["median_ms"] == pytest.approx(3.0) and row["n"] == 3
    assert row["share"] == pytest.approx(0.75)
    assert bool(row["unstable"])  # CV 0.1 > 0.05
    assert len(t["ops_repeats"]) == 3 * 2 * len(set(CORE_OPS))
