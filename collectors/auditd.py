"""Linux audit logs (``/var/log/audit/audit.log``, SELinux ``selinux.log``): one row per audit event.

A line is one record: ``[node=HOST ]type=TYPE msg=audit(SECONDS.MILLIS:SERIAL): key=value ...``.
The kernel writes the records of one event (SYSCALL, EXECVE, CWD, PATH..., PROCTITLE, EOE) with the
same ``SECONDS.MILLIS:SERIAL`` stamp; they are grouped into one row, even when records of other
events are interleaved between them.  Rows come in file order of each event's first record.

Memory is bounded: an event is closed once its ``EOE`` record was read, or once 1,000 lines
(:data:`FLUSH_LINES`) were read without a record of it, and written when every event begun before it
is written too; when 10,000 events (:data:`MAX_OPEN`) wait, the oldest is closed and written early.
Records of an event that arrive after it was closed (more than 1,000 lines later) form a second row
with the same stamp (``attrs.lines`` tells which lines each row holds).

Times are the kernel's epoch seconds in UTC with their milliseconds (``tz_source`` source_utc);
``timestamp_desc`` "Event Logged".  ``artifact`` is ``auditd:<TYPE>``: ``auditd:EXECVE`` for an event
holding an EXECVE record, else the type of its first record that is not an auxiliary one (``auditd:LOGIN``
for LOGIN + SYSCALL + PROCTITLE, ``auditd:AVC``, ``auditd:USER_LOGIN``...), else ``auditd:SYSCALL``.

Fields
    ``command_line``: the EXECVE arguments (hex-encoded ones decoded, joined with spaces, quoted
    when they hold spaces), else the PROCTITLE (hex decoded, NULs as spaces), else a USER_CMD
    ``cmd``.  ``process``: ``exe`` (else ``comm``).  ``user``: the login user (``auid``, unless
    unset, else ``uid``), by name when the log is ENRICHED (``AUID="root"``) else the number; for
    logons and PAM records (USER_AUTH, USER_LOGIN, USER_ACCT, USER_START, CRED_ACQ...) the
    account (``acct``).  ``target_user``: the account an account-management record (ADD_USER,
    DEL_USER, USER_MGMT...) is about.  ``path``: the first PATH ``name`` that is not a parent
    directory (AVC: its ``path``/``name``).  ``src_ip``: ``addr`` of USER_* records.  ``attrs``:
    ``outcome`` (success/failure from ``res=``/``success=``), a summary of the event and every
    record with all its fields (``records``), enriched fields under ``enriched``.

A line that is not an audit record (no ``type=``, an empty type, a stamp without milliseconds)
is an error with its line number and the reason.
"""

from __future__ import annotations

import logging
import lzma
import os
import re
import shlex
from collections import OrderedDict, deque
import zlib
from typing import Any, Iterator

import orjson
import pyarrow as pa

from collectors.base import Artifact, Collector, RecordError, rotated
from collectors.text import lines, open_lines, read_head
from timeline.errors import UnknownFormat
from timeline.schema import TZ_SOURCE_UTC, event_hash

__all__ = ["AuditdCollector", "parse_record", "FLUSH_LINES", "MAX_OPEN"]

log = logging.getLogger(__name__)

FLUSH_LINES = 1_000  # an event with no record in this many lines is complete
MAX_OPEN = 10_000  # events pending at most

