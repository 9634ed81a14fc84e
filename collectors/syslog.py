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
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import zlib
import lzma
from typing import Any, Iterator

import orjson
import pyarrow as pa

from collectors.base import Artifact, Collector, RecordError
from collectors.text import MONTHS, Clock, lines, ns_of, open_text, read_head, syslog_years
from timeline.custody import open_evidence
from timeline.errors import UnknownFormat
from timeline.schema import TZ_EMBEDDED_OFFSET, event_hash

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
_SEVERITY = {"EMERG", "ALERT", "CRIT", "ERR", "ERROR", "WARNING", "WARN", "NOTICE", "INFO", "DEBUG"}
_PROG = re.compile(r"(?P<prog>[^\s:\[\]]+)(?:\[(?P<pid>\d+)\])?(?: <\w+>)?:(?: |$)(?P<msg>.*)", re.S)
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


    @classmethod
    def _first_line(cls, path: str) -> str | None:
        head = read_head(path, 4096)
        if not head or b"\x00" in head[:512]:
            return None
        for raw in head.splitlines():
            line = raw.decode("utf-8", "replace").strip("\r\n")
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

    def _records(self, art: Artifact) -> Iterator[tuple[str, str]]:
        """(record_ref, text) per record: continuation lines joined to their record with a newline,
        records glued on one line (forward formats) split."""
        rep = self.report(art)
        cur_ref, cur = None, None
        try:
            with open_text(art.fs_path) as fh:
                for n, line in lines(fh):
                    pieces = _SPLIT.split(line) if "<" in line else [line]
                    for i, piece in enumerate(pieces):
                        ref = f"line={n}" if len(pieces) == 1 else f"line={n} part={i + 1}"
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
        months = [MONTHS[m.group("mon")] for _, text in self._records(artifact) if (m := _BSD.match(text))]
        rep.errors.clear()  # pass 2 reports them again
        gz_mtime = _gzip_mtime(artifact.fs_path)
        if gz_mtime is not None or artifact.mtime_ns is not None:
            # gzip keeps the log's own modification time in its header: it survives copies of the .gz file
            # (which reset the file's time), so it dates the lines when present (as plaso does)
            end = _dt.datetime.fromtimestamp(gz_mtime if gz_mtime is not None else artifact.mtime_ns / 1e9, clock._zone)
            years, rolls = syslog_years(months, end.year, end.month)
            what = "gzip header modification time" if gz_mtime is not None else "file modification time"
            year_source = f"{what} {end.date().isoformat()}" + (f", {rolls} New Year roll-over(s)" if rolls else "")
            if rolls > 1:  # a real log crosses one New Year per year it spans; many suggest merged or shuffled lines
                rep.warn("years_uncertain", f"{rolls} New Year roll-overs inferred (the months go back {rolls} times): "
                                            "the file may merge several logs; the years of its lines are doubtful")
        else:
            years, year_source = [], None
            if months:
                rep.warn("no_year", f"{len(months)} year-less line(s) and no modification time to date them: skipped")
        bsd_i = 0
        rows = self._rows
        ev_id, ev_path, host0 = artifact.evidence_id, artifact.evidence_path, artifact.host
        count = 0
        for ref, text in self._records(artifact):
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
                    pid = int(m["procid"]) if m["procid"].isdigit() else None
                    msg = m["msg"]
                    attrs.update(format="rfc5424", msgid=None if m["msgid"] == "-" else m["msgid"],
                                 structured_data=None if m["sd"] == "-" else m["sd"])
                    pri = m["pri"]
                elif (m := _BSD.match(text)):
                    if not years:
                        continue  # counted above (no_year)
                    y = years[bsd_i]
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
                continue
            if pri is not None:
                p = int(pri)
                attrs["facility"] = _FACILITY[p >> 3] if (p >> 3) < len(_FACILITY) else p >> 3
                attrs["severity"] = _SEV_NAMES[p & 7]
            if note:
                attrs["time_note"] = note
            fields = extract(prog, msg)
            attrs.update(host=host, program=prog, pid=pid, message=msg)
            attrs.update(fields)
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
            if len(rows) >= batch_rows:
                yield rows.to_table()
        rep.stats["rows"] = count


def _gzip_mtime(path: str) -> int | None:
    """MTIME of a gzip file's header (seconds since the epoch), None when not gzip or not set."""
    with os.fdopen(open_evidence(path), "rb") as fh:
        head = fh.read(8)
    if len(head) == 8 and head[:3] == b"\x1f\x8b\x08":
        t = int.from_bytes(head[4:8], "little")
        return t or None
    return None


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
