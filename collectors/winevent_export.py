"""Windows events exported as text by SIEM pipelines → the same rows as EVTX.

Responders often receive a SIEM export instead of the ``.evtx`` files.  Each export becomes exactly
the rows the EVTX collector gives for the same events, so the hunt helpers and Sigma apply unchanged:
``source`` EVTX, ``channel``, ``event_id``, ``provider``, ``host`` (the event's Computer), the fields of
:func:`collectors.evtx_events.extract` (user, process, command line, logon type, addresses...) and
``attrs`` ``{"Event": {"System": {...}, "EventData": {...}}}`` in the Rust EVTX parser's JSON shape
(``$.Event.EventData.<Field>`` for Sigma).  What tells them apart: ``artifact`` ``winevent-json:<Channel>``
or ``winevent-xml:<Channel>`` (EVTX: ``evtx:<Channel>``), ``parser`` ``forensics-winevent-json/<version>``,
``record_ref`` ``line=N`` (``line=N part=K`` for several events on one line).

Formats, recognised by content (the first non-empty line that is not a ``#`` comment), plain or
gzip/bzip2/xz:

``json``  one JSON object per line:

    * NXLog ``im_msvistalog`` (alone or through Logstash, as in the OTRF/Mordor and Splunk
      attack_data sets): System fields under NXLog's names (``EventID``, ``Channel``, ``Hostname``,
      ``SourceName``/``ProviderName``, ``RecordNumber``, ``ProviderGuid``, ``Version``, ``Level``,
      ``Task``, ``OpcodeValue``, ``Keywords``, ``ActivityID``, ``ExecutionProcessID``, ``UserID``...),
      the rendered ``Message``, pipeline fields (``EventReceivedTime``, ``@timestamp``, ``host``...) and
      every EventData field flat at the top level.  Every key not in :data:`SYSTEM_KEYS` or
      :data:`PIPELINE_KEYS` is EventData.  ``ProcessID``/``ThreadID`` are the System's (NXLog writes
      them as numbers) unless they are text (then an EventData field, as 5156's ``ProcessID``).
    * Azure Log Analytics rows (Sentinel ``SecurityEvent``/``WindowsEvent``: ``Computer``,
      ``EventSourceName``/``Provider``, ``TimeGenerated``, ``EventData`` as an XML or JSON string).
    * Log Analytics ``Syslog`` rows whose ``SyslogMessage`` is an ``<Event>`` (Sysmon for Linux).
``xml``   ``<Event xmlns=...>...</Event>`` records (Splunk ``XmlWinEventLog``, Sysmon for Linux), one
          per line or spread over lines (values with line breaks), read like python-evtx's XML.

Row schema (the columns as for EVTX; ``attrs``):

* ``attrs.Event.System``: the System fields (Provider, EventID, Version, Level, Task, Opcode, Keywords,
  TimeCreated, EventRecordID, Correlation, Execution, Channel, Computer, Security), derived;
* ``attrs.Event.EventData``: the event's data fields (``UserData`` for XML records that have it);
* ``attrs.Event.RenderingInfo.Message``: the rendered message the export carried;
* ``attrs.Export``: every other field of the JSON object, verbatim (the export's own names and
  values for the System fields among them): EventData + Export + Message is the whole line;
* ``attrs.Record``: ``time_field`` (which field gave the time) and, when needed, a note on it
  (``time_note``) or on a record read after a repair (``repaired``: cut short by the pipeline, bare ``&``).

Time: an XML record's ``SystemTime``, else ``TimeCreated``, ``EventTime`` or ``TimeGenerated`` with their
own zone (``Z``: ``tz_source`` source_utc; ``+05:30``: embedded_offset), else one of them without a zone
(NXLog writes ``EventTime`` in the exporting machine's local time): read in ``--tz``, the evidence's
zone, else UTC assumed (:class:`collectors.text.Clock`, ``tz_source`` analyst / evidence_config /
assumed_utc), else ``@timestamp`` (the pipeline's receipt time, UTC; ``attrs.Record.time_field`` says
so).  Every sub-second digit is kept (to the nanosecond).  Zone-less times are compared with the
event's own UTC times (Sysmon's ``UtcTime``, else ``@timestamp``), and times that state their zone with
Sysmon's ``UtcTime``: gaps of whole quarter hours are a warning naming the offset (OTRF's 2023 sets label
local time ``Z``); the times are kept as read.

Channels are spelled as Windows names them (``security`` → ``Security``) for the channels the hunt
helpers and the extractors know; the export's spelling stays in ``attrs.Export.Channel``.

``event_hash``: the EVTX key (computer, channel, provider, event id, record id, time) when the export
carries the record number, so an event read from both an EVTX file and an export with the same time
is one row with two sightings; otherwise the line's content and its occurrence count in the file
(identical lines are distinct events; a copy of the file merges with it).

Bad input: a line that is not JSON / not XML, an object that is not a Windows event (no EventID), a
record without any valid time, a line longer than :data:`MAX_LINE` and zero-filled (NUL) regions are
counted errors with their line number and reason; NUL bytes before a record on its line are skipped
(a warning); ``#`` comment lines outside records are counted in ``stats`` and a warning.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import re
import zlib
import lzma
from importlib.metadata import version
from typing import Any, Iterator

import orjson
import pyarrow as pa

from collectors.base import Artifact, Collector, RecordError
from collectors.evtx import _canon_xml, _event_json
from collectors.evtx_events import EXTRACTORS, extract
from collectors.text import Clock, open_text, read_head
from timeline.errors import UnknownFormat
from timeline.schema import NS_MAX as _NS_MAX, NS_MIN as _NS_MIN, TZ_EMBEDDED_OFFSET, TZ_SOURCE_UTC, iso_ns

__all__ = ["WinEventExportCollector", "export_kind", "SYSTEM_KEYS", "PIPELINE_KEYS", "MAX_LINE", "MAX_BATCH_BYTES"]

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 64 << 20  # rows are handed on before their attrs (whole events, often KiBs each) pass this
MAX_LINE = 64 << 20  # a longer "line" (a NUL run, a binary file) is an error, read no further than this
_BLOCK = 1 << 20

# JSON keys that are System fields (NXLog, Log Analytics names) -> canonical System key (evtx._DISSECT_SYSTEM's)
SYSTEM_KEYS = {
    "EventID": "EventID", "SourceName": "Provider", "ProviderName": "Provider", "Provider": "Provider",
    "EventSourceName": "Provider", "ProviderGuid": "ProviderGuid", "Version": "Version", "Level": "Level",
    "Task": "Task", "OpcodeValue": "Opcode", "Keywords": "Keywords", "RecordNumber": "EventRecordID",
    "EventRecordID": "EventRecordID", "ActivityID": "ActivityID", "RelatedActivityID": "RelatedActivityID",
    "ExecutionProcessID": "ProcessID", "ExecutionThreadID": "ThreadID", "Channel": "Channel",
    "Hostname": "Computer", "Computer": "Computer", "UserID": "UserID", "Qualifiers": "Qualifiers",
}
# Fields a pipeline adds (NXLog's own, Logstash's, Log Analytics'): kept in attrs.Export, never EventData
PIPELINE_KEYS = frozenset({
    "EventTime", "EventReceivedTime", "TimeCreated", "TimeGenerated", "@timestamp", "@version", "host", "port",
    "tags", "type", "Severity", "SeverityValue", "EventType", "Category", "Opcode", "Domain", "AccountName",
    "AccountType", "SourceModuleName", "SourceModuleType", "ERROR_EVT_UNRESOLVED", "EventTypeOrignal",
    "TenantId", "SourceSystem", "MG", "ManagementGroupName", "_ResourceId", "Type", "Activity",
    "SourceComputerId", "EventOriginId", "EventLevel", "EventLevelName", "EventData", "SyslogMessage",
    "HostName", "HostIP", "Facility", "SeverityLevel", "ProcessName_syslog",
})
_MESSAGE = "Message"
# time fields of a JSON line, in the order they are tried (@timestamp last: the pipeline's receipt time)
_TIME_FIELDS = ("TimeCreated", "EventTime", "TimeGenerated")
_RECEIPT = "@timestamp"

# channels as Windows spells them, for exports that lower-case them ("security")
_CHANNELS = {c.lower(): c for c in {ch for ch, _ in EXTRACTORS} | {
    "Application", "Setup", "ForwardedEvents", "Directory Service", "DNS Server", "File Replication Service",
    "Microsoft-Windows-TaskScheduler/Operational", "Microsoft-Windows-WMI-Activity/Operational",
    "Microsoft-Windows-Bits-Client/Operational", "Microsoft-Windows-WinRM/Operational",
    "Microsoft-Windows-SMBServer/Security", "Microsoft-Windows-Windows Firewall With Advanced Security/Firewall",
    "Microsoft-Windows-NTLM/Operational", "Microsoft-Windows-CodeIntegrity/Operational"}}

_ISO = re.compile(r"\s*(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?\s*(Z|UTC|[+-]\d\d:?\d\d)?\s*$")
_EPOCH_ORD = _dt.date(1970, 1, 1).toordinal()
_XML_START = re.compile(r"<Event[\s>/]")
_XML_END = "</Event>"
_BARE_AMP = re.compile(r"&(?!(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);)")
_UID = re.compile(r"<Security\s+UserI[Dd]=['\"]([^'\"]*)['\"]")
_QUARTER = 900 * 10**9
_BOM_WS = b"\xef\xbb\xbf \t\r\n"


def _first_record_line(path: str) -> str | None:
    """The first non-empty line that is not a ``#`` comment (up to 1 MiB of it), or None."""
    head = read_head(path, 4096)
    if not head or head.lstrip(_BOM_WS)[:1] not in (b"{", b"<", b"#"):
        return None
    line, complete = _first_line(head.lstrip(_BOM_WS), len(head) < 4096)
    if not complete:  # the line (or the comments before it) go on past what was read
        head = read_head(path, 1 << 20)
        line, _ = _first_line(head.lstrip(_BOM_WS), True)
    return line