_LINE = re.compile(r"(?:node=(?P<node>\S+) )?type=(?P<type>\S*) msg=audit\((?P<stamp>[^)]*)\):? ?(?P<body>.*)", re.S)
_STAMP = re.compile(r"(?P<sec>\d+)\.(?P<frac>\d{1,9}):(?P<serial>\d+)$")
_TOKEN = re.compile(r"""([^\s=]+)=("(?:[^"\\]|\\.)*"?|'[^']*'?|\S*)|(\S+)""")
# Enriched logs (log_format = ENRICHED) append translated fields after \x1d; some copies lost the
# separator ("key=(null)ARCH=x86_64 ...", "res=1AUID="root""): upper-case names glued to a value.
_GLUED = re.compile(r"[A-Z][A-Z_-]*=")
_AVC = re.compile(r"avc:\s+(?P<result>\w+)\s+\{\s*(?P<perms>[^}]*?)\s*\}\s+for\s+(?P<rest>.*)", re.S)
_HEX = re.compile(r"(?:[0-9A-F]{2})+$")
_ARG = re.compile(r"a(\d+)(?:\[(\d+)\])?$")
_UNSET = {"4294967295", "-1", "unset"}
_LOGON_TYPES = {"USER_AUTH", "USER_ACCT", "USER_LOGIN", "USER_LOGOUT", "USER_START", "USER_END", "USER_ERR",
                "CRED_ACQ", "CRED_DISP", "CRED_REFR", "USER_CHAUTHTOK", "ANOM_LOGIN_FAILURES"}
_ACCOUNT_TYPES = {"ADD_USER", "DEL_USER", "ADD_GROUP", "DEL_GROUP", "USER_MGMT", "GRP_MGMT", "ACCT_LOCK",
                  "ACCT_UNLOCK", "CHUSER_ID", "CHGRP_ID", "GRP_CHAUTHTOK"}
# Records that only accompany the record saying what happened (a SYSCALL event is named by them when alone).
_AUXILIARY = {"SYSCALL", "EXECVE", "PATH", "CWD", "PROCTITLE", "EOE", "SOCKADDR", "BPRM_FCAPS", "MMAP", "OBJ_PID",
              "FD_PAIR", "IPC", "MQ_OPEN"}
# Fields the kernel hex-encodes when they hold unsafe characters (untrusted strings).
_HEXED = {"proctitle", "name", "cwd", "comm", "exe", "cmd", "acct", "path", "data", "old-path", "new-path"}


def _decode_hex(v: str, nul: str | None = None) -> str:
    s = bytes.fromhex(v).decode("utf-8", "backslashreplace")
    return s.replace("\x00", nul) if nul is not None else s


def _value(key: str, raw: str, rtype: str) -> str:
    """A field's value: quotes removed; hex decoded where the kernel hex-encodes untrusted strings."""
    if raw.startswith('"'):
        return raw[1:-1] if raw.endswith('"') and len(raw) >= 2 else raw[1:]
    if raw and len(raw) % 2 == 0 and _HEX.match(raw) and (
            key in _HEXED or (rtype == "EXECVE" and _ARG.match(key))):
        try:
            return _decode_hex(raw, " " if key == "proctitle" else None)
        except ValueError:
            return raw
    return raw


def _pairs(text: str, rtype: str, out: dict[str, Any]) -> list[str]:
    """key=value pairs of ``text`` into ``out`` (later duplicates get ``_2``...); bare words are returned.
    A bare word before a key qualifies it (``old auid=1 new auid=2`` → ``old-auid``, ``new-auid``)."""
    words: list[str] = []
    pending: str | None = None
    for key, raw, word in _TOKEN.findall(text):
        if word:
            if pending is not None:
                words.append(pending)
            pending = word
            continue
        if pending is not None and pending.isalpha() and pending.islower():
            key = f"{pending}-{key}"
            pending = None
        elif pending is not None:
            words.append(pending)
            pending = None
        if raw.startswith("'"):  # msg='op=... acct="x" res=success': the user-space message's own fields
            inner = raw[1:-1] if raw.endswith("'") and len(raw) >= 2 else raw[1:]
            sub: dict[str, Any] = {}
            w = _pairs(inner, rtype, sub)
            for k, v in sub.items():
                out[k if k not in out else f"msg.{k}"] = v
            if w:
                out["msg_text"] = " ".join(w)
            continue
        val = _value(key, raw, rtype)
        if key in out:
            i = 2
            while f"{key}_{i}" in out:
                i += 1
            key = f"{key}_{i}"
        out[key] = val
    if pending is not None:
        words.append(pending)
    return words


