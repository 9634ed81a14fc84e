"""systemd journal files (``*.journal``, ``*.journal~``), read with dissect.target's journal parser.

One entry is one row, ``source`` SYSLOG (the journal is where syslog lines live on systemd
hosts, and the investigation helpers read sshd, sudo and su there as in syslog files),
``artifact`` ``journal:system``, ``journal:user-1000``..., ``timestamp_desc`` "Event Logged".
Times are the entry's realtime stamp, microseconds UTC (``tz_source`` source_utc); no year or
zone is guessed.  Fields: ``host`` from ``_HOSTNAME``, ``provider`` from ``SYSLOG_IDENTIFIER``
(else ``_COMM``), ``process`` ``_EXE`` (else ``_COMM``), ``service_name`` ``_SYSTEMD_UNIT``;
the message's sshd / sudo / su / useradd / cron fields as for syslog; every journal field in
``attrs``.

Damage is counted, not dropped: an entry the parser cannot read is an error with its offset;
a field of an entry that cannot be read is a warning (the entry is kept without it); a header
that announces more entries than the entry arrays reach is an error with the difference.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterator

import orjson
import pyarrow as pa

from collectors.base import Artifact, Collector, RecordError, read_magic
from collectors.syslog import extract
from timeline.custody import open_evidence
from timeline.errors import UnknownFormat
from timeline.schema import TZ_SOURCE_UTC, event_hash

__all__ = ["JournalCollector"]

log = logging.getLogger(__name__)

MAGIC = b"LPKSHHRH"


class _Capture:
    """Stands in for dissect's Target: the journal parser reports what it skips through ``target.log``."""

    def __init__(self) -> None:
        self.log = self
        self.messages: list[str] = []

    def warning(self, msg: str, *args: Any) -> None:
        self.messages.append(msg % args if args else msg)

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass


def _artifact(name: str) -> str:
    base = os.path.basename(name).split("@", 1)[0].removesuffix("~").removesuffix(".journal")
    return f"journal:{base or 'system'}"


class JournalCollector(Collector):
    name = "journal"
    source = "SYSLOG"
    engines = ("dissect.target",)
    parser = ("dissect.target-journal", "dissect.target")


    @classmethod
    def matches(cls, path: str) -> bool:
        return read_magic(path, 8) == MAGIC

    @classmethod
    def check_compatible(cls, path: str) -> None:
        if not cls.matches(path):
            raise UnknownFormat(f"{path}: not a systemd journal file (expected magic {MAGIC!r})")

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        from dissect.target.plugins.os.unix.log.journal import JournalFile

        self.check_compatible(artifact.fs_path)
        rep = self.report(artifact)
        cap = _Capture()
        art_name = _artifact(artifact.evidence_path)
        rows = self._rows
        n = 0
        with os.fdopen(open_evidence(artifact.fs_path), "rb") as fh:
            try:
                jf = JournalFile(fh, cap)
            except ValueError as exc:
                raise UnknownFormat(f"{artifact.fs_path}: {exc}") from exc
            announced = int(jf.header.n_entries)
            try:
                for entry in jf:
                    n += 1
                    ts = entry.pop("ts")
                    fields = {k: v for k, v in entry.items()}
                    msg = fields.get("message", "")
                    prog = fields.get("syslog_identifier") or fields.get("comm")
                    pid = fields.get("pid") or fields.get("syslog_pid")
                    host = fields.get("hostname") or artifact.host
                    ns = int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000
                    extra = extract(prog, msg)
                    line = f"{prog}[{pid}]: {msg}" if prog and pid else f"{prog}: {msg}" if prog else msg
                    rows.add(
                        timestamp=ns, timestamp_desc="Event Logged", host=host, source="SYSLOG", artifact=art_name,
                        provider=prog, process=fields.get("exe") or fields.get("comm"), user=extra.get("user"),
                        target_user=extra.get("target_user"), src_ip=extra.get("src_ip"),
                        command_line=extra.get("command_line") or fields.get("cmdline"),
                        service_name=fields.get("systemd_unit") or extra.get("service_name"),
                        message=f"{host} {line}" if host else line,
                        attrs=orjson.dumps({**fields, **{f"parsed_{k}": v for k, v in extra.items()}}).decode(),
                        tags=[], tz_source=TZ_SOURCE_UTC, evidence_id=artifact.evidence_id,
                        evidence_path=artifact.evidence_path,
                        record_ref=f"entry={n} seqnum={fields.get('seqnum', '?')}" if "seqnum" in fields else f"entry={n}",
                        parser=self._parser,
                        event_hash=event_hash("JOURNAL", fields.get("boot_id"), ns, host, prog, pid, msg),
                    )
                    if len(rows) >= batch_rows:
                        yield rows.to_table()
            except (ValueError, EOFError, OSError, IndexError) as exc:  # a broken entry array: what was read stays
                broken = f"entry arrays end early after entry {n} ({type(exc).__name__}: {exc})"
            else:
                broken = None
        for m in cap.messages:
            if "EntryObject" in m:
                rep.errors.append(RecordError(None, "unreadable_entry", m))
            else:
                rep.warn("damage", m)
        lost = announced - n - sum(1 for e in rep.errors if e.kind == "unreadable_entry")
        if lost > 0 or broken:
            rep.errors.append(RecordError(None, "unreadable_entries", f"header announces {announced} entries, {n} read"
                                          + (f"; {broken}" if broken else ""), count=max(lost, 1)))
        rep.stats.update(rows=n, announced=announced)

