"""A plain PyTorch LLaMA with Megatron-style tensor parallelism.

Same sharding as LightLLM (column-parallel qkv and gate/up, row-parallel o and
down followed by all_reduce, vocab-parallel embedding and lm_head), so its
operator table lines up with the real framework's and it can cross-check
LightLLM's logits. Runs on CPU over gloo and on CUDA over NCCL. With
``emulate_tp`` one process runs rank 0's shapes and records the collectives it
skips (sizes only) for the theory step to time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import RankResult, drive_decode, finish_result, input_tokens, kernel_steps_for, random_weights

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _rows(t, rank, tp):
    n = t.shape[0] // tp
    return t[rank * n : (rank + 1) * n]


def _cols(t, rank, tp):
    n = t.shape[1] // tp
    return t[:, rank * n : (rank + 1) * n]


class TorchLlama:
    """Rank-local shard of a LLaMA; ``comm`` is a torch.distributed group or None."""

    def __init__(self, model, weights, *, rank, tp, device, dtype, max_len, batch, rec, comm, emulate=False):
        self.m, self.rank, self.tp, self.rec = model, rank, tp, rec
        self.comm, self.emulate = comm, emulate
        self.device, self.dtype = device, dtype
        h = model["hidden_size"]
        self.nh = model["num_heads"] // tp
        self.nkv = model["num_kv_heads"] // tp
        self.hd = h // model["num_heads"]
        self.eps = model["rms_eps"]
        self.vocab_shard = model["vocab_size"] // tp
        self.num_layers = sum(1 for k in weights if k.endswith("input_layernorm.weight"))
        W = lambda k: weights[k].to(device=device, dtype=dtype)  # noqa: E731
        self.embed = _rows(W("model.embed_tokens.weight"), rank, tp).contiguous()
        self.norm = W("model.norm.weight")
        self.lm_head = _rows(W("lm_head.weight"), rank, tp).t().contiguous()
        self.layers = []
        for i in range(self.num_layers):
            p = f"model.layers.{i}."
            q, k, v = (_rows(W(p + f"self_attn.{n}_proj.weight"), rank, tp) for n in "qkv")
            gate, up = (_rows(W(p + f"mlp.{n}_proj.weight"), rank, tp) for n in ("gate", "up"))
            self.layers.append(
                dict(
                    ln1=W(p + "input_layernorm.weight"),
                    ln2=W(p + "post_attention_layernorm.weight"),
                    qkv=torch.cat([q, k, v]).t().contiguous(),
                    o=_cols(W(p + "self_attn.o_proj.weight"), rank, tp).t().contiguous(),
                    gate_up=torch.cat([gate, up]).t().contiguous(),
                    down=_cols(W(p + "mlp.down_proj.weight"), rank, tp).t().contiguous(),
                )
            )
        shape = (batch, max_len, self.nkv, self.hd)
        self.k_cache = [torch.empty(shape, device=device, dtype=dtype) for _ in self.layers]
        self.v_cache = [torch.empty(shape, device=device, dtype=dtype) for _ in self.layers]
        inv = 1.0 / (model["rope_theta"] ** (torch.arange(0, self.hd, 2, device=device, dtype=torch.float32) / self.hd))
        pos = torch.arange(max_len, device=device, dtype=torch.float32)
        freqs = torch.outer(pos, inv)
        self.cos, self.sin = freqs.cos(), freqs.sin()

    # -- pieces -----------------------------------------------------------
    def _all_reduce(self, x):
        if self.tp == 1:
            return x
        with self.rec.op("all_reduce"):
            if self.emulate:
                self.rec.record_modeled("all_reduce", x.numel() * x.element_size())
            else:
                torch.distributed.all_reduce(x, group=self.comm)
        return x

    def _rms(self, x, w):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * w

    def _rope(self, x, pos):
        # x: (B, S, H, D), rotate-half convention as in HF LLaMA
        cos = self.cos[pos].unsqueeze(-2)
        sin = self.sin[pos].unsqueeze(-2)
        xf = x.float()
        x1, x2 = xf[..., : self.hd // 2], xf[..., self.hd // 2 :]
        c = torch.cat([cos, cos], -1)
        s = torch.cat([sin, sin], -1)
        rot = torch.cat([-x2, x1], -1)
        return (xf * c + rot * s).to(x.dtype)

    def _layer(self, i, x, start, pos):
        L, rec = self.layers[i], self.rec
        B, S, _ = x.shape
        with rec.op("attn_norm"):
            hn = self._rms(x, L["ln1"])
        with rec.op("qkv_proj"):
            qkv = hn @ L["qkv"]
            q, k, v = qkv.split([self.nh * self.hd, self.nkv * self.hd, self.nkv * self.hd], -1)
            q = self._rope(q.view(B, S, self.nh, self.hd), pos)
            k = self._rope(k.view(B, S, self.nkv, self.hd), pos)
        with rec.op("kv_cache_write"):
            self.k_cache[i][:, start : start + S] = k
            self.v_cache[i][:, start : start + S] = v.view(B, S, self.nkv, self.hd)
        with rec.op("attention"):
            kk = self.k_cache[i][:, : start + S].transpose(1, 2)
            vv = self.v_cache[i][:, : start + S].transpose(1, 2)
            rep = self.nh // self.nkv
            kk = kk.repeat_interleave(rep, dim=1)
            vv = vv.repeat_interleave(rep, dim=1)
            qq = q.transpose(1, 2)
            if S > 1:
                a = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True)
            else:
                a = F.scaled_dot_product_attention(qq, kk, vv)
            a = a.transpose(1, 2).reshape(B, S, self.nh * self.hd)
        with rec.op("o_proj"):
            o = a @ L["o"]
        x = x + self._all_reduce(o)
        with rec.op("ffn_norm"):
            hn = self._rms(x, L["ln2"])
        with rec.op("ffn"):
            gu = hn @ L["gate_up"]
            g, u = gu.chunk(2, -1)
            f = (F.silu(g.float()) * u.float()).to(x.dtype) @ L["down"]
        return x + self._all_reduce(f)

    def forward(self, tokens, start):
        """tokens (B, S) at positions start..start+S-1 -> full-vocab logits of the last position."""
        rec = self.rec
        B, S = tokens.shape
        with rec.op("infer_setup"):
            pos = torch.arange(start, start + S, device=self.device)
        with rec.op("embedding"):
            lo = self.rank * self.vocab_shard
            local = tokens - lo
            mask = (local < 0) | (local >= self.vocab_shard)
            x = self.embed[local.clamp(0, self.vocab_shard - 1)]
            x = x.masked_fill(mask.unsqueeze(-1), 0.0)
        x = self._all_reduce(x)
        for i in range(self.num_layers):
            x = self._layer(i, x, start, pos)
        with rec.op("final_norm"):
            last = self._rms(x[:, -1], self.norm)
        with rec.op("lm_head"):
            logits = last @ self.lm_head
        if self.tp > 1:
            with rec.op("logits_gather"):
                if self.emulate:
                    rec.record_modeled("logits_gather", logits.numel() * logits.element_size() * self.tp)
                    logits = logits.repeat(1, self.tp)
                else:
                    parts = [torch.empty_like(logits) for _ in range(self.tp)]
                    torch.distributed.all_gather(parts, logits.contiguous(), group=self.comm)
                    logits = torch.cat(parts, -1)
        return logits


def build(spec, rank, world, rec):
    """Weights (seeded, identical on every rank before sharding) and the rank's model."""
    device = torch.device(spec["device"] if spec["device"] == "cpu" else f"cuda:{torch.cuda.current_device()}")
    dtype = DTYPES[spec["dtype"]]
    model = spec["model"]
    if spec["weights"]:
        from ..weights import load_hf_dir

        weights = load_hf_dir(spec["weights"], model, spec["num_layers"], device=device, dtype=dtype)
    else:
        weights = random_weights(model, spec["seed"], device=device, dtype=dtype, num_layers=spec["num_layers"])
    return TorchLlama(
        model,
        weights,
        rank=rank,
        tp=spec["tp"],
        device=device,
        dtype=dtype,
        max_len=spec["input_len"] + spec["output_len"],
        batch=spec["batch"],
        rec=rec,
        comm=None,
        emulate=spec["emulate_tp"],
    )


