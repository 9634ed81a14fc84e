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
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import orjson

from collectors.base import ArtifactReport
from timeline.schema import NS_MAX, NS_MIN, TZ_ASSUMED_UTC, TZ_SOURCE_UTC, RowBuilder, event_hash

__all__ = ["PLUGINS", "Plugin", "plugin", "plugin_rows"]

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
    kwargs: dict[str, Any] = field(default_factory=dict)  # arguments of the dissect function
    omit: tuple[str, ...] = ()  # record fields never written to the timeline (secrets)
    # record date-time fields the artifact states in the host's local time but dissect returns as UTC
    local: Callable[[dict[str, Any]], tuple[str, ...]] | None = None
    # turns the plugin's record stream into (fields, datetime field names, record name) items
    combine: Callable[[Any], Iterator[tuple[dict[str, Any], set[str], str]]] | None = None
    # a record with no time of its own: the registry key whose last-written time dates it, and that time's desc
    key_time: tuple[Callable[[dict[str, Any]], str | None], str] | None = None
    skip: Callable[[dict[str, Any]], bool] | None = None  # records another collector already turns into rows
    # where a record that names no file of its own (no ``source``, no ``regf_hive_path``) was read from: a path
    # in dissect's form ("sysvol/windows/...", "C:\\..."), or "hive:NAME" for a registry hive (SYSTEM, SAM...)
    origin: Callable[[dict[str, Any]], str | None] | None = None


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
           mtime_desc="Unit File Modified",
           origin=lambda r: "hive:SYSTEM" if "servicedll" in r else None),  # a Windows service (Linux units name their file)
    Plugin("cronjobs", "CRON", "os:cron",
           columns={"command_line": "command", "user": "username", "path": "source"},
           message=lambda r: f"cron {' '.join(str(r.get(k) or '') for k in ('minute', 'hour', 'day', 'month', 'weekday'))} "
                             f"{r.get('command')}",
           mtime_desc="Crontab Modified (entry time unknown)"),
    Plugin("tasks", "TASK", "os:tasks",
           columns={"service_name": "uri", "command_line": "action_arguments", "path": "action_command", "user": "author"},
           descs={"date": "Task Registered", "last_run_date": "Task Last Run", "ts": "Task File Modified"},
           message=lambda r: f"scheduled task {_g(r, 'uri', 'task_path')}: {_g(r, 'action_command') or ''} {_g(r, 'action_arguments') or ''}".strip(),
           mtime_desc="Task File Modified",
           local=lambda r: () if _ZONED_DATE.search(str(r.get("raw_data") or "")) else ("date",),
           origin=lambda r: r.get("task_path"),
           combine=lambda recs: _tasks(recs)),
    Plugin("runkeys", "REG", "reg:runkeys", columns={"service_name": "name", "command_line": "command", "user": "username",
                                                      "path": "regf_hive_path"},
           descs={"ts": "Registry Key Last Written"},
           message=lambda r: f"Run key {r.get('key')}\\{r.get('name')} = {_command(r.get('command'))}"),
    Plugin("prefetch", "PREFETCH", "os:prefetch", columns={"process": "filename"}, kwargs={"compact": True},
           descs={"ts": "Prefetch Last Run", "previousruns": "Prefetch Previous Run"},
           message=lambda r: f"prefetch: {r.get('filename')} ran ({r.get('runcount')} runs)",
           origin=lambda r: f"sysvol/windows/prefetch/{r['prefetch']}" if r.get("prefetch") else None),
    Plugin("amcache", "REG", "reg:amcache", columns={"path": "path"},
           descs={"mtime_regf": "Amcache Entry Written", "mtime": "File Modified (Amcache)",
                  "install_date": "Installed (Amcache)", "link_date": "Linked (Amcache)"},
           message=lambda r: f"amcache: {r.get('path')} sha1={getattr(r.get('digest'), 'sha1', None)}",
           origin=lambda r: "sysvol/windows/appcompat/programs/Amcache.hve"),
    Plugin("shimcache", "REG", "reg:shimcache", columns={"path": "path"},
           descs={"last_modified": "File Modified (Shimcache)"},
           message=lambda r: f"shimcache: {r.get('path')}",
           origin=lambda r: "hive:SYSTEM"),
    Plugin("userassist", "REG", "reg:userassist", columns={"path": "path", "user": "username"},
           descs={"ts": "Last Run (UserAssist)"},
           message=lambda r: f"userassist: {r.get('path')} ran {r.get('number_of_executions')} time(s)"),
    Plugin("recyclebin", "RECYCLE", "os:recyclebin", columns={"path": "path", "user": "username"},
           descs={"ts": "Deleted (Recycle Bin)"},
           message=lambda r: f"recycle bin: {r.get('path')} ({_int(r.get('filesize'))} bytes) deleted"),
    Plugin("sam", "ACCOUNT", "os:sam", columns={"target_user": "username"},
           descs={"ts": "Account Created (SAM Names key written)", "lastlogin": "Last Logon",
                  "lastpasswordset": "Password Last Set", "lastincorrectlogin": "Last Failed Logon"},
           message=lambda r: f"account {r.get('username')} (RID {r.get('rid')}, {r.get('fullname') or ''}): "
                             f"{r.get('logins')} logon(s), {r.get('failedlogins')} failed",
           omit=("lm", "nt"),  # password hashes stay out of the timeline
           origin=lambda r: "hive:SAM"),
    Plugin("users", "ACCOUNT", "os:users", columns={"target_user": "name", "path": "home"},
           descs={"lastlogon": "Last Logon", "lastpasswordset": "Password Last Set", "lastfailedlogon": "Last Failed Logon",
                  "creation_time": "Account Created"},
           message=lambda r: f"account {r.get('name')} (uid {r.get('uid', r.get('sid'))}, home {r.get('home')})",
           mtime_desc="Account File Modified (entry time unknown)",
           key_time=(lambda r: f"HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\ProfileList\\{r['sid']}"
                     if r.get("sid") else None, "Profile Key Last Written"),
           origin=lambda r: "hive:SOFTWARE" if r.get("sid") else None),
    Plugin("packagemanager", "PACKAGE", "os:packages", columns={"user": "requested_by_user", "command_line": "command"},
           descs={"ts": "Package Operation"},
           message=lambda r: f"package {r.get('operation')} {r.get('package_name')} {r.get('package_version') or ''}".strip(),
           # apt history and yum.log are read by collectors.packages (per package, zone-aware, dpkg and dnf too):
           # only the other managers' records (zypper) come from here
           skip=lambda r: r.get("package_manager") in ("apt", "yum"),
           # zypper's history is in the host's local time (dissect reads it in the zone it found, or UTC)
           local=lambda r: ("ts",) if r.get("package_manager") == "zypper" else (),
           origin=lambda r: "/var/log/zypp" if r.get("package_manager") == "zypper" else None),  # history and its rotations
)


