"""What the line-oriented log collectors share: reading (compressed) text, zones and years.

Text logs rarely say which zone their times are in and BSD syslog does not even say
which year.  :class:`Clock` turns a local wall-clock time into UTC nanoseconds and
records how the zone was decided (``tz_source``); :func:`syslog_years` decides the
year of year-less lines from the evidence (the file's modification time and the
month roll-overs in the file), never from today's date.
"""

from __future__ import annotations

import bz2
import datetime as _dt
import gzip
import io
import lzma
import os
import zlib
from dataclasses import dataclass
from typing import IO, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from timeline.custody import open_evidence
from timeline.errors import UnknownFormat
from timeline.schema import NS_MAX, NS_MIN, TZ_ANALYST, TZ_ASSUMED_UTC

__all__ = ["open_text", "open_lines", "CappedLines", "LINE_MAX", "read_head", "lines", "Clock", "syslog_years", "year_less_dating", "last_write", "gzip_mtime",
           "MONTHS", "compression"]

MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))


def compression(head: bytes) -> str | None:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def open_text(path: str) -> IO[bytes]:
    """The artifact's bytes, decompressed when gzip/bzip2/xz (by magic, not by name); read-only."""
    fh = os.fdopen(open_evidence(path), "rb")
    kind = compression(fh.peek(6)[:6] if hasattr(fh, "peek") else b"")
    if kind == "gzip":
        return gzip.GzipFile(fileobj=fh, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(fh, "rb")
    if kind == "xz":
        return lzma.LZMAFile(fh, "rb")
    return fh


def read_head(path: str, size: int = 4096) -> bytes:
    """The first ``size`` decompressed bytes (for format sniffing): what could be read of a truncated
    stream, b"" when unreadable."""
    out = b""
    try:
        with open_text(path) as fh:
            while len(out) < size:
                piece = fh.read(min(512, size - len(out)))
                if not piece:
                    break
                out += piece
    except (OSError, EOFError, lzma.LZMAError, zlib.error, UnknownFormat):
        pass
    return out


LINE_MAX = 1 << 20  # bytes of one text line kept; the rest of a longer line is left out, with a counted warning


class CappedLines(io.RawIOBase):
    """A text stream (an :func:`open_text` object) whose lines are cut at ``limit`` bytes, in bounded memory.

    A 1 GB line (a log gone wrong, a hostile file) would otherwise be read whole, and lose the whole file to a
    MemoryError.  The first ``limit`` bytes of a longer line are kept and the rest is skipped up to its line end;
    each cut is a warning of ``rep`` (kind ``line_cut``, ``record_ref`` ``line=N``): nothing else is lost.  Reads
    as the stream does (``read1``/``read``/``peek``), and closes it.
    """

    def __init__(self, fh: IO[bytes], rep=None, limit: int = LINE_MAX):
        super().__init__()
        self._fh = fh
        self._read = getattr(fh, "read1", fh.read)
        self._rep = rep
        self.limit = limit
        self._run = 0  # bytes since the last line end
        self._line = 1  # the line the stream is in
        self._dropped = -1  # bytes of the current line left out; -1: not cutting
        self.cuts: list[tuple[int, int]] = []  # (line, bytes left out)

    def __enter__(self) -> "CappedLines":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._fh.close()
        finally:
            super().close()

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.read1(len(b))
        b[:len(data)] = data
        return len(data)

    def peek(self, size: int = 1) -> bytes:
        return self._fh.peek(size) if hasattr(self._fh, "peek") else b""

    def read1(self, size: int = -1) -> bytes:
        while True:
            chunk = self._read(1 << 16 if size is None or size < 0 else size)
            if not chunk:
                if self._dropped >= 0:  # the last line, without a line end
                    self._cut()
                return b""
            out = self._filter(chunk)
            if out:
                return out

    read = read1

    def _cut(self) -> None:
        self.cuts.append((self._line, self._dropped))
        if self._rep is not None:
            self._rep.warn("line_cut", f"a line of {self.limit + self._dropped:,} bytes: cut at {self.limit:,} bytes, "
                                       f"{self._dropped:,} bytes left out", f"line={self._line}")
        self._dropped = -1

    def _filter(self, chunk: bytes) -> bytes:
        if self._dropped < 0 and self._run + len(chunk) <= self.limit:  # no line can reach the limit here
            nl = chunk.rfind(b"\n")
            if nl < 0:
                self._run += len(chunk)
            else:
                self._line += chunk.count(b"\n")
                self._run = len(chunk) - nl - 1
            return chunk
        out = []
        pos = 0
        while pos < len(chunk):
            nl = chunk.find(b"\n", pos)
            end = len(chunk) if nl < 0 else nl
            seg = end - pos
            if self._dropped >= 0:
                self._dropped += seg
            elif seg > self.limit - self._run:
                room = self.limit - self._run
                out.append(chunk[pos:pos + room])
                self._run += room
                self._dropped = seg - room
            else:
                out.append(chunk[pos:end])
                self._run += seg
            if nl < 0:
                break
            if self._dropped >= 0:
                self._cut()
            out.append(b"\n")
            self._run = 0
            self._line += 1
            pos = nl + 1
        return b"".join(out)


def open_lines(path: str, rep=None, limit: int = LINE_MAX) -> CappedLines:
    """:func:`open_text` for a line-oriented log: lines cut at ``limit`` bytes, each cut a warning of ``rep``."""
    return CappedLines(open_text(path), rep, limit)


def lines(fh: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(line number from 1, text without the line end).  Bytes that are not UTF-8 are kept as
    ``\\xNN`` escapes, never dropped.  A truncated compressed stream yields every line decoded
    before the cut (the partial last line included), then raises."""
    read = getattr(fh, "read1", fh.read)
    n = 0
    tail = b""
    while True:
        try:
            chunk = read(1 << 16)
        except (EOFError, OSError, zlib.error, lzma.LZMAError):
            if tail:  # the partial line before the cut
                yield n + 1, tail.rstrip(b"\r").decode("utf-8", "backslashreplace")
            raise
        if not chunk:
            break
        parts = (tail + chunk).split(b"\n")
        tail = parts.pop()
        for raw in parts:
            n += 1
            yield n, raw.rstrip(b"\r").decode("utf-8", "backslashreplace")
    if tail:  # last line without a line end
        yield n + 1, tail.rstrip(b"\r").decode("utf-8", "backslashreplace")


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownFormat(f"unknown time zone {name!r}") from exc


@dataclass
class Clock:
    """Local wall-clock time → UTC ns, with how the zone was decided.

    ``tz``/``tz_source`` come from the analyst (``--tz``), else the evidence's configuration,
    else UTC is assumed and every row says so.
    """

    tz: str | None = None
    tz_source: str = TZ_ASSUMED_UTC

    def __post_init__(self) -> None:
        if self.tz is None:
            self.tz_source = TZ_ASSUMED_UTC
        self._zone = zone(self.tz) if self.tz else _dt.timezone.utc

    @classmethod
    def for_artifact(cls, tz: str | None, tz_source: str | None) -> "Clock":
        if tz:
            return cls(tz, tz_source or TZ_ANALYST)
        return cls(None, TZ_ASSUMED_UTC)

    def local_ns(self, y: int, mo: int, d: int, h: int, mi: int, s: int, ns: int = 0) -> tuple[int, str | None]:
        """UTC ns of a local time, and a note when the local time is ambiguous (DST fall-back: the
        earlier instant is taken) or does not exist (DST spring-forward gap: read as the offset before)."""
        naive = _dt.datetime(y, mo, d, h, mi, s)
        if self.tz is None:
            return _ns(naive.replace(tzinfo=_dt.timezone.utc), ns), None
        a = naive.replace(tzinfo=self._zone, fold=0)
        b = naive.replace(tzinfo=self._zone, fold=1)
        note = None
        if a.utcoffset() != b.utcoffset():
            back = a.astimezone(_dt.timezone.utc).astimezone(self._zone).replace(tzinfo=None) == naive
            note = (f"ambiguous local time in {self.tz} (DST change): the earlier instant was taken" if back
                    else f"local time does not exist in {self.tz} (DST gap): read with the offset before the change")
        return _ns(a, ns), note


def _ns(aware: _dt.datetime, ns: int = 0) -> int:
    delta = aware - _EPOCH
    out = (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000 + ns
    if not NS_MIN <= out <= NS_MAX:  # what a timestamp[ns] holds (years 1677..2262): the record's error, not the file's
        raise OverflowError(f"time {aware.isoformat()} is out of the range a timestamp[ns] holds (1677..2262)")
    return out


def ns_of(aware: _dt.datetime, ns: int | None = None) -> int:
    """UTC nanoseconds of an aware datetime (``ns`` replaces the microseconds when given)."""
    if ns is not None:
        aware = aware.replace(microsecond=0)
        return _ns(aware, ns)
    return _ns(aware)


def gzip_mtime(path: str) -> int | None:
    """MTIME of a gzip file's header (seconds since the epoch), None when not gzip or not set."""
    with os.fdopen(open_evidence(path), "rb") as fh:
        head = fh.read(8)
    if len(head) == 8 and head[:3] == b"\x1f\x8b\x08":
        t = int.from_bytes(head[4:8], "little")
        return t or None
    return None


def last_write(path: str, mtime_ns: int | None, zone: _dt.tzinfo) -> tuple[_dt.datetime, str] | None:
    """When a file of year-less lines was last written, as a wall-clock time in ``zone``, and what says so;
    None when nothing does.

    gzip keeps the log's own modification time in its header: it survives copies of the .gz file (which
    reset the file's time), so it dates the lines when present (as plaso does); else the file's own.
    """
    gz = gzip_mtime(path)
    if gz is not None:
        return _dt.datetime.fromtimestamp(gz, zone), "gzip header modification time"
    if mtime_ns is not None:
        return _dt.datetime.fromtimestamp(mtime_ns / 1e9, zone), "file modification time"
    return None


def syslog_years(months: list[int] | np.ndarray, end: _dt.date, last_day: int | None = None
                 ) -> tuple[list[int] | np.ndarray, int]:
    """Years for a file's year-less lines, in file order: the one rule every year-less parser uses.

    The last line was written no later than the file's last write ``end`` (its date in the zone the lines
    are read in), so it can never postdate it: its year is ``end``'s, or the year before when its month
    and day (``last_day``; the month alone when None) come after ``end``'s date -- by more than a day,
    as a line's zone and the one that shows ``end`` may disagree by that much (UTC-12 to UTC+14).  A
    ``Dec 10`` line in a file last written on 2025-12-02 is of 2024.  Walking backwards, a month at least
    two *greater* than the one after it (Dec then Jan, Mar then Jan) is a New Year roll-over; a step back
    of one month (Apr, May, Apr: rsyslog's repeated-message reduction) is a line written out of order in
    the same year.  This is plaso's rule too (a log does not go back two months in time); with a
    six-month threshold "Mar ..., Jan ..." stayed in one year (found by the plaso parity report).
    Returns the years (a list, or a NumPy array when ``months`` is one) and the number of roll-overs.
    """
    m = np.asarray(months, dtype=np.int64)
    if not len(m):
        return ([] if isinstance(months, list) else m), 0
    roll = np.append(m[:-1] - m[1:] >= 2, False)  # line i is in the year before line i + 1
    end_date = _dt.date(end.year, end.month, end.day)
    if last_day is None:
        later = int(m[-1]) > end_date.month
    else:
        cutoff = end_date + _dt.timedelta(days=1)  # the latest date a line of end's year can show
        later = cutoff.year == end_date.year and (int(m[-1]), last_day) > (cutoff.month, cutoff.day)
    years = end_date.year - (1 if later else 0) - np.cumsum(roll[::-1])[::-1]
    return (years.tolist() if isinstance(months, list) else years), int(roll.sum())


def year_less_dating(months: list[int] | np.ndarray, last_day: int | None, path: str, mtime_ns: int | None,
                     zone: _dt.tzinfo) -> tuple[list[int] | np.ndarray, int, str] | None:
    """(years, roll-overs, ``year_source``) of a file's year-less lines (:func:`syslog_years` from
    :func:`last_write`), or None when nothing tells when the file was last written."""
    lw = last_write(path, mtime_ns, zone)
    if lw is None:
        return None
    end, what = lw
    years, rolls = syslog_years(months, end, last_day)
    return years, rolls, f"{what} {end.date().isoformat()}" + (f", {rolls} New Year roll-over(s)" if rolls else "")
