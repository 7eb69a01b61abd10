"""Exact per-operator cost model of a tensor-parallel LLaMA forward, and its roofline.

Why this module exists: the seed study judged its measurements against vanilla-GPT
formulas (8sh^2 attention projections, 16sh^2 MLP) and bare datasheet ratios. LLaMA2
has grouped-query attention, a SwiGLU MLP and an untied lm_head applied to the last
token only, so those formulas are off by large factors for the 70B model. Here every
model operator of :data:`opbreak.ops.MODEL_OPS` gets its FLOPs, device-memory bytes
and collective message bytes, per tensor-parallel rank, so the report can put a
theoretical number next to every measured one.

Conventions (all stated once, here):

* FLOPs: 2 per multiply-add. Elementwise work is counted approximately with fixed
  per-element constants (``NORM_FLOPS_PER_ELEM`` ...), always per rank.
* Causal attention counts exactly the (query, key) pairs a causal kernel needs:
  query at position j (1-based) attends to j keys, so a prefill sequence of s tokens
  has s(s+1)/2 pairs per head (masked-out pairs and tile waste are NOT counted).
  Each pair costs 2*d (QK^T) + 2*d (PV) + ``SOFTMAX_FLOPS_PER_SCORE``. A decode
  token at context length c (cache including itself) has c pairs per head.
* Bytes: the fewest bytes the op must move through device memory: each weight is
  read once per forward, activations read once and written once, KV cache read
  by ``attention`` and written by ``kv_cache_write``; fused intermediates (e.g. the
  SwiGLU gate/up outputs, attention scores) are assumed to stay on chip.
* Embedding: vocab-parallel; under uniform token ids a rank gathers on average
  1/tp of the rows from its shard and writes the full tokens x hidden output.
* ``comm_bytes``: the collective's message size M per call (all_reduce: the
  tokens x hidden buffer; all_gather: the full gathered output, as nccl-tests
  sizes it), summed over calls. Zero when tp == 1 (no collective runs, calls 0).
* Everything is per TP rank and for the full model depth; decode totals are sums
  over ``output_len`` steps, step i (0-based) reading a KV context of
  ``input_len + i + 1`` tokens.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from opbreak.collectives import ring_allgather_time, ring_allreduce_time
from opbreak.ops import COLLECTIVE_OPS, MODEL_OPS

# Approximate elementwise FLOP constants (stated so they can be audited).
NORM_FLOPS_PER_ELEM = 4  # RMSNorm: square, accumulate, scale by rsqrt, scale by weight
ROTARY_FLOPS_PER_ELEM = 3  # x*cos + rotate_half(x)*sin: 2 mul + 1 add
SOFTMAX_FLOPS_PER_SCORE = 5  # scale, running max, subtract, exp, accumulate
SWIGLU_FLOPS_PER_ELEM = 5  # silu(g) = g / (1 + exp(-g)) ~ 4, times up ~ 1
SAMPLING_FLOPS_PER_LOGIT = 5  # temperature, max, exp, sum, compare/top-k
TOKEN_ID_BYTES = 8  # int64 token ids (torch default index dtype)

COST_COLUMNS = ["op", "flops", "bytes", "comm_bytes", "calls"]

_MODEL_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "vocab_size",
)


# --------------------------------------------------------------------------- shapes
def _shard(model: Mapping, tp: int) -> dict:
    """Per-rank shapes under Megatron/LightLLM sharding; raises on impossible splits."""
    missing = [k for k in _MODEL_KEYS if k not in model]
    if missing:
        raise KeyError(f"model {model.get('name', '?')!r} lacks {missing}")
    if tp < 1:
        raise ValueError(f"tp must be >= 1, got {tp}")
    h = int(model["hidden_size"])
    nh = int(model["num_heads"])
    nkv = int(model["num_kv_heads"])
    inter = int(model["intermediate_size"])
    vocab = int(model["vocab_size"])
    if h % nh:
        raise ValueError(f"hidden_size {h} not divisible by num_heads {nh}")
    if nh % tp:
        raise ValueError(f"num_heads {nh} not divisible by tp {tp}")
    if inter % tp:
        raise ValueError(f"intermediate_size {inter} not divisible by tp {tp}")
    if nkv % tp == 0:
        kv_r = nkv // tp
    elif tp % nkv == 0:  # kv heads replicated so each rank holds one
        kv_r = 1
    else:
        raise ValueError(f"num_kv_heads {nkv} and tp {tp} do not divide")
    return dict(
        h=h,
        d=h // nh,
        L=int(model["num_layers"]),
        q_r=nh // tp,
        kv_r=kv_r,
        inter_r=inter // tp,
        vocab_r=math.ceil(vocab / tp),
        vocab=vocab,
        tp=tp,
    )


def _vocab_costs(s: dict, T, F, last, b) -> dict:
    """The ends that touch the vocabulary: the embedding lookup of the new tokens, and lm_head and
    sampling of each sequence's last token (all ``(flops, bytes, comm_bytes, calls)``)."""
    h, v_r, V, tp = s["h"], s["vocab_r"], s["vocab"], s["tp"]
    return {
        "embedding": (
            0,
            T * TOKEN_ID_BYTES + T * h * b / tp + T * h * b,
            0,
            F,
        ),
        "lm_head": (
            2 * last * h * v_r,
            F * v_r * h * b + last * h * b + last * v_r * b,
            0,
            F,
        ),
        "sampling": (
            SAMPLING_FLOPS_PER_LOGIT * last * V,
            last * V * b + last * TOKEN_ID_BYTES,
            0,
            F,
        ),
    }


