"""The one operator vocabulary every backend, table and figure shares: the op registry.

Backends may only record names from ``OPS``; ``unattributed`` is computed, never
recorded, so the sum over ops always equals the independently timed phase. For each op this
module says its phase order, whether it is per layer (``LAYER_OPS``), a collective, sharded by
tensor parallelism (``SHARDED_OPS``), framework time (``HOST_OPS``), its efficiency class in predict
mode (:func:`op_class`) and its figure colour (``OP_COLORS``). Adding an op means an entry here
plus its cost formula in :mod:`opbreak.theory`; an op without a class is an error, not "framework
time, not predicted".
"""

PHASES = ("prefill", "decode")

# Model operators, in forward order (also the legend order of every figure).
MODEL_OPS = (
    "embedding",
    "attn_norm",
    "qkv_proj",  # q/k/v projections with rotary embedding applied
    "kv_cache_write",
    "attention",
    "o_proj",
    "all_reduce",
    "ffn_norm",
    "ffn",  # gate/up projections, SwiGLU, down projection
    "final_norm",
    "lm_head",
    "logits_gather",
    "sampling",
)
# Framework work that is not a model operator but still costs phase time.
FRAMEWORK_OPS = ("infer_setup", "host_gap", "instrumentation")
# What instrumented decode steps cost beyond plain ones (measured in the run, opbreak.timing.sampling).
INSTRUMENTATION = "instrumentation"
UNATTRIBUTED = "unattributed"
OPS = MODEL_OPS + FRAMEWORK_OPS + (UNATTRIBUTED,)

# Ops that exist once per decoder layer (scaled when layers are truncated).
LAYER_OPS = (
    "attn_norm",
    "qkv_proj",
    "kv_cache_write",
    "attention",
    "o_proj",
    "all_reduce",
    "ffn_norm",
    "ffn",
)
COLLECTIVE_OPS = ("all_reduce", "logits_gather")
# Ops every rank records in every phase, whatever the backend and version of this tool (a measure file
# lacking one is cut off or broken: opbreak.checks); real TP adds all_reduce.
CORE_OPS = ("embedding", "attn_norm", "qkv_proj", "attention", "o_proj", "ffn_norm", "ffn", "final_norm", "lm_head")
# Framework time: no roofline, never predicted, never "a model operator" in a sentence.
HOST_OPS = FRAMEWORK_OPS + (UNATTRIBUTED,)
# Ops whose work tensor parallelism splits over the ranks (Megatron-style, as LightLLM shards them).
SHARDED_OPS = ("qkv_proj", "kv_cache_write", "attention", "o_proj", "ffn", "lm_head")
# The efficiency class of each model op in predict mode; attention's depends on the phase.
OP_CLASSES = ("gemm", "attention_prefill", "attention_decode", "elementwise", "embedding_lm_head", "collective")
_CLASS_OF = {
    "qkv_proj": "gemm",
    "o_proj": "gemm",
    "ffn": "gemm",
    "attn_norm": "elementwise",
    "ffn_norm": "elementwise",
    "final_norm": "elementwise",
    "kv_cache_write": "elementwise",
    "sampling": "elementwise",
    "embedding": "embedding_lm_head",
    "lm_head": "embedding_lm_head",
    "all_reduce": "collective",
    "logits_gather": "collective",
}
assert set(_CLASS_OF) | {"attention"} == set(MODEL_OPS), "every model op needs a class (opbreak/ops.py)"


def op_class(op: str, phase: str) -> str | None:
    """The efficiency class of an op; None for framework time. An op the vocabulary lacks is an error."""
    if op in HOST_OPS:
        return None
    if op == "attention":
        return f"attention_{phase}"
    if op not in _CLASS_OF:
        raise KeyError(f"op {op!r} is not in opbreak.ops (add it to MODEL_OPS with its class)")
    return _CLASS_OF[op]


def order_ops(ops) -> list:
    """Ops in the model's order (OPS), then any others alphabetically: every table and legend."""
    return [o for o in OPS if o in set(ops)] + sorted(set(ops) - set(OPS))


PHASE_OF = {p: i for i, p in enumerate(PHASES)}

# Each op's colour in every figure. Fixed palette: the dominant ops of the seed (ffn, all_reduce, attention,
# qkv_proj) get the strongest, most distinct hues; framework time is grey.
OP_COLORS = {
    "embedding": "#8c564b",
    "attn_norm": "#c5b0d5",
    "qkv_proj": "#ff7f0e",
    "kv_cache_write": "#ffbb78",
    "attention": "#2ca02c",
    "o_proj": "#9467bd",
    "all_reduce": "#d62728",
    "ffn_norm": "#98df8a",
    "ffn": "#1f77b4",
    "final_norm": "#aec7e8",
    "lm_head": "#e377c2",
    "logits_gather": "#ff9896",
    "sampling": "#17becf",
    "infer_setup": "#bcbd22",
    "host_gap": "#7f7f7f",
    "instrumentation": "#393b79",
    "unattributed": "#c7c7c7",
}
assert tuple(OP_COLORS) == OPS, "OP_COLORS must cover opbreak.ops.OPS in order"
# prefill before decode, not alphabetical
