"""Trust fuzzing: hostile and damaged evidence must give no crash and no uncounted loss.  Run by hand:

    .venv/bin/python benchmarks/fuzz_trust.py [--seed 1] [--evtx 50] [--text 40] [--archives 20] [--work DIR]

Three families, every case seeded (the same bytes for the same ``--seed``):

1. **EVTX byte flips**: copies of ``omerbenamram-evtx/samples/system.evtx`` with 1 to 256 flipped bits, a
   zeroed or garbled stretch, or a chunk wiped (any but the last chunk that holds records: wiped, that one looks
   like the empty chunks a log preallocates, and no count of its records is left in a dirty file).  Reference: python-evtx's own chunk reader on the intact file,
   chunk by chunk (1,881 records, by offset).  A copy's *uncounted loss* is ``records missing - errors
   counted`` when not zero (an error over-counted is reported as a negative loss).
2. **Syslog and web lines**: files of real-looking lines, random bytes, NUL runs, a UTF-8 BOM, invalid UTF-8,
   control and terminal escape characters, impossible dates, year-less lines, lines of 1 to 3 MiB, glued
   records.  Every line must be accounted for: a line that starts a record has a row or an error at its
   ``line=N``; any other non-empty line is in an error, a warning, or inside a row's ``attrs`` (a continuation).
3. **Archive trees**: zip and tar(.gz) files with nested folders, names that climb out (``../``), absolute
   names, non-UTF-8 names, duplicate names, a file/folder clash, links out, nested archives and empty
   members.  Collected into a case with ``Case.collect``; the case must verify, and each member that holds
   syslog lines must give rows, or an error or unread entry naming it.

A *crash* is an exception out of a collector or ``Case.collect`` (a clear ``ForensicsError`` for a file
the tool cannot take is not a crash).  Prints one Markdown table; copy it into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import warnings
import io
import json
import os
import random
import re
import sys
import tarfile
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collectors import SyslogCollector, WebCollector  # noqa: E402
from collectors.base import Artifact  # noqa: E402
from collectors.evtx import EvtxCollector  # noqa: E402
from timeline.errors import ForensicsError  # noqa: E402

EVIDENCE = ROOT.parent / "shared" / "evidence"
SAMPLE = "omerbenamram-evtx/samples/system.evtx"
MTIME = 1764676800  # 2025-12-02T12:00:00Z
_REF = re.compile(r"record=(\d+)(?: offset=0x([0-9a-f]+))?$")
_LINE = re.compile(r"line=(\d+)")


def _collect(cls, path: Path, **kw):
    c = cls()
    art = Artifact("e", path.name, str(path), "", path.stat().st_size, mtime_ns=MTIME * 10**9, tz="UTC",
                   tz_source="analyst", **kw)
    tables = list(c.collect(art)) + list(c.finish())
    return tables, c.report(art)


# --- 1. EVTX ---------------------------------------------------------------------------------------

def _evtx_reference(buf: bytes) -> dict[int, int]:
    """Offset -> record number of every record of the intact file, by python-evtx's chunk reader, chunk after chunk
    (not trusting the file header's chunk count): the count the collector's is checked against (also by
    tests/adversarial/test_evtx_accounting.py)."""
    from Evtx.Evtx import ChunkHeader

    out = {}
    for off in range(0x1000, len(buf) - 0xFFFF, 0x10000):
        ch = ChunkHeader(buf, off)
        if ch.magic() not in ("ElfChnk\x00", b"ElfChnk\x00"):
            continue
        for r in ch.records():
            out[r.offset()] = r.record_num()
    return out


def _evtx_damage(rng: random.Random, buf: bytes) -> tuple[bytes, str]:
    b = bytearray(buf)
    kind = rng.choice(["flips", "flips", "flips", "stretch", "chunk"])
    if kind == "flips":
        n = rng.choice([1, 4, 16, 64, 256])
        for _ in range(n):
            p = rng.randrange(0x1000, len(b))
            b[p] ^= 1 << rng.randrange(8)
        return bytes(b), f"{n} bit flips"
    if kind == "stretch":
        p = rng.randrange(0x1000, len(b) - 4096)
        n = rng.randrange(8, 4096)
        b[p:p + n] = bytes(n) if rng.random() < 0.5 else bytes(rng.randrange(256) for _ in range(n))
        return bytes(b), f"{n} bytes at 0x{p:x} {'zeroed' if not any(b[p:p + n]) else 'garbled'}"
    # (not the last chunk that holds records: wiped, it is the same as the empty chunks a log preallocates after
    # it, and nothing in the file says it held records; a limit, said in RESULTS.md)
    k = rng.randrange(14)
    b[0x1000 + k * 0x10000:0x1000 + (k + 1) * 0x10000] = bytes(0x10000)
    return bytes(b), f"chunk {k} wiped"


def fuzz_evtx(rng: random.Random, work: Path, n: int) -> dict:
    buf = (EVIDENCE / SAMPLE).read_bytes()
    ref = _evtx_reference(buf)
    by_number = {num: off for off, num in ref.items()}
    out = {"cases": 0, "crashes": 0, "uncounted": 0, "missing": 0, "errors": 0, "examples": []}
    for i in range(n):
        data, what = _evtx_damage(rng, buf)
        path = work / f"evtx{i}.evtx"
        path.write_bytes(data)
        out["cases"] += 1
        try:
            tables, rep = _collect(EvtxCollector, path)
        except Exception as exc:
            out["crashes"] += 1
            out["examples"].append(f"evtx {i} ({what}): crash {type(exc).__name__}: {exc}")
            continue
        got = set()
        for t in tables:
            for r in t["record_ref"].to_pylist():
                m = _REF.match(r)
                if m and m.group(2):
                    got.add(int(m.group(2), 16))
                elif m and int(m.group(1)) in by_number:
                    got.add(by_number[int(m.group(1))])
        missing = len(set(ref) - got)
        counted = sum(e.count for e in rep.errors)
        out["missing"] += missing
        out["errors"] += counted
        if missing != counted:
            out["uncounted"] += abs(missing - counted)
            out["examples"].append(f"evtx {i} ({what}): {missing} missing, {counted} counted")
        path.unlink()
    return out


# --- 2. syslog and web lines ------------------------------------------------------------------------

_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def _hostile_text(rng: random.Random) -> str:
    pieces = ["Accepted password for root from 203.0.113.7 port 22 ssh2", "\x1b]0;pwned\x07\x1b[31mred",
              "%s%s%n%x", "'; DROP TABLE t; --", "=cmd|' /C calc'!A0", "<script>alert(1)</script>",
              "\u202eevil\u202c", "ünïcødé ✓ 日本語", "\t\ttabs\t", "a" * rng.randrange(1, 5000), "\\x00 \\n"]
    return " ".join(rng.choice(pieces) for _ in range(rng.randrange(1, 4)))


def _syslog_line(rng: random.Random) -> tuple[bytes, bool]:
    """A line, and whether it starts a record."""
    kind = rng.randrange(10)
    mon, day = rng.choice(_MONTHS), rng.randrange(1, 32)
    head = f"{mon} {day:2d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
    if kind <= 4:
        return f"{head} web01 prog[{rng.randrange(99999)}]: {_hostile_text(rng)}".encode(), True
    if kind == 5:
        return (f"{rng.randrange(1960, 2300)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T10:00:00+05:30 "
                f"web01 app: {_hostile_text(rng)}").encode(), True
    if kind == 6:
        return bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 200))).replace(b"\n", b" "), False
    if kind == 7:
        return f"Feb 30 25:61:00 web01 bad: impossible".encode(), True
    if kind == 8:
        return f"{head} web01 big: ".encode() + b"Z" * rng.randrange(1 << 20, 3 << 20), True
    return b"\x00" * rng.randrange(1, 9000) + f"{head} web01 after-nuls: x".encode(), True


def _web_line(rng: random.Random) -> tuple[bytes, bool]:
    kind = rng.randrange(6)
    if kind <= 2:
        ua = _hostile_text(rng).replace('"', "'")
        return (f'203.0.113.{rng.randrange(256)} - - [{rng.randrange(1, 29):02d}/{rng.choice(_MONTHS)}/'
                f'{rng.choice([1970, 2023, 2099])}:10:00:00 +0000] "GET /{rng.randrange(10**6)}?q={ua[:50]} HTTP/1.1" '
                f'{rng.choice([200, 404, 500])} {rng.randrange(10**6)} "-" "{ua}"').encode(), True
    if kind == 3:
        return bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 300))).replace(b"\n", b" "), True
    if kind == 4:
        return b'10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] "GET /' + b"B" * rng.randrange(1 << 20, 2 << 20) + \
            b' HTTP/1.1" 200 1 "-" "-"', True
    return b'10.0.0.1 - - [31/Feb/2024:99:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"', True


def _account_lines(lines: list[bytes], starts: list[bool], tables, rep) -> list[str]:
    """Line numbers neither in a row, an error, a warning nor inside a row's attrs."""
    rows, attrs = set(), []
    for t in tables:
        for r in t["record_ref"].to_pylist():
            m = _LINE.match(r)
            if m:
                rows.add(int(m.group(1)))
        attrs += t["attrs"].to_pylist()
    noted = {int(m.group(1)) for e in list(rep.errors) + list(rep.warnings) if (m := _LINE.match(e.record_ref or ""))}
    blob = "\n".join(attrs)
    lost = []
    record = 0  # the line that started the record a continuation line belongs to
    for n, (raw, start) in enumerate(zip(lines, starts), 1):
        record = n if start else record
        text = raw.replace(b"\x00", b"").decode("utf-8", "backslashreplace").strip()
        if not text or n in rows or n in noted:
            continue
        probe = json.dumps(text[:40], ensure_ascii=False)[1:-1]
        if not start and (probe in blob or record in noted):
            continue  # a continuation of the record before it (a row, or an error that counts it)
        lost.append(f"line {n}: {text[:60]!r}")
    return lost


def fuzz_text(rng: random.Random, work: Path, n: int) -> dict:
    out = {"cases": 0, "lines": 0, "crashes": 0, "uncounted": 0, "examples": []}
    for i in range(n):
        web = i % 2 == 1
        made = [(_web_line if web else _syslog_line)(rng) for _ in range(rng.randrange(5, 60))]
        lines, starts = [m[0] for m in made], [m[1] for m in made]
        data = b"\n".join(lines) + rng.choice([b"\n", b""])
        if rng.random() < 0.2:
            data = rng.choice([b"\xef\xbb\xbf", b"\x00" * 4096]) + data
        path = work / (f"access{i}.log" if web else f"auth{i}.log")
        path.write_bytes(data)
        out["cases"] += 1
        out["lines"] += len(lines)
        try:
            tables, rep = _collect(WebCollector if web else SyslogCollector, path)
        except ForensicsError:
            continue
        except Exception as exc:
            out["crashes"] += 1
            out["examples"].append(f"{path.name}: crash {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
            continue
        if web:  # a line starting with '#' is a comment (W3C/IIS directives), not a record
            starts = [s and not ln.startswith(b"#") for ln, s in zip(lines, starts)]
            lines = [b"" if ln.startswith(b"#") else ln for ln in lines]
        lost = _account_lines(lines, starts, tables, rep)
        out["uncounted"] += len(lost)
        out["examples"] += [f"{path.name} {x}" for x in lost[:3]]
        path.unlink()
    return out


# --- 3. archive trees --------------------------------------------------------------------------------

def _syslog_bytes(rng: random.Random, tag: str) -> bytes:
    return "".join(f"Dec {rng.randrange(1, 28):2d} 10:00:{s:02d} web01 {tag}[1]: line {s}\n"
                   for s in range(rng.randrange(1, 6))).encode()


def _archive(rng: random.Random, path: Path, depth: int = 0) -> list[str]:
    """Write a hostile archive; return the names of its members that hold syslog lines."""
    names = ["var/log/auth.log", "var/log/syslog", "../../escape/auth.log", "/abs/var/log/messages",
             "var/log/a:b", "var/log/ab", "deep/" + "d/" * rng.randrange(1, 60) + "auth.log",
             "var/log/bad\udcffname.log", "var/log/dup.log", "var/log/dup.log", "var/log/empty.log"]
    chosen = rng.sample(names, rng.randrange(3, len(names)))
    kind = rng.choice(["zip", "tar", "tar.gz"])
    logs = []
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            for name in chosen:
                data = b"" if name.endswith("empty.log") else _syslog_bytes(rng, "z")
                z.writestr(name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), data)
                logs.append(name) if data else None
            if depth < 4 and rng.random() < 0.5:
                inner = path.with_suffix(f".inner{depth}.zip")
                logs += _archive(rng, inner, depth + 1)
                z.write(inner, "nested/inner.zip")
                inner.unlink()
    else:
        with tarfile.open(path, "w:gz" if kind == "tar.gz" else "w", format=tarfile.GNU_FORMAT) as t:
            for name in chosen:
                data = b"" if name.endswith("empty.log") else _syslog_bytes(rng, "t")
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), MTIME
                t.addfile(info, io.BytesIO(data))
                logs.append(name) if data else None
            if rng.random() < 0.5:  # a link out of the evidence, and a file/folder clash
                link = tarfile.TarInfo("var/log/shadow")
                link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
                t.addfile(link)
                clash = tarfile.TarInfo("var/log/syslog/inner.log")
                data = _syslog_bytes(rng, "c")
                clash.size, clash.mtime = len(data), MTIME
                t.addfile(clash, io.BytesIO(data))
    return logs


