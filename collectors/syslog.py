"""Syslog files: BSD (RFC 3164, year-less), RFC 5424, rsyslog high-precision and forward formats.

Plain, rotated and compressed (``.gz``, ``.bz2``, ``.xz``) files alike: ``syslog``,
``messages``, ``auth.log``, ``secure``, ``kern.log``, ``cron``...  One line (with its
continuation lines) is one row, ``timestamp_desc`` "Event Logged".

Times
    RFC 5424 and ISO 8601 lines carry their own offset (``tz_source`` embedded_offset).
    BSD lines are local time in the host's zone, decided by :class:`collectors.text.Clock`
    (the analyst's ``--tz``, else the evidence's ``/etc/timezone``, else UTC assumed, flagged).
    BSD lines have no year: the year comes from the file's modification time (a ``.gz``
    file's header time when set: copies keep it) and the month roll-overs in the file (see :func:`collectors.text.syslog_years`); each such row's
    ``attrs`` says ``year_source``.

Fields
    sshd (accepted / failed / invalid user / preauth disconnects), sudo, su, useradd /
    usermod / groupadd, CRON commands and systemd units are read into ``user``, ``target_user``,
    ``src_ip``, ``command_line``, ``service_name``; every parsed part is kept in ``attrs``.

Speed
    The common line, "Mmm dd hh:mm:ss host prog[pid]: msg" standing alone, is read in bulk: blocks of
    4 MiB of text in an Arrow string array, the header cut with Arrow kernels (RE2), times computed
    with numpy (the zone's offset looked up once per local hour; hours holding a DST change go through
    :meth:`collectors.text.Clock.local_ns` row by row, with its note), sshd fields with one RE2 pass per
    pattern, columns and ``attrs`` JSON joined column-wise.  Every other line (continuations, RFC 5424,
    ISO 8601, fractions of a second, forward formats, damaged or odd lines) goes through the row-by-row
    code; ``tests/collectors/test_syslog_bulk.py`` checks that both give the same rows, column by column.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import re
import zlib
import lzma
from array import array
from typing import Any, Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from collectors.base import Artifact, Collector, RecordError, rotated
from collectors.text import MONTHS, Clock, ns_of, open_lines, read_head, year_less_dating
from timeline.custody import open_evidence
from timeline.errors import UnknownFormat
from timeline.schema import COLUMNS, HOST_LOG, SCHEMA, TZ_EMBEDDED_OFFSET, cap_messages, event_hash

__all__ = ["SyslogCollector", "parse_program", "extract"]

log = logging.getLogger(__name__)

_BSD = re.compile(
    r"(?:<(?P<pri>\d{1,3})>)?(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(?P<day>\d{1,2}) "
    r"(?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:\.(?P<frac>\d{1,9}))?(?P<rest>(?::? |:$|$).*)", re.S)
_ISO = re.compile(
    r"(?:<(?P<pri>\d{1,3})>)?(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)[T ](?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)"
    r"(?:[.,](?P<frac>\d{1,9}))?(?P<off>Z|[+-]\d\d:?\d\d)?(?P<rest> .*|$)", re.S)
_5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(?P<msg>.*)", re.S)
# A record that starts in the middle of a line (rsyslog forward formats written without newlines).
_SPLIT = re.compile(r"(?<=\S)(?=<\d{1,3}>(?:1 \d{4}-|\d{4}-\d\d-\d\dT|(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ))")
# A line that starts like a BSD header ("MMM 22 07:54:32 ...", "Mar 23 Wrong line") but is not one: a damaged
# record of its own, never a continuation of the record before it.
_BROKEN = re.compile(r"(?:<\d{1,3}>)?[A-Za-z]{3} {1,2}\d{1,2}\b")
_NULS = re.compile("\x00+")
_BOM = b"\xef\xbb\xbf"
_HEAD_BYTES = 1 << 16  # what format sniffing reads: NUL bytes at the start of a file are skipped within it
_SEVERITY = {"EMERG", "ALERT", "CRIT", "ERR", "ERROR", "WARNING", "WARN", "NOTICE", "INFO", "DEBUG"}
# (a pid of more than 18 digits is no pid: it would not fit in 64 bits)
_PROG = re.compile(r"(?P<prog>[^\s:\[\]]+)(?:\[(?P<pid>\d{1,18})\])?(?: <\w+>)?:(?: |$)(?P<msg>.*)", re.S)
_FACILITY = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
             "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3", "local4",
             "local5", "local6", "local7")
_SEV_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

# --- message field extraction (sshd, sudo, su, accounts, cron, systemd) ----------------------------

_IP = r"(?:::ffff:)?(?P<ip>[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-fA-F]*:[0-9a-fA-F:.]+)"
# sshd messages, most specific first: (pattern, outcome, method)
_SSHD = (
    (re.compile(r"(?P<verb>Accepted|Failed) (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>.*?) from "
                + _IP + r" port (?P<port>\d+)"), None, None),
    (re.compile(r"[Ii]nvalid user (?P<user>.*?) from " + _IP + r"(?: port (?P<port>\d+))?"), "failure", "invalid user"),
    (re.compile(r"User (?P<user>\S+) from " + _IP + r" not allowed"), "failure", "user not allowed"),
    (re.compile(r"(?:Connection (?:closed|reset)|Disconnected) (?:by|from) (?:(?P<kind>\w+) user (?P<user>\S+) )?"
                + _IP + r" port (?P<port>\d+)(?P<preauth> \[preauth\])?"), None, None),
    (re.compile(r"pam_unix\(sshd:auth\): authentication failure;.*rhost=" + _IP + r"?(?:\s+user=(?P<user>\S+))?"),
     "failure", "pam"),
    (re.compile(r"pam_unix\(sshd:session\): session (?:opened|closed) for user (?P<user>[^\s(]+)"), None, None),
    (re.compile(r"Unable to negotiate with " + _IP + r" port (?P<port>\d+)"), "failure", "negotiation failed"),
    (re.compile(r"Timeout before authentication for " + _IP + r" port (?P<port>\d+)"), "failure", "timeout"),
    (re.compile(r"refused connect from \S*? ?\(" + _IP + r"\)"), "failure", "refused (tcp wrappers)"),
    (re.compile(r"(?:handshake|Connection) from " + _IP + r" port (?P<port>\d+)"), None, None),
)
_SUDO = re.compile(r"\s*(?P<user>\S+) : (?:.*?; )?TTY=(?P<tty>\S+) ; PWD=(?P<pwd>.*?) ; USER=(?P<target>\S+) ;"
                   r"(?: .*?;)? COMMAND=(?P<cmd>.*)")
_SU = re.compile(r"(?:Successful su for (?P<target>\S+) by (?P<user>\S+))|"
                 r"(?:pam_unix\(su(?:-l)?:session\): session opened for user (?P<target2>[^\s(]+)(?:\(uid=\d+\))? by (?P<user2>[^\s(]*))")
_NEWUSER = re.compile(r"new user: name=(?P<target>[^,\s]+)")
_USERMOD = re.compile(r"add '(?P<target>[^']+)' to (?:shadow )?group '(?P<group>[^']+)'")
_CRON = re.compile(r"\((?P<user>[^)]+)\) CMD \((?P<cmd>.*)\)\s*$", re.S)
_DPKG = re.compile(r"(?P<action>install|upgrade|remove|purge|configure|trigproc|status \S+) (?P<package>\S+)"
                   r"(?: (?P<old_version>\S+))?(?: (?P<version>\S+))?$")
_UNIT = re.compile(r"(?:Started|Starting|Stopped|Stopping|Reloaded) (?P<unit>.+?)\.?$")


def parse_program(rest: str) -> tuple[str | None, int | None, str]:
    """``prog[pid]: message`` → (prog, pid, message); (None, None, rest) when there is no tag."""
    m = _PROG.match(rest)
    if not m:
        return None, None, rest
    pid = m.group("pid")
    return m.group("prog"), int(pid) if pid else None, m.group("msg")


def extract(prog: str | None, msg: str) -> dict[str, Any]:
    """Fields an investigator filters on, from a program's message (empty when none)."""
    if not prog:
        return {}
    p = prog.lower()
    if p == "sshd" or p.startswith("sshd"):
        for rx, outcome, method in _SSHD:
            m = rx.search(msg)
            if m:
                g = m.groupdict()
                out: dict[str, Any] = {"user": g.get("user") or None, "src_ip": g.get("ip") or None}
                if g.get("verb"):
                    outcome, method = ("success" if g["verb"] == "Accepted" else "failure"), g["method"]
                elif g.get("kind") in ("invalid", "authenticating") or g.get("preauth"):
                    outcome, method = "failure", "disconnected before authentication"
                if outcome:
                    out["outcome"], out["method"] = outcome, method
                if g.get("port"):
                    out["src_port"] = int(g["port"])
                if g.get("invalid") or g.get("kind") == "invalid":
                    out["invalid_user"] = True
                return out
        return {}
    if p == "sudo":
        m = _SUDO.match(msg)
        if m:
            return {"user": m["user"], "target_user": m["target"], "command_line": m["cmd"], "tty": m["tty"], "cwd": m["pwd"]}
        return {}
    if p in ("su", "su-l"):
        m = _SU.search(msg)
        if m:
            return {"user": m["user"] or m["user2"] or None, "target_user": m["target"] or m["target2"]}
        return {}
    if p in ("useradd", "adduser"):
        m = _NEWUSER.search(msg)
        return {"target_user": m["target"], "account_action": "created"} if m else {}
    if p in ("usermod", "gpasswd"):
        m = _USERMOD.search(msg)
        return {"target_user": m["target"], "group": m["group"], "account_action": "group_add"} if m else {}
    if p in ("cron", "crond", "/usr/sbin/cron"):
        m = _CRON.search(msg)
        return {"user": m["user"], "command_line": m["cmd"]} if m else {}
    if p == "systemd":
        m = _UNIT.match(msg)
        return {"service_name": m["unit"]} if m else {}
    return {}


