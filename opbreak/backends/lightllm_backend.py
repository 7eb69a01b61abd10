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
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .common import RankResult, drive_decode, finish_result, kernel_steps_for, random_layer, random_pre_post
from .common import input_tokens as common_input_tokens

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------
def hf_config(model: dict, num_layers: int, max_len: int) -> dict:
    """A LLaMA config.json for LightLLM from the pipeline's model shape."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": model["hidden_size"],
        "intermediate_size": model["intermediate_size"],
        "num_attention_heads": model["num_heads"],
        "num_key_value_heads": model["num_kv_heads"],
        "num_hidden_layers": num_layers,
        "vocab_size": model["vocab_size"],
        "rms_norm_eps": model.get("rms_eps", 1e-5),
        "rope_theta": model.get("rope_theta", 10000.0),
        "max_position_embeddings": max(4096, max_len),
    }


def check_weights_dir(path, model=None) -> list[str]:
    """Safetensors files of a local HF directory (opbreak.weights: pickles refused, shapes checked)."""
    from ..weights import WeightsError
    from ..weights import check_weights_dir as check

    try:
        return check(path, model)
    except WeightsError as e:
        raise SystemExit(str(e)) from None


def prepare_weight_dir(spec, workdir) -> str:
    """Directory LightLLM reads config.json (and, for HF weights, safetensors) from; layers truncated here."""
    model, L = spec["model"], spec["num_layers"]
    max_len = spec["input_len"] + spec["output_len"]
    os.makedirs(workdir, exist_ok=True)
    if spec.get("weights"):
        src = Path(spec["weights"])
        files = check_weights_dir(src, model)
        cfg = json.loads((src / "config.json").read_text())
        cfg["num_hidden_layers"] = L
        for f in files + [n for n in ("model.safetensors.index.json",) if (src / n).exists()]:
            os.symlink((src / f).resolve(), Path(workdir) / f)
    else:
        cfg = hf_config(model, L, max_len)
    (Path(workdir) / "config.json").write_text(json.dumps(cfg))
    return workdir


def _model_class():
    from lightllm.models.llama.model import LlamaTpPartModel

    class RandomLlama(LlamaTpPartModel):
        """LlamaTpPartModel whose weights are drawn on the GPU (no files, no CPU copies)."""

        def __init__(self, kvargs):
            self._opbreak = kvargs.pop("opbreak")
            super().__init__(kvargs)

        def _init_weights(self):
            ob = self._opbreak
            cfg, r, tp, dt = self.config, self.tp_rank_, self.world_size_, self.data_type
            dev = torch.device("cuda", torch.cuda.current_device())
            t0 = time.perf_counter()
            self.pre_post_weight = self.pre_and_post_weight_class(r, tp, dt, network_config=cfg, mode=self.mode)
            self.trans_layers_weight = [
                self.transformer_weight_class(i, r, tp, dt, network_config=cfg, mode=self.mode)
                for i in range(cfg["n_layer"])
            ]
            # LightLLM's loader slices vocab rows and .cuda()s: GPU tensors pass through it.
            self.pre_post_weight.load_hf_weights(random_pre_post(ob["model"], ob["seed"], dev, dt))
            h = cfg["hidden_size"]
            kv_split = h // cfg["num_attention_heads"] * cfg["num_key_value_heads"] // tp
            inter_split = cfg["intermediate_size"] // tp
            for i, lw in enumerate(self.trans_layers_weight):
                w = random_layer(ob["model"], ob["seed"], i, dev, dt)
                p = f"model.layers.{i}."
                k = w.pop(p + "self_attn.k_proj.weight")[kv_split * r : kv_split * (r + 1)]
                v = w.pop(p + "self_attn.v_proj.weight")[kv_split * r : kv_split * (r + 1)]
                g = w.pop(p + "mlp.gate_proj.weight")[inter_split * r : inter_split * (r + 1)]
                u = w.pop(p + "mlp.up_proj.weight")[inter_split * r : inter_split * (r + 1)]
                lw.load_hf_weights(w)  # q, o, down, norms: LightLLM slices and places them
                # what LightLLM's _try_cat_to would build (it asserts CPU sources): cat of transposes
                lw.kv_weight_ = torch.cat([k.t(), v.t()], dim=1).contiguous().to(dt)
                lw.gate_up_proj = torch.cat([g.t(), u.t()], dim=1).contiguous().to(dt)
                del w, k, v, g, u
            torch.cuda.synchronize()
            self.opbreak_build_s = time.perf_counter() - t0
            self.pre_post_weight.verify_load()
            [lw.verify_load() for lw in self.trans_layers_weight]

    return LlamaTpPartModel, RandomLlama


def build_model(spec, rank, world, workdir):
    """The rank's LlamaTpPartModel (real TP: world ranks; emulated: tp_rank 0 of spec['tp'])."""
    dtype_name = spec["dtype"]
    if dtype_name not in DTYPES:
        raise SystemExit(f"config {spec['name']!r}: LightLLM runs float16 or bfloat16, not {dtype_name!r}")
    tp = spec["tp"]
    tp_rank = 0 if spec["emulate_tp"] else rank
    B, I, O = spec["batch"], spec["input_len"], spec["output_len"]
    os.environ.setdefault("_NCCL_PORT_", str(os.getpid()))
    wdir = prepare_weight_dir(spec, os.path.join(workdir, f"lightllm_cfg_rank{rank}"))
    Base, RandomLlama = _model_class()
    kv = dict(
        tp_rank=tp_rank,
        world_size=tp,
        weight_dir=wdir,
        max_total_token_num=B * (I + O),
        load_way="HF",
        mode=[],
        max_req_num=max(B, 8),
        max_seq_length=I + O + 8,
        data_type=dtype_name,
    )
    t0 = time.perf_counter()
    if spec.get("weights"):
        model = Base(kv)
        model.opbreak_build_s = time.perf_counter() - t0
    else:
        kv["opbreak"] = dict(model=spec["model"], seed=spec["seed"])
        model = RandomLlama(kv)
    torch.cuda.synchronize()
    model.opbreak_total_init_s = time.perf_counter() - t0
    return model


