"""Semantic config checks and per-config spec resolution.

The JSON schema (config/schema/config.schema.yaml, applied by snakemake's
``validate()``) checks types; this module checks what a schema cannot (tp
divides heads, names unique and path-safe, memory fits, pairs exist) and
returns every problem at once, each naming config, field and fix, before any
job starts.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
DEFAULTS = dict(
    backend="torch",
    gpu="cpu",
    num_gpus=0,
    tp=1,
    emulate_tp=False,
    gpu_ids=None,
    topology="auto",
    dtype="float32",
    timing=None,  # perf_counter on cpu, cuda_events on GPUs
    num_layers=None,
    weights=None,
    decode_sample=0,
    kernel_steps=8,
    transport="auto",
    warmup=1,
    timeout_s=3600,
    collective_timeout_s=600,
    gpu_mem_fraction=0.9,
    threads_per_rank=None,
    slurm=None,
    repeats=None,
)
MODEL_KEYS = ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "vocab_size")


class ConfigError(ValueError):
    """All problems of a config file, one per line."""


def load_model(value, name, root="."):
    """A model entry is a dict or a path to a YAML file holding one."""
    if isinstance(value, str):
        path = Path(root) / value
        if not path.is_file():
            raise ConfigError(f"models.{name}: file {value!r} not found (relative to {Path(root).resolve()})")
        value = yaml.safe_load(path.read_text())
    m = dict(value)
    m.setdefault("name", name)
    m.setdefault("rms_eps", 1e-5)
    m.setdefault("rope_theta", 10000.0)
    return m


def merged(config, entry):
    """A config entry with top-level defaults and built-in defaults filled in."""
    c = dict(DEFAULTS)
    c.update({k: v for k, v in (config.get("defaults") or {}).items()})
    c.update(entry)
    if c["timing"] is None:
        c["timing"] = "perf_counter" if c["gpu"] == "cpu" else "cuda_events"
    if c["gpu_ids"] is None:
        c["gpu_ids"] = [] if c["gpu"] == "cpu" else list(range(c["num_gpus"]))
    if c["repeats"] is None:
        c["repeats"] = config.get("repeats", 3)
    return c


def check(config: dict, root=".", catalog: dict | None = None) -> list[str]:
    """Every semantic problem of ``config``; empty list means it is good."""
    errs = []
    models = {}
    for mname, mval in (config.get("models") or {}).items():
        try:
            m = load_model(mval, mname, root)
        except ConfigError as e:
            errs.append(str(e))
            continue
        missing = [k for k in MODEL_KEYS if k not in m]
        if missing:
            errs.append(f"models.{mname}: missing {missing}")
            continue
        if m["hidden_size"] % m["num_heads"]:
            errs.append(f"models.{mname}: hidden_size {m['hidden_size']} is not divisible by num_heads {m['num_heads']}")
        if m["num_heads"] % m["num_kv_heads"]:
            errs.append(f"models.{mname}: num_heads {m['num_heads']} is not a multiple of num_kv_heads {m['num_kv_heads']}")
        models[mname] = m
    study = config.get("study", "")
    if not SAFE_NAME.match(str(study)):
        errs.append(f"study: {study!r} is not a safe path part; use letters, digits, '.', '_', '-'")
    seen = set()
    gpus = (catalog or {}).get("gpus", {})
    for i, entry in enumerate(config.get("configs") or []):
        name = entry.get("name", f"#{i}")
        where = f"configs[{i}] ({name!r})"
        n_before = len(errs)
        if not SAFE_NAME.match(str(name)):
            errs.append(f"{where}.name: {name!r} is not a safe path part (no '/', spaces or shell characters); "
                        "use letters, digits, '.', '_', '-', at most 64")
        if name in seen:
            errs.append(f"{where}.name: duplicate config name {name!r}; config names must be unique")
        seen.add(name)
        c = merged(config, entry)
        for f in ("batch", "input_len", "output_len"):
            if f not in c:
                errs.append(f"{where}.{f}: missing; set a positive integer")
            elif not isinstance(c[f], int) or c[f] <= 0:
                errs.append(f"{where}.{f}: {c[f]!r} must be a positive integer")
        if c["repeats"] < 1:
            errs.append(f"{where}.repeats: {c['repeats']} must be >= 1")
        if "model" not in c:
            errs.append(f"{where}.model: missing; name one of {sorted(models)}")
            continue
        if c["model"] not in models:
            if c["model"] not in (config.get("models") or {}):
                errs.append(f"{where}.model: unknown model {c['model']!r}; known: {sorted(models)}")
            continue
        m = models[c["model"]]
        tp = c["tp"]
        if m["num_heads"] % tp:
            errs.append(f"{where}.tp: {tp} does not divide num_heads {m['num_heads']} of {c['model']}; pick a divisor")
        if m["num_kv_heads"] % tp:
            errs.append(f"{where}.tp: {tp} does not divide num_kv_heads {m['num_kv_heads']} of {c['model']}; pick a divisor")
        if m["vocab_size"] % tp:
            errs.append(f"{where}.tp: {tp} does not divide vocab_size {m['vocab_size']} (vocab-parallel lm_head)")
        if m["intermediate_size"] % tp:
            errs.append(f"{where}.tp: {tp} does not divide intermediate_size {m['intermediate_size']}")
        if c["num_layers"] is not None and not (1 <= c["num_layers"] <= m["num_layers"]):
            errs.append(f"{where}.num_layers: {c['num_layers']} must be between 1 and the model's {m['num_layers']}")
        gpu = c["gpu"]
        if gpu == "cpu":
            if c["backend"] != "torch":
                errs.append(f"{where}.backend: {c['backend']!r} needs a GPU; on gpu: cpu use backend: torch")
            if c["num_gpus"] != 0:
                errs.append(f"{where}.num_gpus: {c['num_gpus']} on gpu: cpu; set 0 (ranks are processes, tp of them)")
            if c["timing"] not in ("perf_counter",):
                errs.append(f"{where}.timing: {c['timing']!r} needs CUDA; on gpu: cpu use perf_counter")
        else:
            if gpus and gpu not in gpus:
                errs.append(f"{where}.gpu: unknown GPU model {gpu!r}; known: {sorted(gpus)} (config/hardware.yaml)")
            want = 1 if c["emulate_tp"] else tp
            if c["num_gpus"] != want:
                why = "emulated TP runs on one GPU" if c["emulate_tp"] else "one GPU per TP rank"
                errs.append(f"{where}.num_gpus: {c['num_gpus']} but tp={tp}, emulate_tp={c['emulate_tp']} needs {want} ({why})")
            ids = c["gpu_ids"]
            if len(set(ids)) != len(ids):
                errs.append(f"{where}.gpu_ids: {ids} repeats a GPU id; list each GPU once")
            if len(ids) != c["num_gpus"]:
                errs.append(f"{where}.gpu_ids: {ids} has {len(ids)} ids but num_gpus is {c['num_gpus']}")
            if c["timing"] == "perf_counter":
                errs.append(f"{where}.timing: perf_counter does not see asynchronous CUDA work; use cuda_events "
                            "(or blocking_host for the seed's CUDA_LAUNCH_BLOCKING method)")
            if gpus and gpu in gpus and len(errs) == n_before:
                need, parts = memory_estimate_gib(m, c)
                have = gpus[gpu].get("mem_GiB") or gpus[gpu].get("mem_GB", 0) * 1e9 / 2**30
                if have and need > have * c["gpu_mem_fraction"]:
                    errs.append(f"{where}: needs ~{need:.1f} GiB per GPU ({parts}) but {gpu} has {have:.1f} GiB x "
                                f"gpu_mem_fraction {c['gpu_mem_fraction']}; lower batch/lengths, raise tp or truncate num_layers")
        if c["emulate_tp"] and c["backend"] == "torch" and gpu == "cpu" and tp == 1:
            errs.append(f"{where}.emulate_tp: true with tp 1 emulates nothing; set tp > 1 or drop emulate_tp")
        if c["weights"] is not None:
            wp = Path(root) / c["weights"]
            if not wp.is_dir():
                errs.append(f"{where}.weights: {c['weights']!r} is not a directory; give a local HF directory "
                            "(config.json + *.safetensors) or null for random weights")
            else:
                from .weights import WeightsError, check_weights_dir

                try:
                    check_weights_dir(wp, m)
                except WeightsError as e:
                    errs.append(f"{where}.{e}")
        if c["decode_sample"] and c["decode_sample"] > c.get("output_len", 0):
            errs.append(f"{where}.decode_sample: {c['decode_sample']} exceeds output_len; use 0 (all steps) or fewer")
    for j, p in enumerate(config.get("pairs") or []):
        for side in ("a", "b"):
            if p.get(side) not in seen:
                errs.append(f"pairs[{j}].{side}: unknown config {p.get(side)!r}; known: {sorted(seen)}")
    return errs


def memory_estimate_gib(model, c):
    """Weights of one rank plus its KV cache for batch x (input + output), in GiB."""
    b = DTYPE_BYTES[c["dtype"]]
    h, inter, v = model["hidden_size"], model["intermediate_size"], model["vocab_size"]
    hd = h // model["num_heads"]
    L = c["num_layers"] or model["num_layers"]
    tp = c["tp"]
    per_layer = (2 * h * h + 2 * h * model["num_kv_heads"] * hd + 3 * h * inter) / tp
    weights = (L * per_layer + 2 * v * h / tp) * b
    kv = 2 * L * c["batch"] * (c["input_len"] + c["output_len"]) * (model["num_kv_heads"] // tp) * hd * b
    gib = 2**30
    return (weights + kv) / gib, f"weights {weights / gib:.1f} + KV cache {kv / gib:.1f}"


def resolve(config: dict, name: str, root=".") -> dict:
    """Everything one measure job needs, and nothing else: its rerun trigger."""
    entry = next(e for e in config["configs"] if e["name"] == name)
    c = merged(config, entry)
    model = load_model(config["models"][c["model"]], c["model"], root)
    spec = dict(c)
    spec.update(
        study=config["study"],
        model=model,
        device="cpu" if c["gpu"] == "cpu" else "cuda",
        model_layers=model["num_layers"],
        num_layers=c["num_layers"] or model["num_layers"],
        seed=config.get("seed", 0),
        hardware_catalog=config.get("hardware_catalog", "config/hardware.yaml"),
    )
    spec.pop("slurm", None)  # scheduling, not measurement: must not trigger reruns
    spec.pop("repeats", None)
    return spec


def prepend_pythonpath(path):
    """Let every job, also in a conda env or on a SLURM node, import this checkout's opbreak."""
    import os

    parts = [str(path)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(path)]
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)
