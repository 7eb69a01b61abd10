"""LightLLM's static batch: one prefill of ``batch x input_len`` tokens, then greedy decode steps.

As LightLLM's own static test (test/model/model_infer.py of that era) drives
``model.forward``, each step inside a Recorder phase. Its own module because two
loops drive it: the timed run (:mod:`.loop`) and the decode probe (:mod:`.probe`).
"""

from __future__ import annotations

import torch


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
