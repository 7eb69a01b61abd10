"""Every problem of a config before any job runs: the schema's, then what a schema cannot see.

:func:`check` reports them all at once, one line each naming config, field and fix
(the workflow refuses to start on any). The schema's part (types, ranges, unknown
fields with the closest valid name) comes from :mod:`opbreak.config`; here are the
checks of meaning: model shapes against tp, backend, GPU and timing compatible,
memory that fits, weights that match the model, names unique and path-safe,
pairs, store sources and calibration tables that exist.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from pathlib import Path

from .config import ConfigError, load_model, load_yaml, merged, model_file_errors, schema_errors, with_defaults
from .memory import host_ram_gib, memory_estimate_gib
from .weights import WeightsError, check_weights_dir

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: a trailing newline does not pass
MODEL_KEYS = ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "vocab_size")


def check(config: dict, root=".", catalog: dict | None = None, files=()) -> list[str]:
    """Every problem of ``config`` (schema, then meaning), all at once; empty list means it is good.

    ``config`` is as read, before the schema's defaults: a missing field is the schema's
    error, not a default here. ``files``: the YAML files the config was read from, re-read
    strictly (duplicate keys).
    """
    errs = []  # semantic problems
    for f in files or ():
        try:
            load_yaml(f)
        except ConfigError as e:
            errs.append(str(e))
    schema_errs = nonfinite(config) + schema_errors(config)
    models, model_file_errs = _check_models(config, root, errs)
    schema_errs += model_file_errs
    study = config.get("study", "")  # missing: the schema's error (required)
    if not SAFE_NAME.match(str(study)):  # anchored with \Z: no trailing newline
        errs.append(f"study: {study!r} is not a safe path part; use letters, digits, '.', '_', '-'")
    seen = set()
    gpus = (catalog or {}).get("gpus", {})
    for i, entry in enumerate(config.get("configs") or []):
        if not isinstance(entry, dict):
            continue  # the schema error says so
        try:
            _check_entry(config, i, entry, models, gpus, seen, errs, root)
        except (TypeError, KeyError, ValueError, AttributeError, IndexError, ZeroDivisionError):
            if not schema_errs:
                raise  # a bug here, not a bad value the schema already reported
    errs += _check_pairs(config.get("pairs"), seen)
    errs += _check_store_fields(config, seen, root)
    errs += check_calibration(config.get("calibrate_from"), root)
    errs += _check_nccl_tests(config, root)
    return schema_errs + errs


def _check_models(config, root, errs) -> tuple[dict, list[str]]:
    """The loadable models by name (their problems appended to ``errs``), and the schema
    violations of model files (the config's schema saw only their paths)."""
    models, schema_errs = {}, []
    for mname, mval in (config.get("models") or {}).items():
        try:
            m = load_model(mval, mname, root)
        except ConfigError as e:
            errs.append(str(e))
            continue
        except (TypeError, AttributeError):
            continue  # not a dict nor a path: the schema error says so
        if isinstance(mval, str):  # a model file: the schema has not seen it yet
            schema_errs += [f"{e} (in {mval})" for e in model_file_errors(mname, m)]
        missing = [k for k in MODEL_KEYS if k not in m]
        if missing:
            errs.append(f"models.{mname}: missing {missing}")
            continue
        if m["hidden_size"] % m["num_heads"]:
            errs.append(
                f"models.{mname}: hidden_size {m['hidden_size']} is not divisible by num_heads {m['num_heads']}"
            )
        if m["num_heads"] % m["num_kv_heads"]:
            errs.append(
                f"models.{mname}: num_heads {m['num_heads']} is not a multiple of num_kv_heads {m['num_kv_heads']}"
            )
        models[mname] = m
    return models, schema_errs


def _check_entry(config, i, entry, models, gpus, seen, errs, root):
    """Semantic problems of config entry ``i``, appended to ``errs`` one check at a time (so the
    problems found before a value the schema already refused raises are kept)."""
    name = entry.get("name", f"#{i}")
    where = f"configs[{i}] ({name!r})"
    n_before = len(errs)
    _check_name(where, name, seen, errs)
    c = merged(config, entry)
    own_repeats = "repeats" in entry or "repeats" in (config.get("defaults") or {})
    _check_sizes(where, c, errs, own_repeats)
    m = _model_of(where, c, models, config, errs)
    if m is None:
        return
    if not isinstance(c["tp"], int) or c["tp"] < 1:
        return  # the schema error says so (tp >= 1)
    _check_tp_divides(where, c, m, errs)
    if c["gpu"] == "cpu":
        _check_on_cpu(where, c, errs)
    else:
        _check_on_gpu(where, c, gpus, with_defaults(config)["hardware_catalog"], errs)
    if len(errs) == n_before:  # sized only when nothing else is wrong with it
        _check_memory(where, c, m, gpus, errs)
    if c["emulate_tp"] and c["backend"] == "torch" and c["gpu"] == "cpu" and c["tp"] == 1:
        errs.append(f"{where}.emulate_tp: true with tp 1 emulates nothing; set tp > 1 or drop emulate_tp")
    if c["weights"] is not None:
        _check_weights(where, c, m, root, errs)
    if c["decode_sample"] and c["decode_sample"] > c.get("output_len", 0):  # missing: reported above
        errs.append(f"{where}.decode_sample: {c['decode_sample']} exceeds output_len; use 0 (all steps) or fewer")
    if c["decode_graph"] and c["backend"] != "lightllm":
        errs.append(
            f"{where}.decode_graph: CUDA-graph replay of the decode stack needs backend: lightllm; set it false"
        )


def _check_name(where, name, seen, errs):
    """A config name is a path part, and unique in the study."""
    if not SAFE_NAME.match(str(name)):
        errs.append(
            f"{where}.name: {name!r} is not a safe path part (no '/', spaces or shell characters); "
            "use letters, digits, '.', '_', '-', at most 64"
        )
    if name in seen:
        errs.append(f"{where}.name: duplicate config name {name!r}; config names must be unique")
    seen.add(name)


def _check_sizes(where, c, errs, own_repeats):
    """The static batch's sizes (no schema default: every config sets them) and its repeats (when the
    config sets them: a study-level value is the schema's to refuse, once)."""
    for f in ("batch", "input_len", "output_len"):
        if f not in c:
            errs.append(f"{where}.{f}: missing; set a positive integer")
        elif not isinstance(c[f], int) or c[f] <= 0:
            errs.append(f"{where}.{f}: {c[f]!r} must be a positive integer")
    if own_repeats and c["repeats"] < 1:
        errs.append(f"{where}.repeats: {c['repeats']} must be >= 1")


def _model_of(where, c, models, config, errs) -> dict | None:
    """The entry's model, loaded; None when it has none to check against (reported here, or where
    the model itself is reported: a model that did not load)."""
    if "model" not in c:
        errs.append(f"{where}.model: missing; name one of {sorted(models)}")
        return None
    if c["model"] not in models:
        if c["model"] not in (config.get("models") or {}):
            errs.append(f"{where}.model: unknown model {c['model']!r}; known: {sorted(models)}")
        return None
    return models[c["model"]]


def _check_tp_divides(where, c, m, errs):
    """Tensor parallelism splits heads, kv heads, the vocabulary and the FFN evenly; truncation fits."""
    tp = c["tp"]
    if m["num_heads"] % tp:
        errs.append(f"{where}.tp: {tp} does not divide num_heads {m['num_heads']} of {c['model']}; pick a divisor")
    if m["num_kv_heads"] % tp:
        errs.append(
            f"{where}.tp: {tp} does not divide num_kv_heads {m['num_kv_heads']} of {c['model']}; pick a divisor"
        )
    if m["vocab_size"] % tp:
        errs.append(f"{where}.tp: {tp} does not divide vocab_size {m['vocab_size']} (vocab-parallel lm_head)")
    if m["intermediate_size"] % tp:
        errs.append(f"{where}.tp: {tp} does not divide intermediate_size {m['intermediate_size']}")
    if c["num_layers"] is not None and not (1 <= c["num_layers"] <= m["num_layers"]):
        errs.append(f"{where}.num_layers: {c['num_layers']} must be between 1 and the model's {m['num_layers']}")


def _check_on_cpu(where, c, errs):
    """On gpu: cpu only the torch backend runs, ranks are processes, and the host clock times."""
    if c["backend"] != "torch":
        errs.append(f"{where}.backend: {c['backend']!r} needs a GPU; on gpu: cpu use backend: torch")
    if c["num_gpus"] != 0:
        errs.append(f"{where}.num_gpus: {c['num_gpus']} on gpu: cpu; set 0 (ranks are processes, tp of them)")
    if c["timing"] not in ("perf_counter",):
        errs.append(f"{where}.timing: {c['timing']!r} needs CUDA; on gpu: cpu use perf_counter")


def _check_on_gpu(where, c, gpus, catalog_path, errs):
    """On GPUs: a GPU model of the catalog, one GPU per rank (one for emulated TP), listed once
    each, and a clock that sees asynchronous CUDA work."""
    gpu, tp = c["gpu"], c["tp"]
    if gpus and gpu not in gpus:
        near = difflib.get_close_matches(str(gpu), sorted(gpus), n=1)
        hint = (
            f"did you mean {near[0]!r}?"
            if near
            else f"known: {sorted(gpus)}; a new GPU is an entry there (device names, datasheet ceilings, sources)"
        )
        errs.append(f"{where}.gpu: unknown GPU model {gpu!r}; {hint} (the GPUs of {catalog_path})")
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
        errs.append(
            f"{where}.timing: perf_counter does not see asynchronous CUDA work; use cuda_events "
            "(or blocking_host for the seed's CUDA_LAUNCH_BLOCKING method)"
        )


def _check_memory(where, c, m, gpus, errs):
    """Weights and KV cache fit: per GPU (a GPU model of the catalog), or all ranks in this host's RAM."""
    gpu, tp = c["gpu"], c["tp"]
    if gpu != "cpu":
        if not (gpus and gpu in gpus):
            return  # no catalog entry to size it against
        need, parts = memory_estimate_gib(m, c)
        have = gpus[gpu].get("mem_GiB") or gpus[gpu].get("mem_GB", 0) * 1e9 / 2**30
        if have and need > have * c["gpu_mem_fraction"]:
            errs.append(
                f"{where}: needs ~{need:.1f} GiB per GPU ({parts}) but {gpu} has {have:.1f} GiB x "
                f"gpu_mem_fraction {c['gpu_mem_fraction']}; lower batch/lengths, raise tp or "
                "truncate num_layers"
            )
        return
    need, parts = memory_estimate_gib(m, c)
    need *= 1 if c["emulate_tp"] else tp  # every rank is a process on this host
    ram = host_ram_gib()
    if ram and need > ram * c["gpu_mem_fraction"]:
        errs.append(
            f"{where}: needs ~{need:.1f} GiB of host RAM ({parts} per rank, {tp} ranks) but this host has "
            f"{ram:.1f} GiB x gpu_mem_fraction {c['gpu_mem_fraction']}; lower batch/lengths or truncate num_layers"
        )


def _check_weights(where, c, m, root, errs):
    """A weights directory exists and its config.json and tensors match the model."""
    wp = Path(root) / c["weights"]
    if not wp.is_dir():
        errs.append(
            f"{where}.weights: {c['weights']!r} is not a directory; give a local HF directory "
            "(config.json + *.safetensors) or null for random weights"
        )
        return
    try:
        check_weights_dir(wp, m)
    except WeightsError as e:
        errs.append(f"{where}.{e}")


def _check_pairs(pairs, names) -> list[str]:
    """Each pair names two different configs of this study (a typo gets the closest name)."""
    errs = []
    for j, p in enumerate(pairs or []):
        if not isinstance(p, dict):
            continue
        where = f"pairs[{j}]" + (f" ({p['label']!r})" if p.get("label") else "")
        for side in ("a", "b"):
            if p.get(side) not in names:
                near = difflib.get_close_matches(str(p.get(side)), sorted(names), n=1)
                hint = f"did you mean {near[0]!r}?" if near else f"known: {sorted(names)}"
                errs.append(f"{where}.{side}: unknown config {p.get(side)!r}; {hint}")
        if p.get("a") is not None and p.get("a") == p.get("b"):
            errs.append(
                f"{where}.b: {p['b']!r} is also a; a pair compares two different configs, "
                f"pick b from {sorted(names - {p['a']})}"
            )
    return errs


def nonfinite(value, where="") -> list[str]:
    """Every NaN or infinity in a config (YAML .nan / .inf pass JSON-schema bounds), with its place."""
    out = []
    if isinstance(value, float) and not math.isfinite(value):
        out.append(f"{where or 'config'}: {value} is not a finite number; give a finite value")
    elif isinstance(value, dict):
        for k, v in value.items():
            out += nonfinite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += nonfinite(v, f"{where}[{i}]")
    return out


def _check_store_fields(config, names, root) -> list[str]:
    """``import:`` sources exist; ``remeasure:`` names configs of this study."""
    errs = []
    for i, src in enumerate(config.get("import") or []):
        if isinstance(src, str) and not (Path(root) / src).exists():
            errs.append(
                f"import[{i}]: {src!r} does not exist; give a folder or .tar.gz holding <config>/rep<k>/ "
                "measure outputs (or store entries)"
            )
    rem = config.get("remeasure")
    if isinstance(rem, list):
        for i, n in enumerate(rem):
            if n not in names:
                errs.append(f"remeasure[{i}]: {n!r} is not a config of this study; known: {sorted(names)}")
    return errs


def check_calibration(cal, root=".") -> list[str]:
    """``calibrate_from`` before any job: the tables exist, have the columns, finite positive times."""
    if not cal:
        return []
    if isinstance(cal, dict):
        tables = cal.get("tables")
        configs = cal.get("configs")
    else:
        tables, configs = cal, None
    if not isinstance(tables, str):
        return []  # the schema error says so
    path = Path(root) / tables
    ops = path / "ops.csv" if path.is_dir() else path
    if not ops.is_file():
        return [f"calibrate_from: {str(ops)!r} not found; name a measured study's theory tables folder (ops.csv)"]
    import pandas as pd

    try:
        t = pd.read_csv(ops)
    except Exception as e:  # any unreadable file: one line
        return [f"calibrate_from: {ops} is not a readable CSV ({type(e).__name__}); name a theory ops.csv"]
    need = ["config", "phase", "op", "t_bound_ms", "measured_ms", "modeled"]
    missing = [c for c in need if c not in t.columns]
    if missing:
        return [f"calibrate_from: {ops} lacks columns {missing}; it must be a theory ops.csv (results/theory/)"]
    if configs:
        unknown = sorted(set(configs) - set(t["config"]))
        if unknown:
            return [f"calibrate_from.configs: {unknown} not in {ops}; known: {sorted(set(t['config']))}"]
        t = t[t["config"].isin(configs)]
    modeled = t["modeled"].astype(str).str.lower() == "true"
    meas = pd.to_numeric(t["measured_ms"], errors="coerce")
    tb = pd.to_numeric(t["t_bound_ms"], errors="coerce")
    measured_cfgs = set(t.loc[meas.notna(), "config"])
    use = ~modeled & t["config"].isin(measured_cfgs if not configs else set(configs))
    bad = use & ~(meas.map(lambda v: math.isfinite(v) and v > 0) & tb.map(lambda v: math.isfinite(v) and v > 0))
    if not use.any():
        return [f"calibrate_from: {ops} has no measured op rows; name a measured study's tables"]
    if bad.any():
        r = t[bad].iloc[0]
        return [
            f"calibrate_from: {ops} row {int(t[bad].index[0]) + 2} ({r['config']}, {r['phase']}, {r['op']}): "
            f"measured_ms {r['measured_ms']} / t_bound_ms {r['t_bound_ms']} must be finite and positive; "
            "fix or regenerate that table"
        ]
    return []


def _check_nccl_tests(config, root) -> list[str]:
    """The ``nccl_tests`` field: exactly one of binary/src, and the path must exist (before any job)."""
    nt = config.get("nccl_tests")
    if not isinstance(nt, dict):
        return []  # absent (no reference), or a schema error
    where = "nccl_tests"
    given = [k for k in ("binary", "src") if nt.get(k)]
    if len(given) != 1:
        return [
            f"{where}: set exactly one of 'binary' (a built all_reduce_perf) or 'src' (a nccl-tests source "
            f"folder to build); got {given or 'neither'}"
        ]
    key = given[0]
    path = nt[key] if os.path.isabs(nt[key]) else os.path.join(root, nt[key])
    if key == "binary" and not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return [
            f"{where}.binary: {nt[key]!r} is not an executable file; point it at a built all_reduce_perf "
            f"(nccl-tests' build/all_reduce_perf) or use {where}.src with a nccl-tests source folder"
        ]
    if key == "src" and not os.path.isfile(os.path.join(path, "src", "all_reduce.cu")):
        return [
            f"{where}.src: {nt[key]!r} is not a nccl-tests source folder (no src/all_reduce.cu); "
            f"git clone https://github.com/NVIDIA/nccl-tests there, or use {where}.binary"
        ]
    if not (config.get("allreduce_sweep") or {}).get("sizes"):
        return [f"{where}: runs beside the all-reduce sweep, which is off; set allreduce_sweep.sizes too"]
    return []
