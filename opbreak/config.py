"""Config checks, defaults and per-config spec resolution.

The JSON schema (config/schema/config.schema.yaml) is the one home of every
config field, its type and its default: ``check()`` applies it (every
violation at once, unknown fields with the closest valid name) and then checks
what a schema cannot (tp divides heads, names unique and path-safe, memory
fits, pairs exist and differ); every problem names config, field and fix,
before any job starts. Defaults are filled from the schema (snakemake's
``validate()`` in the workflow, ``with_defaults()`` here: the same mechanism);
a config entry is completed by ``merged()``: schema default < the study's
``defaults:`` < the entry.
"""

from __future__ import annotations

import copy
import difflib
import functools
import math
import os
import re
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema" / "config.schema.yaml"
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: a trailing newline does not pass
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
MODEL_KEYS = ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "vocab_size")


class ConfigError(ValueError):
    """All problems of a config file, one per line."""


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""


def _no_duplicates(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"key {key!r} given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); keep one"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def load_yaml(path):
    """A user-written YAML file, strictly: a duplicate key raises ConfigError naming the file and lines."""
    try:
        return yaml.load(Path(path).read_text(), Loader=_StrictLoader)  # noqa: S506 (SafeLoader subclass)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())[:160]})") from None


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


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    """The config schema (read once)."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _defaults_of(subschema: dict) -> dict:
    """{property: default} of a schema object, in the schema's order (fresh copies)."""
    return {k: copy.deepcopy(v["default"]) for k, v in subschema["properties"].items() if "default" in v}


def _block_defaults(key: str) -> dict:
    """The built-in defaults of a top-level block whose schema is allOf [its type, {properties: defaults}]."""
    return _defaults_of(schema()["properties"][key]["allOf"][1])


def field_defaults() -> dict:
    """The built-in default of every config field (what a config that sets nothing gets)."""
    return _block_defaults("defaults")


def config_fields() -> list[str]:
    """Every valid field of a config entry (and of ``defaults:``), from the schema."""
    return list(schema()["$defs"]["hwconfig_fields"]["properties"])


def _filling_validator():
    """A jsonschema validator that fills ``default`` values while it validates, as snakemake's validate() does."""
    from jsonschema import Draft202012Validator, validators

    properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, props, instance, subschema):
        if isinstance(instance, dict):
            for k, v in props.items():
                if "default" in v:
                    instance.setdefault(k, copy.deepcopy(v["default"]))
        yield from properties(validator, props, instance, subschema)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})(schema())


def with_defaults(config: dict) -> dict:
    """A copy of ``config`` with the schema's defaults filled in (what snakemake's validate() does)."""
    c = copy.deepcopy(config)
    for _ in _filling_validator().iter_errors(c):
        pass  # check() reports them; here we only fill
    return c


def load_model(value, name, root="."):
    """A model entry is a dict or a path to a YAML file holding one; the schema's defaults fill it."""
    if isinstance(value, str):
        value_path = value
        path = Path(root) / value
        if not path.is_file():
            raise ConfigError(f"models.{name}: file {value!r} not found (relative to {Path(root).resolve()})")
        value = load_yaml(path)
        if not isinstance(value, dict):
            raise ConfigError(
                f"models.{name}: file {value_path!r} holds a {type(value).__name__}, not a mapping of "
                "shape fields (hidden_size: ..., num_layers: ...); write one mapping"
            )
    defaults = _defaults_of(schema()["$defs"]["model"])
    # Same key order whether or not validate() filled the defaults already (the spec is a rerun trigger).
    m = {k: v for k, v in value.items() if k not in defaults}
    m.setdefault("name", value.get("name", name))
    for k, v in defaults.items():
        m[k] = value.get(k, v)
    return m


def merged(config, entry):
    """A config entry completed: schema defaults < the study's ``defaults:`` < the entry, then derived fields."""
    c = _block_defaults("defaults")
    c.update(config.get("defaults") or {})
    c.update(entry)
    if c["timing"] is None:
        c["timing"] = "perf_counter" if c["gpu"] == "cpu" else "cuda_events"
    if c["gpu_ids"] is None:
        c["gpu_ids"] = [] if c["gpu"] == "cpu" else list(range(c["num_gpus"]))
    if c["repeats"] is None:
        c["repeats"] = config.get("repeats", schema()["properties"]["repeats"]["default"])
    # schema defaults < the study's slurm block < the config's own, field by field
    c["slurm"] = {**_block_defaults("slurm"), **(config.get("slurm") or {}), **(c.get("slurm") or {})}
    return c