def plugin(function: str) -> Plugin:
    """The entry of :data:`PLUGINS` for a dissect function."""
    return next(p for p in PLUGINS if p.function == function)


_ZONED_DATE = re.compile(r"<Date>[^<]*(Z|[+-]\d\d:?\d\d)\s*</Date>")


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _command(v: Any) -> str | None:
    """A dissect ``command`` field (executable and arguments) as the command line it was read from."""
    if v is None:
        return None
    exe, args = getattr(v, "executable", None), getattr(v, "args", None)
    if exe is None:
        return str(v)
    return " ".join([str(exe), *(str(a) for a in args or ())])


def _fields(rec) -> tuple[dict[str, Any], set[str]]:
    r = {k: v for k, v in rec._asdict().items() if not k.startswith("_")}
    return r, {n for n, f in rec._desc.fields.items() if f.typename in ("datetime", "datetime[]")}


def _tasks(records) -> Iterator[tuple[dict[str, Any], set[str], str]]:
    """One item per task: the task record with its actions (``action_command``, ``action_arguments`` of the
    first, all in ``actions``) and trigger kinds folded in (dissect yields them as separate records)."""
    cur = None
    for rec in records:
        name = rec._desc.name
        if name == "filesystem/windows/task":
            if cur is not None:
                yield cur
            r, dts = _fields(rec)
            cur = (r | {"actions": [], "triggers": []}, dts, name)
        elif cur is not None and name == "filesystem/windows/task/action":
            a = {k: v for k, v in _fields(rec)[0].items() if v not in (None, "", []) and k not in ("hostname", "domain", "uri")}
            cur[0]["actions"].append(a)
            if len(cur[0]["actions"]) == 1:
                cur[0]["action_command"], cur[0]["action_arguments"] = a.get("command"), a.get("arguments")
        elif cur is not None and name == "filesystem/windows/task/trigger":
            cur[0]["triggers"].append({k: v for k, v in _fields(rec)[0].items()
                                       if v not in (None, "", []) and k not in ("hostname", "domain", "uri")})
        else:  # a record of another kind (a Linux task): on its own
            if cur is not None:
                yield cur
                cur = None
            r, dts = _fields(rec)
            yield r, dts, name
    if cur is not None:
        yield cur