def _first_line(head: bytes, eof: bool) -> tuple[str | None, bool]:
    lines = head.split(b"\n")
    for i, raw in enumerate(lines):
        line = raw.strip()
        if line and not line.startswith(b"#"):
            if b"\x00" in line:
                return None, True
            return line.decode("utf-8", "replace"), eof or i < len(lines) - 1
    return None, eof


def export_kind(path: str) -> str | None:
    """``json`` or ``xml`` when ``path`` is a Windows event export (by its first record), else None."""
    line = _first_record_line(path)
    if line is None:
        return None
    if _XML_START.match(line):
        return "xml"
    if line.startswith("{"):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            # a first line longer than what was read: the keys must still say so
            return "json" if '"EventID"' in line and ('"Channel"' in line or '"SourceName"' in line) else None
        return "json" if isinstance(obj, dict) and _is_event(obj) else None
    return None


def _is_event(o: dict) -> bool:
    sm = o.get("SyslogMessage")
    if sm.__class__ is str and _XML_START.match(sm):
        return True
    return "EventID" in o and any(k in o for k in ("Channel", "SourceName", "ProviderName", "EventSourceName", "Provider"))


def _int(v: Any) -> int | None:
    if v is None or v.__class__ is int:
        return v
    try:
        return int(str(v).strip(), 0)
    except ValueError:
        try:
            return int(str(v).strip())
        except ValueError:
            return None


