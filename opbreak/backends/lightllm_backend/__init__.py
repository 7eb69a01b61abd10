"""The real framework: LightLLM 0.0.1's ``LlamaTpPartModel``, one process per GPU.

Static batch exactly as LightLLM's own static test (test/model/model_infer.py of
that era): one prefill of ``batch x input_len`` tokens, then ``output_len``
greedy decode steps (softmax, argmax, ``.cpu()``), every request the same length.

Instrumentation swaps LightLLM's layer-infer objects for thin copies of its
template methods (``_context_attention``/``_context_ffn``/``_token_attention``/
``_token_ffn``, pre and post layer) that call the same LightLLM kernels inside
``rec.op`` ranges, keeping LightLLM's behaviour (including the
``torch.cuda.synchronize()`` calls its ``mark_cost_time`` decorator makes around
every prefill layer half). Uninstrumented steps use LightLLM's own objects, so
"plain" is the unmodified framework. Op mapping:

==================  =====================================================
embedding           pre-layer embedding lookup (vocab-parallel mask)
attn_norm           ``_att_norm``
qkv_proj            ``_pre_cache_kv`` + ``_get_qkv`` (q, fused kv into the cache, rotary)
kv_cache_write      ``_post_cache_kv``: a copy only when the cache slots are not contiguous;
                    otherwise the qkv mm writes k/v straight into the cache (inside qkv_proj)
attention           ``_context_attention_kernel`` / ``_token_attention_kernel``
o_proj              ``_get_o`` and the residual add after it
all_reduce          the two per layer and the embedding's (modeled under emulated TP)
ffn_norm            ``_ffn_norm``
ffn                 ``_ffn`` (gate_up mm, silu_and_mul, down mm) and its residual add
final_norm          last-token slice + final RMSNorm
lm_head             lm_head mm (and the logits transpose/float on one rank)
logits_gather       vocab all_gather + transpose/float (modeled under emulated TP)
sampling            softmax, argmax, copy of the ids to the host (LightLLM's test)
infer_setup         batch tensors of the step, LightLLM's infer-state setup
                    (KV slot allocation, index copy, rotary lookup, host syncs)
host_gap            prefill: LightLLM's synchronize() calls and the relaunch after each
==================  =====================================================

Marks: one CUDA event where an op starts (``exit_marks=False``, the default
here); an op's segment runs until the next op starts, so host time between
LightLLM's launches (decode is launch-bound) counts to the op whose code runs.

Weights: seeded random by default, drawn on the GPU with the torch backend's
per-name generators (so the torch backend computes the same model and can
cross-check the logits), sharded on the GPU, handed to LightLLM's loader where it
accepts GPU tensors and set as LightLLM's fused ``kv_weight_``/``gate_up_proj``
where its ``_try_cat_to`` would insist on CPU tensors. Or a local HF directory
(safetensors only).

Modules: :mod:`.model` (config.json, weights, ``LlamaTpPartModel`` build), :mod:`.instrument`
(emulated collectives, the instrumented layer objects), :mod:`.batch` (LightLLM's static batch),
:mod:`.loop` (the timed run, ``run_rank``: the measure step's contract), :mod:`.probe` (the decode
probe, ``decode_graph``).
"""

from .batch import StaticBatch
from .instrument import (
    Instrumentation,
    InstrumentedLayer,
    InstrumentedPost,
    InstrumentedPre,
    patch_collectives_for_emulation,
)
from .loop import input_tokens, lightllm_version, run_rank, run_static
from .model import DTYPES, build_model, check_weights_dir, hf_config, prepare_weight_dir, random_layer, random_pre_post

__all__ = [
    "DTYPES",
    "InstrumentedLayer",
    "InstrumentedPost",
    "InstrumentedPre",
    "Instrumentation",
    "StaticBatch",
    "build_model",
    "check_weights_dir",
    "hf_config",
    "input_tokens",
    "lightllm_version",
    "patch_collectives_for_emulation",
    "prepare_weight_dir",
    "random_layer",
    "random_pre_post",
    "run_rank",
    "run_static",
]
