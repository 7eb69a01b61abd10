"""Local weights: safetensors only, pickles refused, shapes checked, and they drive the model."""

import json

import pytest
import torch
from safetensors.torch import save_file

from conftest import MINI_MODEL, run_spec
from opbreak.backends import torch_llama
from opbreak.config_checks import check
from opbreak.timing import Recorder
from opbreak.weights import WeightsError, check_weights_dir, load_hf_dir

MODEL = MINI_MODEL
HF_CONFIG = dict(
    hidden_size=64,
    intermediate_size=160,
    num_attention_heads=4,
    num_key_value_heads=2,
    num_hidden_layers=2,
    vocab_size=256,
)


def hf_dir(tmp_path, weights=None, config=None):
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config or HF_CONFIG))
    w = weights if weights is not None else torch_llama.random_weights(MODEL, seed=5)
    save_file({k: v.contiguous() for k, v in w.items()}, str(d / "model.safetensors"))
    return d


def test_pickled_checkpoint_is_refused(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(HF_CONFIG))
    (d / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(WeightsError, match="pickled checkpoints .*pytorch_model.bin.* refused"):
        check_weights_dir(d)


def test_config_json_disagreeing_with_model_is_refused(tmp_path):
    d = hf_dir(tmp_path, config=dict(HF_CONFIG, num_key_value_heads=4))
    with pytest.raises(WeightsError, match="num_key_value_heads=4 but the config's model has num_kv_heads=2"):
        check_weights_dir(d, MODEL)


def test_wrong_tensor_shape_is_refused(tmp_path):
    w = torch_llama.random_weights(MODEL, seed=5)
    w["model.layers.1.mlp.down_proj.weight"] = torch.zeros(64, 100)
    d = hf_dir(tmp_path, weights=w)
    with pytest.raises(WeightsError, match=r"model.layers.1.mlp.down_proj.weight has shape \(64, 100\)"):
        load_hf_dir(d, MODEL, 2)


def test_config_check_refuses_bad_weights_before_any_job(tmp_path, tiny_config):
    d = tmp_path / "bin"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.pt").write_bytes(b"x")
    tiny_config["configs"][0]["weights"] = str(d)
    errs = "\n".join(check(tiny_config))
    assert "configs[0] ('t1').weights" in errs and "refused because loading them runs code" in errs


def test_loaded_weights_give_the_same_tokens_as_the_seeded_ones(tmp_path):
    d = hf_dir(tmp_path)
    spec = run_spec(
        model=MODEL,
        tp=1,
        emulate_tp=False,
        dtype="float32",
        device="cpu",
        seed=5,
        batch=2,
        input_len=8,
        output_len=3,
        num_layers=2,
        warmup=0,
    )
    a = torch_llama.run_rank(spec, 0, 1, Recorder("perf_counter"))
    b = torch_llama.run_rank(dict(spec, weights=str(d)), 0, 1, Recorder("perf_counter"))
    torch.testing.assert_close(a.first_logits, b.first_logits)
    assert torch.equal(a.tokens, b.tokens)