def _time(text: Any) -> tuple[tuple[int, ...], int | None] | None:
    """((y, mo, d, h, mi, s, ns), offset seconds or None when the text has no zone) of an ISO 8601 time."""
    if text.__class__ is not str:
        return None
    m = _ISO.match(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, off = m.groups()
    ns = int(frac[:9].ljust(9, "0")) if frac else 0
    if off is None:
        sec = None
    elif off in ("Z", "UTC"):
        sec = 0
    else:
        o = off.replace(":", "")
        sec = (1 if o[0] == "+" else -1) * (int(o[1:3]) * 3600 + int(o[3:5]) * 60)
    return (int(y), int(mo), int(d), int(h), int(mi), int(s), ns), sec


def _utc_ns(parts: tuple[int, ...], offset: int) -> int:
    y, mo, d, h, mi, s, ns = parts
    if h > 23 or mi > 59 or s > 60:
        raise ValueError("time of day out of range")
    days = _dt.date(y, mo, d).toordinal() - _EPOCH_ORD
    return ((days * 86400 + h * 3600 + mi * 60 + s) - offset) * 1_000_000_000 + ns


def _lines(fh, rep, cut_ref: list) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes without the line end); lines over MAX_LINE are reported and skipped."""
    read = getattr(fh, "read1", fh.read)
    n = 0
    tail = b""
    skipping = False
    while True:
        chunk = read(_BLOCK)
        if not chunk:
            break
        parts = (tail + chunk).split(b"\n")
        tail = parts.pop()
        for raw in parts:
            n += 1
            if skipping:
                skipping = False
                continue
            yield n, raw
        if len(tail) > MAX_LINE:
            if not skipping:
                rep.errors.append(RecordError(f"line={n + 1}", "line_too_long",
                                              f"line longer than {MAX_LINE} bytes (starts {tail[:60]!r}): not read"))
            skipping, tail = True, b""
    if tail and not skipping:
        yield n + 1, tail
    cut_ref.append(n + (1 if tail else 0))


class WinEventExportCollector(Collector):
    name = "winevent_export"
    source = "EVTX"
    engines = ("winevent_export",)
    parser = ("forensics-winevent-export", "forensics")

    @classmethod
    def matches(cls, path: str) -> bool:
        return export_kind(path) is not None

    @classmethod
    def check_compatible(cls, path: str) -> None:
        if export_kind(path) is None:
            raise UnknownFormat(f"{path}: not a Windows event export (expected JSON lines with EventID and Channel "
                                "(NXLog, Log Analytics) or <Event> XML records (Splunk XmlWinEventLog))")

    # -----------------------------------------------------------------------------------------

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        kind = export_kind(artifact.fs_path)
        if kind is None:
            self.check_compatible(artifact.fs_path)
        rep = self.report(artifact)
        ver = version("forensics")
        self._parsers = {k: f"forensics-winevent-{k}/{ver}" for k in ("json", "xml")}
        self._art = artifact
        self._rep = rep
        self._clock = Clock.for_artifact(artifact.tz, artifact.tz_source)
        self._seen: dict[str, int] = {}
        self._gaps: dict[int, int] = {}  # zone-less time minus the event's UTC time, in quarter hours -> rows
        self._stated_gaps: dict[int, int] = {}  # the same for times with their own zone (vs Sysmon's UtcTime)
        self._zoneless = self._stated = 0
        self._n = 0
        self._held = getattr(self, "_held", 0)  # attrs bytes of the rows buffered (of any artifact read so far)
        stats = rep.stats
        stats.update(format=kind, lines=0, rows=0, comment_lines=0)
        read_to: list[int] = []
        try:
            with open_text(artifact.fs_path) as fh:
                records = self._json(fh, read_to) if kind == "json" else self._xml(fh, read_to)
                for ref, fmt, item in records:
                    self._row(ref, fmt, item)
                    if len(self._rows) >= batch_rows or self._held >= MAX_BATCH_BYTES:
                        self._held = 0
                        yield self._rows.to_table()
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            rep.errors.append(RecordError(f"line={(read_to or [self._n])[-1] + 1}", "truncated",
                                          f"stream ended early: {type(exc).__name__}: {exc}"))
        stats["lines"] = read_to[-1] if read_to else self._n
        if stats["comment_lines"]:
            rep.warn("comment_lines", f"{stats['comment_lines']} '#' comment line(s) outside the records skipped")
        if self._gaps:
            gap, rows = max(self._gaps.items(), key=lambda kv: kv[1])
            h, m = divmod(abs(gap) * 15, 60)
            off = f"{'-' if gap < 0 else '+'}{h:02d}:{m:02d}"
            rep.warn("zone_mismatch",
                     f"{sum(self._gaps.values())} of {self._zoneless} time(s) without a zone, read in "
                     f"{self._clock.tz or 'UTC (assumed)'}, are whole quarter hours off the event's own UTC time "
                     f"(Sysmon UtcTime, else @timestamp), mostly by {off} ({rows} rows): "
                     + (f"the export's local zone seems to be UTC{off}; collect with --tz"
                        if self._clock.tz is None and abs(gap) <= 56 else "check --tz and the exporter's clock"))
        if self._stated_gaps:
            gap, rows = max(self._stated_gaps.items(), key=lambda kv: kv[1])
            h, m = divmod(abs(gap) * 15, 60)
            rep.warn("zone_mismatch",
                     f"{sum(self._stated_gaps.values())} of {self._stated} time(s) that state their zone are whole quarter "
                     f"hours off the same event's Sysmon UtcTime, mostly by {'-' if gap < 0 else '+'}{h:02d}:{m:02d} "
                     f"({rows} rows): the exporter may have labelled local time as UTC; the times are kept as stated")

    def finish(self) -> Iterator[pa.Table]:
        self._held = 0
        yield from super().finish()

    # --- splitting the file into records ------------------------------------------------------

    def _json(self, fh, read_to: list) -> Iterator[tuple[str, str, Any]]:
        rep = self._rep
        for n, raw in _lines(fh, rep, read_to):
            self._n = n
            ref = f"line={n}"
            if b"\x00" in raw:
                stripped = raw.strip(b"\x00")
                if not stripped.strip():
                    rep.errors.append(RecordError(ref, "nul_bytes", f"zero-filled (NUL) region of {len(raw)} bytes"))
                    continue
                if b"\x00" not in stripped:
                    rep.warn("nul_bytes", f"{len(raw) - len(stripped)} NUL byte(s) around the record skipped", ref)
                    raw = stripped
            text = raw.strip()
            if not text:
                continue
            if text[:1] == b"#":
                rep.stats["comment_lines"] += 1
                continue
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                rep.errors.append(RecordError(ref, "bad_json", f"not a JSON object ({exc}): {_show(text)}"))
                continue
            if obj.__class__ is not dict:
                rep.errors.append(RecordError(ref, "bad_json", f"a JSON {type(obj).__name__}, not an object: {_show(text)}"))
                continue
            yield ref, "json", (obj, text)

    def _xml(self, fh, read_to: list) -> Iterator[tuple[str, str, Any]]:
        """<Event>...</Event> records, wherever lines break (several on one line, one over several lines)."""
        rep = self._rep
        buf: list[str] = []  # the record being read
        start = 0
        for n, raw in _lines(fh, rep, read_to):
            self._n = n
            line = raw.decode("utf-8", "backslashreplace")
            if "\x00" in line:
                if not line.strip("\x00").strip():
                    rep.errors.append(RecordError(f"line={n}", "nul_bytes", f"zero-filled (NUL) region of {len(raw)} bytes"))
                    if buf:
                        rep.errors.append(RecordError(f"line={start}", "bad_xml", "record cut by a zero-filled region: "
                                                      + _show("\n".join(buf).encode())))
                        buf = []
                    continue
                stripped = line.strip("\x00")
                if "\x00" not in stripped:
                    rep.warn("nul_bytes", f"{len(line) - len(stripped)} NUL byte(s) around the record skipped", f"line={n}")
                    line = stripped
            part = 0
            pos = 0
            while pos < len(line):
                if not buf:
                    m = _XML_START.search(line, pos)
                    rest = line[pos:m.start() if m else len(line)].strip()
                    if rest:
                        if rest.startswith("#") and pos == 0:
                            rep.stats["comment_lines"] += 1
                        else:
                            rep.errors.append(RecordError(f"line={n}", "bad_xml", f"text outside an <Event> record: {_show(rest.encode())}"))
                    if m is None:
                        break
                    pos = m.start()
                    start = n
                    part += 1
                    after = pos + 1  # a new record's start, looked for past this one's own
                else:
                    after = pos
                end = line.find(_XML_END, pos)
                nxt = _XML_START.search(line, after)
                if nxt is not None and (end < 0 or nxt.start() < end):
                    # a record starts before this one ends: this one was cut (what it holds is read, if it can be)
                    buf.append(line[pos:nxt.start()])
                    yield f"line={start}" + (f" part={part}" if part > 1 else ""), "xml", "\n".join(buf)
                    buf = []
                    pos = nxt.start()
                    continue
                if end < 0:
                    buf.append(line[pos:])
                    break
                buf.append(line[pos:end + len(_XML_END)])
                pos = end + len(_XML_END)
                text = "\n".join(buf)
                buf = []
                more = _XML_START.search(line, pos) is not None
                ref = f"line={start}" + (f" part={part}" if part > 1 or (more and start == n) else "")
                yield ref, "xml", text
        if buf:
            rep.errors.append(RecordError(f"line={start}", "bad_xml", "record not closed before the end of the file: "
                                          + _show("\n".join(buf).encode())))

    # --- one record ----------------------------------------------------------------------------

    def _row(self, ref: str, fmt: str, item: Any) -> None:
        rep = self._rep
        try:
            if fmt == "json":
                rec = self._from_json(*item)
                key_text = item[1]
            else:
                rec = self._from_xml(item)
                key_text = item.encode("utf-8", "surrogatepass")
        except _NotAnEvent as exc:
            rep.errors.append(RecordError(ref, exc.kind, str(exc)))
            return
        if rec is None:
            return
        s, d, body, export, times, fmt = rec
        repaired = body.pop("Repaired", None)
        if repaired:
            rep.warn("repaired_record", repaired, ref)
        ts = self._event_time(ref, times, export, d)
        if ts is None:
            return
        ns, tz_source, record = ts
        if repaired:
            record["repaired"] = repaired
        channel = s["Channel"]
        if channel is not None:
            channel = _CHANNELS.get(channel.lower(), channel)
            s["Channel"] = channel
        computer = s["Computer"] or self._art.host
        if s["TimeCreated"] is None:
            s["TimeCreated"] = iso_ns(ns)
        ej = _event_json(s, body)
        top: dict[str, Any] = {"Record": record}
        if export:
            top["Export"] = export
        attrs = orjson.dumps(top, default=str, option=orjson.OPT_NON_STR_KEYS).decode()[:-1] + "," + ej[1:]
        f = extract(s, d)
        g = f.get
        eid, provider, rid = s["EventID"], s["Provider"], s["EventRecordID"]
        if rid is not None:
            key = f"EVTX\x1f{computer or ''}\x1f{channel or ''}\x1f{provider or ''}\x1f{'' if eid is None else eid}\x1f{rid}\x1f{ns}"
        else:
            digest = hashlib.sha256(key_text).hexdigest()
            k = self._seen[digest] = self._seen.get(digest, 0) + 1
            key = f"EVTX-export\x1f{computer or ''}\x1f{channel or ''}\x1f{provider or ''}\x1f{'' if eid is None else eid}\x1f{ns}\x1f{digest}\x1f{k}"
        a = self._art
        self._rows.append((
            ns, "Event Logged", computer, "EVTX", f"winevent-{fmt}:{channel or 'unknown'}", eid, channel, provider,
            g("user"), g("target_user"), g("logon_type"), g("src_ip"), g("src_host"), g("dst_ip"), g("dst_port"),
            g("process"), g("parent_process"), g("command_line"), g("path"), g("service_name"),
            f["message"], attrs, [], tz_source, a.evidence_id, a.evidence_path, ref, self._parsers[fmt],
            hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32],
        ))
        rep.stats["rows"] += 1
        self._held += len(attrs)

    def _from_json(self, o: dict, text: bytes):
        sm = o.get("SyslogMessage")
        if sm.__class__ is str and _XML_START.match(sm):  # Log Analytics Syslog row carrying an <Event>
            s, d, body, _, times, _ = self._from_xml(sm)
            export = {k: v for k, v in o.items() if k != "SyslogMessage"}
            return s, d, body, export, times + _json_times(o), "json"
        if "EventID" not in o:
            raise _NotAnEvent("not_an_event", f"a JSON object without EventID (keys {', '.join(list(o)[:8])}...)")
        s = dict.fromkeys(_CANON, None)
        d: dict[str, Any] = {}
        export: dict[str, Any] = {}
        message = None
        for k, v in o.items():
            c = SYSTEM_KEYS.get(k)
            if c is not None:
                if s[c] is None:
                    s[c] = v
                export[k] = v
            elif k in PIPELINE_KEYS:
                export[k] = v
            elif k == _MESSAGE:
                message = v
            elif k in ("ProcessID", "ThreadID") and v.__class__ is int:  # NXLog's System Execution ids
                if s[k] is None:
                    s[k] = v
                export[k] = v
            else:
                d[k] = v
        ed = o.get("EventData")
        if ed.__class__ is str:  # Log Analytics: the EventData as an XML or JSON string
            d.update(_event_data_text(ed))
        elif ed.__class__ is dict:
            d.update(ed)
        s["EventID"] = _int(s["EventID"])
        for k in ("Version", "Level", "Task", "Opcode", "ProcessID", "ThreadID", "Qualifiers"):
            if s[k] is not None and s[k].__class__ is not int:
                s[k] = _int(s[k])
        kw = s["Keywords"]
        if kw.__class__ is int:  # NXLog writes the 64-bit mask as a signed number; EVTX renders it in hex
            s["Keywords"] = f"0x{kw & 0xFFFFFFFFFFFFFFFF:x}"
        if s["EventRecordID"] is not None:
            s["EventRecordID"] = _int(s["EventRecordID"])
        body: dict[str, Any] = {"EventData": d}
        if message is not None:
            body["RenderingInfo"] = {"Message": message}
        return s, d, body, export, _json_times(o), "json"

    def _from_xml(self, text: str):
        cut = None
        try:
            s, d, body = _canon_xml(text)
        except Exception as exc:  # ParseError and odd values alike
            # a record cut short by the pipeline (syslog's message size): what was sent before the cut is kept
            # and bare '&' (Sysmon for Linux writes "&lt unknown process&gt "), kept as the characters they are
            fixed = _BARE_AMP.sub("&amp;", text)
            short = _close_cut(fixed)
            try:
                if fixed != text and "</Event>" in fixed[-10:]:
                    try:
                        s, d, body = _canon_xml(fixed)
                        cut = "bare '&' read as the character (not an XML entity)"
                    except Exception:
                        cut = None
                if cut is None:
                    if short is None:
                        raise ValueError
                    s, d, body = _canon_xml(short)
                    cut = (f"record cut short after {len(text)} characters ({type(exc).__name__}: {exc}): "
                           "the fields after the last complete one are lost")
            except Exception:
                raise _NotAnEvent("bad_xml", f"not a readable <Event> record ({type(exc).__name__}: {exc}): "
                                             f"{_show(text.encode('utf-8', 'surrogatepass'))}") from None
        if s["UserID"] is None and (m := _UID.search(text)):  # Sysmon for Linux writes UserId
            s["UserID"] = m.group(1)
        if s["EventID"] is None:
            raise _NotAnEvent("not_an_event", f"an <Event> record without EventID: {_show(text.encode())}")
        if cut is not None:
            body["Repaired"] = cut
        return s, d, body, None, [("SystemTime", s["TimeCreated"])], "xml"

    def _event_time(self, ref: str, times: list[tuple[str, Any]], export: dict | None,
                    d: dict) -> tuple[int, str, dict] | None:
        """(UTC ns, tz_source, attrs.Record) from the first time field that reads; zone-less ones after those
        with a zone, the pipeline's receipt time last."""
        parsed = [(name, t) for name, v in times if (t := _time(v)) is not None]
        order = [p for p in parsed if p[1][1] is not None and p[0] != _RECEIPT]
        order += [p for p in parsed if p[1][1] is None and p[0] != _RECEIPT]
        order += [p for p in parsed if p[0] == _RECEIPT and p[1][1] is not None]
        problems = []
        for name, (parts, off) in order:
            try:
                if off is None:
                    ns, note = self._clock.local_ns(*parts)
                    tz_source = self._clock.tz_source
                else:
                    ns, note = _utc_ns(parts, off), None
                    tz_source = TZ_SOURCE_UTC if off == 0 else TZ_EMBEDDED_OFFSET
            except (ValueError, OverflowError) as exc:
                problems.append(f"{name}: {exc}")
                continue
            if not _NS_MIN < ns < _NS_MAX:
                problems.append(f"{name}: {_dt.date(*parts[:3]).isoformat()} is out of the timeline's range")
                continue
            record: dict[str, Any] = {"time_field": name}
            if name == _RECEIPT:
                record["time_note"] = "the pipeline's receipt time (@timestamp): the export has no event time"
            if note:
                record["time_note"] = note
            if problems:
                record["time_problems"] = problems
            if name != _RECEIPT:
                self._check_zone(ns, export, d, off is None)
            return ns, tz_source, record
        self._rep.errors.append(RecordError(ref, "no_valid_time", "no valid event time ("
                                            + ("; ".join(problems) or f"none of {', '.join(n for n, _ in times) or 'the time fields'} present")
                                            + ")"))
        return None

    def _check_zone(self, ns: int, export: dict | None, d: dict, zoneless: bool) -> None:
        """Count the rows whose time is whole quarter hours off the event's own UTC time: Sysmon's ``UtcTime``,
        or for a time without a zone the pipeline's ``@timestamp``."""
        gaps = self._gaps if zoneless else self._stated_gaps
        if zoneless:
            self._zoneless += 1
        else:
            self._stated += 1
        ref = _time(d.get("UtcTime"))
        if ref is None or ref[1] not in (None, 0):
            if not zoneless:
                return
            ref = _time((export or {}).get(_RECEIPT))
            if ref is None or ref[1] is None:
                return
        try:
            utc = _utc_ns(ref[0], ref[1] or 0)
        except (ValueError, OverflowError):
            return
        delta = ns - utc
        gap = round(delta / _QUARTER)
        # whole quarter hours (within 2 minutes: Sysmon logs its events a little late), less than 26 h: a zone mix-up
        if gap and abs(delta - gap * _QUARTER) <= 120 * 10**9 and abs(gap) < 104:
            gaps[gap] = gaps.get(gap, 0) + 1


