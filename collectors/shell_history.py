"""Shell histories: bash, zsh, fish and PowerShell (PSReadLine) → one row per command.

Recognised by name (``.bash_history``, ``bash_history``, ``.zsh_history``, ``zsh_history``,
``*zsh_extended_history*``, ``fish_history``, ``ConsoleHost_history.txt`` and the other
PSReadLine hosts' ``*Host_history.txt``) and by content (text, no NUL bytes; fish's
``- cmd:`` entries).  Compressed copies are read by magic.

Formats
    bash     one command per line; with HISTTIMEFORMAT set, ``#<epoch>`` lines date the command
             that follows, and every line up to the next ``#<epoch>`` belongs to that (multi-line)
             command.  Commands before the first ``#<epoch>`` line have no time.
    zsh      ``: <start>:<elapsed>;<command>`` (EXTENDED_HISTORY) or plain lines; a line ending
             in a backslash continues on the next one (as zsh reads it back); zsh's "metafied"
             bytes (0x83 escapes) are restored when that makes the line UTF-8.
    fish     ``- cmd: <command>`` / ``  when: <epoch>`` / ``  paths:`` entries; ``\\n`` and ``\\\\``
             in the command are fish's escapes.
    PowerShell  ConsoleHost_history.txt: one command per line, a line ending in a backtick
             continues on the next one; no times.  UTF-8 (with or without BOM) or UTF-16 with BOM.

Rows (``source`` SHELL, ``artifact`` bash_history / zsh_history / fish_history / powershell_history)
    ``command_line`` the command, ``process`` the shell, ``user`` the owner of the home folder the
    file lies in (``/home/alice/...`` → alice, ``/root/...`` → root, ``C:/Users/bob/...`` → bob),
    ``record_ref`` ``line=N`` (the command's first line).  A dated command: its epoch (UTC,
    ``tz_source`` source_utc), ``timestamp_desc`` "Command Executed".  A command without a time
    is placed at the file's modification time, ``timestamp_desc`` "History File Modified (command
    time unknown)", ``attrs.time_source`` "file mtime"; ``attrs.order`` (every row) keeps the
    file's order.  Without a modification time, undated commands are counted as errors.
"""

from __future__ import annotations

import codecs
import io
import logging
import lzma
import os
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import orjson
import pyarrow as pa

from collectors.base import Artifact, ArtifactReport, Collector, RecordError
from collectors.text import open_lines, read_head
from timeline.errors import UnknownFormat
from timeline.schema import TZ_SOURCE_UTC, event_hash

__all__ = ["ShellHistoryCollector", "history_kind", "home_owner", "EXECUTED", "MTIME_DESC"]

log = logging.getLogger(__name__)

EXECUTED = "Command Executed"
MTIME_DESC = "History File Modified (command time unknown)"

_NAMES = (
    (re.compile(r"^\.?bash_history(?:[._-][\w.-]*)?$", re.I), "bash"),
    (re.compile(r"^\.?zsh_history(?:[._-][\w.-]*)?$|zsh_extended_history", re.I), "zsh"),
    (re.compile(r"^\.?fish_history(?:[._-][\w.-]*)?$", re.I), "fish"),
    (re.compile(r"host_history\.txt$", re.I), "powershell"),
)
ARTIFACT = {"bash": "bash_history", "zsh": "zsh_history", "fish": "fish_history", "powershell": "powershell_history"}

_BASH_TS = re.compile(r"^#(\d{1,19})\s*$")
_ZSH = re.compile(r"^: {0,2}(\d{1,19}):(\d+);(.*)$", re.S)
_FISH_CMD = re.compile(r"^- cmd: ?(.*)$", re.S)
_FISH_WHEN = re.compile(r"^ {2}when: *(\S+)\s*$")
_FISH_PATH = re.compile(r"^ {4}- (.*)$", re.S)
_FISH_ESC = re.compile(r"\\(.)", re.S)
_HOME = re.compile(r"(?:^|[/:!])(?:home|Users|Documents and Settings|export/home|usr/home)/([^/]+)/", re.I)
_ROOT = re.compile(r"(?:^|[/:!])(?:var/)?root/", re.I)
_MAX_EPOCH = 9_223_372_035  # the last second a timestamp[ns] holds (2262)