def parse_record(line: str) -> tuple[str | None, str, str, int, int, dict[str, Any]]:
    """One audit line → (node, type, stamp, ns, serial, fields).  Raises ValueError with the reason."""
    m = _LINE.match(line)
    if m is None:
        if "msg=audit(" in line:
            raise ValueError("no type= before msg=audit(...)")
        raise ValueError("not an audit record (expected 'type=TYPE msg=audit(SECONDS.MILLIS:SERIAL): ...')")
    rtype, stamp, body = m["type"], m["stamp"], m["body"]
    if not rtype:
        raise ValueError("empty type=")
    s = _STAMP.match(stamp)
    if s is None:
        raise ValueError(f"bad audit stamp audit({stamp}) (expected SECONDS.MILLIS:SERIAL)")
    ns = int(s["sec"]) * 1_000_000_000 + int(s["frac"].ljust(9, "0"))
    fields: dict[str, Any] = {}
    enriched = None
    if "\x1d" in body:
        body, _, enriched = body.partition("\x1d")
    else:
        g = _glued_split(body)
        if g is not None:
            body, enriched = body[:g], body[g:]
    if rtype in ("AVC", "USER_AVC") and (a := _AVC.search(body)):
        fields["avc"] = a["result"]
        fields["permissions"] = a["perms"].split()
        body = body[: a.start()] + " " + a["rest"]
    words = _pairs(body, rtype, fields)
    if words:
        fields["text"] = " ".join(words)
    if enriched:
        e: dict[str, Any] = {}
        _pairs(enriched, rtype, e)
        fields["enriched"] = e
    return m["node"], rtype, stamp, ns, int(s["serial"]), fields


def _glued_split(body: str) -> int | None:
    """Where enriched fields begin when their \\x1d separator was lost (outside quotes), else None."""
    if not any(c.isupper() for c in body):
        return None
    quote = None
    for i, ch in enumerate(body):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
            continue
        if "A" <= ch <= "Z" and i and body[i - 1] not in " =" and not ("A" <= body[i - 1] <= "Z") \
                and _GLUED.match(body, i):
            return i
    return None


class _Event:
    __slots__ = ("key", "node", "stamp", "ns", "serial", "records", "lines", "raw", "last", "done")

    def __init__(self, key, node, stamp, ns, serial, n):
        self.key, self.node, self.stamp, self.ns, self.serial = key, node, stamp, ns, serial
        self.records: list[dict[str, Any]] = []
        self.lines: list[int] = []
        self.raw: list[str] = []
        self.last = n
        self.done = False