_CANON = ("Provider", "ProviderGuid", "EventSourceName", "EventID", "Qualifiers", "Version", "Level", "Task", "Opcode",
          "Keywords", "TimeCreated", "EventRecordID", "ActivityID", "RelatedActivityID", "ProcessID", "ThreadID",
          "Channel", "Computer", "UserID")


class _NotAnEvent(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _json_times(o: dict) -> list[tuple[str, Any]]:
    return [(k, o[k]) for k in (*_TIME_FIELDS, _RECEIPT) if k in o]


def _event_data_text(text: str) -> dict[str, Any]:
    """Log Analytics' EventData column: ``<EventData><Data Name=..>`` XML or a JSON object, as a dict."""
    t = text.lstrip()
    if t.startswith("{"):
        try:
            v = orjson.loads(t)
            return v if isinstance(v, dict) else {"EventData": text}
        except orjson.JSONDecodeError:
            return {"EventData": text}
    if t.startswith("<"):
        import xml.etree.ElementTree as ET

        try:
            root = ET.fromstring(t)
        except ET.ParseError:
            return {"EventData": text}
        out: dict[str, Any] = {}
        unnamed = []
        for el in root.iter():
            if el is root:
                continue
            name = el.attrib.get("Name")
            if name:
                out[name] = el.text
            elif el.tag.rsplit("}", 1)[-1] == "Data":
                unnamed.append(el.text)
        if unnamed:
            out["Data"] = unnamed
        return out
    return {"EventData": text}


def _close_cut(text: str) -> str | None:
    """An <Event> cut inside its EventData, closed after its last complete field; None when the System part
    itself is cut."""
    sys_end = text.find("</System>")
    last = text.rfind("</Data>")
    if sys_end < 0 or last < sys_end or "<EventData" not in text[sys_end:]:
        return None
    return text[:last + len("</Data>")] + "</EventData></Event>"


def _show(raw: bytes, limit: int = 120) -> str:
    return repr(raw[:limit]) + ("…" if len(raw) > limit else "")