def _log_name(path: str) -> str:
    """``/var/log/auth.log.2.gz`` → ``auth``; ``messages-20221123`` → ``messages``."""
    name = os.path.basename(path).lower()
    for ext in (".gz", ".bz2", ".xz"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    name = re.sub(r"(?:[.-]\d+)+$", "", name)
    return re.sub(r"\.log$", "", name) or "syslog"


class SyslogCollector(Collector):
    name = "syslog"
    source = "SYSLOG"
    engines = ("syslog",)
    parser = ("forensics-syslog", "forensics")
    _WANTED = rotated(r"syslog|messages|auth\.log|secure|kern\.log|daemon\.log|cron|user\.log")

    @classmethod
    def wants(cls, name: str) -> bool:
        return bool(cls._WANTED.match(name))


    @classmethod
    def _first_line(cls, path: str) -> str | None:
        """The first line of text, past NUL bytes (zeroed blocks an unclean shutdown leaves, at the start of a file
        or of a line) and a UTF-8 byte order mark, up to the next NUL byte; None when there is none."""
        head = read_head(path, _HEAD_BYTES)
        if head.startswith(_BOM):
            head = head[len(_BOM):]
        for raw in head.splitlines():
            line = raw.lstrip(b"\x00").split(b"\x00", 1)[0].decode("utf-8", "replace").strip("\r\n")
            if line.strip():
                return line
        return None

    @classmethod
    def matches(cls, path: str) -> bool:
        line = cls._first_line(path)
        if line is None:
            return False
        return bool(_5424.match(line) or _BSD.match(line) or (_ISO.match(line) and len(line.split(" ", 2)) > 2
                                                               and not line.startswith("{")))

    @classmethod
    def check_compatible(cls, path: str) -> None:
        if not cls.matches(path):
            raise UnknownFormat(f"{path}: not a syslog file (expected BSD 'Mmm dd hh:mm:ss host', RFC 5424 '<pri>1 ts' "
                                "or ISO 8601 'yyyy-mm-ddThh:mm:ss host' lines)")

    # -----------------------------------------------------------------------------------------

    bulk = True  # False: every line through the row-by-row code (the reference the bulk step is tested against)

    def _items(self, art: Artifact, months_only: bool = False) -> Iterator[tuple[str | None, Any]]:
        """The file's records in order: (record_ref, text) per record read row by row (continuation lines
        joined to their record with a newline, records glued on one line split), and (None, _Run) for a
        run of one-line BSD records the bulk step reads column-wise.

        The file is read in blocks of a few MiB held in an Arrow string array; one RE2 pass
        (``_FAST``, see :func:`_split_fast`) marks the lines the bulk step can read; a marked line is a record on its own when
        the next line starts a record (else continuation lines follow).  Every other line goes through
        the row-by-row state machine, which keeps today's rules for continuations, glued records,
        damaged headers and lost lines.  ``months_only``: the runs' parts hold only the months (a run's lines
        are the same either way: every line _FAST matches starts a record)."""
        rep = self.report(art)
        cur_ref: str | None = None
        cur: str | None = None

        def step(n: int, line: str) -> Iterator[tuple[str, str]]:
            nonlocal cur_ref, cur
            fresh: set[int] = set()  # pieces a run of NUL bytes comes before
            if "\x00" in line:
                # An unclean shutdown leaves zeroed blocks (runs of NUL bytes, no line end) where the last writes
                # were lost: the record before them ends there, and what follows them is a line of its own.
                segs = _NULS.split(line)
                rep.warn("damage", f"{line.count(chr(0))} NUL byte(s) in {len(segs) - 1} run(s) (zeroed blocks, as "
                                   "an unclean shutdown leaves): left out; the text after them read as a new line",
                         f"line={n}")
                pieces = []
                for k, seg in enumerate(segs):
                    sub = _SPLIT.split(seg) if "<" in seg else [seg]
                    if k:
                        fresh.add(len(pieces))
                    pieces += sub if (k or seg) else []
            else:
                pieces = _SPLIT.split(line) if "<" in line else [line]
            for i, piece in enumerate(pieces):
                ref = f"line={n}" if len(pieces) == 1 else f"line={n} part={i + 1}"
                if i in fresh:  # a NUL run ended the record before it
                    if cur is not None:
                        yield cur_ref, cur
                    cur_ref, cur = None, None
                if _5424.match(piece) or _BSD.match(piece) or _ISO.match(piece):
                    if cur is not None:
                        yield cur_ref, cur
                    cur_ref, cur = ref, piece
                elif _BROKEN.match(piece):
                    if cur is not None:
                        yield cur_ref, cur
                    cur_ref, cur = None, None
                    rep.errors.append(RecordError(ref, "unparsed_line", f"not a syslog line: {piece[:120]!r}"))
                elif cur is not None:
                    cur += "\n" + piece
                elif piece.strip():
                    rep.errors.append(RecordError(ref, "unparsed_line", f"not a syslog line: {piece[:120]!r}"))

        def block(data: bytes, first: int, final: bool, cut: bool) -> Iterator[tuple[str | None, Any]]:
            """Lines of ``data`` from line number ``first``; all decided when ``final``, else all but the
            last (whose fate depends on the next line: it is read again with the next block)."""
            nonlocal cur_ref, cur
            if first == 1 and data.startswith(_BOM):  # a UTF-8 byte order mark is no part of the first line
                data = data[len(_BOM):]
            try:
                texts = data.decode("utf-8").split("\n")
            except UnicodeDecodeError:
                texts = [raw.decode("utf-8", "backslashreplace") for raw in data.split(b"\n")]
            if b"\r" in data:
                texts = [t.rstrip("\r") for t in texts]
            n = len(texts)
            decided = n if final else n - 1
            if self.bulk:
                arr = pa.array(texts, pa.string())
                parts, kind = _month_parts(arr) if months_only else _split_fast(arr)
            else:
                kind = np.zeros(n, dtype=np.int8)
            ok = kind > 0
            starts = ok.copy()
            for i in np.flatnonzero(~ok[1:]) + 1 if self.bulk else ():
                t = texts[i]
                piece = _SPLIT.split(t)[0] if "<" in t else t
                starts[i] = bool(_5424.match(piece) or _BSD.match(piece) or _ISO.match(piece) or _BROKEN.match(piece)
                                 or "\x00" in t)  # a NUL run ends the record before it (see step)
            simple = ok[:decided] & np.append(starts[1:], True)[:decided]
            if cut and decided:  # the last record is reported after the loss, as row by row
                simple[decided - 1] = False
            # runs end at a line left to the row-by-row code and where the kind changes
            change = np.flatnonzero(kind[1:decided] != kind[:decided - 1]) + 1 if decided > 1 else []
            ends = sorted({*np.flatnonzero(~simple).tolist(), *np.asarray(change).tolist(), decided})
            pos = 0
            for j in ends:
                if j > pos and simple[pos]:
                    if cur is not None:
                        yield cur_ref, cur
                    yield None, _Run(first + pos, int(kind[pos]), parts.slice(pos, j - pos), arr.slice(pos, j - pos))
                    cur_ref, cur = f"line={first + j - 1}", None
                    pos = j
                if j == decided or simple[j]:
                    continue
                yield from step(first + j, texts[j])
                pos = j + 1

        first, carry = 1, b""
        try:
            with open_lines(art.fs_path, rep) as fh:  # lines cut at LINE_MAX bytes (a counted warning)
                read = fh.read1
                while True:
                    chunks, size, want, eof = [carry], len(carry), max(_BLOCK, 2 * len(carry)), False
                    while size < want:
                        try:
                            chunk = read(1 << 16)
                        except (EOFError, OSError, zlib.error, lzma.LZMAError):
                            data = b"".join(chunks)
                            if data:
                                yield from block(data[:-1] if data.endswith(b"\n") else data, first, True, True)
                            raise
                        if not chunk:
                            eof = True
                            break
                        chunks.append(chunk)
                        size += len(chunk)
                    data = b"".join(chunks)
                    if eof:
                        if data:
                            yield from block(data[:-1] if data.endswith(b"\n") else data, first, True, False)
                        break
                    end = data.rfind(b"\n")
                    last = data.rfind(b"\n", 0, end) if end > 0 else -1
                    if last < 0:  # fewer than two complete lines: read on
                        carry = data
                        continue
                    yield from block(data[:end], first, False, False)
                    first += data.count(b"\n", 0, last + 1)
                    carry = data[last + 1:]
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            rep.errors.append(RecordError(None, "truncated", f"stream ended early after {cur_ref}: {exc}"))
        if cur is not None:
            yield cur_ref, cur

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        self.check_compatible(artifact.fs_path)
        rep = self.report(artifact)
        clock = Clock.for_artifact(artifact.tz, artifact.tz_source)
        logname = _log_name(artifact.evidence_path)
        art_name = f"syslog:{logname}"
        # Pass 1: months of the year-less lines, to date them from the end of the file.
        warned = len(rep.warnings)  # pass 2 reports them again
        chunks, single = [], array("b")  # months of runs (arrays) and of records read row by row, in order
        last_day = None  # the day of the last year-less line
        for ref, item in self._items(artifact, months_only=True):
            if ref is None:
                if item.kind == _K_BSD:
                    chunks += [np.frombuffer(single, np.int8).astype(np.int64), _month_numbers(item.parts.field("mon"))]
                    single = array("b")
                    last_day = int(item.parts.field("day")[-1].as_py())
            elif (m := _BSD.match(item)):
                single.append(MONTHS[m.group("mon")])
                last_day = int(m.group("day"))
        months = np.concatenate([*chunks, np.frombuffer(single, np.int8).astype(np.int64)])
        rep.errors.clear()  # pass 2 reports them again
        del rep.warnings[warned:]
        dating = year_less_dating(months, last_day, artifact.fs_path, artifact.mtime_ns, clock._zone)
        if dating is not None:
            years, rolls, year_source = dating
            if rolls > 1:  # a real log crosses one New Year per year it spans; many suggest merged or shuffled lines
                rep.warn("years_uncertain", f"{rolls} New Year roll-overs inferred (the months go back {rolls} times): "
                                            "the file may merge several logs; the years of its lines are doubtful")
        else:
            years, year_source = np.zeros(0, np.int64), None
            if len(months):
                rep.warn("no_year", f"{len(months)} year-less line(s) and no modification time to date them: skipped")
        rows = self._rows
        ev_id, ev_path, host0 = artifact.evidence_id, artifact.evidence_path, artifact.host
        bsd_i = count = 0

        def row(ref: str, text: str) -> None:
            """One record, row by row."""
            nonlocal bsd_i, count
            attrs: dict[str, Any] = {}
            tz_source = clock.tz_source
            m = _5424.match(text)
            try:
                if m:
                    t = _ISO.fullmatch(m["ts"])
                    if t is None:
                        raise ValueError(f"RFC 5424 time {m['ts']!r} is not ISO 8601")
                    ns, tz_source, note = _iso_time(t, clock)
                    host = None if m["host"] == "-" else m["host"]
                    prog = None if m["app"] == "-" else m["app"]
                    pid = int(m["procid"]) if m["procid"].isdigit() and len(m["procid"]) <= 18 else None
                    msg = m["msg"]
                    attrs.update(format="rfc5424", msgid=None if m["msgid"] == "-" else m["msgid"],
                                 structured_data=None if m["sd"] == "-" else m["sd"])
                    pri = m["pri"]
                elif (m := _BSD.match(text)):
                    if not len(years):
                        return  # counted above (no_year)
                    y = int(years[bsd_i])
                    bsd_i += 1
                    frac = m["frac"]
                    ns, note = clock.local_ns(y, MONTHS[m["mon"]], int(m["day"]), int(m["h"]), int(m["mi"]), int(m["s"]),
                                              int(frac.ljust(9, "0")) if frac else 0)
                    attrs.update(format="bsd", year=y, year_source=year_source)
                    if m["rest"].startswith(":"):  # "Mar 11 09:39:39: --- last message repeated 5 times ---"
                        host, prog, pid, msg = None, None, None, m["rest"][1:].strip()
                    else:
                        host, prog, pid, msg = _split_host(m["rest"][1:])
                    pri = m["pri"]
                else:
                    m = _ISO.match(text)
                    ns, tz_source, note = _iso_time(m, clock)
                    attrs["format"] = "iso8601"
                    if text[m.start("h") - 1] == " ":
                        # "yyyy-mm-dd hh:mm:ss ..." (dpkg, application logs) names no host
                        host = None
                        prog, pid, msg = parse_program(m["rest"][1:])
                        if logname == "dpkg" and prog is None:
                            prog, pid = "dpkg", None
                            d = _DPKG.match(msg)
                            if d:
                                g = d.groupdict()
                                if g["action"].startswith("status") and g["version"] is None:
                                    g["version"], g["old_version"] = g["old_version"], None
                                attrs.update({k: v for k, v in g.items() if v is not None})
                    else:
                        host, prog, pid, msg = _split_host(m["rest"][1:])
                    if host and host.upper() in _SEVERITY:  # ChromeOS: "ts SEVERITY prog[pid]: msg", no host
                        attrs["severity"] = host
                        host = None
                    pri = m["pri"]
            except (ValueError, OverflowError, IndexError) as exc:
                rep.errors.append(RecordError(ref, "bad_time", f"{type(exc).__name__}: {exc}: {text[:120]!r}"))
                return
            if pri is not None:
                p = int(pri)
                attrs["facility"] = _FACILITY[p >> 3] if (p >> 3) < len(_FACILITY) else p >> 3
                attrs["severity"] = _SEV_NAMES[p & 7]
            if note:
                attrs["time_note"] = note
            fields = extract(prog, msg)
            attrs.update(host=host, program=prog, pid=pid, message=msg)
            attrs.update(fields)
            if host:  # the line names its host: said first (collectors.hosts)
                attrs = {"host_source": HOST_LOG, **attrs}
            host = host or host0
            line_msg = f"{prog}[{pid}]: {msg}" if prog and pid is not None else f"{prog}: {msg}" if prog else msg
            if host:
                line_msg = f"{host} {line_msg}"
            rows.add(
                timestamp=ns, timestamp_desc="Event Logged", host=host, source="SYSLOG", artifact=art_name,
                provider=prog, process=prog, user=fields.get("user"), target_user=fields.get("target_user"),
                src_ip=fields.get("src_ip"), command_line=fields.get("command_line"),
                service_name=fields.get("service_name"), message=line_msg,
                attrs=orjson.dumps(attrs).decode(), tags=[], tz_source=tz_source, evidence_id=ev_id,
                evidence_path=ev_path, record_ref=ref, parser=self._parser,
                event_hash=event_hash("SYSLOG", host, ns, prog, pid, msg),
            )
            count += 1

        const = {"timestamp_desc": "Event Logged", "source": "SYSLOG", "artifact": art_name, "tz_source": clock.tz_source,
                 "evidence_id": ev_id, "evidence_path": ev_path, "parser": self._parser}
        out: list[pa.Table] = []  # tables in file order: the row builder's rows are turned into one before a run's
        held = 0
        for ref, item in self._items(artifact):
            if ref is not None:
                row(ref, item)
            elif item.kind == _K_ISO or len(years):
                k = len(item.lines) if item.kind == _K_BSD else 0
                table, bad = _run_table(item, years[bsd_i:bsd_i + k], year_source, clock, const, host0)
                start = bsd_i
                for j in bad:  # impossible dates (Feb 30, 25:00): the row-by-row code reports them
                    bsd_i = start + j
                    row(f"line={item.first + j}", item.lines[j].as_py())
                bsd_i = start + k
                if len(rows):
                    held += len(rows)
                    out.append(rows.to_table())
                out.append(table)
                held += table.num_rows
                count += table.num_rows
            if held + len(rows) >= batch_rows:
                if len(rows):
                    out.append(rows.to_table())
                yield pa.concat_tables(out)
                out, held = [], 0
        if out:
            if len(rows):
                out.append(rows.to_table())
            yield pa.concat_tables(out)
        rep.stats["rows"] = count


def _iso_time(m: re.Match, clock: Clock) -> tuple[int, str, str | None]:
    """UTC ns of an ISO 8601 match: its own offset when it has one, else the clock's zone."""
    frac = m["frac"]
    fns = int(frac.ljust(9, "0")) if frac else 0
    y, mo, d, h, mi, s = (int(m[k]) for k in ("y", "mo", "d", "h", "mi", "s"))
    off = m["off"]
    if off:
        off = off.replace(":", "")
        tz = _dt.timezone.utc if off == "Z" else _dt.timezone(
            (1 if off[0] == "+" else -1) * _dt.timedelta(hours=int(off[1:3]), minutes=int(off[3:5])))
        return ns_of(_dt.datetime(y, mo, d, h, mi, s, tzinfo=tz), fns), TZ_EMBEDDED_OFFSET, None
    ns, note = clock.local_ns(y, mo, d, h, mi, s, fns)
    return ns, clock.tz_source, note


def _split_host(rest: str) -> tuple[str | None, str | None, int | None, str]:
    """``host prog[pid]: msg`` (or ``prog[pid]: msg`` / free text when the host is missing)."""
    prog, pid, msg = parse_program(rest)
    if prog is not None and " " not in prog:
        # "prog[pid]: msg" with no host: only when the first token ends with ':' or '[pid]:'
        return None, prog, pid, msg
    host, _, after = rest.partition(" ")
    if not after:
        return None, None, None, rest
    prog, pid, msg = parse_program(after)
    return host or None, prog, pid, msg


# --- the bulk step: one-line BSD records, column-wise ---------------------------------------------

# A BSD line the bulk step reads: "Mmm dd hh:mm:ss host prog[pid]: msg" (or free text after the host), the
# header at fixed places (a day of two characters, no fraction of a second); the same groups as _BSD +
# _split_host + parse_program give for such a line (RE2 syntax, run by Arrow; capturing the message with
# RE2 costs ten times more than cutting it off with a replacement).
_FAST = r"^(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?: \d|\d\d) \d\d:\d\d:\d\d [^\s:\[\]]+ "
_HOST_PROG = r"^(?P<host>[^\s:\[\]]+) (?:(?P<prog>[^\s:\[\]]+)(?:\[(?P<pid>\d{1,18})\])?:(?: |$))?"
_HOST_PROG_CUT = r"^[^\s:\[\]]+ (?:[^\s:\[\]]+(?:\[\d{1,18}\])?:(?: |$))?"
# rsyslog's high-precision format (RSYSLOG_FileFormat): "yyyy-mm-ddThh:mm:ss[.frac]+hh:mm host prog[pid]: msg"
_ISO_TS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d) "
_FAST_ISO = _ISO_TS + r"[^\s:\[\]]+ "
_ISO_HEAD = (r"^(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)T(?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:\.(?P<frac>\d{1,9}))?"
             r"(?P<off>Z|[+-]\d\d:\d\d) ")
