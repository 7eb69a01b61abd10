"""The measurement store: every good measurement, kept read-only, keyed by what it measured.

Layout (under the study folder's ``measurements/``)::

    measurements/<config>/<spec-hash>/rep<k>/<host>-<UTC stamp>/
        ops.csv steps.csv [collectives.csv] provenance.json entry.json

``spec-hash`` is :func:`opbreak.identity.spec_hash` of the resolved spec the measurement recorded (fields added to
the tool later count at their defaults, so older measurements keep their key). An entry is written
once, atomically (a temporary folder renamed into place), and made read-only; nothing in the workflow
deletes or rewrites it: no rule declares it as an output, so Snakemake never removes it either.

How entries get in: the measure CLI archives each successful run; at every workflow start the good
measurements found in ``results/measure/`` that are not yet stored are archived (so a changed spec or
a forced rerun cannot delete them); the study's ``import:`` list copies measurements from other hosts
(folders or .tar.gz of ``<config>/rep<k>/`` measure outputs, or of store entries).

How they are used: a measure job whose (config, spec hash, repeat) has a stored entry restores the
newest one into ``results/measure/`` instead of measuring (``remeasure:`` names configs to measure
anew; a failed new measurement falls back to the stored one and says so).

``python -m opbreak.store list|import|delete`` lists, imports and deletes entries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from .checks import MeasureFileError, read_measurement
from .contract import MEASURE_COLLECTIVES_COLUMNS
from .identity import canonical, spec_diffs, spec_hash
from .io import atomic_write_text

DEFAULT_ROOT = "measurements"
DATA_FILES = ("ops.csv", "steps.csv", "collectives.csv", "provenance.json")


def _stamp(prov: dict) -> str:
    when = prov.get("finished") or prov.get("started") or ""
    try:
        t = dt.datetime.fromisoformat(str(when))
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
        return t.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    except ValueError:
        return "unknown-time"


def _safe(s) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(s)) or "unknown"


def entry_name(prov: dict) -> str:
    return f"{_safe(prov.get('host', 'unknown-host'))}-{_stamp(prov)}"


def repeat_dir(root, config: str, h: str, repeat: int) -> Path:
    return Path(root) / config / h / f"rep{repeat}"


def entries(root, config: str, h: str, repeat: int) -> list[Path]:
    """Stored entries of one (config, spec hash, repeat), oldest first (by UTC stamp, then host)."""
    d = repeat_dir(root, config, h, repeat)
    if not d.is_dir():
        return []
    found = [e for e in d.iterdir() if (e / "entry.json").is_file()]
    return sorted(found, key=lambda e: (e.name.rsplit("-", 1)[-1], e.name))


def latest(root, config: str, h: str, repeat: int) -> Path | None:
    found = entries(root, config, h, repeat)
    return found[-1] if found else None


def other_specs(root, spec: dict) -> list[dict]:
    """The store's measurements of this config's name under other specs than ``spec``: per spec hash its
    folder, how many repeats it holds and the measured fields that differ (why none is restored)."""
    h, out = spec_hash(spec), []
    for folder in sorted(p for p in Path(root, spec["name"]).glob("*") if p.is_dir() and p.name != h):
        provs = sorted(folder.glob("rep*/*/provenance.json"))
        if provs:
            recorded = canonical(json.loads(provs[-1].read_text()).get("spec") or {})
            reps = {p.parent.parent.name for p in provs}
            out.append(dict(path=str(folder), repeats=len(reps), recorded=recorded, diffs=spec_diffs(recorded, spec)))
    return out


def other_specs_hint(root, spec: dict) -> str:
    """One sentence for a config the store cannot restore although it holds measurements of that name:
    the closest stored spec, where it is, and the fields that differ ('' when there is none)."""
    others = other_specs(root, spec)
    if not others:
        return ""
    best = min(others, key=lambda o: len(o["diffs"]))
    now = canonical(spec)
    shown = ", ".join(f"{k}: stored {best['recorded'].get(k)!r}, now {now.get(k)!r}" for k in best["diffs"][:4])
    more = f" and {len(best['diffs']) - 4} more" if len(best["diffs"]) > 4 else ""
    also = f"; {len(others) - 1} other stored spec(s) of it too" if len(others) > 1 else ""
    return (
        f"the store holds {best['repeats']} repeat(s) of {spec['name']!r} under another spec ({best['path']}: "
        f"{shown}{more}{also}); set those fields back to use them"
    )


def _read_only(path: Path):
    for p in sorted(path.rglob("*"), reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)
    path.chmod(0o555)


def archive(root, folder, origin: str, prov: dict | None = None) -> Path:
    """Copy one good measurement folder into the store (atomically, read-only); the entry's path.

    Idempotent: an entry of the same config, spec, repeat, host and stamp is kept as it is.
    """
    folder = Path(folder)
    if prov is None:
        prov = json.loads((folder / "provenance.json").read_text())
    spec = prov["spec"]
    dest = repeat_dir(root, spec["name"], spec_hash(spec), int(prov["repeat"])) / entry_name(prov)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".incoming-"))
    try:
        for name in DATA_FILES:
            if (folder / name).exists():
                shutil.copy2(folder / name, tmp / name)  # mtime kept: a restore is not newer than the spec
        for t in folder.glob("trace_rank*.json.gz"):
            shutil.copy2(t, tmp / t.name)
        meta = dict(
            config=spec["name"],
            repeat=int(prov["repeat"]),
            spec_hash=spec_hash(spec),
            host=prov.get("host"),
            measured=prov.get("finished") or prov.get("started"),
            origin=origin,
            archived=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        )
        (tmp / "entry.json").write_text(json.dumps(meta, indent=1) + "\n")
        _read_only(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:  # another process archived the same entry first
            if not dest.exists():
                raise
    finally:
        if tmp.exists():
            tmp.chmod(0o755)
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def entry_meta(entry) -> dict:
    return json.loads((Path(entry) / "entry.json").read_text())


def restore(entry, outdir, note: dict | None = None):
    """Copy a stored entry into a measure output folder; its provenance says where it came from."""

    entry, outdir = Path(entry), Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for name in ("ops.csv", "steps.csv", "collectives.csv"):
        if (entry / name).exists():
            tmp = outdir / f".{name}.restore"
            shutil.copyfile(entry / name, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, outdir / name)
        elif name == "collectives.csv":  # an earlier version's measurement: not captured
            atomic_write_text(outdir / name, ",".join(MEASURE_COLLECTIVES_COLUMNS) + "\n")
    prov = json.loads((entry / "provenance.json").read_text())
    meta = entry_meta(entry)
    prov["store_entry"] = str(entry)
    prov["origin"] = meta.get("origin")
    if note:
        prov.update(note)
    atomic_write_text(outdir / "provenance.json", json.dumps(prov, indent=1, default=str))
    return prov


def _good(folder: Path, prov: dict) -> bool:
    """A measurement worth keeping: not a failure record, not a restored copy, its files check out."""

    if prov.get("status") == "failed" or prov.get("store_entry") or not isinstance(prov.get("spec"), dict):
        return False
    try:
        read_measurement(folder, prov["spec"], repeat=prov.get("repeat"))
    except (MeasureFileError, KeyError, TypeError, ValueError):
        return False
    return True


def adopt(root, results="results/measure", configs=None) -> list[Path]:
    """Archive the good measurements in ``results`` that the store lacks (at every workflow start)."""
    added = []
    base = Path(results)
    if not base.is_dir():
        return added
    for prov_path in sorted(base.glob("*/rep*/provenance.json")):
        config = prov_path.parent.parent.name
        if configs is not None and config not in configs:
            continue
        try:
            prov = json.loads(prov_path.read_text())
            spec = prov["spec"]
            dest = repeat_dir(root, spec["name"], spec_hash(spec), int(prov["repeat"])) / entry_name(prov)
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            continue  # aggregate names the bad file
        if dest.exists() or not _good(prov_path.parent, prov):
            continue
        added.append(archive(root, prov_path.parent, f"measured here ({prov_path.parent})", prov))
    return added


class ImportError_(ValueError):
    """An import source that cannot be read (one line naming it)."""


def _unpack(src: Path, cache: Path) -> Path:
    """A .tar.gz import source unpacked once into ``cache`` (keyed by its size and mtime)."""
    st = src.stat()
    key = hashlib.sha256(f"{src.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    dest = cache / key
    if dest.is_dir():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".unpack-"))
    try:
        with tarfile.open(src) as tf:
            tf.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ImportError_(f"import: {src}: not a readable .tar.gz ({e})") from None
    os.rename(tmp, dest)
    return dest


def import_source(root, src, cache=".snakemake/opbreak-import") -> list[Path]:
    """Copy every good measurement under ``src`` (folder or .tar.gz) into the store; read-only, never
    re-run, never overwritten. Folders holding a provenance.json with measurements count, whatever the
    nesting (``<config>/rep<k>/`` measure outputs or store entries)."""
    src = Path(src)
    if not src.exists():
        raise ImportError_(f"import: {src} does not exist; give a folder or .tar.gz of <config>/rep<k>/ outputs")
    base = _unpack(src, Path(cache)) if src.is_file() else src
    added = []
    for prov_path in sorted(base.rglob("provenance.json")):
        folder = prov_path.parent
        try:
            prov = json.loads(prov_path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        try:
            spec = prov["spec"]
            dest = repeat_dir(root, spec["name"], spec_hash(spec), int(prov["repeat"])) / entry_name(prov)
        except (KeyError, TypeError, ValueError):
            continue  # not a measurement's provenance
        if dest.exists() or not _good(folder, prov):  # imported before: no need to read it again
            continue
        added.append(archive(root, folder, f"imported from {src}", prov))
    return added


def stored_repeats(root, specs: dict, repeats: dict) -> dict:
    """{(config, repeat): newest entry} for the current specs (what the measure jobs will restore)."""
    out = {}
    for name, spec in specs.items():
        h = spec_hash(spec)
        for r in repeats[name]:
            e = latest(root, name, h, r)
            if e is not None:
                out[(name, r)] = e
    return out


def is_failure_record(folder) -> bool:
    """A measure output folder holding a failure record (not a measurement: it may be replaced)."""
    try:
        prov = json.loads((Path(folder) / "provenance.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(prov, dict) and prov.get("status") == "failed"


def list_entries(root, config=None) -> list[dict]:
    rows = []
    for meta_path in sorted(Path(root).glob("*/*/rep*/*/entry.json")):
        meta = json.loads(meta_path.read_text())
        if config and meta.get("config") != config:
            continue
        meta["path"] = str(meta_path.parent)
        rows.append(meta)
    return rows


def delete(entry):
    """Delete one entry (the only way anything leaves the store)."""
    entry = Path(entry)
    if not (entry / "entry.json").is_file():
        raise SystemExit(f"{entry} is not a store entry (no entry.json)")
    for p in [entry, *entry.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(entry)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m opbreak.store", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=DEFAULT_ROOT, help="store folder (default: measurements)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="every entry: config, repeat, spec hash, host, measured, origin, path")
    ls.add_argument("--config")
    im = sub.add_parser("import", help="copy the measurements of a folder or .tar.gz in (read-only)")
    im.add_argument("source", nargs="+")
    rm = sub.add_parser("delete", help="delete entries (their paths, as `list` prints them)")
    rm.add_argument("entry", nargs="+")
    ad = sub.add_parser("adopt", help="archive the good measurements of results/measure not yet stored")
    ad.add_argument("--results", default="results/measure")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        rows = list_entries(args.root, args.config)
        cols = ("config", "repeat", "spec_hash", "host", "measured", "origin", "path")
        print("\t".join(cols))
        for r in rows:
            print("\t".join(str(r.get(c, "")) for c in cols))
        if not rows:
            print(f"(no entries under {args.root})", file=sys.stderr)
    elif args.cmd == "import":
        for s in args.source:
            try:
                added = import_source(args.root, s)
            except ImportError_ as e:
                raise SystemExit(str(e)) from None
            print(f"{s}: {len(added)} new entries")
    elif args.cmd == "delete":
        for e in args.entry:
            delete(e)
            print(f"deleted {e}")
    elif args.cmd == "adopt":
        print(f"{len(adopt(args.root, args.results))} new entries")


if __name__ == "__main__":
    main()
