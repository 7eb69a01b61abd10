"""What a config is: its schema, its defaults, and the spec each measure job runs.

The JSON schema (config/schema/config.schema.yaml) is the one home of every
config field, its type and its default. Defaults are filled from the schema
(snakemake's ``validate()`` in the workflow, ``with_defaults()`` here: the same
mechanism); a config entry is completed by ``merged()``: schema default < the
study's ``defaults:`` < the entry; ``resolve()`` turns it into one job's spec.
The schema's verdict, one line per violation naming where (``schema_errors()``),
is the first half of :func:`opbreak.config_checks.check`; the checks a schema
cannot make (tp divides heads, memory fits, pairs exist) are the second half.
User-written YAML is read strictly here (``load_yaml()``: a key given twice is refused).
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema" / "config.schema.yaml"
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}  # what each ``dtype`` value takes per element


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


def model_file_errors(name, model) -> list[str]:
    """Schema violations of a model loaded from a file (the config's schema saw only its path)."""
    sub = {
        "$defs": schema()["$defs"],
        "properties": {"models": {"additionalProperties": {"$ref": "#/$defs/model"}}},
    }
    return schema_errors({"models": {name: model}}, sub)


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
    parts = [str(path)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(path)]
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)