def history_kind(name: str) -> str | None:
    """``bash``, ``zsh``, ``fish`` or ``powershell`` when a file's name is a shell history's, else None."""
    base = os.path.basename(name.replace("\\", "/"))
    base = re.sub(r"\.(?:gz|bz2|xz)$", "", base, flags=re.I)
    for rx, kind in _NAMES:
        if rx.search(base):
            return kind
    return None


def home_owner(evidence_path: str) -> str | None:
    """The user whose home folder holds the file: ``home/alice/.bash_history`` → alice,
    ``/root/.zsh_history`` → root, ``C:/Users/bob/AppData/...`` → bob; None when the path does not say."""
    p = evidence_path.replace("\\", "/")
    homes = _HOME.findall(p)
    if homes:
        return homes[-1]
    return "root" if _ROOT.search(p) else None


@dataclass
class _Entry:
    line: int  # first line of the command
    ts: int | None = None
    parts: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    cont: bool = False  # the last line asked for a continuation


def _unescape_fish(s: str) -> str:
    return _FISH_ESC.sub(lambda m: "\n" if m[1] == "n" else "\\" if m[1] == "\\" else m[0], s)


def _unmetafy(raw: bytes) -> bytes:
    out = bytearray()
    it = iter(raw)
    for c in it:
        if c == 0x83:
            c = next(it, 0x20) ^ 0x20
        out.append(c)
    return bytes(out)


def _decode(raw: bytes, zsh: bool = False) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        if zsh and b"\x83" in raw:
            try:
                return _unmetafy(raw).decode("utf-8")
            except UnicodeDecodeError:
                pass
        return raw.decode("utf-8", "backslashreplace")


