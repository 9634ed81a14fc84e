"""Parity with plaso: the same evidence through our collectors and through ``log2timeline``, compared.

Both sides are collected into temporary cases (ours with :meth:`forensics.Case.collect`, plaso's
with :func:`forensics.plaso.collect_with_plaso`).  Every sighting of an event in a file counts
(the same syslog line in two files is two observations on both sides).  Observations are grouped
by artifact family and matched on an identity both sides can state:

* ``evtx``: file and record number (the record header's); plaso's "Creation Time" event is
  compared with our row's time (TimeCreated), its "Content Modification Time" with the record's
  written time (ours: ``attrs.Record.written_time``, else the row's time).  Counts are records.
* ``syslog``: file and the start of the line's words (program, pid, first 48 letters and digits of the
  message; punctuation and spacing ignored), repeats of a line in a file paired by nearest time; matched
  lines whose whole text differs (a continuation line one side glued on) are listed as content disagreements.
* ``file``: path inside the image and the time's description (file-system times of images);
  ``file-host``: plaso's stat of the evidence files themselves (we never time the analyst's copy).
* anything else: ``plaso:<data_type>`` or our ``source``, counted only.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import orjson
import pyarrow as pa

from timeline.schema import iso_ns

__all__ = ["ParityReport", "compare_with_plaso", "COMPARE_PARSERS"]

COMPARE_PARSERS = "winevtx,text/syslog,text/syslog_traditional,filestat"

_RECORD = re.compile(r"record=(\d+)")
_WORDS = re.compile(r"\W+")
_KEY = 48  # letters and digits of a syslog line that identify it


@dataclass
class Family:
    name: str
    ours: int = 0
    plaso: int = 0
    matched: int = 0
    only_ours: list[dict[str, Any]] = field(default_factory=list)
    only_plaso: list[dict[str, Any]] = field(default_factory=list)
    time_disagreements: list[dict[str, Any]] = field(default_factory=list)
    content_disagreements: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self, first: int) -> dict[str, Any]:
        return {"family": self.name, "ours": self.ours, "plaso": self.plaso, "matched": self.matched,
                "only_ours": len(self.only_ours), "only_plaso": len(self.only_plaso),
                "time_disagreements": len(self.time_disagreements),
                "content_disagreements": len(self.content_disagreements),
                "first_only_ours": self.only_ours[:first], "first_only_plaso": self.only_plaso[:first],
                "first_time_disagreements": self.time_disagreements[:first],
                "first_content_disagreements": self.content_disagreements[:first]}


@dataclass
class ParityReport:
    evidence: list[str]
    parsers: str
    plaso_version: str
    families: dict[str, Family]
    first: int = 10
    cases: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"evidence": self.evidence, "parsers": self.parsers, "plaso_version": self.plaso_version,
                "families": [f.as_dict(self.first) for f in self.families.values()]}

    def to_text(self) -> str:
        out = [f"parity with plaso {self.plaso_version} (parsers {self.parsers}) on {', '.join(self.evidence)}",
               f"{'family':<28}{'ours':>8}{'plaso':>8}{'matched':>9}{'only ours':>11}{'only plaso':>12}{'time diff':>11}"
               f"{'text diff':>11}"]
        for f in self.families.values():
            out.append(f"{f.name:<28}{f.ours:>8}{f.plaso:>8}{f.matched:>9}{len(f.only_ours):>11}{len(f.only_plaso):>12}"
                       f"{len(f.time_disagreements):>11}{len(f.content_disagreements):>11}")
        for f in self.families.values():
            for title, items in (("only ours", f.only_ours), ("only plaso", f.only_plaso),
                                 ("time disagreements", f.time_disagreements),
                                 ("content disagreements", f.content_disagreements)):
                if items:
                    out.append(f"\n{f.name}: {title} (first {min(self.first, len(items))} of {len(items)})")
                    out += [f"  {_line(i)}" for i in items[: self.first]]
        return "\n".join(out)


def _line(i: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v}" for k, v in i.items())


# ---------------------------------------------------------------------------------------------


def _occurrences(case) -> list[dict[str, Any]]:
    """Every sighting of every row of ``case`` (the row's fields, the sighting's file and record_ref)."""
    tl = case.timeline(["event_hash", "timestamp", "timestamp_desc", "source", "artifact", "path", "attrs", "message",
                        "evidence_path", "record_ref"])
    rows = {r["event_hash"]: r for r in tl.to_pylist()}
    out = []
    s = case.sightings()
    for h, ep, ref in zip(s.column("event_hash").to_pylist(), s.column("evidence_path").to_pylist(),
                          s.column("record_ref").to_pylist()):
        r = rows.get(h)
        if r is not None:
            out.append({**r, "evidence_path": ep, "record_ref": ref})
    return out


def _ns(ts) -> int:
    return int(pa.scalar(ts, pa.timestamp("ns", tz="UTC")).value)


def _ours(case) -> list[tuple[str, tuple, str, int, dict[str, Any]]]:
    """(family, identity, time kind, ns, shown) of our side."""
    out = []
    for r in _occurrences(case):
        ns = _ns(r["timestamp"])
        shown = {"file": r["evidence_path"], "ref": r["record_ref"], "message": (r["message"] or "")[:100]}
        src = r["source"]
        if src == "EVTX":
            m = _RECORD.search(r["record_ref"] or "")
            key = (r["evidence_path"], int(m.group(1)) if m else r["record_ref"])
            written = ns
            if '"written_time"' in r["attrs"][:400]:
                wt = orjson.loads(r["attrs"]).get("Record", {}).get("written_time")
                if wt:
                    written = _iso_ns(wt)
            out.append(("evtx", key, "created", ns, shown))
            out.append(("evtx", key, "written", written, shown))
        elif src == "SYSLOG":
            a = orjson.loads(r["attrs"])
            w = _words(a.get("program"), a.get("pid"), a.get("message"))
            out.append(("syslog", (r["evidence_path"], w[:_KEY]), "line", ns, {**shown, "text": w}))
        elif src == "FILE":
            out.append(("file", (r["path"] or r["record_ref"], r["timestamp_desc"]), "time", ns, shown))
        else:
            out.append((src.lower(), (r["evidence_path"], r["record_ref"], r["timestamp_desc"]), "time", ns, shown))
    return out


def _plaso_side(case) -> list[tuple[str, tuple, str, int, dict[str, Any]]]:
    out = []
    for r in _occurrences(case):
        ns = _ns(r["timestamp"])
        a = orjson.loads(r["attrs"])
        dt = a.get("data_type") or ""
        ep = r["evidence_path"]
        shown = {"file": ep, "ref": r["record_ref"], "desc": r["timestamp_desc"], "message": (r["message"] or "")[:100]}
        inner = ep.split("!", 1)[1] if "!" in ep else None
        if dt == "windows:evtx:record":
            kind = {"Creation Time": "created", "Content Modification Time": "written"}.get(r["timestamp_desc"], r["timestamp_desc"])
            out.append(("evtx", (inner or ep, a.get("record_number")), kind, ns, shown))
        elif dt.startswith("syslog:"):
            w = _words(a.get("reporter"), a.get("pid"), a.get("message_body"))
            out.append(("syslog", (inner or ep, w[:_KEY]), "line", ns, {**shown, "text": w}))
        elif dt == "fs:stat":
            if inner is None:
                out.append(("file-host", (ep, r["timestamp_desc"]), "time", ns, shown))
            else:
                out.append(("file", (inner, r["timestamp_desc"]), "time", ns, shown))
        else:
            out.append((f"plaso:{dt}", (ep, r["record_ref"], r["timestamp_desc"]), "time", ns, shown))
    return out


def _iso_ns(s: str) -> int:
    import datetime as _dt

    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z?$", s)
    if not m:
        return 0
    t = _dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=_dt.timezone.utc)
    return int(t.timestamp()) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0")[:9])


def _words(prog: Any, pid: Any, msg: Any) -> str:
    return _WORDS.sub("", f"{prog or ''} {'' if pid is None else pid} {msg or ''}").lower()


def _match(ours: list, theirs: list, first: int) -> dict[str, Family]:
    fams: dict[str, Family] = {}
    groups: dict[tuple[str, tuple, str], list[list]] = {}
    for side, obs in ((0, ours), (1, theirs)):
        counted: set[tuple[str, tuple]] = set()
        for fam, key, kind, ns, shown in obs:
            f = fams.setdefault(fam, Family(fam))
            groups.setdefault((fam, key, kind), [[], []])[side].append((ns, shown))
            if fam == "evtx":
                if (fam, key) in counted:
                    continue
                counted.add((fam, key))
            if side == 0:
                f.ours += 1
            else:
                f.plaso += 1
    # evtx: one record is matched / only on one side by its "created" time; "written" only adds disagreements
    for (fam, key, kind), (a, b) in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])):
        f = fams[fam]
        a.sort(key=lambda x: x[0])
        b.sort(key=lambda x: x[0])
        counts = fam != "evtx" or kind == "created"
        if not a or not b:
            if counts:
                for ns, shown in a:
                    f.only_ours.append({"time": iso_ns(ns), "key": _key(key), **_plain(shown)})
                for ns, shown in b:
                    f.only_plaso.append({"time": iso_ns(ns), "key": _key(key), **_plain(shown)})
            continue
        # both sorted by time: equal numbers pair in order, else each with the nearest time (repeats of a line,
        # an image's file with a second time of the same description)
        pairs = list(zip(a, b)) if len(a) == len(b) else _nearest(a, b)
        used_a = {id(p[0]) for p in pairs}
        used_b = {id(p[1]) for p in pairs}
        for (na, sa), (nb, sb) in pairs:
            if counts:
                f.matched += 1
            if na != nb:
                f.time_disagreements.append({"kind": kind, "ours": iso_ns(na), "plaso": iso_ns(nb),
                                             "delta_s": round((nb - na) / 1e9, 7), "key": _key(key), **_plain(sa)})
            if sa.get("text") is not None and sa.get("text") != sb.get("text"):
                f.content_disagreements.append({"time": iso_ns(na), "ours": sa["message"], "plaso": sb["message"],
                                                "file": sa["file"], "ref": sa["ref"]})
        if counts:
            for x in a:
                if id(x) not in used_a:
                    f.only_ours.append({"time": iso_ns(x[0]), "key": _key(key), **_plain(x[1])})
            for x in b:
                if id(x) not in used_b:
                    f.only_plaso.append({"time": iso_ns(x[0]), "key": _key(key), **_plain(x[1])})
    return dict(sorted(fams.items()))


def _plain(shown: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in shown.items() if k != "text"}


def _nearest(a: list, b: list) -> list[tuple]:
    pairs, left = [], list(b)
    for x in a:
        if not left:
            break
        y = min(left, key=lambda y: abs(y[0] - x[0]))
        left.remove(y)
        pairs.append((x, y))
    return pairs


def _key(key: tuple) -> str:
    return "|".join(str(k)[:80] for k in key)


def compare_with_plaso(evidence: Iterable[str | os.PathLike], parsers: str | None = None, first: int = 10,
                       tz: str | None = None, archives: str | None = "all", workdir: str | os.PathLike | None = None,
                       bin_dir: str | os.PathLike | None = None) -> ParityReport:
    """Collect ``evidence`` with our collectors and with plaso (``parsers``, default :data:`COMPARE_PARSERS`;
    ``archives`` as plaso's ``--archives``, default all, since our collectors open archives) and compare.

    ``workdir``: where the two cases are made (kept); default a temporary folder removed afterwards."""
    from forensics.case import Case
    from forensics.plaso import collect_with_plaso, plaso_tool, plaso_version

    evidence = [str(Path(e).absolute()) for e in evidence]
    plaso_tool("log2timeline", bin_dir)  # a missing plaso fails before our side is collected
    parsers = parsers or COMPARE_PARSERS
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="forensics-parity-")
        workdir = tmp.name
    try:
        ours = Case(Path(workdir) / "ours", create=True)
        ours.collect(evidence, workers=1, tz=tz)
        theirs = Case(Path(workdir) / "plaso", create=True)
        collect_with_plaso(theirs, evidence, parsers=parsers, tz=tz, archives=archives, bin_dir=bin_dir)
        fams = _match(_ours(ours), _plaso_side(theirs), first)
        return ParityReport(evidence, parsers, plaso_version(), fams, first,
                            {} if tmp else {"ours": str(ours.path), "plaso": str(theirs.path)})
    finally:
        if tmp is not None:
            tmp.cleanup()