_K_BSD, _K_ISO = 1, 2  # kinds of lines the bulk step reads (0: the others)
_SEVERITIES = pa.array(sorted(_SEVERITY))
# Lines left to the row-by-row code: a '<' may start a glued record (or a "<tag>" after the program), control
# characters need JSON escapes other than \t (and Python's \s counts some of them as spaces, RE2's not).
_ODD = r"[<\x00-\x08\x0b-\x1f]"
_BLOCK = 4 << 20  # bytes of text per block
_MONTH_NAMES = pa.array(list(MONTHS))
_FIELD_PROGS = pa.array(["sudo", "su", "su-l", "useradd", "adduser", "usermod", "gpasswd", "cron", "crond",
                         "/usr/sbin/cron", "systemd"])  # and sshd*: the programs extract() reads
_NAIVE_EPOCH = _dt.datetime(1970, 1, 1)


class _Run:
    """Consecutive one-line records of one kind (_K_BSD, _K_ISO): first line number, parts, the lines."""

    __slots__ = ("first", "kind", "parts", "lines")

    def __init__(self, first: int, kind: int, parts: pa.StructArray, lines: pa.StringArray):
        self.first, self.kind, self.parts, self.lines = first, kind, parts, lines


def _split_fast(lines: pa.StringArray) -> tuple[pa.StructArray, np.ndarray]:
    """The parts of each line (mon, day, h, mi, s of a BSD header; host, prog, pid, msg: strings, "" when
    absent) and the kind of each line (_K_BSD, _K_ISO, or 0 when the bulk step does not read it)."""
    bsd, iso = pc.match_substring_regex(lines, _FAST), pc.match_substring_regex(lines, _FAST_ISO)
    rest = pc.utf8_slice_codeunits(lines, 16)
    if pc.any(iso).as_py():
        rest = pc.if_else(iso, pc.replace_substring_regex(lines, _ISO_TS, "", max_replacements=1), rest)
    hp = pc.extract_regex(rest, _HOST_PROG)
    host, prog = hp.field("host"), hp.field("prog")
    msg = pc.replace_substring_regex(rest, _HOST_PROG_CUT, "", max_replacements=1)
    ok = pc.and_(pc.invert(pc.match_substring_regex(lines, _ODD)),
                 pc.and_(pc.string_is_ascii(host), pc.string_is_ascii(prog)))
    # Python's \d and \s know non-ASCII digits and spaces, RE2's do not: text without a program must be ASCII;
    # "host" alone is no "host msg" line
    no_prog = pc.equal(prog, "")
    ok = pc.and_(ok, pc.invert(pc.and_(no_prog, pc.or_(pc.invert(pc.string_is_ascii(msg)), pc.equal(msg, "")))))
    parts = pa.StructArray.from_arrays(
        [pc.utf8_slice_codeunits(lines, a, b) for a, b in ((0, 3), (4, 6), (7, 9), (10, 12), (13, 15))]
        + [host, prog, hp.field("pid"), msg], names=["mon", "day", "h", "mi", "s", "host", "prog", "pid", "msg"])
    return parts, _kinds(ok, bsd, iso)


