"""Weights from a local Hugging Face directory: safetensors only, shapes checked.

Pickled checkpoints (``*.bin``, ``*.pt``, ``*.pth``) are refused: unpickling runs
code. config.json must agree with the config's model shapes; every tensor's
shape is checked before any of it is used.
"""

from __future__ import annotations

import json
from pathlib import Path

PICKLED = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
CONFIG_FIELDS = {  # HF config.json key -> model dict key
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
    "num_attention_heads": "num_heads",
    "num_key_value_heads": "num_kv_heads",
    "num_hidden_layers": "num_layers",
    "vocab_size": "vocab_size",
}


class WeightsError(ValueError):
    pass


def check_weights_dir(path, model: dict | None = None) -> list[str]:
    """The safetensors files of a local HF LLaMA directory, after refusing pickles and checking config.json."""
    d = Path(path)
    if not d.is_dir():
        raise WeightsError(f"weights: {str(path)!r} is not a directory; give a local HF directory or null")
    if not (d / "config.json").is_file():
        raise WeightsError(f"weights: {str(path)!r} has no config.json; give a local HF LLaMA directory")
    st = sorted(p.name for p in d.iterdir() if p.name.endswith(".safetensors"))
    pickles = sorted(p.name for p in d.iterdir() if p.name.endswith(PICKLED))
    if not st:
        why = (
            f"it holds only pickled checkpoints ({', '.join(pickles[:3])}), which are refused because loading "
            "them runs code"
            if pickles
            else "no *.safetensors files"
        )
        raise WeightsError(
            f"weights: {str(path)!r}: {why}; convert to safetensors "
            "(e.g. transformers' save_pretrained(safe_serialization=True)) or use weights: null"
        )
    for name in st:  # the header only (8-byte length + JSON): a file that is not safetensors fails here, not in a job
        f = d / name
        try:
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                if not 2 <= n <= f.stat().st_size - 8:
                    raise ValueError(f"header length {n} does not fit the file")
                header = json.loads(fh.read(n).decode("utf-8"))
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise WeightsError(
                f"weights: {str(path)!r}/{name} is not a safetensors file ({str(e)[:80]}); "
                "give the model's .safetensors files"
            ) from None
    if model is not None:
        try:
            cfg = json.loads((d / "config.json").read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise WeightsError(
                f"weights: {str(path)!r}/config.json is not valid JSON ({type(e).__name__}); "
                "give the model's HF config.json"
            ) from None
        if not isinstance(cfg, dict):
            raise WeightsError(f"weights: {str(path)!r}/config.json is not a JSON object; give the HF config.json")
        cfg.setdefault("num_key_value_heads", cfg.get("num_attention_heads"))
        bad = [
            f"{k}={cfg.get(k)!r} but the config's model has {m}={model[m]!r}"
            for k, m in CONFIG_FIELDS.items()
            if cfg.get(k) != model[m]
        ]
        if bad:
            raise WeightsError(
                f"weights: {str(path)!r}/config.json disagrees with model {model.get('name')!r}: "
                + "; ".join(bad)
                + ". Fix the model shapes in config/models/ or point weights elsewhere"
            )
    return st


def expected_shapes(model: dict, num_layers: int) -> dict[str, tuple]:
    h, inter, v = model["hidden_size"], model["intermediate_size"], model["vocab_size"]
    kvd = model["num_kv_heads"] * (h // model["num_heads"])
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
    for i in range(num_layers):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "self_attn.q_proj.weight": (h, h),
                p + "self_attn.k_proj.weight": (kvd, h),
                p + "self_attn.v_proj.weight": (kvd, h),
                p + "self_attn.o_proj.weight": (h, h),
                p + "mlp.gate_proj.weight": (inter, h),
                p + "mlp.up_proj.weight": (inter, h),
                p + "mlp.down_proj.weight": (h, inter),
                p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,),
            }
        )
    return shapes


def load_hf_dir(path, model: dict, num_layers: int, device="cpu", dtype=None) -> dict:
    """HF-named tensors of the first ``num_layers`` layers, every shape checked against the model."""
    from safetensors import safe_open

    files = check_weights_dir(path, model)
    want = expected_shapes(model, num_layers)
    got = {}
    for f in files:
        with safe_open(str(Path(path) / f), framework="pt", device=str(device)) as sf:
            for name in sf.keys():
                if name in want:
                    shape = tuple(sf.get_slice(name).get_shape())
                    if shape != want[name]:
                        raise WeightsError(
                            f"weights: {f}: {name} has shape {shape}, expected {want[name]} "
                            f"for model {model.get('name')!r}"
                        )
                    t = sf.get_tensor(name)
                    got[name] = t.to(dtype) if dtype is not None else t
    missing = sorted(set(want) - set(got))
    if missing:
        raise WeightsError(f"weights: {str(path)!r} lacks {len(missing)} tensors, e.g. {missing[:3]}")
    return got