# ---------------------------------------------------------------------------
# emulated collectives
# ---------------------------------------------------------------------------
def patch_collectives_for_emulation():
    """LightLLM calls dist.all_reduce / dist.all_gather in its layer code; under emulated TP
    nothing is exchanged: all_reduce leaves the rank's partial sum, all_gather replicates the shard."""
    import torch.distributed as dist

    def all_reduce(tensor, *a, **k):
        return None

    def all_gather(tensor_list, tensor, *a, **k):
        for t in tensor_list:
            t.copy_(tensor)
        return None

    saved = (dist.all_reduce, dist.all_gather)
    dist.all_reduce, dist.all_gather = all_reduce, all_gather
    return saved


# ---------------------------------------------------------------------------
# instrumented copies of LightLLM's template methods
# ---------------------------------------------------------------------------
class _Comm:
    def __init__(self, rec, world, emulate):
        self.rec, self.world, self.emulate = rec, world, emulate
        self.real = world > 1 and not emulate

    def all_reduce(self, t):
        if self.world == 1:
            return
        if self.emulate:
            self.rec.record_modeled("all_reduce", t.numel() * t.element_size())
            return
        import torch.distributed as dist

        with self.rec.op("all_reduce"):
            dist.all_reduce(t, op=dist.ReduceOp.SUM, async_op=False)


