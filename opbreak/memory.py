"""How much memory a config needs: one rank's weights and KV cache, and this host's RAM.

Read before any job (:mod:`opbreak.config_checks` refuses a config that cannot fit) and
after an out-of-memory failure (the lightllm backend's message states the estimate).
"""

from __future__ import annotations

import os

from .config import DTYPE_BYTES


def memory_estimate_gib(model, c):
    """Weights of one rank plus its KV cache for batch x (input + output), in GiB."""
    b = DTYPE_BYTES[c["dtype"]]
    h, inter, v = model["hidden_size"], model["intermediate_size"], model["vocab_size"]
    hd = h // model["num_heads"]
    L = c["num_layers"] or model["num_layers"]
    tp = c["tp"]
    per_layer = (2 * h * h + 2 * h * model["num_kv_heads"] * hd + 3 * h * inter) / tp
    weights = (L * per_layer + 2 * v * h / tp) * b
    kv = 2 * L * c["batch"] * (c["input_len"] + c["output_len"]) * (model["num_kv_heads"] // tp) * hd * b
    gib = 2**30
    return (weights + kv) / gib, f"weights {weights / gib:.1f} + KV cache {kv / gib:.1f}"


def host_ram_gib() -> float | None:
    """This host's physical memory in GiB (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None
