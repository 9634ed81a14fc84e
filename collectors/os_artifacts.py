"""Operating-system artifacts read by dissect.target's plugins: services, scheduled tasks, Run keys,
prefetch, Amcache, Shimcache, UserAssist, recycle bin, cron jobs, package-manager history, accounts.

Extraction and timelining are kept apart (as in plaso): a plugin yields records; every
date-time field of a record becomes one row whose ``timestamp_desc`` names that field
(a record with three times gives three rows).  A record with no time of its own (a cron
line, a systemd unit) is placed at its source file's modification time, with
``timestamp_desc`` saying so, rather than being dropped.  Every record field is kept in
``attrs``; the fields investigators filter on are mapped to columns per plugin below.

:data:`PLUGINS` is the explicit, ordered list of plugins run on each disk image whose
operating system dissect recognises.  A plugin that does not apply to the OS is skipped;
one that fails is a counted warning of the image, not a failed collection.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import orjson

from collectors.base import ArtifactReport
from timeline.schema import TZ_SOURCE_UTC, RowBuilder, event_hash

__all__ = ["PLUGINS", "Plugin", "plugin_rows"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plugin:
    """How one dissect plugin's records map onto the timeline."""

    function: str  # dissect function name
    source: str  # timeline ``source``
    artifact: str  # timeline ``artifact``
    columns: dict[str, str] = field(default_factory=dict)  # timeline column -> record field
    descs: dict[str, str] = field(default_factory=dict)  # record date-time field -> timestamp_desc
    message: Callable[[dict[str, Any]], str] | None = None
    mtime_desc: str | None = None  # when the record has no time: place it at its source file's mtime
    skip: Callable[[dict[str, Any]], bool] | None = None  # records another collector already turns into rows


def _g(r: dict[str, Any], *names: str) -> Any:
    for n in names:
        v = r.get(n)
        if v not in (None, ""):
            return v
    return None


PLUGINS: tuple[Plugin, ...] = (
    Plugin("services", "SERVICE", "os:services",
           columns={"service_name": "name", "path": "imagepath", "command_line": "Service_ExecStart", "user": "objectname"},
           descs={"ts": "Service Key / Unit File Modified"},
           message=lambda r: f"service {_g(r, 'name')}: {_g(r, 'imagepath', 'Service_ExecStart', 'source') or ''}".rstrip(": "),
           mtime_desc="Unit File Modified"),
    Plugin("cronjobs", "CRON", "os:cron",
           columns={"command_line": "command", "user": "username", "path": "source"},
           message=lambda r: f"cron {' '.join(str(r.get(k) or '') for k in ('minute', 'hour', 'day', 'month', 'weekday'))} "
                             f"{r.get('command')}",
           mtime_desc="Crontab Modified (entry time unknown)"),
    Plugin("tasks", "TASK", "os:tasks",
           columns={"service_name": "uri", "command_line": "action_arguments", "path": "action_command", "user": "author"},
           descs={"date": "Task Registered", "last_run_time": "Task Last Run", "ts": "Task File Modified"},
           message=lambda r: f"scheduled task {_g(r, 'uri', 'task_path')}: {_g(r, 'action_command') or ''} {_g(r, 'action_arguments') or ''}".strip()),
    Plugin("runkeys", "REG", "reg:runkeys", columns={"service_name": "name", "command_line": "path", "user": "username"},
           descs={"ts": "Registry Key Last Written"},
           message=lambda r: f"Run key {r.get('key')}\\{r.get('name')} = {r.get('path')}"),
    Plugin("prefetch", "PREFETCH", "os:prefetch", columns={"process": "filename"},
           descs={"ts": "Prefetch Last Run", "previousruns": "Prefetch Previous Run"},
           message=lambda r: f"prefetch: {r.get('filename')} ran ({r.get('runcount')} runs)"),
    Plugin("amcache", "REG", "reg:amcache", columns={"path": "path"},
           descs={"mtime_regf": "Amcache Entry Written", "mtime": "File Modified (Amcache)",
                  "install_date": "Installed (Amcache)", "link_date": "Linked (Amcache)"},
           message=lambda r: f"amcache: {r.get('path')} sha1={r.get('digest')}"),
    Plugin("shimcache", "REG", "reg:shimcache", columns={"path": "path"},
           descs={"last_modified": "File Modified (Shimcache)"},
           message=lambda r: f"shimcache: {r.get('path')}"),
    Plugin("userassist", "REG", "reg:userassist", columns={"path": "path", "user": "username"},
           descs={"ts": "Last Run (UserAssist)"},
           message=lambda r: f"userassist: {r.get('path')} ran {r.get('number_of_executions')} time(s)"),
    Plugin("recyclebin", "RECYCLE", "os:recyclebin", columns={"path": "path", "user": "username"},
           descs={"ts": "Deleted (Recycle Bin)"},
           message=lambda r: f"recycle bin: {r.get('path')} ({r.get('filesize')} bytes) deleted"),
    Plugin("users", "ACCOUNT", "os:users", columns={"target_user": "name", "path": "home"},
           descs={"lastlogon": "Last Logon", "lastpasswordset": "Password Last Set", "lastfailedlogon": "Last Failed Logon",
                  "creation_time": "Account Created"},
           message=lambda r: f"account {r.get('name')} (uid {r.get('uid', r.get('sid'))}, home {r.get('home')})",
           mtime_desc="Account File Modified (entry time unknown)"),
    Plugin("packagemanager", "PACKAGE", "os:packages", columns={"user": "requested_by_user", "command_line": "command"},
           descs={"ts": "Package Operation"},
           message=lambda r: f"package {r.get('operation')} {r.get('package_name')} {r.get('package_version') or ''}".strip(),
           # apt history and yum.log are read by collectors.packages (per package, zone-aware, dpkg and dnf too):
           # only the other managers' records (zypper) come from here
           skip=lambda r: r.get("package_manager") in ("apt", "yum")),
)