class InstrumentedLayer:
    """LightLLM's TransformerLayerInferTpl.context_forward/token_forward with rec.op ranges."""

    def __init__(self, layer, rec, comm):
        self.L, self.rec, self.comm = layer, rec, comm
        self.embed_dim_ = layer.embed_dim_

    def _attention(self, x, st, w, prefill):
        L, op = self.L, self.rec.op
        with op("attn_norm"):
            h = L._att_norm(x, st, w)
        with op("qkv_proj"):
            cache_kv = L._pre_cache_kv(st, w)
            q, cache_kv = L._get_qkv(h, cache_kv, st, w)
        h = None
        if not st.mem_is_contiguous:  # else qkv's mm already wrote k/v into the cache (no kernel here)
            with op("kv_cache_write"):
                L._post_cache_kv(cache_kv, st, w)
        with op("attention"):
            if prefill:
                o = L._context_attention_kernel(q, cache_kv, st, w)
            else:
                o = L._token_attention_kernel(q, st, w)
        q = None
        with op("o_proj"):
            o = L._get_o(o, st, w)
            if self.comm.real:
                self.comm.all_reduce(o)
                with op("o_proj", False):
                    x.add_(o.view(-1, self.embed_dim_))
            else:
                self.comm.all_reduce(o)  # modeled (emulated TP) or none (TP1): no mark
                x.add_(o.view(-1, self.embed_dim_))

    def _ffn(self, x, st, w):
        L, op = self.L, self.rec.op
        with op("ffn_norm"):
            h = L._ffn_norm(x, st, w)
        with op("ffn"):
            f = L._ffn(h, st, w)
            h = None
            if self.comm.real:
                self.comm.all_reduce(f)
                with op("ffn", False):
                    x.add_(f.view(-1, self.embed_dim_))
            else:
                self.comm.all_reduce(f)
                x.add_(f.view(-1, self.embed_dim_))

    def context_forward(self, x, st, w):
        # LightLLM decorates both halves with mark_cost_time, which synchronizes around each;
        # the host_gap mark (reached on the GPU when the previous op's kernels are done)
        # gives the sync and the relaunch after it their own segment.
        mark = self.rec.mark
        mark("host_gap")
        torch.cuda.synchronize()
        self._attention(x, st, w, True)
        mark("host_gap")
        torch.cuda.synchronize()
        torch.cuda.synchronize()
        self._ffn(x, st, w)
        mark("host_gap")
        torch.cuda.synchronize()
        return x

    def token_forward(self, x, st, w):
        self._attention(x, st, w, False)
        self._ffn(x, st, w)
        return x


class InstrumentedPre:
    def __init__(self, pre, rec, comm):
        self.P, self.rec, self.comm = pre, rec, comm

    def _embed(self, input_ids, w):
        P = self.P
        with self.rec.op("embedding"):
            mask = torch.logical_or(P.vob_start_id_ > input_ids, input_ids >= P.vob_end_id_)
            ids = input_ids - P.vob_start_id_
            ids[mask] = 0
            emb = torch.embedding(w.wte_weight_, ids, padding_idx=-1)
            emb[mask] = 0.0
        self.comm.all_reduce(emb)
        return emb

    def context_forward(self, input_ids, st, w):
        torch.cuda.synchronize()  # mark_cost_time("pre context forward")
        emb = self._embed(input_ids, w)
        self.rec.mark("host_gap")
        torch.cuda.synchronize()
        return emb

    def token_forward(self, input_ids, st, w):
        return self._embed(input_ids, w)


class InstrumentedPost:
    def __init__(self, post, rec, comm):
        self.P, self.rec, self.comm = post, rec, comm

    def token_forward(self, x, st, w, return_logics=False):
        from einops import rearrange

        P, op, rec = self.P, self.rec.op, self.rec
        with op("final_norm"):
            last, n = P._slice_get_last_input(x, st)
            dtype = x.dtype
            x = None
            last = P._norm(last, st, w)
        with op("lm_head"):
            last = rearrange(last, "batch embed_dim -> embed_dim batch").contiguous().reshape(-1, n)
            logic = torch.mm(w.lm_head_weight_, last)
        world = P.world_size_
        if world == 1:
            with op("lm_head", False):
                gather = logic
                out = gather.permute(1, 0).float() if return_logics else P.soft_max(gather)
            return out
        gather = torch.empty((P.vocab_size_, n), device=logic.device, dtype=dtype)
        split = np.linspace(0, P.vocab_size_, world + 1, dtype=np.int64)
        parts = [gather[split[i] : split[i + 1], :] for i in range(world)]
        if self.comm.emulate:
            rec.record_modeled("logits_gather", gather.numel() * gather.element_size())
            with op("logits_gather"):
                for t in parts:
                    t.copy_(logic)
                out = gather.permute(1, 0).float() if return_logics else P.soft_max(gather)
            return out
        import torch.distributed as dist

        with op("logits_gather"):
            dist.all_gather(parts, logic, group=None, async_op=False)
            out = gather.permute(1, 0).float() if return_logics else P.soft_max(gather)
        return out