def _kinds(ok: pa.Array, bsd: pa.Array, iso: pa.Array) -> np.ndarray:
    good = ok.fill_null(False).to_numpy(zero_copy_only=False)
    bsd, iso = (a.fill_null(False).to_numpy(zero_copy_only=False) for a in (bsd, iso))
    return np.where(good & bsd, _K_BSD, np.where(good & iso, _K_ISO, 0)).astype(np.int8)


def _month_parts(lines: pa.StringArray) -> tuple[pa.StructArray, np.ndarray]:
    """Pass 1 of the bulk step: the months (and days) of BSD lines, and kinds as :func:`_split_fast` gives them or
    more (a line it leaves to the row-by-row code for its host, program or message starts a record all the same)."""
    ok = pc.invert(pc.match_substring_regex(lines, _ODD))
    kinds = _kinds(ok, pc.match_substring_regex(lines, _FAST), pc.match_substring_regex(lines, _FAST_ISO))
    return pa.StructArray.from_arrays([pc.utf8_slice_codeunits(lines, 0, 3), pc.utf8_slice_codeunits(lines, 4, 6)],
                                      names=["mon", "day"]), kinds


def _month_numbers(names: pa.Array) -> np.ndarray:
    return pc.index_in(names, value_set=_MONTH_NAMES).to_numpy(zero_copy_only=False).astype(np.int64) + 1


