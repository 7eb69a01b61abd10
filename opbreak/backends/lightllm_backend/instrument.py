"""Instrumented copies of LightLLM's layer-infer template methods, and emulated collectives.

The copies call the same LightLLM kernels inside ``rec.op`` ranges (op mapping: the package
docstring); :class:`Instrumentation` swaps them in for a step and LightLLM's own objects back.
"""

from __future__ import annotations

import numpy as np
import torch


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
