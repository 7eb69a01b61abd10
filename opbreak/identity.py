"""A measurement's identity: what a spec measures, the hash that names it, and how two specs differ.

One notion of "the same measurement" for the measurement store (its key,
:mod:`opbreak.store`) and for the check of every measure output against its config
(:func:`opbreak.checks.check_provenance`): a recorded spec and today's spec are the same
measurement when they agree on every measured field, a field the recording lacks counting at its
schema default (so measurements of earlier versions keep their key).
"""

from __future__ import annotations

import hashlib
import json

from .config import field_defaults

# Not part of what was measured: scheduling, how many repeats, and the study's name (a label: the same
# config measured under two study files, e.g. on two hosts, is the same measurement and merges).
_NOT_MEASURED = ("slurm", "repeats", "study")


def canonical(spec: dict) -> dict:
    """What a spec measures: its fields (a field the recording lacks at its default), labels left out."""
    canon = {k: v for k, v in field_defaults().items() if k not in _NOT_MEASURED}
    canon.update({k: v for k, v in spec.items() if k not in _NOT_MEASURED})
    return canon


def spec_hash(spec: dict) -> str:
    """12 hex digits naming what a spec measures (:func:`canonical`)."""
    text = json.dumps(canonical(spec), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def spec_diffs(recorded: dict, spec: dict) -> list[str]:
    """The measured fields where a recorded spec and a config's spec differ (empty: same measurement)."""
    a, b = canonical(recorded), canonical(spec)
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