def _norm_cost(layers, rows, F, h, b) -> tuple:
    """An RMSNorm over ``rows`` tokens in each of ``layers`` layers, its weight read once per forward."""
    return (
        layers * NORM_FLOPS_PER_ELEM * rows * h,
        layers * (2 * rows * h * b + F * h * b),
        0,
        layers * F,
    )


def _attention_costs(s: dict, T, F, b, pairs_per_head, kv_read_tokens) -> dict:
    """The attention block's matmuls and kernels over all layers (its norm and all_reduce apart)."""
    h, d, L = s["h"], s["d"], s["L"]
    q_r, kv_r = s["q_r"], s["kv_r"]
    qkv_w = h * (q_r + 2 * kv_r) * d
    return {
        "qkv_proj": (
            L * (2 * T * qkv_w + ROTARY_FLOPS_PER_ELEM * T * (q_r + kv_r) * d),
            L * (F * qkv_w * b + T * h * b + T * (q_r + 2 * kv_r) * d * b + T * d * b),
            0,
            L * F,
        ),
        "kv_cache_write": (
            0,
            L * 2 * (T * 2 * kv_r * d * b),  # read new k, v; write them into the cache
            0,
            L * F,
        ),
        "attention": (
            L * q_r * pairs_per_head * (4 * d + SOFTMAX_FLOPS_PER_SCORE),
            L * (2 * T * q_r * d * b + kv_read_tokens * 2 * kv_r * d * b),
            0,
            L * F,
        ),
        "o_proj": (
            L * 2 * T * q_r * d * h,
            L * (F * q_r * d * h * b + T * q_r * d * b + T * h * b),
            0,
            L * F,
        ),
    }


def _ffn_cost(s: dict, T, F, b) -> tuple:
    """The SwiGLU MLP over all layers: gate, up and down projections, the gate's activation fused."""
    h, L, i_r = s["h"], s["L"], s["inter_r"]
    return (
        L * (2 * T * h * i_r * 3 + SWIGLU_FLOPS_PER_ELEM * T * i_r),
        L * (F * 3 * h * i_r * b + 2 * T * h * b),
        0,
        L * F,
    )


def _collective_costs(s: dict, T, F, last, b) -> dict:
    """The TP collectives: two all_reduces per layer plus the embedding's, one logits all_gather per
    forward; nothing runs at tp == 1."""
    h, L, v_r, tp = s["h"], s["L"], s["vocab_r"], s["tp"]
    ar_calls = (2 * L + 1) * F if tp > 1 else 0
    ag_calls = F if tp > 1 else 0
    ar_msg_total = T * h * b if tp > 1 else 0  # bytes summed over one call per token set
    return {
        "all_reduce": (
            # reduce-scatter adds (n-1)/n of the buffer; device traffic read+write M
            ((2 * L + 1) * T * h * (tp - 1) / tp) if tp > 1 else 0,
            (2 * L + 1) * 2 * T * h * b if tp > 1 else 0,
            (2 * L + 1) * ar_msg_total,
            ar_calls,
        ),
        "logits_gather": (
            0,
            (last * v_r * b + last * v_r * tp * b) if tp > 1 else 0,
            last * v_r * tp * b if tp > 1 else 0,
            ag_calls,
        ),
    }


