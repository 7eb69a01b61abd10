"""Step 4: aggregated and theory tables -> report/all.md context, figures, generated conclusions.

Pure where it can be: :func:`read_tables` is the only reader, :func:`build_context`
turns tables into a template context (no I/O), :func:`make_figures` is the only
writer of images, :func:`render` ties them together.

Modules:

- :mod:`.tables`: the table contract (TABLES, TABLE_PATHS) and :func:`read_tables`;
- :mod:`.markdown`: escaping of untrusted text, number formats, Markdown tables;
- :mod:`.evidence`: the :class:`EvidenceLog` every number in a sentence is cited through;
- :mod:`.conclusions`: one function per conclusions topic, :func:`generate_conclusions`;
- :mod:`.context`: the facade: one builder per report section, :func:`build_context`;
- one module per section: :mod:`.answers`, :mod:`.status`, :mod:`.predict`, :mod:`.per_config`,
  :mod:`.decode`, :mod:`.host`, :mod:`.pairs`, :mod:`.stability`, :mod:`.theory`, :mod:`.allreduce`,
  :mod:`.methods` (from provenance records);
- :mod:`.figures`, :mod:`.plots`, :mod:`.rendering`: figures, the template and the written report.
"""

from ..stats import CI_PCT
from .conclusions import disagreements, dominant_ops, generate_conclusions
from .context import SECTIONS, ReportData, build_context
from .evidence import KEYS, Evidence, EvidenceLog, Sentence
from .figures import figure_plan, make_figures
from .markdown import FORMATS, f_ci, f_int, f_ms, f_num, f_pct, f_sci, f_x, md_code, md_escape, md_table, slug
from .methods import methods
from .per_config import op_table
from .rendering import environment, render
from .tables import TABLE_PATHS, TABLES, TARGET_PCT, normalize, read_tables

__all__ = [
    "CI_PCT",
    "FORMATS",
    "KEYS",
    "SECTIONS",
    "TABLES",
    "TABLE_PATHS",
    "TARGET_PCT",
    "Evidence",
    "EvidenceLog",
    "ReportData",
    "Sentence",
    "build_context",
    "disagreements",
    "dominant_ops",
    "environment",
    "f_ci",
    "f_int",
    "f_ms",
    "f_num",
    "f_pct",
    "f_sci",
    "f_x",
    "figure_plan",
    "generate_conclusions",
    "make_figures",
    "md_code",
    "md_escape",
    "md_table",
    "methods",
    "normalize",
    "op_table",
    "read_tables",
    "render",
    "slug",
]
