"""The plain-PyTorch backend computes the same model at every TP degree."""

import datetime as dt
import socket

import pytest
import torch
import torch.multiprocessing as mp

from conftest import MINI_MODEL, run_spec
from opbreak.backends import torch_llama
from opbreak.timing import Recorder

MODEL = MINI_MODEL


def spec(tp, emulate=False):
    return run_spec(
        model=MODEL,
        tp=tp,
        emulate_tp=emulate,
        dtype="float32",
        device="cpu",
        seed=7,
        batch=2,
        input_len=12,
        output_len=5,
        num_layers=2,
        warmup=0,
    )


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, q):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=dt.timedelta(seconds=60)
    )
    out = torch_llama.run_rank(spec(world), rank, world, Recorder("perf_counter"))
    if rank == 0:
        q.put((out.first_logits.numpy(), out.tokens.numpy()))  # no shared-memory tensors across exit
    dist.barrier()
    dist.destroy_process_group()


def run_tp(world):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, q)) for r in range(world)]
    for p in procs:
        p.start()
    logits, tokens = q.get(timeout=120)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return torch.from_numpy(logits), torch.from_numpy(tokens)


def test_tp2_logits_equal_tp1():
    logits1, tokens1 = run_tp(1)
    logits2, tokens2 = run_tp(2)
    assert logits1.shape == (2, MODEL["vocab_size"])
    torch.testing.assert_close(logits2, logits1, rtol=1e-5, atol=1e-5)
    assert torch.equal(tokens1, tokens2)


def test_weights_are_seeded_and_shard_consistently():
    a = torch_llama.random_weights(MODEL, seed=3)
    b = torch_llama.random_weights(MODEL, seed=3)
    c = torch_llama.random_weights(MODEL, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["lm_head.weight"], c["lm_head.weight"])


def test_emulated_tp_records_collectives_without_running_them():
    rec = Recorder("perf_counter")
    torch_llama.run_rank(spec(2, emulate=True), 0, 1, rec)
    rows = {(r["phase"], r["op"]): r for r in rec.op_rows() if r["modeled"]}
    h, B, I, O, L = 64, 2, 12, 5, 2
    ar = rows[("prefill", "all_reduce")]
    assert ar["calls"] == 2 * L + 1
    assert ar["modeled_bytes"] == (2 * L + 1) * B * I * h * 4
    assert rows[("decode", "all_reduce")]["modeled_bytes"] == O * (2 * L + 1) * B * h * 4
    assert rows[("decode", "logits_gather")]["calls"] == O


def test_every_phase_is_fully_accounted():
    rec = Recorder("perf_counter")
    torch_llama.run_rank(spec(1), 0, 1, rec)
    for phase in ("prefill", "decode"):
        total = sum(r["time_ms"] for r in rec.op_rows() if r["phase"] == phase and not r["modeled"])
        e2e = sum(s["e2e_ms"] for s in rec.steps if s["phase"] == phase)
        assert total == pytest.approx(e2e, rel=1e-9)
    assert sum(1 for s in rec.steps if s["phase"] == "decode") == 5