def _forward_rows(
    model: Mapping,
    *,
    batch: int,
    new_per_seq: int,
    n_forwards: int,
    pairs_per_head: float,
    kv_read_tokens: float,
    tp: int,
    b: int,
) -> pd.DataFrame:
    """Costs of ``n_forwards`` forwards that each process ``batch*new_per_seq`` tokens.

    ``pairs_per_head`` = total causal (query, key) pairs per attention head summed
    over the batch and all forwards; ``kv_read_tokens`` = total cached tokens whose
    K and V the attention must read (summed likewise). Everything else is linear in
    the token count, plus per-forward weight reads.
    """
    s = _shard(model, tp)
    F = n_forwards
    T = batch * new_per_seq * F  # tokens over all forwards
    last = batch * F  # last-token rows reaching final_norm / lm_head / sampling
    rows = {
        **_vocab_costs(s, T, F, last, b),
        "attn_norm": _norm_cost(s["L"], T, F, s["h"], b),
        **_attention_costs(s, T, F, b, pairs_per_head, kv_read_tokens),
        **_collective_costs(s, T, F, last, b),
        "ffn_norm": _norm_cost(s["L"], T, F, s["h"], b),
        "ffn": _ffn_cost(s, T, F, b),
        "final_norm": _norm_cost(1, last, F, s["h"], b),
    }
    assert set(rows) == set(MODEL_OPS), "theory rows out of sync with opbreak.ops.MODEL_OPS"
    df = pd.DataFrame([(op, *map(float, rows[op])) for op in MODEL_OPS], columns=COST_COLUMNS)
    df["calls"] = df["calls"].astype(np.int64)
    return df


# --------------------------------------------------------------------------- public
def op_costs(
    model: Mapping,
    *,
    batch: int,
    input_len: int,
    output_len: int,
    tp: int,
    dtype_bytes: int,
    phase: str,
) -> pd.DataFrame:
    """Per-rank FLOPs, bytes, comm bytes and calls of every model op for one phase.

    prefill: one forward over batch x input_len tokens with causal attention.
    decode: output_len one-token steps, summed (step i reads input_len+i+1 KV).
    """
    if phase == "prefill":
        s = input_len
        return _forward_rows(
            model,
            batch=batch,
            new_per_seq=s,
            n_forwards=1,
            pairs_per_head=batch * s * (s + 1) / 2,
            kv_read_tokens=batch * s,
            tp=tp,
            b=dtype_bytes,
        )
    if phase == "decode":
        n = output_len
        # sum_{i=0}^{n-1} (input_len + i + 1) = n*input_len + n(n+1)/2
        ctx_sum = n * input_len + n * (n + 1) / 2
        return _forward_rows(
            model,
            batch=batch,
            new_per_seq=1,
            n_forwards=n,
            pairs_per_head=batch * ctx_sum,
            kv_read_tokens=batch * ctx_sum,
            tp=tp,
            b=dtype_bytes,
        )
    raise ValueError(f"phase must be 'prefill' or 'decode', got {phase!r}")


def decode_step_costs(
    model: Mapping, *, batch: int, input_len: int, step: int, tp: int, dtype_bytes: int
) -> pd.DataFrame:
    """Costs of decode step ``step`` (0-based): one new token per sequence, KV context
    input_len + step + 1. Lets a report plot step cost against context length."""
    c = input_len + step + 1
    return _forward_rows(
        model,
        batch=batch,
        new_per_seq=1,
        n_forwards=1,
        pairs_per_head=batch * c,
        kv_read_tokens=batch * c,
        tp=tp,
        b=dtype_bytes,
    )


def vanilla_gpt_flops(model: Mapping, *, tokens: int) -> pd.DataFrame:
    """The seed's vanilla-GPT per-layer counts next to LLaMA's exact matmul counts.

    seed: attention projections 8 s h^2 (q, k, v, o all h x h), MLP 16 s h^2 (h -> 4h -> h).
    exact: q, o h x h; k, v h x (kv_heads*head_dim) (GQA); SwiGLU gate/up/down 3 h x inter.
    Rows per layer and for the full depth; ratio = exact / seed.
    """
    s = _shard(model, 1)
    h, d, L = s["h"], s["d"], s["L"]
    kvd = int(model["num_kv_heads"]) * d
    inter = int(model["intermediate_size"])
    seed_attn = 8 * tokens * h * h
    seed_mlp = 16 * tokens * h * h
    exact_attn = 2 * tokens * h * (2 * h + 2 * kvd)
    exact_mlp = 2 * tokens * 3 * h * inter
    rows = [
        ("attn_proj_per_layer", seed_attn, exact_attn),
        ("mlp_per_layer", seed_mlp, exact_mlp),
        ("layer_total", seed_attn + seed_mlp, exact_attn + exact_mlp),
        ("model_total", L * (seed_attn + seed_mlp), L * (exact_attn + exact_mlp)),
    ]
    df = pd.DataFrame(rows, columns=["component", "seed_flops", "exact_flops"])
    df["seed_flops"] = df["seed_flops"].astype(float)
    df["exact_flops"] = df["exact_flops"].astype(float)
    df["ratio"] = df["exact_flops"] / df["seed_flops"]
    return df


