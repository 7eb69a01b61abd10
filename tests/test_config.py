"""Every bad config is refused before any job starts, naming config, field and fix."""

import pytest

from conftest import ROOT
from opbreak.config import load_model, merged, resolve
from opbreak.config_checks import check
from opbreak.memory import memory_estimate_gib

CATALOG = {"gpus": {"H100-SXM": {"mem_GiB": 79.6}, "A40": {"mem_GiB": 44.5}}}
L70 = load_model("config/models/llama2-70b.yaml", "llama2-70b", root=ROOT)  # the shipped shapes


def config_fields() -> list[str]:
    """Every valid field of a config entry (and of ``defaults:``), from the schema as opbreak.config reads it."""
    from opbreak import config as cfgmod

    return list(cfgmod.schema()["$defs"]["hwconfig_fields"]["properties"])


def gpu_cfg(**over):
    c = dict(
        name="g",
        model="big",
        gpu="H100-SXM",
        num_gpus=1,
        tp=1,
        gpu_ids=[0],
        backend="lightllm",
        batch=1,
        input_len=16,
        output_len=16,
        dtype="float16",
        num_layers=2,
        timing="cuda_events",
    )
    c.update(over)
    return c


def with_cfg(base, **over):
    base["configs"][0].update(over)
    return base


