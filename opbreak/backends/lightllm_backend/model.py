"""LightLLM's model for one rank: its config.json from the pipeline's model shape, the weights
(seeded random, drawn on the GPU; or a local HF directory, safetensors only) and the build."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from ..common import random_layer, random_pre_post

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
        "rms_norm_eps": model["rms_eps"],
        "rope_theta": model["rope_theta"],
        "max_position_embeddings": max(4096, max_len),
    }


def check_weights_dir(path, model=None) -> list[str]:
    """Safetensors files of a local HF directory (opbreak.weights: pickles refused, shapes checked)."""
    from ...weights import WeightsError
    from ...weights import check_weights_dir as check

    try:
        return check(path, model)
    except WeightsError as e:
        raise SystemExit(str(e)) from None


def prepare_weight_dir(spec, workdir) -> str:
    """Directory LightLLM reads config.json (and, for HF weights, safetensors) from; layers truncated here."""
    model, L = spec["model"], spec["num_layers"]
    max_len = spec["input_len"] + spec["output_len"]
    os.makedirs(workdir, exist_ok=True)
    if spec["weights"]:
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
    if spec["weights"]:
        model = Base(kv)
        model.opbreak_build_s = time.perf_counter() - t0
    else:
        kv["opbreak"] = dict(model=spec["model"], seed=spec["seed"])
        model = RandomLlama(kv)
    torch.cuda.synchronize()
    model.opbreak_total_init_s = time.perf_counter() - t0
    return model
