"""The evidence log: where every number in a generated sentence comes from.

Every number in a generated sentence is drawn through :meth:`EvidenceLog.cite`,
which records (table file, row key, column, raw value, format) as an evidence row
``E<n>`` and returns the formatted text. The report prints the evidence table; tests
re-read the CSVs and check every cited cell and every number in every sentence
against it. Sentences never contain numbers typed in code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .markdown import FORMATS, md_code, md_escape, md_table
from .tables import TABLE_PATHS


@dataclass
class Evidence:
    id: str
    table: str
    key: dict
    column: str
    value: float
    fmt: str
    shown: str


@dataclass
class Sentence:
    text: str
    evidence: list = field(default_factory=list)
    topic: str = ""


class EvidenceLog:
    """Collects evidence rows; :meth:`cite` returns the formatted value and remembers its source."""

    def __init__(self):
        self.rows: list[Evidence] = []
        self._ids: dict = {}
        self.current: list[str] = []

    def cite(self, table: str, row, key_cols, column: str, fmt: str) -> str:
        """The cell as shown; a cell cited twice keeps its first id, so ids are stable across sentences."""
        key = {k: row[k] for k in key_cols}
        value = row[column]
        k = (table, tuple(key.items()), column)
        if k not in self._ids:
            eid = f"E{len(self.rows) + 1}"
            self._ids[k] = eid
            value = float(value) if not isinstance(value, str) else value
            self.rows.append(Evidence(eid, table, key, column, value, fmt, FORMATS[fmt](value)))
        eid = self._ids[k]
        if eid not in self.current:
            self.current.append(eid)
        return self.rows[int(eid[1:]) - 1].shown

    def sentence(self, text: str, topic="") -> Sentence:
        """Close a sentence: it takes the ids cited since the last one."""
        s = Sentence(text, list(self.current), topic)
        self.current = []
        return s


def _key_text(v) -> str:
    """A row key's value as a reader finds it in the CSV: a whole number read back as float (rank 1.0,
    size 4096.0: the report reads every non-text column as float) is shown whole."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


# Row key of each citable table: the columns that name one row.
KEYS = {
    "ops_summary": ("config", "phase", "op"),
    "phase_summary": ("config", "phase"),
    "theory_ops": ("config", "phase", "op"),
    "pairs": ("a", "b", "phase", "op"),
    "allreduce": ("config", "kind", "phase", "n", "size_bytes"),
    "ceilings": ("config", "source"),
}


def evidence_context(log: EvidenceLog) -> dict:
    """``evidence`` (the rows, for tests and links) and ``evidence_table``: every cited cell, its table file,
    row key, column, raw value and the text shown; printed last, after every section has cited."""
    rows = [
        {
            "id": f'<a id="{e.id.lower()}"></a>{e.id}',
            "table": md_code(TABLE_PATHS[e.table]),
            "row": md_escape(", ".join(f"{k}={_key_text(v)}" for k, v in e.key.items())),
            "column": md_code(e.column),
            "value": md_code(repr(e.value)),
            "shown": md_escape(e.shown),
        }
        for e in log.rows
    ]
    return dict(evidence=log.rows, evidence_table=md_table(pd.DataFrame(rows), align=[":---"] * 6))
