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
import lzma
import os
import zlib
from dataclasses import dataclass
from typing import IO, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from timeline.custody import open_evidence
from timeline.errors import UnknownFormat
from timeline.schema import TZ_ANALYST, TZ_ASSUMED_UTC

__all__ = ["open_text", "read_head", "lines", "Clock", "syslog_years", "MONTHS", "compression"]

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
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000 + ns


def ns_of(aware: _dt.datetime, ns: int | None = None) -> int:
    """UTC nanoseconds of an aware datetime (``ns`` replaces the microseconds when given)."""
    if ns is not None:
        aware = aware.replace(microsecond=0)
        return _ns(aware, ns)
    return _ns(aware)


def syslog_years(months: list[int] | np.ndarray, end_year: int, end_month: int) -> tuple[list[int] | np.ndarray, int]:
    """Years for a file's year-less lines, in file order.

    The last line was written no later than the file's modification time (``end_year``,
    ``end_month``): its year is ``end_year``, or the year before when its month is later than
    the modification month.  Walking backwards, a month at least two *greater* than the one
    after it (Dec then Jan, Mar then Jan) is a New Year roll-over; a step back of one month
    (Apr, May, Apr: rsyslog's repeated-message reduction) is a line written out of order in the
    same year.  This is plaso's rule too (a log does not go back two months in time); with a
    six-month threshold "Mar ..., Jan ..." stayed in one year (found by the plaso parity report).
    Returns the years (a list, or a NumPy array when ``months`` is one) and the number of roll-overs.
    """
    m = np.asarray(months, dtype=np.int64)
    if not len(m):
        return ([] if isinstance(months, list) else m), 0
    roll = np.append(m[:-1] - m[1:] >= 2, False)  # line i is in the year before line i + 1
    years = end_year - (1 if m[-1] > end_month else 0) - np.cumsum(roll[::-1])[::-1]
    return (years.tolist() if isinstance(months, list) else years), int(roll.sum())