def _jsonable(v: Any) -> Any:
    if isinstance(v, _dt.datetime):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _ns(v: _dt.datetime) -> int:
    if v.tzinfo is None:
        v = v.replace(tzinfo=_dt.timezone.utc)
    d = v - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (d.days * 86400 + d.seconds) * 1_000_000_000 + d.microseconds * 1000


def plugin_rows(target, rows: RowBuilder, rep: ArtifactReport, evidence_id: str, evidence_path: str, host: str | None,
                parser: str, mtime_of: Callable[[str], int | None]) -> Iterator[int]:
    """Run :data:`PLUGINS` on an opened target; add rows; yield after each record (for batching)."""
    from dissect.target.exceptions import PluginError, UnsupportedPluginError

    for p in PLUGINS:
        try:
            fn = getattr(target, p.function)
            records = fn()
        except (UnsupportedPluginError, PluginError, AttributeError):
            continue
        except Exception as exc:
            rep.warn("plugin_error", f"dissect plugin {p.function}: {type(exc).__name__}: {exc}")
            continue
        n = 0
        try:
            for rec in records:
                if p.skip is not None and p.skip(rec._asdict()):
                    rep.stats[f"plugin:{p.function}:left_to_collectors"] = rep.stats.get(f"plugin:{p.function}:left_to_collectors", 0) + 1
                    continue
                n += 1
                try:
                    yield _add(p, rec, n, rows, rep, evidence_id, evidence_path, host, parser, mtime_of)
                except Exception as exc:  # one bad record is a counted error, not the plugin
                    from collectors.base import RecordError

                    rep.errors.append(RecordError(f"{p.function}#{n}", "bad_record", f"{type(exc).__name__}: {exc}"))
        except UnsupportedPluginError:
            # found not to apply only once iterated (``users`` on a Windows collection without registry hives):
            # skipped like a plugin rejected up front, unless it had already given records
            if n:
                rep.warn("plugin_error", f"dissect plugin {p.function} stopped after {n} record(s): not supported")
        except Exception as exc:
            rep.warn("plugin_error", f"dissect plugin {p.function} stopped after {n} record(s): {type(exc).__name__}: {exc}")
        rep.stats[f"plugin:{p.function}"] = n


def _add(p: Plugin, rec, n: int, rows: RowBuilder, rep: ArtifactReport, evidence_id: str, evidence_path: str,
         host: str | None, parser: str, mtime_of: Callable[[str], int | None]) -> int:
    r = {k: v for k, v in rec._asdict().items() if not k.startswith("_")}
    times: list[tuple[str, int]] = []
    for name, f in rec._desc.fields.items():
        v = r.get(name)
        if f.typename == "datetime" and isinstance(v, _dt.datetime):
            times.append((p.descs.get(name, f"{p.function}: {name}"), _ns(v)))
        elif f.typename == "datetime[]" and v:
            times += [(p.descs.get(name, f"{p.function}: {name}"), _ns(x)) for x in v if isinstance(x, _dt.datetime)]
    src = str(r.get("source") or "")
    if not times:
        mt = mtime_of(src) if src else None
        if mt is None:
            from collectors.base import RecordError

            rep.errors.append(RecordError(f"{p.function}#{n}", "no_time", f"{p.function} record has no time and no source file time: {r}"))
            return 0
        times = [(p.mtime_desc or f"{p.function}: source file modified", mt)]
    attrs = orjson.dumps({k: _jsonable(v) for k, v in r.items()} | {"dissect_record": rec._desc.name}).decode()
    cols = {col: (str(r[f]) if r.get(f) not in (None, "") else None) for col, f in p.columns.items()}
    msg = p.message(r) if p.message else f"{p.function}: {r}"
    h = host or r.get("hostname")
    for desc, ns in times:
        rows.add(timestamp=ns, timestamp_desc=desc, host=h, source=p.source, artifact=p.artifact, message=msg,
                 attrs=attrs, tags=[], tz_source=TZ_SOURCE_UTC, evidence_id=evidence_id, evidence_path=src or evidence_path,
                 record_ref=f"{p.function}#{n}", parser=parser,
                 event_hash=event_hash(p.artifact, evidence_id, src, desc, ns, attrs), **cols)
    return len(times)