def _where(path, config) -> str:
    """'configs[1] ('t2').tp', 'pairs[0].b', 'models.micro.hidden_size' for a jsonschema path."""
    out, node = "", config
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if out.startswith("configs[") and out.count("[") == 1 and isinstance(node, dict) and "name" in node:
                out += f" ({node['name']!r})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "config"


def _describe(err, config) -> list[str]:
    """One line per problem of a jsonschema error, unknown fields with the closest valid name."""
    where = _where(list(err.absolute_path), config)
    if err.validator == "additionalProperties" and err.validator_value is False and isinstance(err.instance, dict):
        valid = list(err.schema.get("properties", {}))
        lines = []
        for key in err.instance:
            if key in valid:
                continue
            near = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"valid: {', '.join(valid)}"
            field = f"{where}.{key}" if where != "config" else str(key)
            lines.append(f"{field}: unknown field; {hint}")
        return lines
    if err.validator in ("oneOf", "anyOf") and err.context:
        # report the branch that matched the value's type (a model dict, not the path string)
        typed = [e for e in err.context if e.validator != "type" or e.relative_path]
        if typed:
            return [line for e in typed for line in _describe(e, config)]
    return [f"{where}: {err.message}"]


def schema_errors(config, sub: dict | None = None) -> list[str]:
    """Every schema violation of ``config`` (or of a part, against ``sub``), each naming where."""
    from jsonschema import Draft202012Validator

    v = Draft202012Validator(sub if sub is not None else schema())
    errs = sorted(v.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    return [line for e in errs for line in _describe(e, config)]


def _model_file_errors(name, model) -> list[str]:
    """Schema violations of a model loaded from a file (the config's schema saw only its path)."""
    sub = {
        "$defs": schema()["$defs"],
        "properties": {"models": {"additionalProperties": {"$ref": "#/$defs/model"}}},
    }
    return schema_errors({"models": {name: model}}, sub)


def check(config: dict, root=".", catalog: dict | None = None, files=()) -> list[str]:
    """Every problem of ``config`` (schema, then meaning), all at once; empty list means it is good.

    ``files``: the YAML files the config was read from, re-read strictly (duplicate keys).
    """
    errs = []  # semantic problems
    for f in files or ():
        try:
            load_yaml(f)
        except ConfigError as e:
            errs.append(str(e))
    schema_errs = nonfinite(config) + schema_errors(config)
    models = {}
    for mname, mval in (config.get("models") or {}).items():
        try:
            m = load_model(mval, mname, root)
        except ConfigError as e:
            errs.append(str(e))
            continue
        except (TypeError, AttributeError):
            continue  # not a dict nor a path: the schema error says so
        if isinstance(mval, str):  # a model file: the schema has not seen it yet
            schema_errs += [f"{e} (in {mval})" for e in _model_file_errors(mname, m)]
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
    study = config.get("study", "")
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
    for j, p in enumerate(config.get("pairs") or []):
        if not isinstance(p, dict):
            continue
        where = f"pairs[{j}]" + (f" ({p['label']!r})" if p.get("label") else "")
        for side in ("a", "b"):
            if p.get(side) not in seen:
                near = difflib.get_close_matches(str(p.get(side)), sorted(seen), n=1)
                hint = f"did you mean {near[0]!r}?" if near else f"known: {sorted(seen)}"
                errs.append(f"{where}.{side}: unknown config {p.get(side)!r}; {hint}")
        if p.get("a") is not None and p.get("a") == p.get("b"):
            errs.append(
                f"{where}.b: {p['b']!r} is also a; a pair compares two different configs, "
                f"pick b from {sorted(seen - {p['a']})}"
            )
    errs += _check_store_fields(config, seen, root)
    errs += check_calibration(config.get("calibrate_from"), root)
    errs += _check_nccl_tests(config, root)
    return schema_errs + errs


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


def host_ram_gib() -> float | None:
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


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


def _check_entry(config, i, entry, models, gpus, seen, errs, root):
    """Semantic problems of config entry ``i`` (appended to ``errs``)."""
    name = entry.get("name", f"#{i}")
    where = f"configs[{i}] ({name!r})"
    n_before = len(errs)
    if not SAFE_NAME.match(str(name)):
        errs.append(
            f"{where}.name: {name!r} is not a safe path part (no '/', spaces or shell characters); "
            "use letters, digits, '.', '_', '-', at most 64"
        )
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
        return
    if c["model"] not in models:
        if c["model"] not in (config.get("models") or {}):
            errs.append(f"{where}.model: unknown model {c['model']!r}; known: {sorted(models)}")
        return
    m = models[c["model"]]
    tp = c["tp"]
    if not isinstance(tp, int) or tp < 1:
        return  # the schema error says so (tp >= 1)
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
            errs.append(
                f"{where}.num_gpus: {c['num_gpus']} but tp={tp}, emulate_tp={c['emulate_tp']} needs {want} ({why})"
            )
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
        if gpus and gpu in gpus and len(errs) == n_before:
            need, parts = memory_estimate_gib(m, c)
            have = gpus[gpu].get("mem_GiB") or gpus[gpu].get("mem_GB", 0) * 1e9 / 2**30
            if have and need > have * c["gpu_mem_fraction"]:
                errs.append(
                    f"{where}: needs ~{need:.1f} GiB per GPU ({parts}) but {gpu} has {have:.1f} GiB x "
                    f"gpu_mem_fraction {c['gpu_mem_fraction']}; lower batch/lengths, raise tp or "
                    "truncate num_layers"
                )
    if gpu == "cpu" and len(errs) == n_before:
        need, parts = memory_estimate_gib(m, c)
        need *= 1 if c["emulate_tp"] else tp  # every rank is a process on this host
        ram = host_ram_gib()
        if ram and need > ram * c["gpu_mem_fraction"]:
            errs.append(
                f"{where}: needs ~{need:.1f} GiB of host RAM ({parts} per rank, {tp} ranks) but this host has "
                f"{ram:.1f} GiB x gpu_mem_fraction {c['gpu_mem_fraction']}; lower batch/lengths or truncate num_layers"
            )
    if c["emulate_tp"] and c["backend"] == "torch" and gpu == "cpu" and tp == 1:
        errs.append(f"{where}.emulate_tp: true with tp 1 emulates nothing; set tp > 1 or drop emulate_tp")
    if c["weights"] is not None:
        wp = Path(root) / c["weights"]
        if not wp.is_dir():
            errs.append(
                f"{where}.weights: {c['weights']!r} is not a directory; give a local HF directory "
                "(config.json + *.safetensors) or null for random weights"
            )
        else:
            from .weights import WeightsError, check_weights_dir

            try:
                check_weights_dir(wp, m)
            except WeightsError as e:
                errs.append(f"{where}.{e}")
    if c["decode_sample"] and c["decode_sample"] > c.get("output_len", 0):
        errs.append(f"{where}.decode_sample: {c['decode_sample']} exceeds output_len; use 0 (all steps) or fewer")
    if c["decode_graph"] and c["backend"] != "lightllm":
        errs.append(
            f"{where}.decode_graph: CUDA-graph replay of the decode stack needs backend: lightllm; set it false"
        )


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
    config = with_defaults(config)
    c = merged(config, next(e for e in config["configs"] if e["name"] == name))
    model = load_model(config["models"][c["model"]], c["model"], root)
    spec = dict(c)
    spec.update(
        study=config["study"],
        model=model,
        device="cpu" if c["gpu"] == "cpu" else "cuda",
        model_layers=model["num_layers"],
        num_layers=c["num_layers"] or model["num_layers"],
        seed=config["seed"],
        hardware_catalog=config["hardware_catalog"],
    )
    spec.pop("slurm", None)  # scheduling, not measurement: must not trigger reruns
    spec.pop("repeats", None)
    return spec


def prepend_pythonpath(path):
    """Let every job, also in a conda env or on a SLURM node, import this checkout's opbreak."""
    import os

    parts = [str(path)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(path)]
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)
