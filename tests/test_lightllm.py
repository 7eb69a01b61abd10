"""LightLLM backend (the timing code it relies on is tested in test_timing.py).

CPU tests run everywhere (weights, guards); the CUDA tests (cross-check against
the torch backend, closure on a real run) skip where there is no CUDA or no lightllm.
"""

import importlib.util
import os
import socket

import pytest
import torch

from conftest import ROOT, run_spec
from opbreak.backends import lightllm_backend as lb
from opbreak.backends import torch_llama
from opbreak.config import load_model
from opbreak.timing import Recorder

# The default study's tiny model (config/models/tiny.yaml), 3 layers.
TINY = dict(load_model("config/models/tiny.yaml", "t", str(ROOT)), name="t", num_layers=3)

HAS_CUDA = torch.cuda.is_available()
HAS_LIGHTLLM = importlib.util.find_spec("lightllm") is not None
needs_gpu = pytest.mark.skipif(not (HAS_CUDA and HAS_LIGHTLLM), reason="needs CUDA and lightllm")


def spec_for(**kw):
    s = run_spec(
        name="t",
        study="s",
        backend="lightllm",
        device="cuda",
        gpu="H100-SXM",
        num_gpus=1,
        tp=1,
        emulate_tp=False,
        gpu_ids=[0],
        dtype="float16",
        timing="cuda_events",
        batch=2,
        input_len=16,
        output_len=4,
        num_layers=TINY["num_layers"],
        model_layers=TINY["num_layers"],
        weights=None,
        decode_sample=0,
        warmup=1,
        seed=0,
        model=dict(TINY),
        hardware_catalog="config/hardware.yaml",
        timeout_s=600,
        collective_timeout_s=60,
    )
    s.update(kw)
    return s


# -- CPU ---------------------------------------------------------------------
def test_random_weights_match_torch_backend():
    full = torch_llama.random_weights(TINY, 3, device="cpu", dtype=torch.float32)
    mine = lb.random_pre_post(TINY, 3, "cpu", torch.float32)
    for i in range(TINY["num_layers"]):
        mine.update(lb.random_layer(TINY, 3, i, "cpu", torch.float32))
    assert set(mine) == set(full)
    for k in full:
        assert torch.equal(mine[k], full[k]), k


def test_hf_config_and_truncation(tmp_path):
    spec = spec_for(num_layers=2)
    d = lb.prepare_weight_dir(spec, str(tmp_path / "w"))
    import json

    cfg = json.loads(open(os.path.join(d, "config.json")).read())
    assert cfg["num_hidden_layers"] == 2 and cfg["num_key_value_heads"] == 2
    assert cfg["max_position_embeddings"] >= spec["input_len"] + spec["output_len"]


def test_bin_checkpoints_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(SystemExit, match="only pickled checkpoints .*pytorch_model.bin"):
        lb.check_weights_dir(tmp_path)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "model.safetensors"))  # a real header: the check reads it
    assert lb.check_weights_dir(tmp_path) == ["model.safetensors"]


@pytest.mark.skipif(HAS_CUDA, reason="checks the no-CUDA message")
def test_no_cuda_fails_clearly(monkeypatch):
    from opbreak import provenance

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(SystemExit, match="no CUDA.*backend: torch"):
        provenance.preflight(spec_for())
    with pytest.raises(SystemExit, match="needs CUDA"):
        lb.run_rank(spec_for(), 0, 1, Recorder("perf_counter"))


# -- CUDA --------------------------------------------------------------------
def _init_group():
    import torch.distributed as dist

    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.setdefault("_NCCL_PORT_", str(port))
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)


def _torch_logits(spec):
    rec = Recorder("cuda_events", enabled=False)
    s = dict(spec, device="cuda")
    net = torch_llama.build(s, 0, 1, rec)
    toks = torch_llama.input_tokens(s, net.device)
    return torch_llama.run_static_batch(net, s, rec, toks)


@needs_gpu
@pytest.mark.parametrize("tp,emulate", [(1, False), (2, True)])
def test_cross_check_logits_against_torch_backend(tmp_path, tp, emulate):
    _init_group()
    spec = spec_for(tp=tp, emulate_tp=emulate, batch=3, input_len=40, output_len=3)
    saved = None
    if emulate:
        saved = lb.patch_collectives_for_emulation()
    try:
        model = lb.build_model(spec, 0, 1, str(tmp_path))
        rec = Recorder("cuda_events")
        inst = lb.Instrumentation(model, rec, 1, emulate)
        ours = lb.run_static(model, spec, rec, lb.input_tokens(spec), inst)
    finally:
        if saved:
            import torch.distributed as dist

            dist.all_reduce, dist.all_gather = saved
    ref = _torch_logits(spec)
    a, b = ours.first_logits.double(), ref.first_logits.double()
    rel = ((a - b).norm() / b.norm()).item()
    assert rel < 1e-2, f"LightLLM vs torch backend logits: relative error {rel:.2e}"
    assert (ours.tokens[:, 0] == ref.tokens[:, 0]).float().mean() >= 0.66


@needs_gpu
def test_closure_on_a_real_run():
    _init_group()
    spec = spec_for(batch=4, input_len=64, output_len=8)
    rec = Recorder("cuda_events")
    res = lb.run_rank(spec, 0, 1, rec)
    for phase, c in res.extra["closure"].items():
        assert c["closure"] >= 0.99, (phase, c)
    assert res.tokens.shape == (4, 9)