def _cat(*parts: Any) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _json_str(a: pa.Array) -> pa.Array:
    """JSON string literals as orjson writes them, for text holding no control character but tabs."""
    need = pc.match_substring_regex(a, r'[\\"\t]')
    if pc.any(need).as_py():
        e = a.filter(need)
        e = pc.replace_substring(pc.replace_substring(pc.replace_substring(e, "\\", "\\\\"), '"', '\\"'), "\t", "\\t")
        a = pc.replace_with_mask(a, need, e)
    return _cat('"', a, '"')


def _int(a: pa.Array) -> np.ndarray:
    return pc.cast(a, pa.int64()).to_numpy()


def _sshd_fields(msg: pa.StringArray) -> tuple[pa.Array, pa.Array, pa.Array]:
    """extract("sshd", m) for each (ASCII) message, column-wise: user, src_ip, and the JSON members that
    follow "message" in attrs.  The same patterns in the same order, each run by RE2 on the messages no
    earlier pattern matched (on ASCII text RE2 and Python's re find the same leftmost match and groups)."""
    left = np.arange(len(msg))
    rows, users, ips, frags = [], [], [], []
    for rx, outcome, method in _SSHD:
        if not len(left):
            break
        g = pc.extract_regex(msg.take(left), rx.pattern)
        hit = g.is_valid()
        hit_np = hit.to_numpy(zero_copy_only=False)
        if not hit_np.any():
            continue
        rows.append(left[hit_np])
        left = left[~hit_np]
        g = g.filter(hit)
        names = {f.name for f in g.type}
        m = len(g)
        empty = pa.repeat("", m)
        get = lambda k: g.field(k) if k in names else empty  # noqa: E731
        u, a = get("user"), get("ip")
        verb, kind, pre, port = get("verb"), get("kind"), get("preauth"), get("port")
        no_verb = pc.equal(verb, "")
        out_s = pc.if_else(pc.equal(verb, "Accepted"), '"success"', '"failure"')
        meth = _json_str(get("method"))
        if outcome is not None:  # the pattern's own outcome unless a verb or a pre-authentication disconnect says
            out_s = pc.if_else(no_verb, f'"{outcome}"', out_s)
            meth = pc.if_else(no_verb, orjson.dumps(method).decode(), meth)
        dis = pc.and_(no_verb, pc.or_(pc.is_in(kind, value_set=pa.array(["invalid", "authenticating"])),
                                      pc.not_equal(pre, "")))
        out_s = pc.if_else(dis, '"failure"', out_s)
        meth = pc.if_else(dis, '"disconnected before authentication"', meth)
        has_out = pc.or_(pc.invert(no_verb), dis) if outcome is None else pa.repeat(True, m)
        has_port = pc.not_equal(port, "")
        port_s = pc.cast(pc.cast(pc.if_else(has_port, port, "0"), pa.int64()), pa.string())
        frags.append(_cat(
            ',"user":', pc.if_else(pc.equal(u, ""), "null", _json_str(u)),
            ',"src_ip":', pc.if_else(pc.equal(a, ""), "null", _json_str(a)),
            pc.if_else(has_out, _cat(',"outcome":', out_s, ',"method":', meth), ""),
            pc.if_else(has_port, _cat(',"src_port":', port_s), ""),
            pc.if_else(pc.or_(pc.not_equal(get("invalid"), ""), pc.equal(kind, "invalid")), ',"invalid_user":true', "")))
        none = pa.scalar(None, pa.string())
        users.append(pc.if_else(pc.equal(u, ""), none, u))
        ips.append(pc.if_else(pc.equal(a, ""), none, a))
    rows.append(left)  # no pattern: no fields
    users.append(pa.nulls(len(left), pa.string()))
    ips.append(pa.nulls(len(left), pa.string()))
    frags.append(pa.repeat("", len(left)))
    back = pa.array(np.argsort(np.concatenate(rows), kind="stable"))
    return tuple(pa.concat_arrays([c.cast(pa.string()) for c in cs]).take(back) for cs in (users, ips, frags))


