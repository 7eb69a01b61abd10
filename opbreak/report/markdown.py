"""Markdown helpers: escaping untrusted text, number formats, tables.

Config names, pair labels, hosts and versions come from files a user wrote, so they
pass through :func:`md_escape` (tables, prose) or :func:`md_code` (code spans) before
they reach Markdown; figure file names use :func:`slug`. Every number shown goes
through one of :data:`FORMATS`, so the evidence table can say how it was printed.
"""

from __future__ import annotations

import math
import re

import pandas as pd

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~^$&])")
# Spaces a quote must keep (non-breaking, narrow no-break, ideographic): not "printable" to Python,
# but text, not control characters; dropping them changes a quoted sentence.
KEEP_SPACES = "\u00a0\u202f\u2007\u3000"


def _keep(ch: str) -> bool:
    return ch.isprintable() or ch in KEEP_SPACES


def md_escape(v) -> str:
    """Escape arbitrary text for Markdown prose and table cells (one line, no HTML, no links)."""
    s = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
    s = re.sub(r"[\r\n\t]+", " ", s)
    s = "".join(ch for ch in s if _keep(ch))
    return _MD_SPECIAL.sub(r"\\\1", s)


def md_code(v) -> str:
    """A code span that cannot be broken out of (fence longer than any backtick run; pipes escaped)."""
    s = re.sub(r"[\r\n\t]+", " ", "" if v is None else str(v))
    s = "".join(ch for ch in s if _keep(ch))
    run = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (run + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s.replace('|', chr(92) + '|')}{pad}{fence}"


def slug(v, n=48) -> str:
    """A file-name-safe stem, so a config name cannot point a figure outside its folder."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(v)).strip("._") or "x"
    return s[:n]


def fence(text: str) -> str:
    """A fenced text block whose fence is longer than any backtick run inside it."""
    text = str(text).replace("\r", "")
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    f = "`" * max(3, run + 1)
    return f"{f}text\n{text.rstrip()}\n{f}"


def bold(name) -> str:
    """A config or label in prose: escaped, bold."""
    return f"**{md_escape(name)}**"


def op_code(op) -> str:
    """An operator name in prose: a code span."""
    return md_code(op)


def join_words(items, last="and"):
    """'a, b and c': lists in generated sentences read as prose."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


# ----------------------------------------------------------------------------- number formats
def finite(v) -> bool:
    """True for a real finite number; tables carry NaN and text where a value is missing."""
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def f_num(v) -> str:
    if not finite(v):
        return "–"
    v = float(v)
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def f_ms(v) -> str:
    return f"{f_num(v)} ms" if finite(v) else "–"


def f_pct(v) -> str:
    return f"{100 * float(v):.1f}%" if finite(v) else "–"


def f_x(v) -> str:
    return f"{float(v):.3g}×" if finite(v) else "–"


def f_int(v) -> str:
    return f"{int(round(float(v)))}" if finite(v) else "–"


def f_sci(v) -> str:
    if not finite(v):
        return "–"
    v = float(v)
    return f"{v:.3e}" if v and (abs(v) >= 1e6 or abs(v) < 1e-3) else f"{v:.4g}"


FORMATS = {"num": f_num, "ms": f_ms, "pct": f_pct, "x": f_x, "int": f_int, "sci": f_sci}


def f_ci(lo, hi, unit=" ms") -> str:
    if not (finite(lo) and finite(hi)):
        return "–"
    return f"{f_num(lo)}–{f_num(hi)}{unit}"


# ----------------------------------------------------------------------------- tables
def md_table(df: pd.DataFrame, align=None) -> str:
    """DataFrame of display strings -> GitHub Markdown table (cells must already be escaped)."""
    if df is None or df.empty:
        return "_(no rows)_"
    cols = list(df.columns)
    align = align or [
        "---:" if df[c].map(lambda v: bool(re.match(r"^[-–0-9.,%×e+ ms]+$", str(v)))).all() else ":---" for c in cols
    ]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join(align) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)