class AuditdCollector(Collector):
    name = "auditd"
    source = "AUDIT"
    engines = ("auditd",)
    parser = ("forensics-auditd", "forensics")
    _WANTED = rotated(r"audit\.log")

    @classmethod
    def wants(cls, name: str) -> bool:
        return bool(cls._WANTED.match(name))


    @classmethod
    def matches(cls, path: str) -> bool:
        head = read_head(path, 8192)
        if not head or b"\x00" in head[:512]:
            return False
        heads = [l.decode("utf-8", "replace") for l in head.splitlines() if l.strip()][:10]
        if not heads:
            return False
        if _LINE.match(heads[0]):
            return True
        name = os.path.basename(path).lower()
        return ("audit" in name or "selinux" in name) and any(_LINE.match(l) for l in heads[1:])

    @classmethod
    def check_compatible(cls, path: str) -> None:
        if not cls.matches(path):
            raise UnknownFormat(f"{path}: not a Linux audit log (expected 'type=TYPE msg=audit(SECONDS.MILLIS:SERIAL): ...' lines)")

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        self.check_compatible(artifact.fs_path)
        rep = self.report(artifact)
        active: OrderedDict[tuple, _Event] = OrderedDict()  # open events, least recently seen first
        queue: deque[_Event] = deque()  # events in order of their first record, waiting to be written
        count = 0
        records = 0
        n = 0

        def write(final: bool) -> Iterator[pa.Table]:
            """Close stale events; write closed ones from the oldest (all when ``final``)."""
            nonlocal count
            while active:
                key, ev = next(iter(active.items()))
                if not final and ev.last > n - FLUSH_LINES and len(queue) <= MAX_OPEN:
                    break
                del active[key]
                ev.done = True
            while queue and (queue[0].done or len(queue) > MAX_OPEN):
                ev = queue.popleft()
                if not ev.done:
                    active.pop(ev.key, None)
                    ev.done = True
                self._emit(artifact, ev)
                count += 1
                if len(self._rows) >= batch_rows:
                    yield self._rows.to_table()

        try:
            with open_lines(artifact.fs_path, rep) as fh:  # lines cut at LINE_MAX bytes (a counted warning)
                for n, line in lines(fh):
                    if not line.strip():
                        continue
                    try:
                        node, rtype, stamp, ns, serial, fields = parse_record(line)
                    except ValueError as exc:
                        rep.errors.append(RecordError(f"line={n}", "unparsed_line", f"{exc}: {line[:160]!r}"))
                        continue
                    records += 1
                    key = (node, stamp)
                    ev = active.get(key)
                    if ev is None:
                        ev = active[key] = _Event(key, node, stamp, ns, serial, n)
                        queue.append(ev)
                    else:
                        active.move_to_end(key)
                    ev.records.append({"type": rtype, **fields})
                    ev.lines.append(n)
                    ev.raw.append(line)
                    ev.last = n
                    if rtype == "EOE":
                        ev.done = True
                        del active[key]
                    yield from write(False)
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            rep.errors.append(RecordError(None, "truncated", f"stream ended early after line {n}: {exc}"))
        yield from write(True)
        rep.stats["rows"] = count
        rep.stats["records"] = records

    def _emit(self, art: Artifact, ev: _Event) -> None:
        recs = ev.records
        types = [r["type"] for r in recs]
        by = {}
        for r in recs:
            by.setdefault(r["type"], r)
        main = by.get("SYSCALL") or next((r for r in recs if r["type"] not in ("EOE", "PROCTITLE", "PATH", "CWD")), recs[0])
        avc = by.get("AVC") or by.get("USER_AVC")
        special = next((r["type"] for r in recs if r["type"] not in _AUXILIARY), None)
        primary = "EXECVE" if "EXECVE" in by else special or recs[0]["type"]
        enr = {}
        for r in recs:
            if "enriched" in r:
                for k, v in r["enriched"].items():
                    enr.setdefault(k, v)

        def pick(*keys: str) -> str | None:
            for k in keys:
                for r in (main, *recs):
                    v = r.get(k)
                    if v not in (None, "", "?", "(null)", "(none)"):
                        return v
            return None

        auid, uid = pick("auid", "new-auid"), pick("uid")
        auid_name, uid_name = enr.get("AUID"), enr.get("UID")
        if auid is not None and auid not in _UNSET:
            actor = auid_name if auid_name and auid_name != "unset" else auid
        else:
            actor = uid_name if uid_name else uid
        acct = pick("acct")
        user, target = actor, None
        if primary in _LOGON_TYPES and acct:
            user = acct
        elif primary in _ACCOUNT_TYPES and acct:
            target = acct
        # command line: EXECVE arguments, else PROCTITLE, else USER_CMD cmd
        cmd = None
        args: list[str] | None = None
        if "EXECVE" in by:
            args = _execve_args(by["EXECVE"])
            cmd = " ".join(a if a and not any(c.isspace() or c in "'\"" for c in a) else shlex.quote(a) for a in args)
        proctitle = by.get("PROCTITLE", {}).get("proctitle")
        if cmd is None:
            cmd = proctitle.strip() if proctitle else pick("cmd") if primary == "USER_CMD" else None
        exe, comm = pick("exe"), pick("comm")
        paths = [r.get("name") for r in recs if r["type"] == "PATH" and r.get("name") not in (None, "(null)")]
        path = next((r.get("name") for r in recs if r["type"] == "PATH" and r.get("nametype") != "PARENT"
                     and r.get("name") not in (None, "(null)")), paths[0] if paths else None)
        if path is None and avc:
            path = avc.get("path") or avc.get("name")
        addr = pick("addr")
        if addr and not re.match(r"[0-9A-Fa-f:.]+$", addr):
            addr = None
        res, success = pick("res"), main.get("success")
        outcome = None
        if res is not None:
            outcome = "success" if res in ("success", "1", "yes") else "failure" if res in ("failed", "0", "no", "fail") else res
        elif success is not None:
            outcome = "success" if success == "yes" else "failure"
        key = pick("key")
        cwd = by.get("CWD", {}).get("cwd")
        summary = {k: v for k, v in (
            ("serial", ev.serial), ("audit_time", ev.stamp.split(":")[0]), ("node", ev.node), ("types", types),
            ("auid", auid), ("uid", uid), ("user_name", actor), ("acct", acct), ("exe", exe), ("comm", comm),
            ("pid", pick("pid")), ("ppid", pick("ppid")), ("syscall", main.get("syscall")),
            ("syscall_name", enr.get("SYSCALL")), ("success", success), ("exit", main.get("exit")), ("res", res),
            ("outcome", outcome), ("key", key), ("op", pick("op")), ("cwd", cwd), ("args", args),
            ("proctitle", proctitle), ("paths", paths or None), ("addr", addr), ("hostname", pick("hostname")),
            ("terminal", pick("terminal")), ("tty", pick("tty")), ("ses", pick("ses")), ("avc", avc and avc.get("avc")),
            ("permissions", avc and avc.get("permissions")), ("scontext", avc and avc.get("scontext")),
            ("tcontext", avc and avc.get("tcontext")), ("tclass", avc and avc.get("tclass")),
            ("enriched", enr or None), ("lines", ev.lines)) if v is not None}
        summary["records"] = recs
        process = exe or comm
        host = ev.node or art.host
        parts = [primary]
        if avc and avc.get("avc"):
            parts.append(f"{avc['avc']} {{ {' '.join(avc.get('permissions') or [])} }}")
        if pick("op"):
            parts.append(f"op={pick('op')}")
        if user:
            parts.append(f"user={user}")
        if target:
            parts.append(f"acct={target}")
        if addr:
            parts.append(f"from {addr}")
        if process:
            parts.append(f"exe={process}")
        if path and avc:
            parts.append(f"path={path}")
        if outcome and not avc:
            parts.append(f"({outcome})")
        if key:
            parts.append(f"key={key}")
        msg = " ".join(parts) + (f": {cmd}" if cmd else "")
        self._rows.append((
            ev.ns, "Event Logged", host, "AUDIT", f"auditd:{primary}", None, None, "auditd", user, target, None,
            addr, None, None, None, process, None, cmd, path, None, msg, orjson.dumps(summary).decode(), [],
            TZ_SOURCE_UTC, art.evidence_id, art.evidence_path, f"line={ev.lines[0]} serial={ev.serial}", self._parser,
            event_hash("AUDIT", host, ev.stamp, "\n".join(ev.raw)),
        ))


def _execve_args(rec: dict[str, Any]) -> list[str]:
    """a0..aN of an EXECVE record, long arguments (``a1[0]=.. a1[1]=..``) joined."""
    parts: dict[int, dict[int, str]] = {}
    for k, v in rec.items():
        m = _ARG.match(k)
        if m:
            parts.setdefault(int(m[1]), {})[int(m[2]) if m[2] else -1] = v
    out = []
    for i in sorted(parts):
        chunks = parts[i]
        if -1 in chunks:
            out.append(chunks[-1])
        else:  # chunks of a long argument are each hex-encoded text, or quoted
            out.append("".join(chunks[j] for j in sorted(chunks)))
    return out
