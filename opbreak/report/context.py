"""The template context, built section by section; pure (no I/O).

Each section builder takes the :class:`ReportData` and hands off, in one line, to the
module that owns its part of the report (:mod:`.status`, :mod:`.pairs`, :mod:`.theory`,
...), which returns the context keys that part of the template reads. :data:`SECTIONS`
lists the builders and :func:`build_context` merges their results; a new report section is
one module, one builder here and one entry in :data:`SECTIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..stats import CI_PCT
from .allreduce import allreduce_context
from .answers import answers_context
from .conclusions import generate_conclusions
from .decode import decode_context
from .evidence import EvidenceLog, evidence_context
from .host import host_context
from .markdown import md_escape
from .methods import methods_context
from .pairs import pairs_context
from .per_config import per_config_context
from .predict import predict_context
from .stability import stability_context
from .status import status_context
from .tables import TABLE_PATHS, TARGET_PCT
from .theory import theory_context


@dataclass
class ReportData:
    """What every section reads: the tables, the declared study, and the conclusions already drawn.

    ``params`` are the study's report settings as the rule passes them (``unstable_cv``,
    ``ratio_flag``; defaults in the config schema)."""

    t: dict
    configs: list
    present: list
    pairs_decl: list
    study: str
    figures: dict
    params: dict
    log: EvidenceLog
    sentences: list
    declared: dict | None = None  # config name -> its declared entry (a predict-only config has no provenance)

    def specs(self) -> dict:
        """Config -> its recorded spec (the last provenance record's; ``{}`` where an older record has none)."""
        return {p.get("config"): p.get("spec") or {} for p in self.t["provenance"]}


def section_header(d: ReportData) -> dict:
    """Title block: study, statistics settings, what was declared and what has data."""
    return dict(
        study=md_escape(d.study),
        ci_pct=CI_PCT,
        target_pct=TARGET_PCT,
        params={k: md_escape(v) for k, v in d.params.items()},
        configs=[md_escape(c) for c in d.configs],
        n_configs=len(d.configs),
        n_present=len(d.present),
        n_pairs=len(d.pairs_decl),
        fig=d.figures,
        tab={k: f"tables/{TABLE_PATHS[k].rsplit('/', 1)[-1]}" for k in TABLE_PATHS},
    )


def section_status(d: ReportData) -> dict:
    """Status of every declared config, and why any is missing (see :mod:`.status`)."""
    return status_context(d.t, d.configs, d.present, d.declared)


def section_conclusions(d: ReportData) -> dict:
    """The generated sentences (see :mod:`.conclusions`); kept on ``d`` for the Comparisons, which show a
    pair's sentences again."""
    d.sentences = generate_conclusions(d.t, d.configs, d.pairs_decl, d.log)
    return dict(sentences=d.sentences)


def section_per_config(d: ReportData) -> dict:
    """Per declared config: its pie, op tables and phase medians (see :mod:`.per_config`)."""
    return dict(per_config=per_config_context(d.t, d.configs, d.present, d.figures))


def section_decode(d: ReportData) -> dict:
    """Decode truth: both views per op, every rank, collective wait vs transfer (see :mod:`.decode`)."""
    return dict(decode=decode_context(d.t, d.configs, d.pairs_decl, d.specs(), d.log, d.figures))


def section_host(d: ReportData) -> dict:
    """Decode down to the host and without it: the decode probe (see :mod:`.host`)."""
    return dict(host=host_context(d.t, d.configs, d.log, d.figures))


def section_pairs(d: ReportData) -> dict:
    """Comparisons: every declared pair, and the rows furthest from theory (see :mod:`.pairs`)."""
    return pairs_context(d.t, d.pairs_decl, d.present, d.figures, d.sentences, float(d.params["ratio_flag"]))


def section_stability(d: ReportData) -> dict:
    """Unstable ops, outlier repeats and phase totals with their CIs (see :mod:`.stability`)."""
    return stability_context(d.t, d.present)


def section_theory(d: ReportData) -> dict:
    """Roofline tables, the ceilings they used, vanilla vs exact FLOPs (see :mod:`.theory`)."""
    return theory_context(d.t, d.present)


def section_allreduce(d: ReportData) -> dict:
    """The ring model against in-phase calls and the sweep (see :mod:`.allreduce`)."""
    return allreduce_context(d.t["allreduce"])


def section_predict(d: ReportData) -> dict:
    """Predicted times for every config, measured or not, and the seed's claims (see :mod:`.predict`)."""
    return dict(predict=predict_context(d.t, d.configs, d.pairs_decl, d.log, d.figures))


def section_methods(d: ReportData) -> dict:
    """How each config was measured (see :mod:`.methods`)."""
    return methods_context(d.t, d.configs)


def section_answers(d: ReportData) -> dict:
    """The answers on one screen (see :mod:`.answers`)."""
    answers = answers_context(d.t, d.configs, d.present, d.pairs_decl, d.specs(), float(d.params["ratio_flag"]), d.log)
    return dict(answers=answers)


def section_evidence(d: ReportData) -> dict:
    """Every cited cell (see :mod:`.evidence`); last, since it lists what every section before it cited."""
    return evidence_context(d.log)


# The report's sections in display order (the template's): a cell gets its evidence id when first cited, so
# building in this order numbers the ids as a reader meets them. Evidence comes last: it lists every id.
SECTIONS = (
    section_answers,
    section_header,
    section_status,
    section_predict,
    section_conclusions,
    section_per_config,
    section_decode,
    section_host,
    section_pairs,
    section_stability,
    section_theory,
    section_allreduce,
    section_methods,
    section_evidence,
)


def build_context(
    t: dict, configs, pairs_decl, study, figures: dict, params: dict, declared: dict | None = None
) -> dict:
    """Everything the template needs; pure (no I/O). ``params``: the study's ``unstable_cv`` and
    ``ratio_flag`` (as rules/report.smk passes them); ``declared``: config name -> its config entry."""
    log = EvidenceLog()
    present = [c for c in configs if c in set(t["ops_summary"]["config"])]
    data = ReportData(t, configs, present, pairs_decl, study, figures, params, log, [], declared)
    ctx = {}
    for section in SECTIONS:
        ctx.update(section(data))
    return ctx
