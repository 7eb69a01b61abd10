"""Backends run one static batch (prefill, then decode steps) under a Recorder.

Each backend exposes ``run_rank(spec, rank, world, rec) -> RankResult``
(:class:`opbreak.backends.common.RankResult`: the generated tokens for cross-checks,
the backend's facts, the GPU-busy view and the collectives' kernel rows); the
measure CLI owns processes and output.
"""

BACKENDS = ("torch", "lightllm")


def get_backend(name: str):
    if name == "torch":
        from . import torch_llama

        return torch_llama
    if name == "lightllm":
        from . import lightllm_backend

        return lightllm_backend
    raise ValueError(f"unknown backend {name!r}; use one of {BACKENDS}")
