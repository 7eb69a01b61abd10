"""Theory: exact LLaMA counts against independent param/attention counts, and properties."""

import math

import numpy as np
import pytest

from conftest import ROOT
from opbreak.config import load_model
from opbreak.ops import MODEL_OPS, SHARDED_OPS
from opbreak.theory import (
    decode_step_costs,
    op_costs,
    roofline,
    theoretical_ratio,
    vanilla_gpt_flops,
)

# The shipped model files (config/models/), not retyped shapes.
L7 = load_model("config/models/llama2-7b.yaml", "llama2-7b", root=ROOT)
L70 = load_model("config/models/llama2-70b.yaml", "llama2-70b", root=ROOT)


def hf_shapes(m):
    """HF LLaMA state-dict shapes, written out independently of opbreak.theory."""
    h, inter, v = m["hidden_size"], m["intermediate_size"], m["vocab_size"]
    kvd = m["num_kv_heads"] * h // m["num_heads"]
    layer = {
        "q_proj": (h, h),
        "k_proj": (kvd, h),
        "v_proj": (kvd, h),
        "o_proj": (h, h),
        "gate_proj": (inter, h),
        "up_proj": (inter, h),
        "down_proj": (h, inter),
        "input_layernorm": (h,),
        "post_attention_layernorm": (h,),
    }
    return {"embed_tokens": (v, h), "lm_head": (v, h), "norm": (h,)}, layer


def n_params(m):
    top, layer = hf_shapes(m)
    return sum(math.prod(s) for s in top.values()) + m["num_layers"] * sum(math.prod(s) for s in layer.values())


def test_param_counts_match_published():
    # published HF parameter counts anchor the test's own shape bookkeeping
    assert n_params(L7) == 6_738_415_616
    assert n_params(L70) == 68_976_648_192


@pytest.mark.parametrize("m", [L7, L70], ids=["7b", "70b"])
def test_prefill_flops_vs_2_params_tokens(m):
    batch, s = 4, 1024
    top, layer = hf_shapes(m)
    matmul_layer = sum(math.prod(v) for k, v in layer.items() if len(v) == 2)
    tokens = batch * s
    expected = 2 * m["num_layers"] * matmul_layer * tokens  # every token through every matmul
    expected += 2 * math.prod(top["lm_head"]) * batch  # lm_head on the last token only
    # causal attention, the common s^2/2 approximation: QK^T + PV = 2 * 2 * s^2/2 * h per layer
    expected += m["num_layers"] * batch * 2 * s * s * m["hidden_size"]
    got = op_costs(m, batch=batch, input_len=s, output_len=1, tp=1, dtype_bytes=2, phase="prefill")["flops"].sum()
    assert got == pytest.approx(expected, rel=0.02)


def test_rows_are_model_ops():
    df = op_costs(L7, batch=1, input_len=8, output_len=4, tp=2, dtype_bytes=2, phase="decode")
    assert tuple(df["op"]) == MODEL_OPS
    assert list(df.columns) == ["op", "flops", "bytes", "comm_bytes", "calls"]


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_linear_in_batch(phase):
    kw = dict(input_len=256, output_len=32, tp=4, dtype_bytes=2, phase=phase)
    a = op_costs(L70, batch=3, **kw).set_index("op")
    b = op_costs(L70, batch=6, **kw).set_index("op")
    np.testing.assert_allclose(b["flops"], 2 * a["flops"], rtol=1e-12)
    np.testing.assert_allclose(b["comm_bytes"], 2 * a["comm_bytes"], rtol=1e-12)
    assert (b["calls"] == a["calls"]).all()
    # bytes are affine: weights are read once per forward whatever the batch
    c = op_costs(L70, batch=9, **kw).set_index("op")
    np.testing.assert_allclose(c["bytes"] - b["bytes"], b["bytes"] - a["bytes"], rtol=1e-9)


def test_prefill_attention_quadratic():
    f = [
        op_costs(L7, batch=1, input_len=s, output_len=1, tp=1, dtype_bytes=2, phase="prefill")
        .set_index("op")
        .at["attention", "flops"]
        for s in (2048, 4096)
    ]
    assert f[1] / f[0] == pytest.approx(4.0, rel=0.001)
    # exact causal convention: s(s+1)/2 pairs per head, 4d + softmax per pair
    s, d = 2048, 128
    assert f[0] == 32 * 32 * s * (s + 1) / 2 * (4 * d + 5)


def test_decode_bytes_dominated_by_weights_at_batch_1():
    steps = 16
    df = op_costs(L7, batch=1, input_len=128, output_len=steps, tp=1, dtype_bytes=2, phase="decode")
    # the weights one forward reads: every parameter the shapes give but the embedding table (2 bytes each)
    w = steps * (n_params(L7) - 32000 * 4096) * 2
    assert w / df["bytes"].sum() > 0.95


