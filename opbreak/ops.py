"""The one operator vocabulary every backend, table and figure shares.

Backends may only record names from ``OPS``; ``unattributed`` is computed, never
recorded, so the sum over ops always equals the independently timed phase.
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


def order_ops(ops) -> list:
    """Ops in the model's order (OPS), then any others alphabetically: every table and legend."""
    return [o for o in OPS if o in set(ops)] + sorted(set(ops) - set(OPS))


PHASE_OF = {p: i for i, p in enumerate(PHASES)}  # prefill before decode, not alphabetical