# (id, mutate(config) -> config, expected fragments)
CASES = [
    ("tp-not-dividing-heads", lambda c: with_cfg(c, tp=3), ["configs[0] ('t1').tp", "does not divide num_heads"]),
    ("tp-not-dividing-kv-heads", lambda c: with_cfg(c, tp=4), ["configs[0] ('t1').tp", "num_kv_heads 2"]),
    ("zero-batch", lambda c: with_cfg(c, batch=0), ["configs[0] ('t1').batch", "positive integer"]),
    ("negative-input", lambda c: with_cfg(c, input_len=-5), ["('t1').input_len", "positive integer"]),
    ("zero-output", lambda c: with_cfg(c, output_len=0), ["('t1').output_len", "positive integer"]),
    ("zero-repeats", lambda c: with_cfg(c, repeats=0), ["('t1').repeats", ">= 1"]),
    ("duplicate-name", lambda c: with_cfg(c, name="t2"), ["duplicate config name 't2'"]),
    ("slash-in-name", lambda c: with_cfg(c, name="a/b"), ["'a/b' is not a safe path part"]),
    ("shell-metachar-name", lambda c: with_cfg(c, name="x;rm -rf ~"), ["is not a safe path part"]),
    ("dotdot-name", lambda c: with_cfg(c, name="../up"), ["'../up' is not a safe path part"]),
    ("unsafe-study", lambda c: {**c, "study": "my study$(id)"}, ["study:", "not a safe path part"]),
    ("unknown-model", lambda c: with_cfg(c, model="nope"), ["('t1').model", "unknown model 'nope'"]),
    (
        "missing-model-file",
        lambda c: {**c, "models": {**c["models"], "f": "config/models/missing.yaml"}},
        ["models.f", "not found"],
    ),
    (
        "heads-not-multiple-of-kv",
        lambda c: {**c, "models": {"micro": {**c["models"]["micro"], "num_kv_heads": 3}}},
        ["models.micro", "not a multiple of num_kv_heads"],
    ),
    (
        "pair-unknown-config",
        lambda c: {**c, "pairs": [{"a": "t1", "b": "ghost"}]},
        ["pairs[0].b", "unknown config 'ghost'"],
    ),
    ("lightllm-on-cpu", lambda c: with_cfg(c, backend="lightllm"), ["('t1').backend", "needs a GPU"]),
    ("cuda-timing-on-cpu", lambda c: with_cfg(c, timing="cuda_events"), ["('t1').timing", "needs CUDA"]),
    ("weights-path-missing", lambda c: with_cfg(c, weights="/no/such/dir"), ["('t1').weights", "not a directory"]),
    ("truncate-too-deep", lambda c: with_cfg(c, num_layers=9), ["('t1').num_layers", "between 1 and"]),
    ("decode-sample-too-many", lambda c: with_cfg(c, decode_sample=99), ["('t1').decode_sample", "exceeds output_len"]),
    (
        "unknown-gpu",
        lambda c: {**c, "models": {**c["models"], "big": L70}, "configs": [gpu_cfg(gpu="B300")]},
        ["('g').gpu", "unknown GPU model 'B300'", "hardware.yaml"],
    ),
    (
        "gpu-typo",
        lambda c: {**c, "models": {**c["models"], "big": L70}, "configs": [gpu_cfg(gpu="H100-SMX")]},
        ["('g').gpu", "unknown GPU model 'H100-SMX'; did you mean 'H100-SXM'?"],
    ),
    (
        "gpu-ids-repeated",
        lambda c: {**c, "models": {**c["models"], "big": L70}, "configs": [gpu_cfg(tp=2, num_gpus=2, gpu_ids=[0, 0])]},
        ["('g').gpu_ids", "repeats a GPU id"],
    ),
    (
        "gpu-ids-more-than-num-gpus",
        lambda c: {**c, "models": {**c["models"], "big": L70}, "configs": [gpu_cfg(gpu_ids=[0, 1])]},
        ["('g').gpu_ids", "has 2 ids but num_gpus is 1"],
    ),
    (
        "num-gpus-vs-tp",
        lambda c: {**c, "models": {**c["models"], "big": L70}, "configs": [gpu_cfg(tp=4)]},
        ["('g').num_gpus", "needs 4"],
    ),
    (
        "perf-counter-on-gpu",
        lambda c: {**c, "models": {**c["models"], "big": L70}, "configs": [gpu_cfg(timing="perf_counter")]},
        ["('g').timing", "does not see asynchronous CUDA work"],
    ),
    (
        "kv-plus-weights-exceed-memory",
        lambda c: {
            **c,
            "models": {**c["models"], "big": L70},
            "configs": [gpu_cfg(num_layers=None, batch=20, input_len=1024, output_len=1024)],
        },
        ["('g'): needs ~", "GiB per GPU (weights", "KV cache", "H100-SXM has 79.6 GiB"],
    ),
    ("cpu-with-gpus", lambda c: with_cfg(c, num_gpus=2), ["('t1').num_gpus", "set 0"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_config_is_refused_with_a_clear_message(tiny_config, case):
    _, mutate, fragments = case
    errs = check(mutate(tiny_config), root=".", catalog=CATALOG)
    text = "\n".join(errs)
    assert errs, "config was accepted"
    for frag in fragments:
        assert frag in text, f"{frag!r} not in:\n{text}"


def test_good_config_passes(tiny_config):
    assert check(tiny_config, catalog=CATALOG) == []


def test_good_gpu_config_passes(tiny_config):
    cfg = {**tiny_config, "models": {"big": L70}, "configs": [gpu_cfg(tp=4, num_gpus=1, emulate_tp=True)], "pairs": []}
    assert check(cfg, catalog=CATALOG) == []


def test_memory_estimate_matches_hand_count():
    c = merged({}, gpu_cfg(num_layers=None, batch=20, input_len=1024, output_len=1024, tp=4, num_gpus=4))
    gib, _ = memory_estimate_gib(L70, c)
    h, hd = 8192, 128
    per_layer = 2 * h * h + 2 * h * 8 * hd + 3 * h * 28672
    weights = (80 * per_layer + 2 * 32000 * h) * 2 / 4
    kv = 2 * 80 * 20 * 2048 * 2 * hd * 2
    assert gib == pytest.approx((weights + kv) / 2**30)


def test_resolve_drops_scheduling_fields(tiny_config):
    tiny_config["configs"][0]["slurm"] = {"partition": "gpu"}
    spec = resolve(tiny_config, "t1")
    assert "slurm" not in spec and "repeats" not in spec
    assert spec["model"]["hidden_size"] == 64 and spec["device"] == "cpu" and spec["num_layers"] == 2


STUDIES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "config/studies").glob("*.yaml")) + ["config/config.yaml"]


@pytest.mark.parametrize("path", STUDIES)
def test_shipped_studies_are_valid(path):
    import yaml
    from snakemake.utils import validate

    from opbreak.hardware import load_catalog

    cfg = yaml.safe_load((ROOT / path).read_text())
    validate(cfg, str(ROOT / "config/schema/config.schema.yaml"))
    assert check(cfg, root=ROOT, catalog=load_catalog(ROOT / "config/hardware.yaml")) == []


def test_schema_rejects_wrong_types(tiny_config):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    tiny_config["configs"][0]["timing"] = "stopwatch"
    with pytest.raises(WorkflowError, match="stopwatch"):
        validate(tiny_config, str(ROOT / "config/schema/config.schema.yaml"))


def test_snakemake_refuses_a_bad_config_before_any_job(workflow_copy, tiny_config):
    import yaml

    from conftest import snakemake

    tiny_config["configs"][1]["tp"] = 3
    (workflow_copy / "config/config.yaml").write_text(yaml.safe_dump(tiny_config))
    p = snakemake(workflow_copy, "report/all.md", check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "invalid config (nothing was run)" in out and "configs[1] ('t2').tp: 3 does not divide num_heads 4" in out
    assert not (workflow_copy / "results").exists()


def test_misspelt_field_is_refused_with_the_closest_name(tiny_config):
    tiny_config["configs"][1]["batch_size"] = 8
    tiny_config["defaults"]["timout_s"] = 5
    tiny_config["configs"][0]["slurm"] = {"partion": "gpu"}
    tiny_config["repeat"] = 2
    text = "\n".join(check(tiny_config, catalog=CATALOG))
    assert "configs[1] ('t2').batch_size: unknown field; did you mean 'batch'?" in text, text
    assert "defaults.timout_s: unknown field; did you mean 'timeout_s'?" in text, text
    assert "configs[0] ('t1').slurm.partion: unknown field; did you mean 'partition'?" in text, text
    assert "repeat: unknown field; did you mean 'repeats'?" in text, text


def test_misspelt_field_in_a_model_file_is_refused(tiny_config, tmp_path):
    (tmp_path / "m.yaml").write_text(
        "hidden_size: 64\nintermediate_size: 160\nnum_layers: 2\nnum_heads: 4\n"
        "num_kv_heads: 2\nvocab_size: 256\nrope_thetta: 10000.0\n"
    )
    tiny_config["models"]["micro"] = "m.yaml"
    text = "\n".join(check(tiny_config, root=tmp_path, catalog=CATALOG))
    assert "models.micro.rope_thetta: unknown field; did you mean 'rope_theta'? (in m.yaml)" in text, text


def test_valid_fields_come_from_the_schema(tiny_config, monkeypatch):
    """Adding a property to the schema is all it takes for a new config field to be accepted."""
    import copy

    from opbreak import config as cfgmod

    tiny_config["configs"][0]["future_field"] = "x"
    assert any("future_field: unknown field" in e for e in check(tiny_config, catalog=CATALOG))
    extended = copy.deepcopy(cfgmod.schema())
    extended["$defs"]["hwconfig_fields"]["properties"]["future_field"] = {"type": "string"}
    monkeypatch.setattr(cfgmod, "schema", lambda: extended)
    assert check(tiny_config, catalog=CATALOG) == []
    assert "transport" in config_fields()


def test_a_pair_of_a_config_with_itself_is_refused(tiny_config):
    tiny_config["pairs"] = [{"a": "t1", "b": "t1", "label": "self"}]
    text = "\n".join(check(tiny_config, catalog=CATALOG))
    assert "pairs[0] ('self').b: 't1' is also a; a pair compares two different configs" in text, text


def test_schema_errors_name_the_config_and_all_show_at_once(tiny_config):
    tiny_config["configs"][1]["timing"] = "stopwatch"
    tiny_config["configs"][1]["tp"] = "two"
    tiny_config["configs"][0]["batch_size"] = 8
    tiny_config["pairs"].append({"a": "t2", "b": "t2"})
    tiny_config["unstable_cv"] = -1
    errs = check(tiny_config, catalog=CATALOG)
    text = "\n".join(errs)
    for frag in [
        "configs[1] ('t2').timing: 'stopwatch' is not one of",
        "configs[1] ('t2').tp: 'two' is not of type",
        "configs[0] ('t1').batch_size: unknown field; did you mean 'batch'?",
        "pairs[1].b: 't2' is also a",
        "unstable_cv: -1 is less than or equal to the minimum of 0",
    ]:
        assert frag in text, f"{frag!r} not in:\n{text}"
    assert len(errs) == 5, text


def test_defaults_come_from_the_schema_only(tiny_config):
    """validate() (snakemake) and with_defaults() fill the same schema defaults; merged() completes entries."""
    import copy

    from snakemake.utils import validate

    from opbreak.config import _block_defaults, with_defaults

    filled = copy.deepcopy(tiny_config)
    validate(filled, str(ROOT / "config/schema/config.schema.yaml"))
    assert filled == with_defaults(tiny_config)
    assert (
        filled["retries"] == 1
        and filled["ratio_flag"] == 0.25
        and filled["allreduce_sweep"] == {"sizes": [], "iters": 20}
    )
    assert set(_block_defaults("defaults")) <= set(config_fields())
    # inheritance survives validate(): schema default < defaults: < entry
    tiny_config["defaults"]["warmup"] = 3
    tiny_config["configs"][1]["warmup"] = 5
    tiny_config["slurm"] = {"runtime": 90}
    tiny_config["configs"][1]["slurm"] = {"partition": "a100"}
    validate(tiny_config, str(ROOT / "config/schema/config.schema.yaml"))
    t1, t2 = (merged(tiny_config, e) for e in tiny_config["configs"])
    assert (t1["warmup"], t2["warmup"], t1["timeout_s"], t1["collective_timeout_s"]) == (3, 5, 120, 60)
    assert t1["slurm"] == {"runtime": 90, "mem_mb": 8000, "cpus_per_task": 2}
    assert t2["slurm"] == {"runtime": 90, "mem_mb": 8000, "cpus_per_task": 2, "partition": "a100"}
    assert t1["repeats"] == 2 and t1["gpu_ids"] == [] and t1["timing"] == "perf_counter"


def test_snakemake_reports_every_problem_before_any_job(workflow_copy, tiny_config):
    import yaml

    from conftest import snakemake

    tiny_config["configs"][0]["batch_size"] = 8
    tiny_config["pairs"] = [{"a": "t2", "b": "t2"}]
    (workflow_copy / "config/config.yaml").write_text(yaml.safe_dump(tiny_config))
    p = snakemake(workflow_copy, "report/all.md", check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "configs[0] ('t1').batch_size: unknown field; did you mean 'batch'?" in out, out[-3000:]
    assert "pairs[0].b: 't2' is also a" in out, out[-3000:]
    assert not (workflow_copy / "results").exists()


def test_a_bad_study_level_value_is_reported_once(tiny_config):
    """repeats: 0 at the top is one error, not one more per config that inherits it."""
    tiny_config["repeats"] = 0
    errs = check(tiny_config, catalog=CATALOG)
    assert [e for e in errs if "repeats" in e] == ["repeats: 0 is less than the minimum of 1"], errs