@pytest.mark.parametrize("tp", [2, 4, 8])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_tp_shards_flops(tp, phase):
    kw = dict(batch=2, input_len=128, output_len=8, dtype_bytes=2, phase=phase)
    one = op_costs(L70, tp=1, **kw).set_index("op")
    many = op_costs(L70, tp=tp, **kw).set_index("op")
    for op in ("qkv_proj", "o_proj", "ffn", "attention", "lm_head"):
        assert many.at[op, "flops"] * tp == pytest.approx(one.at[op, "flops"], rel=1e-12), op
    assert set(("qkv_proj", "attention")) <= set(SHARDED_OPS)


def test_collective_counts():
    L = L70["num_layers"]
    kw = dict(batch=5, input_len=64, output_len=10, dtype_bytes=2)
    p = op_costs(L70, tp=8, phase="prefill", **kw).set_index("op")
    d = op_costs(L70, tp=8, phase="decode", **kw).set_index("op")
    assert p.at["all_reduce", "calls"] == 2 * L + 1
    assert d.at["all_reduce", "calls"] == 10 * (2 * L + 1)
    assert p.at["all_reduce", "comm_bytes"] == (2 * L + 1) * 5 * 64 * 8192 * 2
    assert d.at["all_reduce", "comm_bytes"] == 10 * (2 * L + 1) * 5 * 8192 * 2
    assert p.at["logits_gather", "comm_bytes"] == 5 * 32000 * 2
    one = op_costs(L70, tp=1, phase="prefill", **kw)
    assert one["comm_bytes"].sum() == 0
    assert one.set_index("op").at["all_reduce", "calls"] == 0


def test_decode_total_is_sum_of_steps():
    kw = dict(batch=3, input_len=50, tp=2, dtype_bytes=2)
    total = op_costs(L70, output_len=7, phase="decode", **kw).set_index("op")
    steps = sum(
        decode_step_costs(L70, step=i, **kw).set_index("op")[["flops", "bytes", "comm_bytes", "calls"]]
        for i in range(7)
    )
    for col in ("flops", "bytes", "comm_bytes", "calls"):
        np.testing.assert_allclose(total[col], steps[col], rtol=1e-12)
    # step cost grows with context (attention reads more KV)
    a = decode_step_costs(L70, step=0, **kw).set_index("op").at["attention", "bytes"]
    b = decode_step_costs(L70, step=100, **kw).set_index("op").at["attention", "bytes"]
    assert b > a


def test_vanilla_gpt_vs_exact_70b():
    df = vanilla_gpt_flops(L70, tokens=1000).set_index("component")
    # GQA: q, o full + k, v 1/8 -> 2.25 h^2 * 2 = 4.5 s h^2 vs the seed's 8
    assert df.at["attn_proj_per_layer", "ratio"] == pytest.approx(4.5 / 8)
    assert df.at["mlp_per_layer", "ratio"] == pytest.approx(6 * 28672 / (16 * 8192))
    assert df.at["attn_proj_per_layer", "seed_flops"] == 8 * 1000 * 8192**2


HW_A = {"peak_tflops": 312, "mem_bw_GBps": 1555}
HW_B = {"peak_tflops": 149.7, "mem_bw_GBps": 696}


def test_roofline_bounds_and_ratio():
    kw = dict(batch=20, input_len=1024, output_len=1024, tp=4, dtype_bytes=2)
    link_a = {"bw_bytes_per_s": 300e9, "alpha_s": 1e-6}
    link_b = {"bw_bytes_per_s": 32e9, "alpha_s": 3e-6}
    pa = roofline(op_costs(L70, phase="prefill", **kw), HW_A, n_gpus=4, link=link_a)
    pb = roofline(op_costs(L70, phase="prefill", **kw), HW_B, n_gpus=4, link=link_b)
    ffn_a, ffn_b = pa.set_index("op").loc["ffn"], pb.set_index("op").loc["ffn"]
    assert ffn_a["bound"] == "compute"
    assert ffn_a["t_compute_s"] == pytest.approx(ffn_a["flops"] / 312e12)
    r = theoretical_ratio(ffn_a, ffn_b)
    assert r["resource_speedup"] == pytest.approx(312 / 149.7)
    assert r["roofline_speedup"] == pytest.approx(312 / 149.7)
    d = roofline(op_costs(L70, phase="decode", **kw), HW_A, n_gpus=4, link=link_a)
    assert d.set_index("op").at["ffn", "bound"] == "memory"
    assert pa.set_index("op").at["all_reduce", "bound"] == "link"
    ar = theoretical_ratio(pa.set_index("op").loc["all_reduce"], pb.set_index("op").loc["all_reduce"])
    assert ar["resource_speedup"] == pytest.approx(300 / 32)
    one = roofline(op_costs(L70, phase="prefill", **{**kw, "tp": 1}), HW_A, n_gpus=1)
    assert one.set_index("op").at["all_reduce", "t_bound_s"] == 0