def _jsonable(v: Any) -> Any:
    if isinstance(v, _dt.datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _ns(v: _dt.datetime) -> int:
    if v.tzinfo is None:
        v = v.replace(tzinfo=_dt.timezone.utc)
    d = v - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (d.days * 86400 + d.seconds) * 1_000_000_000 + d.microseconds * 1000


_FILETIME_ZERO = _dt.datetime(1601, 1, 1, tzinfo=_dt.timezone.utc)  # "never" in Windows' records


class _Where:
    """The path of the file a record was read from, as the evidence walk names it ("c:/Windows/System32/config/SYSTEM",
    "/etc/passwd"), from the forms dissect's records give ("sysvol/windows/system32/config/SYSTEM",
    "C:\\Windows\\system32\\tasks\\X", "\\c:\\$recycle.bin\\...") or a plugin's ``origin`` ("hive:SYSTEM").

    Windows paths get the drive letter the walk uses and each name's case as stored (NTFS and the triage
    loaders are case-insensitive; the walk shows the stored names).  A path that cannot be resolved is kept as
    given, slashes turned forward."""

    def __init__(self, target):
        self._t = target
        self._hives: dict[str, str] | None = None
        self._paths: dict[str, str | None] = {}
        self._dirs: dict[tuple[int, str], dict[str, str]] = {}

    def __call__(self, spec: str) -> str | None:
        if spec not in self._paths:
            self._paths[spec] = self._resolve(spec)
        return self._paths[spec]

    def _hive(self, name: str) -> str | None:
        if self._hives is None:
            self._hives = {}
            try:
                for hname, _hive, path in self._t.registry.iterhives():
                    self._hives.setdefault(str(hname).upper(), str(path))  # the first found (not RegBack's)
            except Exception:
                pass
        return self._hives.get(name.upper())

    def _resolve(self, spec: str) -> str | None:
        path = self._hive(spec[5:]) if spec.startswith("hive:") else spec
        if path is None:
            return None
        q = path.replace("\\", "/").lstrip("/")
        head, _, rest = q.partition("/")
        mounts = getattr(self._t.fs, "mounts", None) or {}
        fs = mounts.get(head.lower()) if head.lower() == "sysvol" or (len(head) == 2 and head[1] == ":") else None
        if fs is None:
            return path
        drive = next((m for m, f in mounts.items() if f is fs and len(m) == 2 and m[1] == ":"), head.lower())
        cur, real = "/", []
        for name in rest.split("/"):
            names = self._listdir(fs, cur)
            name = names.get(name.casefold(), name)
            real.append(name)
            cur = cur.rstrip("/") + "/" + name
        return f"{drive}/{'/'.join(real)}"

    def _listdir(self, fs, d: str) -> dict[str, str]:
        key = (id(fs), d)
        if key not in self._dirs:
            try:
                self._dirs[key] = {n.casefold(): n for n in fs.get(d).listdir()}
            except Exception:
                self._dirs[key] = {}
        return self._dirs[key]


def plugin_rows(target, rows: RowBuilder, rep: ArtifactReport, evidence_id: str, evidence_path: str, host: str | None,
                parser: str, mtime_of: Callable[[str], int | None], tz: str | None = None,
                tz_source: str | None = None, plugins: tuple[Plugin, ...] = PLUGINS,
                where: Callable[[str], str | None] | None = None) -> Iterator[int]:
    """Run ``plugins`` (:data:`PLUGINS`) on an opened target; add rows; yield after each record (for batching).
    ``tz``/``tz_source``: the host's zone, for the fields an artifact writes in local time.  A row's
    ``evidence_path`` is the file its record was read from (``where``, by default :class:`_Where`), else the
    evidence itself."""
    from dissect.target.exceptions import PluginError, UnsupportedPluginError

    where = where if where is not None else _Where(target)
    for p in plugins:
        try:
            fn = getattr(target, p.function)
            records = fn(**p.kwargs)
        except (UnsupportedPluginError, PluginError, AttributeError):
            continue
        except Exception as exc:
            rep.warn("plugin_error", f"dissect plugin {p.function}: {type(exc).__name__}: {exc}")
            continue
        items = p.combine(records) if p.combine else ((*_fields(rec), rec._desc.name) for rec in records)
        n = 0
        try:
            for r, dts, name in items:
                if p.skip is not None and p.skip(r):
                    rep.stats[f"plugin:{p.function}:left_to_collectors"] = rep.stats.get(f"plugin:{p.function}:left_to_collectors", 0) + 1
                    continue
                n += 1
                try:
                    if p.key_time and not any(r.get(f) for f in dts):
                        _date_by_key(target, p, r, dts)
                    yield _add(p, r, dts, name, n, rows, rep, evidence_id, evidence_path, host, parser, mtime_of,
                               tz, tz_source, where)
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


def _date_by_key(target, p: Plugin, r: dict[str, Any], dts: set[str]) -> None:
    """Give a record without a time its registry key's last-written time (field ``key_ts``)."""
    path = p.key_time[0](r)
    if not path:
        return
    try:
        r["key_ts"] = target.registry.key(path).ts
    except Exception:
        return
    dts.add("key_ts")


def _add(p: Plugin, r: dict[str, Any], dts: set[str], name: str, n: int, rows: RowBuilder, rep: ArtifactReport,
         evidence_id: str, evidence_path: str, host: str | None, parser: str, mtime_of: Callable[[str], int | None],
         tz: str | None, tz_source: str | None, where: Callable[[str], str | None]) -> int:
    for k in p.omit:
        r.pop(k, None)
    local = set(p.local(r)) if p.local else set()
    times: list[tuple[str, int, str]] = []
    for f in dts:
        v = r.get(f)
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if not isinstance(x, _dt.datetime) or x == _FILETIME_ZERO:
                continue
            src_tz = TZ_SOURCE_UTC
            if f in local and not tz:  # a local time in an unknown zone: read as UTC, and flagged so
                src_tz = TZ_ASSUMED_UTC
            elif f in local:  # the wall-clock time dissect read, in the host's zone
                from zoneinfo import ZoneInfo

                x, src_tz = x.replace(tzinfo=ZoneInfo(tz)), tz_source or TZ_SOURCE_UTC
                if not isinstance(v, (list, tuple)):
                    r[f] = x  # attrs keep the corrected time too
            desc = p.key_time[1] if f == "key_ts" and p.key_time else p.descs.get(f, f"{p.function}: {f}")
            ns = _ns(x)
            if not NS_MIN < ns < NS_MAX:  # a damaged or "never" time (year 9999): kept in attrs, not on the timeline
                rep.warn("time_out_of_range", f"{p.function}#{n} {f}: {x.isoformat()} is outside the years a "
                         "timestamp holds (1677..2262); left out of the timeline, kept in the record's attrs",
                         f"{p.function}#{n}")
                continue
            times.append((desc, ns, src_tz))
    src = str(r.get("source") or "")
    if not times:
        mt = mtime_of(src) if src else None
        if not mt:  # no time, or 1970-01-01 (a folder only implied by an archive's member names)
            from collectors.base import RecordError

            rep.errors.append(RecordError(f"{p.function}#{n}", "no_time", f"{p.function} record has no time and no source file time: {r}"))
            return 0
        times = [(p.mtime_desc or f"{p.function}: source file modified", mt, TZ_SOURCE_UTC)]
    if "command" in r:
        r["command"] = _command(r["command"])
    attrs = orjson.dumps({k: _jsonable(v) for k, v in r.items()} | {"dissect_record": name}).decode()
    cols = {col: (str(r[f]) if r.get(f) not in (None, "") else None) for col, f in p.columns.items()}
    msg = p.message(r) if p.message else f"{p.function}: {r}"
    h = host or r.get("hostname")
    # ``source`` names the file a record came from (a unit file, a task), except where a plugin uses it for something
    # else (Amcache's "AddRemoveProgram", "Msi", "AppxPackage": the kind of entry)
    read_from = (src if "/" in src or "\\" in src else None) or r.get("regf_hive_path") or (p.origin(r) if p.origin else None)
    read_from = (where(str(read_from)) if read_from else None) or evidence_path
    for desc, ns, src_tz in sorted(times):
        rows.add(timestamp=ns, timestamp_desc=desc, host=h, source=p.source, artifact=p.artifact, message=msg,
                 attrs=attrs, tags=[], tz_source=src_tz, evidence_id=evidence_id, evidence_path=read_from,
                 record_ref=f"{p.function}#{n}", parser=parser,
                 event_hash=event_hash(p.artifact, evidence_id, src, desc, ns, attrs), **cols)
    return len(times)