def _utc_offsets(secs: np.ndarray, clock: Clock) -> tuple[np.ndarray, np.ndarray]:
    """UTC offset (seconds) of each local time, and which times need the row-by-row rule (an hour that
    holds a change of offset: DST gaps and overlaps)."""
    if clock.tz is None or not len(secs):
        return np.zeros(len(secs), np.int64), np.zeros(len(secs), bool)
    hours, inv = np.unique(secs // 3600, return_inverse=True)
    offs, odd = np.zeros(len(hours), np.int64), np.zeros(len(hours), bool)
    for i, h in enumerate(hours.tolist()):
        t = _NAIVE_EPOCH + _dt.timedelta(hours=h)
        seen = {u.replace(tzinfo=clock._zone, fold=f).utcoffset()
                for u in (t, t + _dt.timedelta(seconds=3599)) for f in (0, 1)}
        if len(seen) == 1:
            offs[i] = int(seen.pop().total_seconds())
        else:
            odd[i] = True
    return offs[inv], odd[inv]


def _days(y: np.ndarray, mon: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 of each date, and which dates exist (datetime's rules: years 1-9999)."""
    start = ((y - 1970) * 12 + mon - 1).astype("datetime64[M]")
    d0 = start.astype("datetime64[D]").astype(np.int64)
    ok = (y >= 1) & (y <= 9999) & (mon >= 1) & (mon <= 12) & (day >= 1)
    return d0 + day - 1, ok & (day <= (start + 1).astype("datetime64[D]").astype(np.int64) - d0)


def _run_table(run: _Run, years: np.ndarray, year_source: str | None, clock: Clock, const: dict,
               host0: str | None) -> tuple[pa.Table, list[int]]:
    """The rows of a run of one-line records, column by column: the same values the row-by-row code
    gives.  Returns the table and the positions of lines with impossible dates (left to the row-by-row code)."""
    p = run.parts
    frac = np.zeros(len(p), np.int64)
    if run.kind == _K_BSD:
        mon, day, h, mi, s = (_month_numbers(p.field("mon")),
                              *(_int(pc.utf8_ltrim(p.field(k), " ")) for k in ("day", "h", "mi", "s")))
        y = years.astype(np.int64)
        off_line = np.zeros(len(p), np.int64)
        good_off = True
    else:
        g = pc.extract_regex(run.lines, _ISO_HEAD)
        y, mon, day, h, mi, s = (_int(g.field(k)) for k in ("y", "mo", "d", "h", "mi", "s"))
        frac = _int(pc.utf8_rpad(g.field("frac"), width=9, padding="0"))
        off = g.field("off")
        oh, om = _int(pc.if_else(pc.equal(off, "Z"), "0", pc.utf8_slice_codeunits(off, 1, 3))), \
            _int(pc.if_else(pc.equal(off, "Z"), "0", pc.utf8_slice_codeunits(off, 4, 6)))
        sign = np.where(pc.starts_with(off, "-").to_numpy(zero_copy_only=False), -1, 1)
        good_off = oh * 60 + om < 1440  # datetime.timezone takes less than a day
        off_line = sign * (oh * 3600 + om * 60)
    days, good = _days(y, mon, day)
    good &= (h < 24) & (mi < 60) & (s < 60) & good_off
    good &= (y >= 1678) & (y <= 2261)  # beyond, a timestamp[ns] cannot hold it: the row-by-row code reports it
    bad = np.flatnonzero(~good).tolist()
    if bad:
        p = p.filter(pa.array(good))
        mon, day, h, mi, s, y, days, frac, off_line = (v[good] for v in (mon, day, h, mi, s, y, days, frac, off_line))
    n = len(p)
    secs = days * 86400 + h * 3600 + mi * 60 + s
    note = pa.repeat("", n)
    if run.kind == _K_BSD:
        off, odd = _utc_offsets(secs, clock)
        ns = (secs - off) * 1_000_000_000
        if odd.any():  # hours with a DST change: Clock.local_ns row by row, with its note
            notes = []
            for i in np.flatnonzero(odd).tolist():
                ns[i], text = clock.local_ns(int(y[i]), int(mon[i]), int(day[i]), int(h[i]), int(mi[i]), int(s[i]))
                notes.append(f',"time_note":{orjson.dumps(text).decode()}' if text else "")
            note = pc.replace_with_mask(note, pa.array(odd), pa.array(notes, pa.string()))
        head = _cat('{"format":"bsd","year":', pc.cast(pa.array(y), pa.string()),
                    ',"year_source":' + orjson.dumps(year_source).decode())
        host = p.field("host")
        host_attr = _json_str(host)
        named = pc.is_valid(host)
    else:
        ns = (secs - off_line) * 1_000_000_000 + frac
        host = p.field("host")
        sev = pc.is_in(pc.ascii_upper(host), value_set=_SEVERITIES)  # ChromeOS: "ts SEVERITY prog[pid]: msg"
        head = pc.if_else(sev, _cat('{"format":"iso8601","severity":', _json_str(host)), '{"format":"iso8601"')
        host_attr = pc.if_else(sev, "null", _json_str(host))
        named = pc.invert(sev)
        host = pc.if_else(sev, pa.scalar(host0, pa.string()), host)  # the artifact's host, or none
    msg, prog, pid = p.field("msg"), p.field("prog"), p.field("pid")
    has_prog = pc.not_equal(prog, "")
    prog = pc.if_else(has_prog, prog, pa.scalar(None, pa.string()))
    pid = pc.cast(pc.cast(pc.if_else(pc.not_equal(pid, ""), pid, pa.scalar(None, pa.string())), pa.int64()), pa.string())
    line_msg = pc.if_else(pc.is_valid(pid), _cat(prog, "[", pid, "]: ", msg),
                          pc.if_else(has_prog, _cat(prog, ": ", msg), msg))
    cols, extra = _fields(prog, msg)
    attrs = _cat(head, note, ',"host":', host_attr,
                 ',"program":', pc.if_else(has_prog, _json_str(pc.fill_null(prog, "")), "null"),
                 ',"pid":', pc.fill_null(pid, "null"), ',"message":', _json_str(msg), extra, "}")
    # a line that names its host says so first (collectors.hosts)
    attrs = pc.if_else(pc.fill_null(named, False),
                       pc.replace_substring(attrs, "{", '{"host_source":"' + HOST_LOG + '",', max_replacements=1), attrs)
    ns_a = pa.array(ns, pa.int64())
    key = _cat("SYSLOG\x1f", pc.fill_null(host, ""), "\x1f", pc.cast(ns_a, pa.string()), "\x1f", pc.fill_null(prog, ""),
               "\x1f", pc.fill_null(pid, ""), "\x1f", msg)
    sha = hashlib.sha256  # event_hash(): the first 128 bits of SHA-256, in hex
    hexes = b"".join([sha(k).digest()[:16] for k in pc.cast(key, pa.binary()).to_pylist()]).hex().encode()
    hashes = pa.StringArray.from_buffers(n, pa.py_buffer(np.arange(0, 32 * n + 1, 32, dtype=np.int32)), pa.py_buffer(hexes))
    lines_no = np.arange(run.first, run.first + len(run.lines), dtype=np.int64)
    if bad:
        lines_no = lines_no[good]
    values = {
        "timestamp": ns_a.view(pa.timestamp("ns", tz="UTC")), "host": host, "provider": prog, "process": prog,
        "message": pc.if_else(pc.is_valid(host), _cat(host, " ", line_msg), line_msg), "attrs": attrs,
        "event_hash": hashes, "tz_source": pa.repeat(const["tz_source"] if run.kind == _K_BSD else TZ_EMBEDDED_OFFSET, n),
        "tags": pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string())),
        "record_ref": _cat("line=", pc.cast(pa.array(lines_no), pa.string())), **cols,
    }
    arrays = [values[name] if name in values else pa.repeat(const[name], n) if name in const else pa.nulls(n, typ)
              for name, typ, _, _ in COLUMNS]
    return cap_messages(pa.Table.from_arrays(arrays, schema=SCHEMA)), bad


def _fields(prog: pa.Array, msg: pa.Array) -> tuple[dict[str, pa.Array], pa.Array]:
    """Columns user, target_user, src_ip, command_line, service_name and the JSON members that follow
    "message" in attrs, as extract() gives them: sshd's column-wise, the other programs' row by row for
    their rows only."""
    n = len(msg)
    low = pc.ascii_lower(pc.fill_null(prog, ""))
    sshd = pc.and_(pc.starts_with(low, "sshd"), pc.string_is_ascii(msg))
    want = pc.and_(pc.or_(pc.starts_with(low, "sshd"), pc.is_in(low, value_set=_FIELD_PROGS)), pc.invert(sshd))
    cols = {k: pa.nulls(n, pa.string()) for k in ("user", "target_user", "src_ip", "command_line", "service_name")}
    extra = pa.repeat("", n)
    if pc.any(sshd).as_py():
        user, ip, frag = _sshd_fields(msg.filter(sshd))
        cols["user"] = pc.replace_with_mask(cols["user"], sshd, user)
        cols["src_ip"] = pc.replace_with_mask(cols["src_ip"], sshd, ip)
        extra = pc.replace_with_mask(extra, sshd, frag)
    idx = np.flatnonzero(want.to_numpy(zero_copy_only=False))
    if len(idx):
        memo: dict[tuple[str, str], dict] = {}  # log lines repeat (CRON, systemd): each message once
        found = [memo[k] if k in memo else memo.setdefault(k, extract(*k))
                 for k in zip(prog.take(idx).to_pylist(), msg.take(idx).to_pylist())]
        for k in cols:
            cols[k] = pc.replace_with_mask(cols[k], want, pa.array([f.get(k) for f in found], pa.string()))
        extra = pc.replace_with_mask(extra, want, pa.array(
            ["," + orjson.dumps(f).decode()[1:-1] if f else "" for f in found], pa.string()))
    return cols, extra