class Instrumentation:
    """Swaps LightLLM's infer objects for instrumented ones (O(1) per step) and back."""

    def __init__(self, model, rec, world, emulate, exit_marks=False):
        self.model = model
        if rec.method != "torch_profiler":
            rec.set_exit_marks(exit_marks)
        comm = _Comm(rec, model.world_size_, emulate)
        self.plain = (model.pre_infer, model.post_infer, model.layers_infer)
        self.inst = (
            InstrumentedPre(model.pre_infer, rec, comm),
            InstrumentedPost(model.post_infer, rec, comm),
            [InstrumentedLayer(L, rec, comm) for L in model.layers_infer],
        )
        self.rec = rec

    def use(self, instrumented: bool):
        m = self.model
        m.pre_infer, m.post_infer, m.layers_infer = self.inst if instrumented else self.plain


# ---------------------------------------------------------------------------
# the static batch
# ---------------------------------------------------------------------------
class StaticBatch:
    """LightLLM's static test loop, with a Recorder per step."""

    def __init__(self, model, spec, tokens):
        self.m, self.spec = model, spec
        self.B, self.I = spec["batch"], spec["input_len"]
        self.input_ids = tokens.reshape(-1).to("cuda", non_blocking=False)

    def reset(self):
        self.m.mem_manager.free_all()
        self.m.req_manager.free_all()

    def prefill(self, rec):
        m, B, I = self.m, self.B, self.I
        with rec.phase("prefill", step=0, context_len=I):
            rec.mark("infer_setup")
            self.b_req_idx = m.req_manager.alloc(B).int()
            self.b_start_loc = torch.arange(0, B * I, I, dtype=torch.int32, device="cuda")
            self.b_seq_len = torch.full((B,), I, dtype=torch.int32, device="cuda")
            self.total = B * I
            logits = m.forward(
                B, self.total, I, self.input_ids, self.b_req_idx, self.b_start_loc, self.b_seq_len, is_prefill=True
            )
            with rec.op("sampling"):
                prob = torch.softmax(logits, dim=-1)
                ids = torch.argmax(prob, dim=1, keepdim=True)
                self.ids = ids.detach().cpu().numpy()
        self.arange_B = torch.arange(0, B, dtype=torch.int32, device="cuda")
        return logits

    def decode(self, rec, i):
        m, B, I = self.m, self.B, self.I
        with rec.phase("decode", step=i, context_len=I + i + 1):
            rec.mark("infer_setup")
            self.b_start_loc = self.b_start_loc + self.arange_B
            self.total += B
            self.b_seq_len += 1
            ids = torch.from_numpy(self.ids).cuda().reshape(-1)
            logits = m.forward(
                B, self.total, I + i + 1, ids, self.b_req_idx, self.b_start_loc, self.b_seq_len, is_prefill=False
            )
            with rec.op("sampling"):
                prob = torch.softmax(logits, dim=-1)
                ids = torch.argmax(prob, dim=1, keepdim=True)
                self.ids = ids.detach().cpu().numpy()
        return logits


def run_static(model, spec, rec, tokens, inst, *, output_len=None, decode_sample=0, kcap=None, kinst=None):
    """Prefill then output_len decode steps in the modes of :func:`opbreak.timing.step_plan`;
    with a KernelCapture, one more prefill under the profiler (the GPU-busy view of prefill)."""
    from ..timing import Recorder, step_plan

    O = spec["output_len"] if output_len is None else output_len
    sb = StaticBatch(model, spec, tokens)
    sb.reset()
    out = []

    def step(r, i, instrumented):
        (kinst if r is kcap else inst).use(instrumented)
        sb.decode(r, i)
        out.append(torch.from_numpy(sb.ids.reshape(-1).copy()))

    with torch.inference_mode():
        inst.use(rec.enabled)
        logits = sb.prefill(rec)
        first_logits = logits.float().cpu()
        out.append(torch.from_numpy(sb.ids.reshape(-1).copy()))
        plan = step_plan(O, decode_sample, kernel_steps_for(spec, rec) if kcap else 0) if rec.enabled else ["plain"] * O
        drive_decode(plan, step, rec, Recorder(rec.method, enabled=False) if rec.enabled else rec, kcap)
        if kcap is not None and rec.enabled:
            sb.reset()
            kinst.use(True)
            with kcap.session():
                sb.prefill(kcap)
        inst.use(False)
    sb.reset()
    return RankResult(tokens=torch.stack(out, 1).long(), first_logits=first_logits)