def run_static_batch(net, spec, rec, tokens, kcap=None):
    """Prefill, then output_len greedy decode steps, as LightLLM's static test does.

    Decode steps run in the modes of :func:`opbreak.timing.step_plan` (``decode_sample``
    event steps, ``kernel_steps`` CUPTI steps on CUDA, plain otherwise)."""
    from ..timing import Recorder, step_plan

    sync = (lambda: torch.cuda.synchronize()) if net.device.type == "cuda" else (lambda: None)  # noqa: E731
    I, O = spec["input_len"], spec["output_len"]
    out = []
    state = {}

    def step(r, i, instrumented):
        net.rec = r
        with r.phase("decode", step=i, context_len=I + i + 1):
            logits = net.forward(state["next"].unsqueeze(1), I + i)
            with r.op("sampling"):
                state["next"] = logits.argmax(-1)
                out.append(state["next"].cpu())

    with torch.inference_mode():
        net.rec = rec
        with rec.phase("prefill", step=0, context_len=I):
            logits = net.forward(tokens, 0)
            with rec.op("sampling"):
                state["next"] = logits.argmax(-1)
                out.append(state["next"].cpu())
        sync()
        first_logits = logits.float().cpu()
        plan = step_plan(O, spec["decode_sample"], kernel_steps_for(spec, rec) if kcap else 0)
        plain = Recorder(rec.method, enabled=False) if rec.enabled else rec
        drive_decode(plan if rec.enabled else ["plain"] * O, step, rec, plain, kcap)
        if kcap is not None and rec.enabled:
            net.rec = kcap
            with kcap.session(), kcap.phase("prefill", step=0, context_len=I):
                net.forward(tokens, 0)
        net.rec = rec
    return RankResult(tokens=torch.stack(out, 1), first_logits=first_logits)


def run_rank(spec, rank, world, rec) -> RankResult:
    """The measure step's contract (:class:`opbreak.backends.common.RankResult`)."""
    net = build(spec, rank, world, rec)
    tokens = input_tokens(spec, net.device)
    if spec["warmup"]:
        # A short unrecorded pass: allocator, kernels and thread pools warm.
        from ..timing import Recorder

        warm = Recorder(rec.method, enabled=False)
        net.rec = warm
        run_static_batch(net, dict(spec, output_len=min(2, spec["output_len"])), warm, tokens)
        net.rec = rec
    from ..timing import KernelCapture

    kcap = KernelCapture() if kernel_steps_for(spec, rec) else None
    res = run_static_batch(net, spec, rec, tokens, kcap)
    return finish_result(res, rec, kcap, spec)