def fuzz_archives(rng: random.Random, work: Path, n: int) -> dict:
    from forensics import Case

    out = {"cases": 0, "crashes": 0, "uncounted": 0, "unverified": 0, "examples": []}
    for i in range(n):
        ev = work / f"arch{i}"
        ev.mkdir()
        suffix = rng.choice([".zip", ".tar", ".tgz"])
        _archive(rng, ev / f"triage{i}{suffix}")
        out["cases"] += 1
        try:
            case = Case(work / f"case{i}", create=True, tz="UTC")
            rep = case.collect([ev], workers=1)
        except ForensicsError:
            continue
        except Exception as exc:
            out["crashes"] += 1
            out["examples"].append(f"archive {i}: crash {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
            continue
        v = case.verify()
        if not v.ok:
            out["unverified"] += 1
            out["examples"].append(f"archive {i}: verify: {v.problems[:2]}")
        # every member's lines: rows, or errors/unread naming it (records read = rows + errors)
        if rep.records_read != sum(a["rows"] + a["lost"] for a in rep.artifacts):
            out["uncounted"] += 1
            out["examples"].append(f"archive {i}: records_read {rep.records_read} != rows + lost")
    return out


def main(argv: list[str] | None = None) -> int:
    warnings.simplefilter("ignore", UserWarning)  # zipfile: the duplicate names are on purpose
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--evtx", type=int, default=50)
    ap.add_argument("--text", type=int, default=40)
    ap.add_argument("--archives", type=int, default=20)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        results = {}
        for name, fn, n in (("evtx byte flips", fuzz_evtx, args.evtx), ("syslog/web lines", fuzz_text, args.text),
                            ("archive trees", fuzz_archives, args.archives)):
            t0 = time.monotonic()
            results[name] = fn(rng, work, n) if n else {"cases": 0, "crashes": 0, "uncounted": 0, "examples": []}
            results[name]["seconds"] = round(time.monotonic() - t0, 1)
    print(f"seed {args.seed}\n")
    print("| family | cases | crashes | uncounted losses | notes | s |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        notes = ", ".join(f"{k} {r[k]:,}" for k in ("missing", "errors", "lines", "unverified") if k in r)
        print(f"| {name} | {r['cases']} | {r['crashes']} | {r['uncounted']} | {notes} | {r['seconds']} |")
    for name, r in results.items():
        for e in r["examples"][:10]:
            print(f"\n{name}: {e}")
    return 0 if all(r["crashes"] == 0 and r["uncounted"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