# --------------------------------------------------------------------------- roofline
def roofline(
    costs: pd.DataFrame,
    hw: Mapping,
    *,
    n_gpus: int,
    link: Mapping | None = None,
    allreduce_params: Mapping | None = None,
    peak_key: str = "peak_tflops",
) -> pd.DataFrame:
    """Roofline time per op: max(flops/peak, bytes/mem_bw, link time for collectives).

    hw: one catalog entry (``peak_tflops`` in TFLOP/s, ``mem_bw_GBps`` in GB/s, 1e9).
    link: from :func:`opbreak.hardware.link_between` (uses ``bw_bytes_per_s``, the
    per-direction bandwidth, and ``alpha_s``); allreduce_params {alpha_s,
    bw_bytes_per_s} overrides it (e.g. fitted from a measured sweep). Without either,
    t_link_s is NaN and collectives are bounded by memory only. ``bound`` is one of
    compute/memory/link, or "none" for an op that costs nothing (collectives at
    tp == 1). Resource columns are
    kept so :func:`theoretical_ratio` needs nothing else.
    """
    out = costs.copy()
    peak = float(hw[peak_key]) * 1e12
    mem_bw = float(hw["mem_bw_GBps"]) * 1e9
    alpha = bw = None
    if allreduce_params is not None:
        alpha, bw = float(allreduce_params["alpha_s"]), float(allreduce_params["bw_bytes_per_s"])
    elif link is not None:
        alpha, bw = float(link["alpha_s"]), float(link["bw_bytes_per_s"])
    with np.errstate(divide="ignore", invalid="ignore"):
        out["intensity"] = np.where(out["bytes"] > 0, out["flops"] / out["bytes"], np.nan)
    out["t_compute_s"] = out["flops"] / peak
    out["t_memory_s"] = out["bytes"] / mem_bw
    t_link = np.full(len(out), np.nan)
    is_coll = out["op"].isin(COLLECTIVE_OPS).to_numpy()
    for i in np.flatnonzero(is_coll):
        calls = int(out["calls"].iat[i])
        if n_gpus <= 1 or calls == 0:
            t_link[i] = 0.0
        elif bw is not None:
            msg = out["comm_bytes"].iat[i] / calls
            f = ring_allreduce_time if out["op"].iat[i] == "all_reduce" else ring_allgather_time
            t_link[i] = calls * float(f(msg, n_gpus, bw, alpha))
    out["t_link_s"] = t_link
    terms = out[["t_compute_s", "t_memory_s", "t_link_s"]].to_numpy()
    filled = np.where(np.isnan(terms), -np.inf, terms)
    out["t_bound_s"] = filled.max(axis=1)
    out["bound"] = np.array(["compute", "memory", "link"])[filled.argmax(axis=1)]
    out.loc[out["t_bound_s"] <= 0, "bound"] = "none"  # op costs nothing here (e.g. tp == 1)
    out["peak_flops_per_s"] = peak
    out["mem_bw_bytes_per_s"] = mem_bw
    out["link_bw_bytes_per_s"] = np.where(is_coll, bw if bw is not None else np.nan, np.nan)
    out["n_gpus"] = n_gpus
    return out


_RESOURCE_COL = {
    "compute": "peak_flops_per_s",
    "memory": "mem_bw_bytes_per_s",
    "link": "link_bw_bytes_per_s",
}


def resource_ratio(a: float, b: float) -> float:
    """Pure resource speedup of A over B: the faster resource divides the slower time."""
    return float(a) / float(b)


def theoretical_ratio(op_row_a: Mapping, op_row_b: Mapping, hw_a=None, hw_b=None, time_col="t_bound_s") -> dict:
    """Theoretical speedup of config A over config B for one op (speedup = time_B / time_A).

    Returns ``roofline_speedup`` = t_bound_B / t_bound_A (accounts for different GPU
    counts, per-rank work and latency terms) and ``resource_speedup`` = resource_A /
    resource_B for the resource that bounds A's op (e.g. 312/149.7 for compute A100
    over A40, 600/112.5 for NVLink A100 over A40 bridge). Rows come from
    :func:`roofline`. hw_a/hw_b are accepted for signature symmetry and unused. ``time_col``
    names the bound-time column (any unit: only the ratio is used). An op A does not run
    (bound "none") has no resource ratio.
    """
    bound = str(op_row_a["bound"])
    col = _RESOURCE_COL.get(bound)
    ra = float(op_row_a[col]) if col else np.nan
    rb = float(op_row_b[col]) if col else np.nan
    ta, tb = float(op_row_a[time_col]), float(op_row_b[time_col])
    return {
        "bound": bound,
        "roofline_speedup": tb / ta if ta > 0 else np.nan,
        "resource_speedup": ra / rb if rb > 0 and not np.isnan(ra) else np.nan,
    }