def _utf16(head: bytes) -> bool:
    return head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class ShellHistoryCollector(Collector):
    name = "shell_history"
    source = "SHELL"
    engines = ("shell_history",)
    parser = ("forensics-shell-history", "forensics")
    image_names = frozenset({".history", ".sh_history"})  # csh's and ksh's, besides the names of history_kind
    home_files = (".bash_history", ".zsh_history", ".sh_history", ".history", ".local/share/fish/fish_history")

    @classmethod
    def wants(cls, name: str) -> bool:
        return name in cls.image_names or history_kind(name) is not None


    # --- recognition ---------------------------------------------------------------------------

    @classmethod
    def _why_not(cls, path: str) -> str | None:
        kind = history_kind(path)
        if kind is None:
            return "name is not a shell history's (.bash_history, .zsh_history, fish_history, ConsoleHost_history.txt...)"
        head = read_head(path, 4096)
        if not head:
            try:
                return None if os.path.getsize(path) == 0 else "unreadable"
            except OSError:
                return "unreadable"
        if kind == "powershell" and _utf16(head):
            try:
                head = head[: len(head) // 2 * 2].decode("utf-16").encode("utf-8")
            except UnicodeDecodeError:
                return "UTF-16 text that does not decode"
        if b"\x00" in head:
            return "binary content (NUL bytes), not a text history"
        controls = sum(1 for c in head if (c < 0x20 and c not in (9, 10, 13, 27)) or c == 0x7F)
        if controls > max(2, len(head) // 100):
            return f"binary content ({controls} control bytes in the first {len(head)}), not a text history"
        if kind == "fish":
            first = next((ln for ln in head.splitlines() if ln.strip()), b"")
            if not first.startswith(b"- cmd:"):
                return "a fish history starts with a '- cmd:' entry"
        return None

    @classmethod
    def matches(cls, path: str) -> bool:
        return cls._why_not(path) is None

    @classmethod
    def check_compatible(cls, path: str) -> None:
        why = cls._why_not(path)
        if why is not None:
            raise UnknownFormat(f"{path}: not a shell history: {why}")

    # --- reading -------------------------------------------------------------------------------

    @staticmethod
    def _lines(fh, kind: str) -> Iterator[tuple[int, str]]:
        """(line number from 1, text without the line end)."""
        head = fh.peek(2)[:2] if hasattr(fh, "peek") else b""
        if kind == "powershell" and _utf16(head):
            text = io.TextIOWrapper(fh, encoding="utf-16", errors="backslashreplace", newline=None)
            for n, line in enumerate(text, 1):
                yield n, line.rstrip("\r\n")
            return
        reader = fh if isinstance(fh, io.BufferedReader) else io.BufferedReader(fh, 1 << 16)
        zsh = kind == "zsh"
        for n, raw in enumerate(reader, 1):
            line = _decode(raw.rstrip(b"\r\n"), zsh)
            if n == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield n, line

    def _entries(self, rep: ArtifactReport, fh, kind: str) -> Iterator[_Entry]:
        lines = self._lines(fh, kind)
        if kind == "bash":
            yield from _bash(rep, lines)
        elif kind == "zsh":
            yield from _continued(rep, lines, "\\", _ZSH)
        elif kind == "fish":
            yield from _fish(rep, lines)
        else:
            yield from _continued(rep, lines, "`", None)

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        self.check_compatible(artifact.fs_path)
        kind = history_kind(artifact.evidence_path) or history_kind(artifact.fs_path)
        rep = self.report(artifact)
        rows = self._rows
        user = home_owner(artifact.evidence_path)
        art_name = ARTIFACT[kind]
        mtime = artifact.mtime_ns
        timed = untimed = order = 0
        undated: list[int] = []
        seen: dict[int, int] = {}  # repeats of (time, command): a command run twice in one second is two events
        host, ev_id, ev_path, parser = artifact.host, artifact.evidence_id, artifact.evidence_path, self._parser
        by = f" by {user}" if user else ""
        try:
            with open_lines(artifact.fs_path, rep) as fh:  # lines cut at LINE_MAX bytes (a counted warning)
                for e in self._entries(rep, fh, kind):
                    cmd = "\n".join(e.parts)
                    if not cmd.strip():
                        continue
                    order += 1
                    attrs: dict[str, Any] = {"shell": kind, "command": cmd, "order": order, "line": e.line}
                    attrs.update(e.extra)
                    if len(e.parts) > 1:
                        attrs["lines"] = len(e.parts)
                    if e.ts is not None and not 0 <= e.ts <= _MAX_EPOCH:
                        rep.warn("bad_time", f"time {e.ts} out of range: command placed at the file's modification time",
                                 f"line={e.line}")
                        attrs["bad_time"] = e.ts
                        e.ts = None
                    if e.ts is not None:
                        ns = e.ts * 1_000_000_000
                        desc = EXECUTED
                        h = hash((ns, cmd))
                        k = seen[h] = seen.get(h, 0) + 1
                        key = event_hash("SHELL", host, user, kind, ns, cmd, k)
                        timed += 1
                    elif mtime is not None:
                        ns = mtime
                        desc = MTIME_DESC
                        attrs["time_source"] = "file mtime"
                        key = event_hash("SHELL", host, user, kind, "mtime", ns, order, cmd)
                        untimed += 1
                    else:
                        undated.append(e.line)
                        continue
                    rows.append((  # in timeline.schema.COLUMNS order (hot path)
                        ns, desc, host, "SHELL", art_name, None, None, None, user, None, None, None, None, None, None,
                        kind, None, cmd, None, None, (f"{kind} command{by}: " + cmd.replace("\n", "\\n"))[:400],
                        orjson.dumps(attrs).decode(), [], TZ_SOURCE_UTC, ev_id, ev_path, f"line={e.line}", parser, key,
                    ))
                    if len(rows) >= batch_rows:
                        yield rows.to_table()
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            rep.errors.append(RecordError(None, "truncated", f"compressed stream ended early: {type(exc).__name__}: {exc}"))
        if undated:
            rep.errors.append(RecordError(
                f"line={undated[0]}" + (f"..{undated[-1]}" if len(undated) > 1 else ""), "no_time",
                f"{len(undated)} command(s) without a time, and no file modification time to place them at",
                count=len(undated)))
        rep.stats.update(rows=timed + untimed, timed=timed, untimed=untimed, commands=order)


def _bash(rep: ArtifactReport, lines: Iterator[tuple[int, str]]) -> Iterator[_Entry]:
    """``#<epoch>`` dates the following lines, up to the next ``#<epoch>``, as one command; lines before
    the first one are one command each, without a time."""
    cur: _Entry | None = None

    def done(e: _Entry) -> _Entry:
        if not "".join(e.parts).strip():
            rep.warn("empty_command", "a time line with no command after it", f"line={e.extra['time_line']}")
        return _trim(e)

    for n, line in lines:
        m = _BASH_TS.match(line)
        if m:
            if cur is not None:
                yield done(cur)
            cur = _Entry(n + 1, int(m[1]), extra={"time_line": n})
        elif cur is not None:
            cur.parts.append(line)
        elif line.strip():
            yield _Entry(n, None, [line])
    if cur is not None:
        yield done(cur)


def _trim(e: _Entry) -> _Entry:
    while len(e.parts) > 1 and not e.parts[-1].strip():  # trailing blank lines of a multi-line command
        e.parts.pop()
    return e


def _continued(rep: ArtifactReport, lines: Iterator[tuple[int, str]], mark: str, timed: re.Pattern | None) -> Iterator[_Entry]:
    """One command per line, a line ending in ``mark`` continuing on the next (zsh: backslash,
    PowerShell: backtick); zsh's ``: start:elapsed;`` prefix dates a command."""
    cur: _Entry | None = None
    for n, line in lines:
        if cur is not None and cur.cont:
            text = line
        else:
            if cur is not None:
                yield cur
                cur = None
            m = timed.match(line) if timed is not None else None
            if m:
                cur = _Entry(n, int(m[1]), extra={"elapsed_seconds": int(m[2])})
                text = m[3]
            elif line.strip():
                cur = _Entry(n)
                text = line
            else:
                continue
        cur.cont = text.endswith(mark)
        cur.parts.append(text[:-1] if cur.cont else text)
    if cur is not None:
        if cur.cont:
            rep.warn("truncated", "the last command ends with a continuation mark and no next line", f"line={cur.line}")
        yield cur


def _fish(rep: ArtifactReport, lines: Iterator[tuple[int, str]]) -> Iterator[_Entry]:
    cur: _Entry | None = None
    unparsed: list[int] = []
    for n, line in lines:
        m = _FISH_CMD.match(line)
        if m:
            if cur is not None:
                yield cur
            cur = _Entry(n, None, [_unescape_fish(m[1])])
            continue
        if cur is None:
            if line.strip():
                unparsed.append(n)
            continue
        if (w := _FISH_WHEN.match(line)):
            try:
                cur.ts = int(w[1])
            except ValueError:
                rep.warn("bad_time", f"fish 'when' is not a number: {w[1]!r}", f"line={n}")
        elif line.rstrip() == "  paths:":
            cur.extra.setdefault("paths", [])
        elif (p := _FISH_PATH.match(line)) and "paths" in cur.extra:
            cur.extra["paths"].append(_unescape_fish(p[1]))
        elif line.strip():
            unparsed.append(n)
    if cur is not None:
        yield cur
    if unparsed:
        rep.warn("unparsed_line", f"{len(unparsed)} line(s) that are not fish history fields (first: line {unparsed[0]})",
                 f"line={unparsed[0]}")