def input_tokens(spec):
    return common_input_tokens(spec, "cpu")


def _oom_message(spec, e):
    from ..config import memory_estimate_gib

    try:
        need, parts = memory_estimate_gib(spec["model"], spec)
        est = f"~{need:.1f} GiB per GPU ({parts})"
    except Exception:
        est = "unknown"
    free, total = torch.cuda.mem_get_info()
    return (
        f"config {spec['name']!r}: CUDA out of memory on {torch.cuda.get_device_name()} "
        f"({total / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free now); estimate {est}; "
        f"batch {spec['batch']}, input_len {spec['input_len']}, output_len {spec['output_len']}, tp {spec['tp']}, "
        f"num_layers {spec['num_layers']}. Lower batch/lengths, raise tp or truncate num_layers. "
        f"({str(e).splitlines()[0]})"
    )


def run_rank(spec, rank, world, rec) -> RankResult:
    """The measure step's contract (:class:`opbreak.backends.common.RankResult`)."""
    from ..timing import KernelCapture, Recorder

    if spec["device"] != "cuda" or not torch.cuda.is_available():
        raise SystemExit(
            f"config {spec['name']!r}: the lightllm backend needs CUDA (this process sees none); "
            "use backend: torch on gpu: cpu, or run on a GPU host"
        )
    emulate = bool(spec["emulate_tp"]) and spec["tp"] > 1
    if emulate:
        patch_collectives_for_emulation()
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="opbreak-lightllm-") as work:
            model = build_model(spec, rank, world, work)
            build_s = getattr(model, "opbreak_build_s", float("nan"))
            init_s = model.opbreak_total_init_s
            inst = Instrumentation(model, rec, world, emulate)
            kcap = KernelCapture() if kernel_steps_for(spec, rec) else None
            kinst = Instrumentation(model, kcap, world, emulate) if kcap is not None else None
            tokens = input_tokens(spec)
            warm_steps = 0
            if spec.get("warmup", 1):
                # unrecorded pass: Triton compiles and autotunes (decode kernels specialise on
                # integer divisibility by 16, so cover 17+ context lengths), allocator warms

                warm_steps = min(spec["output_len"], 20)
                warm = Recorder(rec.method, enabled=False)
                run_static(model, spec, warm, tokens, inst, output_len=warm_steps)
                if rec.enabled:  # and the instrumented paths once (the profiler's first session is slow)
                    wrec = Recorder("cuda_events" if rec.method == "torch_profiler" else rec.method)
                    wk = KernelCapture() if kcap is not None else None
                    run_static(
                        model,
                        spec,
                        wrec,
                        tokens,
                        Instrumentation(model, wrec, world, emulate),
                        output_len=min(spec["output_len"], 4),
                        decode_sample=2 if wk else 0,
                        kcap=wk,
                        kinst=Instrumentation(model, wk, world, emulate) if wk else None,
                    )
            torch.cuda.synchronize()
            t_run = time.perf_counter()
            with rec.session():
                res = run_static(
                    model, spec, rec, tokens, inst, decode_sample=spec.get("decode_sample") or 0, kcap=kcap, kinst=kinst
                )
            torch.cuda.synchronize()
            run_s = time.perf_counter() - t_run
    except torch.cuda.OutOfMemoryError as e:
        raise SystemExit(_oom_message(spec, e)) from None
    extra = dict(
        backend="lightllm",
        lightllm_version=lightllm_version(),
        weights="hf:" + str(spec["weights"]) if spec.get("weights") else "random-gpu",
        build_s=build_s,
        build_s_per_layer=build_s / spec["num_layers"],
        init_s=init_s,
        warmup_decode_steps=warm_steps,
        run_s=run_s,
        total_s=time.perf_counter() - t0,
        emulated_tp=emulate,
        tp_rank=0 if emulate else rank,
        max_memory_allocated_GiB=torch.cuda.max_memory_allocated() / 2**30,
        closure=rec.phase_closure(),
        op_mapping="o_proj and ffn include their residual add; "
        "sampling = softmax+argmax+.cpu() as LightLLM's static test",
        **rec.meta,
    )
    res.extra = extra
    return finish_result(res, rec, kcap, spec)


def lightllm_version():
    try:
        from importlib.metadata import version

        return version("lightllm")
    except Exception:
        return None
