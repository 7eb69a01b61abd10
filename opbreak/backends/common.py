"""What every backend shares: seeded random weights, input tokens, the decode-step driver, the result type.

Backends run one static batch under a Recorder and return a :class:`RankResult`;
the measure CLI owns processes and files (:mod:`opbreak.measure`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch


@dataclass
class RankResult:
    """One rank's run: generated tokens [batch, steps+1] (for cross-checks), prefill logits,
    the backend's facts (``extra``), the GPU-busy view per (phase, op) and the collectives' kernel rows."""

    tokens: torch.Tensor
    first_logits: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)
    kernel_ms: dict = field(default_factory=dict)
    collectives: list = field(default_factory=list)


def _gen(seed: int, name: str, device):
    """Independent stream per weight name, so shards of TP=N equal slices of TP=1."""
    h = int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:15], 16)
    g = torch.Generator(device=device)
    g.manual_seed(h)
    return g


def full_weight(seed, name, shape, device, dtype, std):
    g = _gen(seed, name, device)
    w = torch.randn(shape, generator=g, device=device, dtype=torch.float32) * std
    return w.to(dtype)


def layer_weight_specs(model: dict, i: int):
    """(HF name, generator key, shape, std) of layer i's matrices; std keeps activations O(1)."""
    h, inter = model["hidden_size"], model["intermediate_size"]
    kvh = model["num_kv_heads"] * (h // model["num_heads"])
    s = h**-0.5
    p = f"model.layers.{i}."
    return [
        (p + n + ".weight", p + n, shape, std)
        for n, shape, std in (
            ("self_attn.q_proj", (h, h), s),
            ("self_attn.k_proj", (kvh, h), s),
            ("self_attn.v_proj", (kvh, h), s),
            ("self_attn.o_proj", (h, h), s),
            ("mlp.gate_proj", (inter, h), s),
            ("mlp.up_proj", (inter, h), s),
            ("mlp.down_proj", (h, inter), inter**-0.5),
        )
    ]


def random_layer(model, seed, i, device, dtype):
    """Full (unsharded) weights of layer i; every backend draws them here, so they agree."""
    h = model["hidden_size"]
    w = {
        name: full_weight(seed, key, shape, device, dtype, std)
        for name, key, shape, std in layer_weight_specs(model, i)
    }
    p = f"model.layers.{i}."
    w[p + "input_layernorm.weight"] = 1.0 + full_weight(seed, p + "ln1", (h,), device, dtype, 0.1)
    w[p + "post_attention_layernorm.weight"] = 1.0 + full_weight(seed, p + "ln2", (h,), device, dtype, 0.1)
    return w


def random_pre_post(model, seed, device, dtype):
    """Embedding, final norm and lm_head (untied), under HF names."""
    h, v = model["hidden_size"], model["vocab_size"]
    return {
        "model.embed_tokens.weight": full_weight(seed, "embed", (v, h), device, dtype, 1.0),
        "model.norm.weight": 1.0 + full_weight(seed, "norm", (h,), device, dtype, 0.1),
        "lm_head.weight": full_weight(seed, "lm_head", (v, h), device, dtype, h**-0.5),
    }


def random_weights(model: dict, seed: int, device="cpu", dtype=torch.float32, num_layers=None):
    """Full (unsharded) seeded random weights under HF LLaMA names."""
    w = random_pre_post(model, seed, device, dtype)
    for i in range(num_layers or model["num_layers"]):
        w.update(random_layer(model, seed, i, device, dtype))
    return w


def input_tokens(spec, device="cpu"):
    """The batch's prompt tokens: seeded, identical for every backend and rank."""
    g = torch.Generator(device="cpu")
    g.manual_seed(spec["seed"] + 1)
    t = torch.randint(0, spec["model"]["vocab_size"], (spec["batch"], spec["input_len"]), generator=g)
    return t.to(device)


def drive_decode(plan, step, rec, plain, kcap=None):
    """Run decode step i in ``plan[i]``'s mode: ``step(recorder, i, instrumented)`` does the work.

    Event steps go to ``rec``, plain ones to ``plain`` (end to end only), kernel
    steps to ``kcap`` inside a one-step profiler session. Afterwards ``rec``'s decode
    ops are integrated over every step (:meth:`Recorder.integrate_sampled`) when
    any step was not an event step.
    """
    for i, mode in enumerate(plan):
        if mode == "events":
            step(rec, i, True)
        elif mode == "kernels":
            with kcap.session():
                step(kcap, i, True)
        else:
            step(plain, i, False)
    if rec.enabled and any(m != "events" for m in plan) and "events" in plan:
        others = [s for r in (plain, kcap) if r is not None and r is not rec for s in r.steps if s["phase"] == "decode"]
        rec.integrate_sampled("decode", others, len(plan))
    elif rec.enabled and plan and "events" not in plan:
        rec.steps.extend(s for s in plain.steps if s["phase"] == "decode")
        rec.step_ops.extend({} for s in plain.steps if s["phase"] == "decode")


def kernel_steps_for(spec, rec) -> int:
    """Decode steps to capture with CUPTI: only on CUDA, and not when the whole run is profiled."""
    if spec["device"] != "cuda" or rec.method == "torch_profiler" or not rec.enabled:
        return 0
    return int(spec["kernel_steps"])


def finish_result(res: RankResult, rec, kcap, spec) -> RankResult:
    """Attach the GPU-busy view (prefill as captured, decode fitted over every step's context)
    and the collectives' kernel rows of a KernelCapture."""
    if kcap is None:
        return res
    ctx = [s["context_len"] for s in rec.steps if s["phase"] == "decode"]
    res.kernel_ms = {**kcap.kernel_view("prefill", [spec["input_len"]]), **kcap.kernel_view("decode", ctx)}
    res.collectives = kcap.collective_rows()
    res.extra["kernel_steps"] = sorted(int(c["step"]) for c in kcap.captured if c["phase"] == "decode")
    res.extra["host_ops"] = kcap.host_view()
    return res
