"""The analyst's questions, one call each.

Every helper is a plain function that takes a timeline DataFrame (as returned by
``Timeline.to_pandas()``) or a :class:`forensics.Timeline` and returns a DataFrame.
Given a ``Timeline``, a helper first narrows it to the rows it can use (pushed down to
DuckDB), so it works on cases larger than memory.  Each helper is defined once, here, under
``@helper(...)``, which generates its two other forms, ``Timeline.<name>(...)`` and ``df.fx.<name>(...)``, with
the same signature, docstring and example (:data:`HELPERS` lists them).

:func:`story` tells the attack as one ordered table: every curated helper's findings, with a level from
:data:`FINDING_LEVELS`, and Sigma's (``sigma=RULES``, a ``SigmaRun``, or the detections saved in the case).

Each result keeps ``timestamp`` (UTC), ``local_time`` when the input had it, ``host``
and the provenance of its row (``evidence_id``, ``evidence_path``, ``record_ref``), so
every finding can be traced back to the evidence.

Families: Windows event logs; sshd lines (``source == "SYSLOG"``); login records
(``source == "LOGIN"``: wtmp/utmp "Login Time" rows are successful logons, btmp "Failed Login
Time" rows failed ones, lastlog "Last Login" rows successful ones); shell histories
(``source == "SHELL"``, artifacts ``bash_history``/``zsh_history``/``fish_history``/
``powershell_history``).  Auditd and web servers arrive with their collectors.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from typing import Any, Callable

import numpy as np
import pandas as pd

from forensics import sigma as _sigma
from forensics.query import Timeline
from forensics.sigma import LEVELS, UNKNOWN_HOST
from timeline.errors import QueryError

__all__ = [
    "logons",
    "brute_force",
    "service_installs",
    "process_executions",
    "log_cleared",
    "shadow_copy_deletion",
    "accounts_created",
    "group_changes",
    "scheduled_tasks",
    "credential_access",
    "defense_impairment",
    "lateral_movement",
    "powershell",
    "first_seen",
    "encryption_burst",
    "web_attacks",
    "story",
    "story_rows",
    "onset",
    "summary",
    "helper",
    "HELPERS",
    "FINDING_LEVELS",
    "finding_level",
    "STORY_COLUMNS",
]

SEC = "Security"
SYS = "System"
SYSMON = "Microsoft-Windows-Sysmon/Operational"
TS_LOCAL = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"
TS_RCM = "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational"

PROVENANCE = ["evidence_id", "evidence_path", "record_ref"]

_LOGON_TYPE = {2: "interactive", 3: "network", 4: "batch", 5: "service", 7: "unlock", 8: "network cleartext",
               9: "new credentials", 10: "remote interactive (RDP)", 11: "cached interactive"}


# --- one definition, three forms --------------------------------------------------------------------
#
# Each helper is written once, here, as ``fn(data, ...)``; ``@helper(...)`` (one line above it) registers it
# and generates its two other forms, ``Timeline.<name>(...)`` and ``df.fx.<name>(...)``, with the same
# signature (less ``data`` and the private ``_`` parameters), the same docstring and its example.

HELPERS: dict[str, Callable] = {}  # name -> the helper function, in the order they were defined


@pd.api.extensions.register_dataframe_accessor("fx")
class FxAccessor:
    """``df.fx.<helper>(...)``: every helper of :mod:`forensics.hunt` (``HELPERS``) on a timeline DataFrame;
    the methods are generated from the functions by :func:`helper`."""

    def __init__(self, df: pd.DataFrame):
        self._df = df

    def event_data(self, names: list[str] | str, dtypes: dict[str, str] | None = None) -> pd.DataFrame:
        """Fields of the events' data (EVTX and Windows event exports: ``attrs`` ``Event.EventData``) as typed
        columns, one row per row of the frame, with its index: ``df.fx.event_data(["TargetImage", "GrantedAccess"])``.
        The same reading and types as :meth:`forensics.Timeline.fields` (see there; ``dtypes={"GrantedAccess":
        "int"}`` reads hex)."""
        from forensics.query import event_data_of_frame

        return event_data_of_frame(self._df, names, dtypes)


def _example(name: str, args: str) -> str:
    calls = [(f"tl.{name}({args})", "a Timeline: narrowed in DuckDB before reading"),
             (f"df.fx.{name}({args})", "a timeline DataFrame (df = tl.to_pandas())"),
             (f"forensics.hunt.{name}(tl{', ' + args if args else ''})", "the function: a Timeline or a DataFrame")]
    width = max(len(c) for c, _ in calls)
    return "Example::\n\n    tl = forensics.open(CASE)\n" + "\n".join(f"    {c:<{width}}  # {why}" for c, why in calls)


def _form(fn: Callable, owner: type, data: Callable[[Any], Any]) -> Callable:
    """``fn`` as a method of ``owner``: ``self`` gives the data through ``data(self)``."""

    def method(self, *args: Any, **kwargs: Any) -> Any:
        return fn(data(self), *args, **kwargs)

    sig = inspect.signature(fn)
    params = [p for p in list(sig.parameters.values())[1:] if not p.name.startswith("_")]
    method.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params])
    method.__name__ = fn.__name__
    method.__qualname__ = f"{owner.__name__}.{fn.__name__}"
    method.__doc__ = fn.__doc__
    method.__module__ = fn.__module__
    return method


def helper(example: str = "") -> Callable[[Callable], Callable]:
    """Register a helper ``fn(data, ...)`` (``data``: a Timeline or a timeline DataFrame) and generate its
    ``Timeline.<name>`` and ``df.fx.<name>`` forms; ``example``: the arguments of the call shown in its
    docstring (``'threshold=5, window="30min"'``).  Used as ``@helper(...)`` above the function, outermost."""

    def register(fn: Callable) -> Callable:
        from forensics.query import Timeline  # query loads hunt lazily, never at import: no cycle

        name = fn.__name__
        fn.__doc__ = inspect.cleandoc(fn.__doc__ or "") + "\n\n" + _example(name, example)
        HELPERS[name] = fn
        setattr(Timeline, name, _form(fn, Timeline, lambda tl: tl))
        setattr(FxAccessor, name, _form(fn, FxAccessor, lambda acc: acc._df))
        return fn

    return register


def _frame(data: Any, prefilter: Callable | None = None) -> pd.DataFrame:
    """A DataFrame from a DataFrame or a Timeline (narrowed by ``prefilter`` before reading)."""
    from forensics.query import Timeline

    if isinstance(data, Timeline):
        return (prefilter(data) if prefilter else data).to_pandas()
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"expected a timeline DataFrame or a Timeline, got {type(data).__name__}")
    return data


def _partitionwise(fn: Callable) -> Callable:
    """Helpers whose answer for a row depends on that row alone also take a dask DataFrame
    (``forensics.open(case, engine="dask")``): they then run on each partition, lazily."""

    @functools.wraps(fn)
    def wrapper(data: Any, *args: Any, **kwargs: Any) -> Any:
        if type(data).__module__.startswith("dask"):
            meta = fn(data._meta, *args, **kwargs)
            return data.map_partitions(fn, *args, meta=meta, **kwargs)
        return fn(data, *args, **kwargs)

    return wrapper


def _is(df: pd.DataFrame, channel: str, *event_ids: int) -> pd.Series:
    return (df["channel"] == channel) & df["event_id"].isin(event_ids)


def _attr(df: pd.DataFrame, *path: str) -> pd.Series:
    """A field of each row's ``attrs`` JSON (EVTX: path under Event.EventData / Event.UserData)."""

    def get(text: str) -> Any:
        try:
            node = json.loads(text)
        except (TypeError, ValueError):
            return None
        node = node.get("Event", node)
        data = node.get("EventData") or next(iter((node.get("UserData") or {}).values()), {}) or {}
        for key in path:
            if not isinstance(data, dict):
                return None
            data = data.get(key)
        return data["#text"] if isinstance(data, dict) and "#text" in data else data

    return df["attrs"].map(get) if len(df) else pd.Series([], dtype=object)


def _out(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    lead = ["timestamp"] + (["local_time"] if "local_time" in df.columns else []) + ["host"]
    keep = lead + [c for c in cols if c not in lead] + PROVENANCE
    return df.reindex(columns=keep).sort_values(["timestamp"] + [c for c in ("host",) if c in df]).reset_index(drop=True)


# --- logons ------------------------------------------------------------------------------------

_LOGON_IDS = {SEC: (4624, 4625, 4648, 4768, 4771, 4776), TS_RCM: (1149,), TS_LOCAL: (21, 24, 25)}
_SSH = re.compile(r"(Accepted|Failed) (\S+) for (?:invalid user )?(\S+) from (\S+)")


# Login records (collectors.utmp): which rows are logons, by what their time means.
_LOGIN_RECORD_OUTCOME = {"Login Time": "success", "Failed Login Time": "failure", "Last Login": "success"}


def _logon_rows(tl):
    ids = ", ".join(str(e) for e in sorted({e for ids in _LOGON_IDS.values() for e in ids}))
    return tl._with(f"(event_id IN ({ids}) OR (source = 'SYSLOG' AND message LIKE '%sshd%') OR source = 'LOGIN'"
                    " OR artifact IN ('wtmp', 'btmp'))")


@helper('success=False')
@_partitionwise
def logons(data: Any, success: bool | None = None) -> pd.DataFrame:
    """Logons and logon attempts: Windows 4624/4625/4648/4768/4771/4776, RDP 1149/21/24/25, sshd, wtmp/btmp.

    Columns: ``user``, ``src_ip``, ``src_host``, ``logon_type``, ``outcome`` (success, failure,
    disconnect), ``method`` (interactive, network, RDP, Kerberos, NTLM, explicit credentials,
    ssh password...), ``status`` (the failure code), ``event_id``.
    """
    df = _frame(data, _logon_rows)
    parts = []
    win = df[pd.concat([_is(df, ch, *ids) for ch, ids in _LOGON_IDS.items()], axis=1).any(axis=1)] if len(df) else df
    if len(win):
        w = win.copy()
        eid = w["event_id"]
        status = _attr(w, "Status").astype(object)
        ok_status = status.isna() | status.astype(str).str.lower().isin(["0x0", "0"])
        w["status"] = status.where(~ok_status, None)
        w["outcome"] = "success"
        w.loc[eid.isin([4625, 4771]) | (eid.isin([4768, 4776]) & ~ok_status), "outcome"] = "failure"
        w.loc[(w["channel"] == TS_LOCAL) & (eid == 24), "outcome"] = "disconnect"
        lt = w["logon_type"]
        method = lt.astype(object).map(lambda x: _LOGON_TYPE.get(int(x), f"type {int(x)}") if pd.notna(x) else None)
        method = method.where(~eid.isin([4768, 4771]), "Kerberos")
        method = method.where(eid != 4776, "NTLM")
        method = method.where(eid != 4648, "explicit credentials")
        method = method.where(~w["channel"].isin([TS_LOCAL, TS_RCM]), "RDP")
        w["method"] = method
        parts.append(w)
    if "source" in df and len(df):
        ssh = df[(df["source"] == "SYSLOG") & df["message"].str.contains("sshd", na=False)]
        m = ssh["message"].str.extract(_SSH)
        ssh = ssh[m[0].notna()].copy()
        if len(ssh):
            m = m.loc[ssh.index]
            ssh["outcome"] = m[0].map({"Accepted": "success", "Failed": "failure"})
            ssh["method"] = "ssh " + m[1]
            ssh["user"] = ssh["user"].fillna(m[2])
            ssh["src_ip"] = ssh["src_ip"].fillna(m[3])
            parts.append(ssh)
        tty = df[(df["source"] == "LOGIN") & df["timestamp_desc"].isin(list(_LOGIN_RECORD_OUTCOME))].copy()
        if len(tty):
            tty["outcome"] = tty["timestamp_desc"].map(_LOGIN_RECORD_OUTCOME)
            tty["method"] = "login record (" + tty["artifact"] + ")"
            parts.append(tty)
    out = pd.concat(parts) if parts else df.iloc[0:0].assign(outcome=None, method=None, status=None)
    if success is not None:
        out = out[out["outcome"] == ("success" if success else "failure")]
    return _out(out, ["user", "src_ip", "src_host", "logon_type", "outcome", "method", "status", "event_id", "message"])


@helper('threshold=5, window="30min"')
def brute_force(data: Any, threshold: int = 10, window: str = "10min", *,
                _logons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Failed-logon bursts: one row per attacking source and target host with at least ``threshold``
    failures inside ``window``: attempts, distinct users tried, first, last, whether a successful logon
    from that source to that host followed, and the provenance of the first failure."""
    cols = ["source", "host", "attempts", "max_in_window", "users", "first", "last", "success_after",
            "first_success"] + PROVENANCE
    tries = logons(data) if _logons is None else _logons
    if tries.empty:
        return pd.DataFrame(columns=cols)
    tries = tries.assign(source=tries["src_ip"].fillna(tries["src_host"]))
    tries = tries[tries["source"].notna() & ~tries["source"].isin(["-", "127.0.0.1", "::1", "LOCAL"])]
    fails = tries[tries["outcome"] == "failure"]
    rows = []
    span = pd.Timedelta(window)
    for (src, host), g in fails.groupby(["source", "host"], sort=True, dropna=False):  # loose logs: no host
        g = g.sort_values("timestamp", kind="stable")
        t = g["timestamp"].reset_index(drop=True)
        # the largest number of failures inside any window starting at a failure (vectorised)
        ns = t.astype("int64").to_numpy() if hasattr(t, "astype") else t
        ends = np.searchsorted(ns, ns + span.value, side="right")
        best = int((ends - np.arange(len(ns))).max())
        if best < threshold:
            continue
        same_host = tries["host"].isna() if pd.isna(host) else tries["host"] == host
        ok = tries[(tries["source"] == src) & same_host & (tries["outcome"] == "success")
                   & (tries["timestamp"] > t.iloc[0])]
        rows.append({"source": src, "host": host, "attempts": len(g), "max_in_window": best,
                     "users": g["user"].nunique(), "first": t.iloc[0], "last": t.iloc[-1],
                     "success_after": not ok.empty,
                     "first_success": ok["timestamp"].min() if not ok.empty else pd.NaT,
                     **{c: g[c].iloc[0] for c in PROVENANCE}})
    return pd.DataFrame(rows, columns=cols)


# --- persistence and execution -----------------------------------------------------------------

_SVC_KEY = re.compile(r"\\Services\\([^\\]+)\\ImagePath$", re.I)


@helper()
@_partitionwise
def service_installs(data: Any) -> pd.DataFrame:
    """Services that appeared: System 7045, Security 4697, Sysmon 13 on Services\\*\\ImagePath, and the
    services (systemd units, registry service keys) read from disk images (``source == "SERVICE"``, at
    their unit file's / key's modification time).

    Columns: ``service_name``, ``image_path``, ``account``, ``start_type``, ``user`` (who installed it).
    """
    df = _frame(data, lambda tl: tl._with("(event_id IN (7045, 4697, 13) OR source = 'SERVICE')"))
    parts = []
    sc = df[_is(df, SYS, 7045)].copy() if len(df) else df
    if len(sc):
        sc["image_path"], sc["account"], sc["start_type"] = sc["path"], sc["target_user"], _attr(sc, "StartType")
        parts.append(sc)
    sec = df[_is(df, SEC, 4697)].copy() if len(df) else df
    if len(sec):
        sec["image_path"], sec["account"], sec["start_type"] = sec["path"], sec["target_user"], _attr(sec, "ServiceStartType")
        parts.append(sec)
    reg = df[_is(df, SYSMON, 13)].copy() if len(df) else df
    if len(reg):
        name = reg["path"].str.extract(_SVC_KEY)[0]
        reg = reg[name.notna()].copy()
        reg["service_name"] = name[name.notna()]
        reg["image_path"], reg["account"], reg["start_type"] = _attr(reg, "Details"), None, None
        parts.append(reg)
    disk = df[df["source"] == "SERVICE"].copy() if len(df) else df
    if len(disk):
        disk["image_path"] = disk["command_line"].fillna(disk["path"])
        disk["account"] = disk["user"]
        disk["start_type"] = disk["attrs"].map(lambda a: json.loads(a).get("start") or json.loads(a).get("Install_WantedBy"))
        parts.append(disk)
    out = pd.concat(parts) if parts else df.iloc[0:0]
    return _out(out, ["service_name", "image_path", "account", "start_type", "user", "event_id", "channel"])


_EXEC_ARTIFACTS = ("bash_history", "zsh_history", "fish_history", "powershell_history", "prefetch", "os:prefetch",
                   "auditd:EXECVE")


@helper()
@_partitionwise
def process_executions(data: Any) -> pd.DataFrame:
    """Processes that ran: Security 4688, Sysmon 1 (and, with their collectors, prefetch, shell history,
    auditd execve).  Columns: ``process``, ``command_line``, ``parent``, ``user``."""
    arts = ", ".join(f"'{a}'" for a in _EXEC_ARTIFACTS)
    df = _frame(data, lambda tl: tl._with(f"(event_id IN (4688, 1) OR source IN ('SHELL', 'PREFETCH') OR artifact IN ({arts}))"))
    mask = (_is(df, SEC, 4688) | _is(df, SYSMON, 1)) if len(df) else pd.Series([], dtype=bool)
    if "source" in df and len(df):
        mask |= df["source"].isin(["SHELL", "PREFETCH"]) | df["artifact"].isin(_EXEC_ARTIFACTS)
    out = df[mask].rename(columns={"parent_process": "parent"})
    return _out(out, ["process", "command_line", "parent", "user", "event_id", "artifact"])


_INHIBIT = re.compile(
    r"vssadmin(?:\.exe)?\s+.*(?:delete\s+shadows|resize\s+shadowstorage)"
    r"|wmic(?:\.exe)?\s+.*shadowcopy\s+.*delete"
    r"|wbadmin(?:\.exe)?\s+.*delete\s+(?:catalog|systemstatebackup|backup)"
    r"|bcdedit(?:\.exe)?\s+.*(?:recoveryenabled\s+no|bootstatuspolicy\s+ignoreallfailures)"
    r"|win32_shadowcopy.*(?:\.delete\(|remove-(?:wmi|cim)object)"
    r"|get-(?:wmi|cim)object\s+win32_shadowcopy.*(?:remove|delete)",
    re.I | re.S,
)


@helper()
@_partitionwise
def shadow_copy_deletion(data: Any) -> pd.DataFrame:
    """Inhibit-recovery commands (vssadmin/wmic/wbadmin/bcdedit, PowerShell Win32_ShadowCopy) from
    any process-execution or script source."""
    df = _frame(data, lambda tl: tl.search(r"vssadmin|wmic|wbadmin|bcdedit|shadowcopy", regex=True))
    cols = ["process", "command_line", "user", "event_id", "artifact"]  # the same columns, empty or not (dask meta)
    if df.empty:
        return _out(df, cols)
    text = df["command_line"].fillna("")
    return _out(df[text.str.contains(_INHIBIT)], cols)


@helper()
@_partitionwise
def log_cleared(data: Any) -> pd.DataFrame:
    """Logs cleared or silenced: Security 1102, System 104, the event-log service disabled (7040);
    with their collectors, wiped shell histories."""
    df = _frame(data, lambda tl: tl.where(event_id=[1102, 104, 7040]))
    if df.empty:
        return _out(df, ["log", "user", "event_id", "message"])
    cleared = _is(df, SEC, 1102) | _is(df, SYS, 104)
    disabled = _is(df, SYS, 7040) & (df["service_name"] == "Windows Event Log") & df["message"].str.contains(
        "to disabled", na=False)
    out = df[cleared | disabled].copy()
    log_name = _attr(out, "Channel")
    out["log"] = log_name.where(log_name.notna(), out["channel"].where(out["event_id"] != 7040, "(event log service)"))
    out.loc[out["event_id"] == 1102, "log"] = "Security"
    return _out(out, ["log", "user", "event_id", "message"])


@helper()
@_partitionwise
def accounts_created(data: Any) -> pd.DataFrame:
    """Accounts created (Security 4720).  Columns: ``account`` (the new one), ``user`` (who)."""
    df = _frame(data, lambda tl: tl.where(event_id=4720))
    out = df[_is(df, SEC, 4720)].rename(columns={"target_user": "account"}) if len(df) else df
    return _out(out, ["account", "user", "event_id"])


@helper()
@_partitionwise
def group_changes(data: Any) -> pd.DataFrame:
    """Group membership changes (4728/4729/4732/4733/4756/4757): ``group``, ``member``, ``change``, ``user``."""
    ids = (4728, 4729, 4732, 4733, 4756, 4757)
    df = _frame(data, lambda tl: tl.where(event_id=list(ids)))
    out = df[_is(df, SEC, *ids)].copy() if len(df) else df
    if len(out):
        out["group"], out["member"] = out["service_name"], out["target_user"]
        out["change"] = out["event_id"].map(lambda e: "added" if e in (4728, 4732, 4756) else "removed")
    return _out(out, ["group", "member", "change", "user", "event_id"])


@helper()
@_partitionwise
def scheduled_tasks(data: Any) -> pd.DataFrame:
    """Scheduled tasks created, deleted, enabled, disabled or updated (4698-4702), and created from a command line
    where process creation is logged (``schtasks /create``, action "created (schtasks)"; ``at HH:MM ...``, action
    "created (at)"): ``task``, ``action``, ``command_line``, ``user``."""
    ids = (4698, 4699, 4700, 4701, 4702)
    df = _frame(data, lambda tl: tl._with(f"(event_id IN ({', '.join(map(str, ids))}) OR (event_id IN (1, 4688) AND "
                                          "regexp_matches(coalesce(command_line, ''), ?)))", _TASK_CMD.pattern))
    out = df[_is(df, SEC, *ids)].copy() if len(df) else df
    if len(out):
        out["task"] = out["service_name"]
        out["action"] = out["event_id"].map({4698: "created", 4699: "deleted", 4700: "enabled", 4701: "disabled",
                                             4702: "updated"})
    procs = df[_is(df, SYSMON, 1) | _is(df, SEC, 4688)] if len(df) else df
    if len(procs):
        found = procs["command_line"].fillna("").astype(str).str.extract(_TASK_CMD)
        made = procs[found.notna().any(axis=1)]
        if len(made):
            f = found.loc[made.index]
            made = made.assign(task=f["name"].str.strip('"').astype(object).where(f["name"].notna(), None), action=f["at"].notna().map({True: "created (at)",
                                                                                          False: "created (schtasks)"}))
            out = pd.concat([out, made]) if len(out) else made
    return _out(out, ["task", "action", "command_line", "user", "event_id"])


# --- defenses impaired: audit policy, event logging, firewall ----------------------------------------------

# audit policy removed (4719 AuditPolicyChanges): "Success removed", "Failure removed"
_AUDIT_REMOVED = re.compile(r"%%8448|%%8450")
_AUDITPOL = re.compile(r"auditpol(?:\.exe)?[\"']?\s.*(?:/(?:success|failure):disable|/clear|/remove)", re.I)
_LOG_OFF = re.compile(r"wevtutil(?:\.exe)?[\"']?\s+(?:sl|set-log)\s.*(?:/(?:e|enabled):false|/(?:lfn|logfilename):)", re.I)
_LOG_KEYS = re.compile(r"\\control\\minint(?:\\|$)|\\services\\eventlog\\[^\\]+\\file$"
                       r"|\\wmi\\autologger\\eventlog-[^\\]+\\(?:start|enabled)$", re.I)
_FIREWALL_OFF = re.compile(r"netsh(?:\.exe)?[\"']?\s.*(?:firewall\s+set\s+opmode\s+(?:mode=)?disable|state\s+off)"
                           r"|set-netfirewallprofile\s.*-enabled\s+(?:\$?false|0)", re.I)
_FIREWALL_RULE = re.compile(r"netsh(?:\.exe)?[\"']?\s.*firewall\s+(?:add|delete)\s+(?:rule|allowedprogram|portopening)"
                            r"|(?:new|remove)-netfirewallrule\s", re.I)
_IMPAIR_CMD = re.compile("|".join(f"(?:{r.pattern})" for r in (_AUDITPOL, _LOG_OFF, _FIREWALL_OFF, _FIREWALL_RULE)), re.I)
_FIREWALL_EVENTS = {4946: "added", 4947: "modified", 4948: "deleted"}


def _impair_rows(tl):
    return tl._with(
        "(event_id IN (4719, 4946, 4947, 4948)"
        " OR (event_id IN (12, 13, 4657) AND regexp_matches(coalesce(path, ''), ?, 'i'))"
        " OR ((event_id IN (1, 4688) OR source = 'SHELL') AND regexp_matches(coalesce(command_line, ''), ?, 'i')))",
        _LOG_KEYS.pattern, _IMPAIR_CMD.pattern)


@helper()
def defense_impairment(data: Any) -> pd.DataFrame:
    """Defenses impaired, one row per supporting event with its ATT&CK ``technique``, ``level`` and ``finding``:

    - event logging (T1562.002): audit policy removed (4719 "Success/Failure removed" by an account that is not a
      machine's), ``auditpol /set ... /success:disable``, ``/clear``, ``/remove``; ``wevtutil sl LOG /e:false`` or a new
      log file path; the ``Control\\MiniNt`` key (the event log service then stops logging), a log's ``File`` value or
      an ``Autologger\\EventLog-*`` session's ``Start``/``Enabled`` set (Sysmon 12/13, 4657): high;
    - the firewall (T1562.004): turned off (``netsh ... state off``, ``opmode disable``, ``Set-NetFirewallProfile
      -Enabled False``): high; rules added, changed or deleted (4946-4948, ``netsh advfirewall firewall add rule``...):
      low (installers add rules too; the Firewall log's own 2004-2006 rule events are left out: Windows and every
      installer write thousands of them, 2,500 on the museum's hosts).

    Columns: ``technique``, ``level``, ``finding``, ``user``, ``process``, ``command_line``, ``path``, ``event_id``."""
    df = _frame(data, _impair_rows)
    cols = ["technique", "level", "finding", "user", "process", "command_line", "path", "event_id"]
    parts = []
    pol = df[_is(df, SEC, 4719)] if len(df) else df
    if len(pol):
        pol = pol[_attr(pol, "AuditPolicyChanges").fillna("").astype(str).str.contains(_AUDIT_REMOVED) & ~_machine(pol["user"])]
        if len(pol):  # a policy change writes one 4719 per subcategory: one finding per host, account and minute
            key = [pol["host"].fillna("?"), pol["user"].fillna("?"), pol["timestamp"].dt.floor("min")]
            n = pol.groupby(key, sort=False)["timestamp"].transform("size")
            pol = pol[~pd.DataFrame(key).T.set_axis(pol.index).duplicated().to_numpy()]
            parts.append(_found(pol, "T1562.002", "high", "audit policy removed: " + n[pol.index].astype(str)
                                + " subcategories by " + _txt(pol["user"])))
    procs = df[_is(df, SYSMON, 1) | _is(df, SEC, 4688) | (df["source"] == "SHELL")] if len(df) else df
    if len(procs):
        cmd = procs["command_line"].fillna("").astype(str)
        for rx, technique, level, what in ((_AUDITPOL, "T1562.002", "high", "audit policy disabled"),
                                           (_LOG_OFF, "T1562.002", "high", "event log disabled or moved"),
                                           (_FIREWALL_OFF, "T1562.004", "high", "firewall turned off"),
                                           (_FIREWALL_RULE, "T1562.004", "low", "firewall rule changed")):
            hit = procs[cmd.str.contains(rx)]
            parts.append(_found(hit, technique, level, what + ": " + _txt(hit["command_line"]).str.slice(0, 200)))
    keys = df[(_is(df, SYSMON, 12, 13) | _is(df, SEC, 4657)) & df["path"].fillna("").str.contains(_LOG_KEYS)] if len(df) else df
    if len(keys):
        created = ~((keys["event_id"] == 12) & _attr(keys, "EventType").fillna("").astype(str).str.startswith("Delete"))
        keys = keys[created]
        parts.append(_found(keys, "T1562.002", "high", "event logging key set: " + _txt(keys["path"]) + " by "
                            + _txt(keys["process"])))
    fw = df[_is(df, SEC, 4946, 4947, 4948)] if len(df) else df
    if len(fw):
        parts.append(_found(fw, "T1562.004", "low", "firewall rule " + fw["event_id"].map(_FIREWALL_EVENTS).fillna("changed")
                            + ": " + _txt(_attr(fw, "RuleName"))))
    parts = [p for p in parts if len(p)]
    out = pd.concat(parts) if parts else df.iloc[0:0].assign(technique=None, level=None, finding=None)
    return _out(out, cols)


# ``schtasks /create ... /tn NAME`` and ``at [\\\\host] HH:MM ...`` (RE2-compatible: DuckDB reads it too)
_TASK_CMD = re.compile(r"(?i)schtasks(?:\.exe)?[\"']?\s.*/create(?:.*/tn\s+(?P<name>\"[^\"]*\"|\S+))?"
                       r"|(?P<at>(?:^|[\\\s\"])at(?:\.exe)?[\"']?\s+(?:\\\\\S+\s+)?\d{1,2}:\d{2})")


# --- credentials, movement, scripts -------------------------------------------------------------

_DUMP_CMD = re.compile(r"comsvcs(?:\.dll)?[\s,#\"']+(?:minidump|#\+?24)|procdump(?:64)?(?:\.exe)?[\"']?\s.*-ma\s"
                       r"|sekurlsa::|lsadump::|ntdsutil.*\bifm\b|reg(?:\.exe)?[\"']?\s+save\s+hklm\\(?:sam|security|system)"
                       r"|esentutl(?:\.exe)?\s.*(?:/vss|config[\\/](?:sam|security|system)\b|ntds\.dit)"
                       r"|(?:copy|copy-item|cp)\s.*(?:harddiskvolumeshadowcopy\d*|\$snap_)[^\s]*\\(?:ntds\.dit|config\\(?:sam|security|system)\b)"
                       r"|vssadmin(?:\.exe)?\s+create\s+shadow|out-minidump|invoke-mimikatz|mimikatz(?:\.exe)?\s|pypykatz|nanodump"
                       r"|\\windows\\ntds\\ntds\.dit",
                       re.I | re.S)
# what each command pattern means, by the first that matches (ATT&CK id, what it is)
_DUMP_KIND = [
    (re.compile(r"lsadump::zerologon", re.I), "T1210", "Zerologon exploit (Netlogon)"),
    (re.compile(r"ntdsutil|ntds\.dit|vssadmin(?:\.exe)?\s+create\s+shadow", re.I), "T1003.003", "NTDS.dit copy"),
    (re.compile(r"hklm\\security|config[\\/]security\b|lsadump::(?:secrets|cache)", re.I), "T1003.004", "LSA secrets dump"),
    (re.compile(r"hklm\\sam|config[\\/]sam\b|lsadump::sam", re.I), "T1003.002", "SAM hive dump"),
    (re.compile(r"lsadump::dcsync", re.I), "T1003.006", "DCSync"),
    (re.compile(r"comsvcs|procdump|sekurlsa|out-minidump|mimikatz|pypykatz|nanodump", re.I), "T1003.001", "LSASS memory dump"),
    (re.compile(r"hklm\\system|config[\\/]system\b", re.I), "T1003.002", "SYSTEM hive save (boot key)"),
]


# words one of the dump patterns needs: texts without any are not searched with _DUMP_CMD (long script blocks)
_DUMP_HINT = re.compile(r"comsvcs|procdump|sekurlsa|lsadump|ntdsutil|save|esentutl|shadowcopy|\$snap_|vssadmin|minidump|"
                        r"mimikatz|pypykatz|nanodump|ntds\.dit", re.I)


def _matching(text: pd.Series, rx: re.Pattern, hint: re.Pattern) -> pd.Series:
    """``text.str.contains(rx)``, searching with ``rx`` only the texts that contain one of ``hint``'s words."""
    text = text.fillna("").astype(str)
    hit = text.str.contains(hint)
    out = pd.Series(False, index=text.index)
    if hit.any():
        out[hit] = text[hit].str.contains(rx)
    return out


def _dump_kind(cmd: Any) -> tuple[str, str]:
    text = cmd if isinstance(cmd, str) else ""
    return next(((t, k) for rx, t, k in _DUMP_KIND if rx.search(text)), ("T1003", "credential dumping"))


def _hexint(v: Any) -> int | None:
    try:
        return int(str(v), 16) if isinstance(v, str) and v.lower().startswith("0x") else int(v)
    except (TypeError, ValueError):
        return None


def _base(path: pd.Series) -> pd.Series:
    """The lower-case file name of each process path (``C:\\x\\PowerShell.exe`` -> ``powershell.exe``)."""
    return path.fillna("").astype(str).str.lower().str.replace(r"^.*[\\/]", "", regex=True)


def _machine(user: pd.Series) -> pd.Series:
    """Machine (computer) accounts end with ``$``; the well-known system identities count as machine too."""
    u = user.fillna("").astype(str)
    return u.str.endswith("$") | u.str.upper().str.contains(r"(?:^|\\)(?:SYSTEM|LOCAL SERVICE|NETWORK SERVICE|ANONYMOUS LOGON)$",
                                                             regex=True)


_LOCAL_ADDR = ("", "-", "127.0.0.1", "::1", "0.0.0.0", "::", "LOCAL", "localhost")


def _remote(ip: pd.Series) -> pd.Series:
    return ip.notna() & ~ip.fillna("").astype(str).isin(_LOCAL_ADDR)


def _found(rows: pd.DataFrame, technique: Any, level: Any, finding: Any, **extra: Any) -> pd.DataFrame:
    return rows.assign(technique=technique, level=level, finding=finding, **extra)


# DS-Replication-Get-Changes, -Get-Changes-All, -Get-Changes-In-Filtered-Set (extended rights GUIDs), as 4662 gives them
_REPLICATION = re.compile(r"1131f6aa-9c07-11d1-f79f-00c04fc2dcd2|1131f6ad-9c07-11d1-f79f-00c04fc2dcd2"
                          r"|89e95b76-444d-4c62-991a-0facbeda640c|Replicating Directory Changes", re.I)
# processes that open LSASS for their work: a read by them is not theft (Defender, SCOM, Windows itself)
_LSASS_TRUSTED = {"msmpeng.exe", "mssense.exe", "healthservice.exe", "monitoringhost.exe", "wininit.exe", "csrss.exe",
                  "lsm.exe", "services.exe", "svchost.exe", "lsass.exe", "wmiprvse.exe", "vmtoolsd.exe", "taskhostw.exe",
                  "sysmon.exe", "sysmon64.exe", "mrt.exe", "sense.exe", "searchindexer.exe", "system",
                  "collectguestlogs.exe", "windowsazureguestagent.exe", "waappagent.exe"}
# script hosts and tools that have no business reading LSASS at all
_LSASS_TOOLS = re.compile(r"^(?:powershell|pwsh|cmd|rundll32|regsvr32|mshta|wscript|cscript|taskmgr|procdump(?:64)?|"
                          r"python\d*|mimikatz|dumpert|outflank-dumpert|nanodump|sqldumper|createdump)\.exe$")
_DUMP_FILE = re.compile(r"lsass[^\\/]*\.dmp$|\\(?:dumpert|lsass|debug\d*|mini\w*)\.dmp$", re.I)


# credential objects in 4656/4663 attrs (JSON: backslashes doubled), for DuckDB
_CRED_OBJECTS = r"lsass\.exe|ntds\.dit|\\\\config\\\\(sam|security)\b"


def _cred_rows(tl):
    return tl._with(
        "(event_id IN (10, 11, 1, 4688, 4104, 4103, 800, 4769, 4768, 4625, 4771, 4776, 4648)"
        " OR (event_id = 4738 AND strpos(attrs, '%%2096') > 0) OR (event_id = 4887 AND strpos(attrs, 'SAN:') > 0)"
        " OR (event_id = 4662 AND regexp_matches(coalesce(attrs, ''), ?, 'i'))"
        " OR (event_id IN (4656, 4663) AND regexp_matches(lower(coalesce(attrs, '')), ?)))",
        _REPLICATION.pattern, _CRED_OBJECTS)


def _credential_detections(df: pd.DataFrame) -> list[pd.DataFrame]:
    """The curated credential-theft detections of :func:`credential_access`, one frame each (rows = events)."""
    parts = []
    # DCSync: directory replication rights exercised by an account that is not a domain controller (4662)
    rep = df[_is(df, SEC, 4662)]
    if len(rep):
        props = _attr(rep, "Properties").fillna("").astype(str)
        rep = rep[props.str.contains(_REPLICATION) & ~_machine(rep["user"])]
        parts.append(_found(rep, "T1003.006", "high", "DCSync: directory replication rights used by " + _txt(rep["user"])))
    # LSASS and the credential stores through object-access auditing (4656 handle requested, 4663 access made)
    obj = df[_is(df, SEC, 4656, 4663)]
    if len(obj):
        name = _attr(obj, "ObjectName").fillna("").astype(str)
        mask = _attr(obj, "AccessMask").map(_hexint).fillna(0).astype("int64")
        proc = _base(obj["process"])
        lsass = name.str.lower().str.endswith("\\lsass.exe") & ((mask & 0x10) != 0) & ~proc.isin(_LSASS_TRUSTED)
        parts.append(_found(obj[lsass], "T1003.001", "high", "LSASS handle with memory read (" + obj.loc[lsass, "event_id"].astype(str)
                            + ") by " + _txt(obj.loc[lsass, "process"])))
        store = name.str.contains(r"\\ntds\.dit$|\\config\\(?:sam|security)$", case=False, regex=True) & ~proc.isin(
            {"lsass.exe", "svchost.exe", "system", "vssvc.exe", "wbengine.exe", "searchindexer.exe", "msmpeng.exe"})
        stores = obj[store]
        parts.append(_found(stores, name[store].str.contains("ntds", case=False).map({True: "T1003.003", False: "T1003.002"}),
                            "high", "credential store " + name[store] + " opened by " + _txt(stores["process"])))
    # Sysmon 10: LSASS opened by a script host or tool with any access that can read or clone it
    s10 = df[_is(df, SYSMON, 10) & df["path"].fillna("").str.lower().str.endswith("lsass.exe")]
    if len(s10):
        access = _attr(s10, "GrantedAccess").map(_hexint).fillna(0).astype("int64")
        proc = _base(s10["process"])
        unusual = proc.str.match(_LSASS_TOOLS) | ~s10["process"].fillna("").str.lower().str.contains(
            r"^c:\\windows\\|^c:\\program files", regex=True)
        tool = s10[unusual & ((access & 0x10) == 0) & ((access & 0x40) != 0) & ~proc.isin(_LSASS_TRUSTED)]
        if len(tool):  # a tool walks the handles many times: one finding per process and access, with the count
            key = [tool["host"].fillna("?"), tool["process"].fillna("?"), access[tool.index]]
            opens = tool.groupby(key, sort=False)["timestamp"].transform("size")
            first = tool[~pd.DataFrame(key).T.set_axis(tool.index).duplicated().to_numpy()]
            parts.append(_found(first, "T1003.001", "high", "LSASS handle duplicated/cloned (access "
                                + _attr(first, "GrantedAccess").astype(str) + ") by " + _txt(first["process"]) + ", "
                                + opens[first.index].astype(str) + " opens"))
    # dump files written (Task Manager "Create dump file", procdump, comsvcs, Dumpert)
    s11 = df[_is(df, SYSMON, 11) & df["path"].fillna("").str.contains(_DUMP_FILE)]
    parts.append(_found(s11, "T1003.001", "high", "LSASS dump file written: " + _txt(s11["path"]) + " by " + _txt(s11["process"])))
    # AS-REP roasting: a TGT issued without Kerberos pre-authentication (4768 PreAuthType 0)
    tgt = df[_is(df, SEC, 4768)]
    if len(tgt):
        pre = _attr(tgt, "PreAuthType").astype(str)
        status = _attr(tgt, "Status").map(_hexint)
        tgt = tgt[(pre == "0") & (status.fillna(0) == 0)]
        parts.append(_found(tgt, "T1558.004", "medium", "AS-REP roasting: TGT without pre-authentication for " + _txt(tgt["user"])
                            + " from " + _txt(tgt["src_ip"])))
    # AS-REP roasting prepared: Kerberos pre-authentication turned off for an account (4738 "Don't Require Preauth")
    uac = df[_is(df, SEC, 4738)]
    if len(uac):
        uac = uac[_attr(uac, "UserAccountControl").fillna("").astype(str).str.contains("%%2096", regex=False)]
        parts.append(_found(uac, "T1558.004", "high", "Kerberos pre-authentication disabled for " + _txt(_attr(uac, "TargetUserName"))
                            + " by " + _txt(uac["user"])))
    # certificate theft/forgery (AD CS ESC1): a certificate issued (4887) with a subject alternative name for another account
    cert = df[_is(df, SEC, 4887)]
    if len(cert):
        attrs = _attr(cert, "Attributes").fillna("").astype(str)
        san = attrs.str.extract(r"(?i)\bSAN:(?:[^\n]*?)(?:upn|dns)=([^&\s]+)")[0]
        requester = _attr(cert, "Requester").fillna("").astype(str).str.rsplit("\\", n=1).str[-1].str.lower()
        other = san.notna() & (san.fillna("").str.split("@").str[0].str.lower() != requester)
        cert = cert[other]
        parts.append(_found(cert, "T1649", "high", "certificate issued to " + _txt(_attr(cert, "Requester")) + " for "
                            + _txt(san[other]) + " (" + _txt(attrs[other].str.extract(r"CertificateTemplate:(\S+)")[0])
                            + ")"))
    return [p for p in parts if len(p)]


def _explicit_spray(df: pd.DataFrame, many: int, window: str) -> pd.DataFrame:
    """Explicit credentials (4648) used by one account for ``many`` remote servers or ``many`` accounts in ``window``."""
    ex = df[_is(df, SEC, 4648)]
    if not len(ex):
        return ex
    server = _attr(ex, "TargetServerName").fillna("").astype(str).str.lower()
    own = ex["host"].fillna("").astype(str).str.lower().str.split(".").str[0]
    remote = ~server.isin(["", "-", "localhost", "127.0.0.1", "::1"]) & (server.str.split(".").str[0] != own)
    ex = ex.assign(_server=server)[remote & ~_machine(ex["user"])]
    span = pd.Timedelta(window).value
    rows = []
    for (host, user), g in ex.groupby(["host", "user"], sort=True):
        ns = g["timestamp"].astype("int64").to_numpy()
        for i in range(len(g)):
            w = g.iloc[i:int(np.searchsorted(ns, ns[i] + span, side="right"))]
            servers, accounts = w["_server"].nunique(), w["target_user"].nunique()
            if servers >= many or accounts >= many:
                rows.append(_found(g.iloc[[i]], "T1110.003", "high",
                                   f"explicit credentials (4648) by {user}: {accounts} accounts against {servers} servers, "
                                   f"{len(w)} uses"))
                break
    return pd.concat(rows).drop(columns="_server") if rows else ex.iloc[0:0].drop(columns="_server")


@helper('spray_users=5')
def credential_access(data: Any, spray_users: int = 5, spray_window: str = "30min", *,
                      _logons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Credential theft, one row per supporting event, each with its ATT&CK ``technique`` and a ``level``:

    - LSASS memory: Sysmon 10 with PROCESS_VM_READ (any process) or a handle duplicated by a script host or tool,
      4656/4663 handles on lsass.exe with memory read by a process that is not Windows' own or an AV's,
      dump files written (``lsass*.dmp``, Dumpert), dump commands (comsvcs MiniDump, procdump -ma, mimikatz);
    - credential stores: SAM/SECURITY/SYSTEM hive saves (``reg save``, ``esentutl /vss``), NTDS.dit copies
      (``ntdsutil ifm``, shadow-copy paths) and 4656/4663 handles on ntds.dit/SAM by other processes;
    - DCSync: 4662 directory replication rights (``1131f6aa``/``1131f6ad``/``89e95b76``) used by a non-machine account;
    - Kerberos: Kerberoasting (4769 service tickets with RC4, 0x17), AS-REP roasting (4768 without pre-authentication);
    - spraying: failed 4625/4771/4776/4648 against at least ``spray_users`` accounts from one source, and explicit
      credentials (4648) used by one account for ``spray_users`` remote servers or accounts, in ``spray_window``.

    Columns: ``technique`` (ATT&CK id), ``level``, ``finding``, ``user``, ``process``, ``src_ip``, ``event_id``.
    """
    df = _frame(data, _cred_rows)
    parts = []
    if len(df):
        lsass = df[_is(df, SYSMON, 10) & df["path"].str.lower().str.endswith("lsass.exe", na=False)].copy()
        if len(lsass):
            access = _attr(lsass, "GrantedAccess").map(_hexint)
            lsass = lsass[access.notna() & (access.fillna(0).astype(int) & 0x10 != 0)].copy()
            lsass["technique"], lsass["finding"] = "T1003.001", "LSASS memory opened for reading by " + lsass["process"].fillna("?")
            lsass["level"] = _base(lsass["process"]).isin(_LSASS_TRUSTED).map({True: "medium", False: "high"})
            parts.append(lsass)
        cmd = df[_matching(df["command_line"], _DUMP_CMD, _DUMP_HINT)].copy()
        if len(cmd):
            kind = cmd["command_line"].map(_dump_kind)
            cmd["technique"], cmd["level"] = kind.str[0], "high"
            cmd["finding"] = kind.str[1] + " command: " + cmd["command_line"].str.slice(0, 200)
            parts.append(cmd)
        tgs = df[_is(df, SEC, 4769)].copy()
        if len(tgs):
            enc = _attr(tgs, "TicketEncryptionType").map(_hexint)
            svc = tgs["service_name"].fillna("")
            tgs = tgs[(enc == 0x17) & ~svc.str.endswith("$") & (svc.str.lower() != "krbtgt")].copy()
            tgs["technique"], tgs["finding"] = "T1558.003", "RC4 service ticket (Kerberoasting) for " + tgs["service_name"]
            tgs["level"] = "medium"
            parts.append(tgs)
        parts += _credential_detections(df)
        parts.append(_explicit_spray(df, spray_users, spray_window))
    fails = (logons(df) if _logons is None else _logons) if len(df) else pd.DataFrame()
    if len(fails):
        fails = fails[fails["outcome"] == "failure"]
        # a console's failures (0.0.0.0, ::1, the machine itself) are someone typing, not a spray from elsewhere
        fails = fails.assign(source=fails["src_ip"].where(_remote(fails["src_ip"])).fillna(fails["src_host"]))
        own = fails["host"].fillna("").astype(str).str.split(".").str[0].str.lower()
        fails = fails[fails["source"].notna() & (fails["source"].astype(str).str.split(".").str[0].str.lower() != own)]
        span = pd.Timedelta(spray_window).value
        for src, g in fails.groupby("source"):
            g = g.sort_values("timestamp")
            ns = g["timestamp"].astype("int64").to_numpy()
            users = g["user"].fillna("?").to_numpy()
            # slide a window over the failures, counting distinct accounts in it (one pass)
            counts: dict[str, int] = {}
            j = 0
            for i in range(len(ns)):
                while j < len(ns) and ns[j] <= ns[i] + span:
                    counts[users[j]] = counts.get(users[j], 0) + 1
                    j += 1
                if len(counts) >= spray_users:
                    row = g.iloc[[i]].copy()
                    row["technique"], row["level"] = "T1110.003", "high"
                    row["finding"] = f"password spraying from {src}: {len(counts)} accounts, {j - i} failures"
                    parts.append(row)
                    break
                counts[users[i]] -= 1
                if not counts[users[i]]:
                    del counts[users[i]]
    parts = [p for p in parts if len(p)]
    out = pd.concat(parts) if parts else df.iloc[0:0].assign(technique=None, level=None, finding=None)
    return _out(out, ["technique", "level", "finding", "user", "process", "src_ip", "event_id"])


_PSEXEC_PIPE = re.compile(r"(?:psexesvc|remcom|csexec|paexec)|-(?:stdin|stdout|stderr)$", re.I)
_PSEXEC_SVC = re.compile(r"psexe|paexe|remcom|csexec", re.I)
# service images that run a command, not a program: smbexec/Empire/Impacket/Metasploit psexec and the like
_SHELL_SVC = re.compile(r"%comspec%|\bcmd(?:\.exe)?\"?\s+/[ck]\s|powershell|pwsh|\\\\127\.0\.0\.1\\|\\ADMIN\$|\\C\$\\"
                        r"|rundll32(?:\.exe)?\s+[^,]*\\(?:temp|users|programdata)\\|mshta|\\\\\.\\pipe\\"
                        r"|%SystemRoot%\\[A-Za-z0-9]{8}\.exe$|^[A-Za-z]:\\Windows\\[A-Za-z0-9]{8}\.exe$", re.I)
_ADMIN_SHARE = re.compile(r"(?:^|\\)(?:ADMIN|[A-Z])\$$", re.I)
_EXE_PATH = re.compile(r"\.(?:exe|dll|sys|bat|cmd|ps1|vbs|js|hta|msi|scr)$", re.I)
_WMI_BENIGN = {"wmiprvse.exe", "wmiadap.exe", "wmiapsrv.exe", "werfault.exe", "mofcomp.exe", "wbemtest.exe"}
_OFFICE_DCOM = re.compile(r"\\(?:explorer|mmc|excel|winword|powerpnt|outlook|visio|onenote)\.exe$", re.I)
_SHELLISH = re.compile(r"^(?:cmd|powershell|pwsh|rundll32|regsvr32|mshta|wscript|cscript|msbuild|certutil|bitsadmin|"
                       r"net|net1|whoami|schtasks|sc|reg|wmic)\.exe$")
_LAUNCHER = re.compile(r"%+comspec%+|start\s+/b\s|\s-nop?\s|\s-w(?:indowstyle)?\s+(?:1|h)|\s-e(?:nc(?:odedcommand)?)?\s+"
                       r"[A-Za-z0-9+/=]{20}|downloadstring|frombase64string", re.I)
# the source side: commands that reach another machine
_REMOTE_CMD = [
    (re.compile(r"psexec(?:64)?(?:\.exe)?[\"']?\s+(?:-\S+\s+)*\\\\[^\\\s]+", re.I), "T1569.002", "PsExec to a remote host"),
    (re.compile(r"paexec(?:\.exe)?[\"']?\s+\\\\[^\\\s]+", re.I), "T1569.002", "PAExec to a remote host"),
    (re.compile(r"wmic(?:\.exe)?[\"']?\s+.*?/node:\s*\S+.*\bprocess\s+call\s+create", re.I),
     "T1047", "WMI process created on a remote host (wmic /node)"),
    (re.compile(r"(?:invoke-wmimethod|invoke-cimmethod)\b.*-computername\s+\S+", re.I), "T1047",
     "WMI method invoked on a remote host"),
    (re.compile(r"schtasks(?:\.exe)?[\"']?\s+.*/create\b.*\s/s\s+\S+", re.I), "T1053.005", "scheduled task created on a remote host"),
    (re.compile(r"\bsc(?:\.exe)?[\"']?\s+\\\\\S+\s+(?:create|config)\b", re.I), "T1021.002", "service created on a remote host (sc)"),
    (re.compile(r"(?:invoke-command|enter-pssession|new-pssession)\b.*-computername\s+\S+|winrs(?:\.exe)?\s+-r(?:emote)?:", re.I),
     "T1021.006", "PowerShell remoting / WinRM to a remote host"),
    (re.compile(r"mmc20\.application|9ba05972-f6a8-11cf-a442-00a0c90a8f39|c08afd90-f2a1-11d1-8455-00a0c91f3880|"
                r"shellwindows|shellbrowserwindow|excel\.application.*registerxll", re.I), "T1021.003",
     "DCOM object of a remote host used (MMC20/ShellWindows/Excel)"),
]
_REMOTE_CMD_ANY = re.compile("|".join(rx.pattern for rx, _, _ in _REMOTE_CMD), re.I)
_REMOTE_HINT = re.compile(r"psexec|paexec|/node:|schtasks|\\\\|computername|winrs|mmc20|9ba05972|c08afd90|shellwindows|"
                          r"shellbrowserwindow|registerxll", re.I)
# the machine a source-side command reaches
_REMOTE_TARGET = re.compile(r"\\\\([^\\\s\"']+)|/node:\s*\"?([^\s\"',]+)|\s/s\s+\"?([^\s\"']+)"
                            r"|-computername\s+[\"'@(]*([A-Za-z0-9][^\s\"';),]*)|winrs(?:\.exe)?\s+-r(?:emote)?:([^\s\"']+)", re.I)
WINRM = "Microsoft-Windows-WinRM/Operational"
WMI = "Microsoft-Windows-WMI-Activity/Operational"


def _lm_rows(tl):
    return tl._with(
        "(event_id IN (4624, 1149, 21, 25, 5140, 5145, 7045, 4697, 4698, 5861, 19, 20, 6, 91, 4103, 400)"
        " OR (event_id = 4742 AND strpos(attrs, 'S-1-5-7') > 0)"
        " OR (event_id IN (1, 4688) AND (regexp_matches(lower(coalesce(parent_process, '') || '|' || coalesce(process, '')),"
        "     'wmiprvse|wsmprovhost|scrcons|mmc\\.exe|excel\\.exe|winword\\.exe|explorer\\.exe') OR regexp_matches(coalesce(command_line, ''), ?, 'i')))"
        " OR (event_id = 4104 AND regexp_matches(coalesce(command_line, ''), ?, 'i'))"
        " OR (event_id = 3 AND regexp_matches(lower(coalesce(process, '')), '\\\\(explorer|mmc|excel|winword|powerpnt|outlook|visio|onenote)\\.exe$')))",
        _REMOTE_CMD_ANY.pattern, _REMOTE_CMD_ANY.pattern)


def _lateral_detections(df: pd.DataFrame) -> list[pd.DataFrame]:
    """The curated lateral-movement detections, one frame per kind; each row has ``method``, ``technique``, ``level``,
    ``src_ip`` (the source when known) and is one supporting event."""
    parts: list[pd.DataFrame] = []

    def emit(rows: pd.DataFrame, method: Any, technique: Any, level: Any, **cols: Any) -> None:
        if len(rows):
            parts.append(rows.assign(method=method, technique=technique, level=level, **cols))

    share = df[_is(df, SEC, 5140, 5145)]
    if len(share):
        target = share["path"].fillna("").astype(str)
        name = share["service_name"].fillna("").astype(str)
        remote, human = _remote(share["src_ip"]), ~_machine(share["user"])
        emit(share[(share["event_id"] == 5145) & target.str.contains(_PSEXEC_PIPE)], "SMB/PsExec (named pipe)", "T1569.002", "high")
        emit(share[(share["event_id"] == 5145) & (target.str.lower() == "svcctl") & remote & human],
             "SMB service control (svcctl pipe)", "T1021.002", "medium")
        admin = share[name.str.contains(_ADMIN_SHARE) & remote & human]
        if len(admin):
            mask = _attr(admin, "AccessMask").map(_hexint).fillna(0).astype("int64")
            written = (admin["event_id"] == 5145) & ((mask & 0x6) != 0) & admin["path"].fillna("").str.contains(_EXE_PATH)
            emit(admin[written], "admin share (file written)", "T1021.002", "high")
            emit(admin[~written], "admin share", "T1021.002", "medium")
    svc = service_installs(df)
    if len(svc):
        svc = svc[svc["event_id"].isin([7045, 4697])]
        name, image = svc["service_name"].fillna(""), svc["image_path"].fillna("")
        emit(svc[name.str.contains(_PSEXEC_SVC) | image.str.contains(r"\\ADMIN\$|%SystemRoot%\\[A-Za-z0-9]{8}\.exe", case=False)
                 & ~name.str.contains(_PSEXEC_SVC)].assign(src_ip=None),
             "SMB/PsExec (service)", "T1569.002", "high")
        emit(svc[image.str.contains(_SHELL_SVC) & ~name.str.contains(_PSEXEC_SVC)
                 & ~image.str.contains(r"\\ADMIN\$|%SystemRoot%\\[A-Za-z0-9]{8}\.exe", case=False)].assign(src_ip=None),
             "service running a command (smbexec/psexec-style)", "T1569.002", "high")
    # tasks and services created by a session that logged on over the network
    made = df[_is(df, SEC, 4698, 4697)]
    ok = df[_is(df, SEC, 4624)]
    if len(made) and len(ok):
        net = ok[(ok["logon_type"] == 3) & _remote(ok["src_ip"]) & ~_machine(ok["user"])]
        if len(net):
            ids = _attr(net, "TargetLogonId").astype(str).str.lower()
            sessions = dict(zip(zip(net["host"], ids), net["src_ip"]))
            key = list(zip(made["host"], _attr(made, "SubjectLogonId").astype(str).str.lower()))
            src = pd.Series([sessions.get(k) for k in key], index=made.index, dtype=object)
            hit = made[src.notna()].assign(src_ip=src[src.notna()])
            emit(hit[hit["event_id"] == 4698], "scheduled task created remotely", "T1053.005", "high")
            emit(hit[hit["event_id"] == 4697], "service created remotely", "T1021.002", "high")
    procs = df[_is(df, SYSMON, 1) | _is(df, SEC, 4688)]
    if len(procs):  # 4688: the account the process runs as, as Sysmon 1 tells it (not the creating session)
        procs = procs.assign(user=procs["target_user"].where((procs["event_id"] == 4688) & procs["target_user"].notna(),
                                                              procs["user"]))
        parent, child = _base(procs["parent_process"]), _base(procs["process"])
        wmi = procs[(parent == "wmiprvse.exe") & ~child.isin(_WMI_BENIGN)]
        emit(wmi, "WMI (WmiPrvSE child)", "T1047", child[wmi.index].str.match(_SHELLISH).map({True: "high", False: "medium"}))
        emit(procs[child == "scrcons.exe"], "WMI event consumer (scrcons)", "T1546.003", "high")
        emit(procs[child == "wsmprovhost.exe"], "WinRM/PowerShell remoting (wsmprovhost)", "T1021.006", "medium")
        emit(procs[parent == "wsmprovhost.exe"], "WinRM/PowerShell remoting (wsmprovhost child)", "T1021.006", "high")
        pcmd = _attr(procs, "ParentCommandLine").fillna("").astype(str)
        dcom = ((parent == "mmc.exe") & pcmd.str.contains("-embedding", case=False)) | (
            parent.isin(["excel.exe", "winword.exe", "powerpnt.exe", "outlook.exe"]) & pcmd.str.contains("/automation|-embedding", case=False)
            & child.str.match(_SHELLISH))
        emit(procs[dcom], "DCOM (MMC20/Office child)", "T1021.003", "high")
        shellwin = (parent == "explorer.exe") & child.isin(["cmd.exe", "powershell.exe", "pwsh.exe", "rundll32.exe", "mshta.exe"]) \
            & procs["command_line"].fillna("").str.contains(_LAUNCHER)
        emit(procs[shellwin], "DCOM (ShellWindows/ShellBrowserWindow) or launcher", "T1021.003", "medium")
        emit(procs[child.isin(["mmc.exe", "excel.exe"]) & procs["command_line"].fillna("").str.contains(
            r"-embedding|/automation", case=False) & (parent == "svchost.exe")], "DCOM server started (MMC20/Excel)", "T1021.003",
             "medium")
    net3 = df[_is(df, SYSMON, 3) & df["process"].fillna("").str.contains(_OFFICE_DCOM)]
    if len(net3):
        inbound = _attr(net3, "Initiated").astype(str).str.lower() == "false"
        emit(net3[inbound & _remote(net3["src_ip"])], "DCOM (inbound RPC to " + _base(net3["process"]) + ")", "T1021.003", "high")
    cmds = df[(_is(df, SYSMON, 1) | _is(df, SEC, 4688) | _is(df, "Microsoft-Windows-PowerShell/Operational", 4103, 4104))
              & _matching(df["command_line"], _REMOTE_CMD_ANY, _REMOTE_HINT)]
    for rx, technique, what in _REMOTE_CMD:
        hit = cmds[cmds["command_line"].str.contains(rx)]
        if len(hit):  # a command aimed at this very machine (localhost, 127.0.0.1, its own name) is no movement
            target = hit["command_line"].str.extract(_REMOTE_TARGET).bfill(axis=1).iloc[:, 0]
            name = target.fillna("").astype(str).str.lower().str.split(".").str[0]
            local = target.fillna("").astype(str).str.lower().isin(["localhost", "127.0.0.1", ".", "::1"]) | (
                name == hit["host"].fillna("").astype(str).str.lower().str.split(".").str[0])
            emit(hit[~local].assign(src_ip=lambda f: f["host"]), what, technique, "medium", _dest=target[~local])
        cmds = cmds.drop(hit.index)
    wmi_evt = df[_is(df, WMI, 5861) & df["message"].fillna("").str.contains(r"ActiveScriptEventConsumer|CommandLineEventConsumer",
                                                                             case=False)]
    emit(wmi_evt, "WMI event subscription (5861)", "T1546.003", "high")
    emit(df[_is(df, SYSMON, 19, 20, 21)], "WMI event subscription (Sysmon)", "T1546.003", "high")
    winrm = df[_is(df, WINRM, 91)]
    emit(winrm, "WinRM shell created (91)", "T1021.006", "medium")
    client = df[_is(df, WINRM, 6)]
    emit(client.assign(src_ip=lambda f: f["host"]), "WinRM session to a remote host (6)", "T1021.006", "low")
    ps = df[(_is(df, "Microsoft-Windows-PowerShell/Operational", 4103) | _is(df, "Windows PowerShell", 400))
            & df["process"].fillna("").str.contains("wsmprovhost", case=False)]
    emit(ps, "PowerShell remoting session (wsmprovhost)", "T1021.006", "medium")
    if len(ok):
        lp = _attr(ok, "LogonProcessName").fillna("").astype(str).str.strip().str.lower()
        emit(ok[(ok["logon_type"] == 9) & (lp == "seclogo")], "new-credentials logon (pass-the-hash/overpass)", "T1550.002", "high")
        key = _attr(ok, "KeyLength").astype(str)
        emit(ok[(ok["logon_type"] == 3) & (lp == "ntlmssp") & (key == "0") & _remote(ok["src_ip"]) & ~_machine(ok["user"])],
             "NTLM network logon without session key (pass-the-hash)", "T1550.002", "medium")
    # Zerologon (CVE-2020-1472): a domain controller's machine password reset by ANONYMOUS LOGON over Netlogon (4742)
    changed = df[_is(df, SEC, 4742)]
    if len(changed):
        anon = (_attr(changed, "SubjectUserSid").astype(str) == "S-1-5-7") & ~_attr(changed, "PasswordLastSet").fillna(
            "-").astype(str).isin(["-", ""])
        emit(changed[anon].assign(user=_attr(changed[anon], "TargetUserName"), src_ip=None),
             "Zerologon (machine password reset by ANONYMOUS LOGON)", "T1210", "critical")
    return parts




def _text(series: pd.Series) -> pd.Series:
    """A column as text ("" where missing) whatever its dtype: an empty frame's columns may be float."""
    return series.astype(object).where(series.notna(), "").astype(str)


@helper()
def lateral_movement(data: Any) -> pd.DataFrame:
    """Who moved where, how: edges ``source`` → ``destination`` with ``method``, ``technique`` (ATT&CK), ``level``,
    ``user``, ``first``, ``last``, ``count`` and the provenance of the edge's first supporting event.

    Methods: RDP (4624 type 10, 1149, LocalSessionManager 21/25), network logons, SSH; PsExec/PAExec/RemCom seen
    through their 5145 pipes and service installs, services running commands (smbexec-style); svcctl pipe and admin
    shares (5140/5145 ADMIN$, C$, files written to them) by accounts from another machine; tasks and services created
    by a network logon session (4698/4697 linked to 4624 type 3 by logon id); WMI (WmiPrvSE children, scrcons,
    WMI-Activity 5861 and Sysmon 19-21 event subscriptions); WinRM (wsmprovhost and its children, WinRM 91/6,
    PowerShell sessions hosted by wsmprovhost); DCOM (MMC20/Office children, inbound RPC to explorer/mmc/Office,
    ShellWindows launchers); pass-the-hash (4624 type 9 seclogo, NTLM type 3 logons without a session key); and the
    source side's commands (psexec \\\\host, wmic /node, schtasks /s, sc \\\\host, Invoke-Command -ComputerName...).
    """
    df = _frame(data, _lm_rows)
    cols = ["source", "destination", "method", "technique", "level", "user", "first", "last", "count"] + PROVENANCE
    edges = []
    if len(df):
        lg = logons(df)
        good = lg[(lg["outcome"] == "success") & _remote(lg["src_ip"])]
        rdp = good[(good["method"] == "RDP") | (good["logon_type"] == 10)].assign(method="RDP", technique="T1021.001", level="low")
        net = good[(good["logon_type"] == 3)].assign(method="network logon (SMB/WinRM)", technique="T1021", level="informational")
        ssh = good[good["method"].fillna("").str.startswith("ssh")].assign(method="SSH", technique="T1021.004", level="low")
        edges += [rdp, net, ssh]
        edges += _lateral_detections(df)
    edges = [e for e in edges if len(e)]
    if not edges:
        return pd.DataFrame(columns=cols)
    all_ = pd.concat(edges).sort_values("timestamp", kind="stable")
    src = all_["src_ip"].where(_remote(all_["src_ip"]), None)
    dest = all_["_dest"] if "_dest" in all_ else pd.Series(None, index=all_.index, dtype=object)
    all_ = all_.assign(source=src.fillna(all_.get("src_host")).fillna("?"), destination=dest.fillna(all_["host"]).fillna("?"),
                       user=all_["user"].fillna("?"))
    g = all_.groupby(["source", "destination", "method", "technique", "level", "user"], sort=True)
    out = g["timestamp"].agg(first="min", last="max", count="size")
    out = out.join(g[PROVENANCE].first()).reset_index()
    return out.reindex(columns=cols).sort_values(["first", "source"], kind="stable").reset_index(drop=True)


_CRADLE = re.compile(r"(?:net\.webclient|downloadstring|downloadfile|downloaddata|invoke-webrequest|\biwr\b|"
                     r"start-bitstransfer|invoke-restmethod|\birm\b|bitsadmin)", re.I)
_ENCODED = re.compile(r"(?:\s-e(?:nc(?:odedcommand)?)?\s+[A-Za-z0-9+/=]{20,}|frombase64string)", re.I)
_OBFUSCATION = re.compile(r"(?:[a-z]`[a-z]|\[char\]\s*\d+|-join\s*\(|\(\s*'[^']{1,3}'\s*\+\s*'|-bxor|\.invoke\(|"
                          r"-replace\s*'[^']*'\s*,\s*''.*-replace)", re.I)


@helper()
@_partitionwise
def powershell(data: Any) -> pd.DataFrame:
    """PowerShell activity (4104 script blocks, 4103/800 pipelines, 400 engine starts) with flags:
    ``download`` (download cradles), ``encoded`` (base64 commands), ``obfuscated`` (heuristics)."""
    df = _frame(data, lambda tl: tl.where(event_id=[4103, 4104, 400, 800]))
    ps = df[_is(df, "Microsoft-Windows-PowerShell/Operational", 4103, 4104) | _is(df, "Windows PowerShell", 400, 800)].copy() \
        if len(df) else df.copy()
    text = ps["command_line"].fillna("") + " " + ps["message"].fillna("") if len(ps) else pd.Series([], dtype=str)
    ps["download"] = text.str.contains(_CRADLE) if len(ps) else []
    ps["encoded"] = text.str.contains(_ENCODED) if len(ps) else []
    ps["obfuscated"] = text.str.contains(_OBFUSCATION) if len(ps) else []
    return _out(ps, ["user", "process", "command_line", "path", "download", "encoded", "obfuscated", "event_id"])


@helper('"198.51.100.23"')
def first_seen(data: Any, indicator: str) -> pd.DataFrame:
    """First and last appearance of an indicator (IP, user, file name, hash...) per host, and overall
    (the row with ``host`` = '*'), searching messages, attrs and the common columns."""
    from forensics.query import Timeline

    if isinstance(data, Timeline):
        df = data.search(indicator).to_pandas()
    else:
        df = _frame(data)
        cols = ["message", "attrs", "user", "src_ip", "process", "command_line", "path"]
        hit = pd.Series(False, index=df.index)
        for c in (c for c in cols if c in df):  # missing values are no text (never "nan"/"None", never a float)
            hit |= df[c].astype(object).where(df[c].notna(), "").astype(str).str.contains(indicator, case=False,
                                                                                        regex=False).astype(bool)
        df = df[hit]
    if df.empty:
        return pd.DataFrame(columns=["host", "first", "last", "count", "first_evidence_path", "first_record_ref",
                                     "first_message"])
    df = df.sort_values("timestamp")
    rows = []
    for host, g in [("*", df)] + list(df.groupby("host", sort=True)):
        rows.append({"host": host, "first": g["timestamp"].iloc[0], "last": g["timestamp"].iloc[-1], "count": len(g),
                     "first_evidence_path": g["evidence_path"].iloc[0], "first_record_ref": g["record_ref"].iloc[0],
                     "first_message": g["message"].iloc[0]})
    return pd.DataFrame(rows)


# --- encryption ---------------------------------------------------------------------------------

_NOTE = re.compile(r"(?:readme|read_me|how[_ -]?to|decrypt|restore|recover|ransom|!!!)[^\\/]*\.(?:txt|html?|hta|url)$", re.I)
_EXT = re.compile(r"\.([A-Za-z0-9]{1,16})$")
USN = "ntfs:usnjrnl"
# extensions of names that are renamed to their real name once written (installers, updates, downloads, editors'
# saves): a rename from one of them is a file being finished, not a file being encrypted
_TEMPORARY = frozenset({"", "tmp", "temp", "part", "partial", "crdownload", "download", "!ut", "new", "old", "bak",
                        "~tmp", "$$$", "dwl", "dwl2", "swp"})
_USN_KINDS = ("RENAME_NEW_NAME", "FILE_CREATE", "FILE_DELETE")


def _usn_events(usn: pd.DataFrame, window: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(files, notes) from change-journal rows (``ntfs:usnjrnl``): a file counts when it was renamed to another
    extension from a name that was not a temporary one (``scan.pdf`` -> ``scan.pdf.locked``), or created as
    ``<name>.<ext>`` in a folder where ``<name>`` was deleted within ``window`` (copied encrypted, the original
    deleted); each file once, at its first such record.  Notes: files created with a ransom-note name.  Columns:
    timestamp, host, path, extension, directory (the parent's MFT record), renamed, note and the provenance."""
    cols = ["timestamp", "host", "path", "extension", "directory", "renamed", "note"] + PROVENANCE
    text = usn["attrs"].fillna("")
    usn = usn[text.str.contains("|".join(_USN_KINDS), regex=True)]
    if usn.empty:
        return pd.DataFrame(columns=cols), pd.DataFrame(columns=cols)
    docs = usn["attrs"].map(json.loads)
    u = pd.DataFrame({
        "timestamp": usn["timestamp"].to_numpy(), "host": usn["host"].to_numpy(), "path": usn["path"].to_numpy(),
        "evidence_id": usn["evidence_id"].to_numpy(), "evidence_path": usn["evidence_path"].to_numpy(),
        "record_ref": usn["record_ref"].to_numpy(),
        "reasons": [set(d.get("reasons") or ()) for d in docs], "name": [d.get("name") or "" for d in docs],
        "extension": [d.get("extension") or "" for d in docs], "old_name": [d.get("old_name") for d in docs],
        "old_extension": [d.get("old_extension") for d in docs],
        "file": [(d.get("file_record"), d.get("file_sequence")) for d in docs],
        "parent": [d.get("parent_record") for d in docs]}).sort_values("timestamp", kind="stable")
    u["h"] = u["host"].fillna("").astype(str)
    u["directory"] = u["evidence_id"].astype(str) + ":" + u["parent"].astype(str)
    renamed = u[u["reasons"].map(lambda r: "RENAME_NEW_NAME" in r) & u["old_name"].notna()
                & (u["extension"] != "") & (u["extension"] != u["old_extension"].fillna(""))
                & ~u["old_extension"].fillna("").isin(_TEMPORARY)]
    renamed = renamed.drop_duplicates(["h", "evidence_id", "file", "name"])
    created = u[u["reasons"].map(lambda r: "FILE_CREATE" in r)].drop_duplicates(["h", "evidence_id", "file"])
    deleted = u[u["reasons"].map(lambda r: "FILE_DELETE" in r)]
    gone: dict[tuple, list[int]] = {}
    for key, ns in zip(zip(deleted["h"], deleted["directory"], deleted["name"].str.lower()),
                       deleted["timestamp"].astype("int64")):
        gone.setdefault(key, []).append(int(ns))
    span = pd.Timedelta(window).value

    def replaced(r) -> bool:
        ext = r["extension"]
        stem = r["name"][: -len(ext) - 1] if ext else ""
        if not ext or "." not in stem or stem.rsplit(".", 1)[1].lower() in _TEMPORARY:
            return False
        t = int(pd.Timestamp(r["timestamp"]).value)
        return any(abs(d - t) <= span for d in gone.get((r["h"], r["directory"], stem.lower()), ()))

    note = created["name"].str.contains(_NOTE) if len(created) else pd.Series([], dtype=bool)
    copies = created[~note & created.apply(replaced, axis=1)] if len(created) else created
    files = pd.concat([renamed.assign(renamed=True), copies.assign(renamed=False)])
    notes = created[note].assign(renamed=False)
    return (files.assign(note=False).reindex(columns=cols).sort_values("timestamp"),
            notes.assign(note=True).reindex(columns=cols))


@helper('window="10min", min_files=100')
def encryption_burst(data: Any, window: str = "10min", min_files: int = 100) -> pd.DataFrame:
    """Mass encryption: per host, at least ``min_files`` files written or renamed to one extension inside
    ``window``, that extension not seen on that host before the burst; with the ransom notes (README /
    DECRYPT / HOW_TO ... .txt/.html) that appeared.  Reads file events: Sysmon 11 (file created), Sysmon 2,
    the file-system timeline (``source == "FILE"``, ``path`` is the file, at its content modification) and,
    where the NTFS change journal was collected (``artifact == "ntfs:usnjrnl"``), its renames to a new extension
    and its encrypted copies (created as ``<name>.<ext>`` where ``<name>`` was deleted); there the journal is the
    record: over the time it covers on a host, the other file events of that host are not counted again.
    ``renamed``: how many of the burst's files the journal shows renamed; ``directories`` counts parent folders
    (by MFT record for the journal's rows)."""
    df = _frame(data, lambda tl: tl._with(
        "(source = 'FILE' OR (channel = 'Microsoft-Windows-Sysmon/Operational' AND event_id IN (2, 11)))"))
    files = df[df["path"].notna() & ((df.get("source") == "FILE") | _is(df, SYSMON, 2, 11))] if len(df) else df
    cols = ["host", "extension", "first", "last", "files", "directories", "notes", "first_note", "renamed"] + PROVENANCE
    journal = files[files["artifact"] == USN] if len(files) and "artifact" in files else files.iloc[0:0]
    files = files[files["artifact"] != USN] if len(journal) else files
    if len(files) and (files["source"] == "FILE").any():
        # a file-system timeline has a row per time kind: a file counts once, at its content modification
        # (encryption rewrites the content; inode change and birth times may be those of the acquisition)
        fs = files[(files["source"] == "FILE") & (files["timestamp_desc"] == "Content Modification Time")]
        fs = fs.sort_values("timestamp").drop_duplicates(["host", "path"], keep="last")
        files = pd.concat([files[files["source"] != "FILE"], fs])
    files = files.assign(extension=files["path"].str.extract(_EXT)[0].str.lower(),
                         directory=files["path"].str.replace(r"[\\/][^\\/]*$", "", regex=True),
                         note=files["path"].str.contains(_NOTE), renamed=False) if len(files) else files
    if len(journal):
        usn_files, usn_notes = _usn_events(journal, window)
        hosts = journal["host"].fillna("").astype(str)
        covered = pd.DataFrame({"h": hosts, "ts": journal["timestamp"]}).groupby("h")["ts"].agg(["min", "max"])
        if len(files):
            fh = files["host"].fillna("").astype(str)
            lo, hi = fh.map(covered["min"]), fh.map(covered["max"])
            files = files[~(lo.notna() & (files["timestamp"] >= lo) & (files["timestamp"] <= hi))]
        parts = [f for f in (files, usn_files, usn_notes) if len(f)]
        files = pd.concat(parts) if parts else usn_files
    if files.empty:
        return pd.DataFrame(columns=cols)
    files = files.assign(h=files["host"].fillna("").astype(str)).sort_values("timestamp", kind="stable")
    note = files["note"].astype(bool)
    span = pd.Timedelta(window).value
    rows = []
    for (host, ext), g in files[files["extension"].notna() & ~note].groupby(["h", "extension"], sort=True):
        ns = g["timestamp"].astype("int64").to_numpy()
        ends = np.searchsorted(ns, ns + span, side="right")
        counts = ends - np.arange(len(ns))
        i = int(np.argmax(counts >= min_files)) if (counts >= min_files).any() else -1
        if i < 0:
            continue
        if i > 0 and len(g.iloc[:i]) > max(5, min_files // 20):  # the extension was common before: not new
            continue
        burst = g.iloc[i:]
        notes = files[(files["h"] == host) & note & (files["timestamp"] >= burst["timestamp"].iloc[0]
                                                     - pd.Timedelta(window))]
        rows.append({"host": host or None, "extension": ext, "first": burst["timestamp"].iloc[0],
                     "last": burst["timestamp"].iloc[-1], "files": len(burst),
                     "directories": burst["directory"].nunique(), "notes": len(notes),
                     "first_note": notes["path"].iloc[0] if len(notes) else None,
                     **{c: burst[c].iloc[0] for c in PROVENANCE},
                     "renamed": int(burst["renamed"].astype(bool).sum())})
    return pd.DataFrame(rows, columns=cols).sort_values("first").reset_index(drop=True) if rows else pd.DataFrame(columns=cols)


# --- the story ---------------------------------------------------------------------------------------

# Families the story uses whole: rare events.
_STORY_WHOLE = (7045, 4697, 4698, 4699, 4700, 4701, 4702, 4720, 4728, 4729, 4732, 4733, 4756, 4757, 1102, 104, 7040,
                4103, 4104, 400, 800, 1149, 21, 24, 25, 4625, 4771, 4648, 4719, 4946, 4947, 4948)


def story_rows(tl: Any) -> pd.DataFrame:
    """The rows :func:`story` can use, read from a Timeline with the filter pushed down to DuckDB, so a
    story over a case far larger than memory reads only candidates: the rare families whole; of the
    frequent ones (logons, Kerberos, process starts, Sysmon, object access, shares) only what a finding can
    come from — failures, RDP, new-credentials and NTLM network logons, logons from sources that failed or
    whose session created a task or service, LSASS and credential-store access, replication rights, admin
    shares and service pipes, WMI/WinRM/DCOM hosts and their children, dump files, service keys,
    inhibit-recovery, dump and remote-execution commands, RC4 service tickets, TGTs without pre-authentication."""
    whole = ", ".join(str(i) for i in _STORY_WHOLE)
    failed_sources = "SELECT DISTINCT src_ip FROM timeline_all WHERE event_id IN (4625, 4771) AND src_ip IS NOT NULL"
    logon_id = "json_extract_string(attrs, '$.Event.EventData.{}')"
    remote_sessions = f"SELECT {logon_id.format('SubjectLogonId')} FROM timeline_all WHERE event_id IN (4697, 4698)"
    clause = (
        f"(event_id IN ({whole})"
        " OR (event_id IN (4768, 4776) AND lower(coalesce(json_extract_string(attrs, '$.Event.EventData.Status'), '0x0'))"
        " NOT IN ('0x0', '0'))"
        " OR (event_id = 4768 AND json_extract_string(attrs, '$.Event.EventData.PreAuthType') = '0')"
        " OR (event_id = 4769 AND json_extract_string(attrs, '$.Event.EventData.TicketEncryptionType') = '0x17')"
        f" OR (event_id = 4624 AND (logon_type IN (9, 10) OR src_ip IN ({failed_sources})"
        "     OR (logon_type = 3 AND (attrs LIKE '%NtLmSsp%'"
        f"         OR {logon_id.format('TargetLogonId')} IN ({remote_sessions})))))"
        " OR (event_id = 4662 AND regexp_matches(coalesce(attrs, ''), ?, 'i'))"
        " OR (event_id IN (4656, 4663) AND regexp_matches(lower(coalesce(attrs, '')), ?))"
        " OR (event_id IN (5140, 5145) AND (regexp_matches(coalesce(service_name, ''), '(^|\\\\)(ADMIN|[A-Za-z])\\$$')"
        "     OR regexp_matches(lower(coalesce(path, '')), 'psexesvc|remcom|csexec|paexec|-(stdin|stdout|stderr)$|^svcctl$')))"
        " OR (channel = 'Microsoft-Windows-Sysmon/Operational' AND ((event_id = 10 AND lower(path) LIKE '%lsass.exe')"
        "     OR (event_id = 13 AND path ILIKE '%\\services\\%\\imagepath') OR event_id IN (19, 20, 21)"
        "     OR (event_id = 11 AND regexp_matches(coalesce(path, ''), ?, 'i'))"
        "     OR (event_id = 3 AND regexp_matches(coalesce(process, ''), ?, 'i'))))"
        f" OR (channel IN ('{WMI}', '{WINRM}') AND event_id IN (5861, 6, 91))"
        " OR ((event_id IN (1, 4688) OR source = 'SHELL') AND (regexp_matches(coalesce(command_line, ''), ?)"
        "     OR regexp_matches(lower(coalesce(parent_process, '') || '|' || coalesce(process, '')),"
        "                       'wmiprvse\\.exe|wsmprovhost|scrcons|mmc\\.exe|excel\\.exe|winword\\.exe')"
        "     OR (lower(parent_process) LIKE '%explorer.exe' AND regexp_matches(coalesce(command_line, ''), ?))))"
        " OR (event_id = 4738 AND strpos(attrs, '%%2096') > 0) OR (event_id = 4742 AND strpos(attrs, 'S-1-5-7') > 0)"
        " OR (event_id = 4887 AND strpos(attrs, 'SAN:') > 0)"
        " OR (event_id IN (12, 13, 4657) AND regexp_matches(coalesce(path, ''), ?, 'i'))"
        " OR source IN ('SYSLOG', 'WEB', 'LOGIN'))"
    )
    pattern = (r"(?i)vssadmin|wmic|wbadmin|bcdedit|shadowcopy|comsvcs|procdump|sekurlsa|lsadump|ntdsutil|reg(\.exe)?\s+save|"
               + _DUMP_CMD.pattern + "|" + _REMOTE_CMD_ANY.pattern + "|" + _IMPAIR_CMD.pattern + "|"
               + _TASK_CMD.pattern.removeprefix("(?i)"))
    # attrs is the biggest column: keep it only where a helper reads a field from it
    need = ", ".join(str(i) for i in (4625, 4768, 4771, 4776, 7045, 4697, 10, 13, 4769, 1102, 104, 4662, 4656, 4663, 5140,
                                      5145, 4624, 4698, 4648, 1, 3, 11, 5861, 91, 6, 4719, 4946, 4947, 4948, 12, 4657,
                                      4738, 4742, 4887))
    return tl._with(clause, _REPLICATION.pattern, _CRED_OBJECTS, _DUMP_FILE.pattern, _OFFICE_DCOM.pattern, pattern,
                    "(?i)" + _LAUNCHER.pattern, _LOG_KEYS.pattern).to_pandas(
        replace={"attrs": f"CASE WHEN event_id IN ({need}) OR source IN ('WEB', 'SERVICE') THEN attrs END"})


def _txt(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), "?").astype(str)


_ROOT_SHELL = re.compile(r"(?:^|/)(?:ba|z|da|k|c|tc|fi)?sh(?:\s+-[il]+)?\s*$|(?:^|/)su(?:\s+-)?\s*$|(?:^|/)su\s+-?\s*root\s*$")


# --- levels of the curated findings -------------------------------------------------------------------

# The level of each curated finding, on Sigma's scale (sigma.LEVELS), defined once.  Looked up as
# "detector:technique", then the technique, its parent technique, the detector; else DEFAULT_LEVEL.
FINDING_LEVELS = {
    "T1110": "medium",  # brute force
    "T1110.003": "medium",  # password spraying
    "T1543.003": "low",  # a service installed (most are software being installed)
    "T1053.005": "medium",  # a scheduled task created
    "T1053.002": "medium",  # an at job created
    # accounts and group memberships change routinely at installation and domain promotion (clean baselines):
    # low; Sigma's rules raise the privileged cases (a user added to Administrators: medium)
    "T1136": "low",  # an account created
    "T1098": "low",  # a group membership changed
    "T1003": "high",  # a credential-dumping command
    "T1003.001": "high",  # LSASS memory read
    "T1558.003": "high",  # Kerberoasting (RC4 service tickets)
    "T1070.001": "high",  # a log cleared
    "T1490": "high",  # recovery inhibited (shadow copies deleted...)
    "T1059.001": "medium",  # PowerShell downloading, encoded or obfuscated
    "T1486": "critical",  # mass encryption
    "T1595": "low",  # a web scanner
    "T1105": "medium",  # an upload to a web server
    "T1505.003": "high",  # a web shell
    "T1572": "high",  # a tunnel through a web script
    "T1548.003": "medium",  # sudo to a root shell
    "T1021.001": "low",  # an RDP logon
    "T1021.002": "high",  # PsExec's named pipes
    "T1569.002": "high",  # a PsExec-style service
}
DEFAULT_LEVEL = "medium"


def finding_level(technique: Any, detector: str | None = None) -> str:
    """The level of a curated finding (:data:`FINDING_LEVELS`)."""
    t = str(technique) if isinstance(technique, str) and technique else ""
    for key in (f"{detector}:{t}", t, t.split(".")[0], detector):
        if key and key in FINDING_LEVELS:
            return FINDING_LEVELS[key]
    return DEFAULT_LEVEL


STORY_COLUMNS = ["timestamp", "local_time", "host", "level", "technique", "finding", "detector", "rule_id", "count",
                 "first", "last"] + PROVENANCE  # local_time only when the zone is known


def _story_frame(parts: list[pd.DataFrame], zone: Any) -> pd.DataFrame:
    """The story's columns and dtypes (the same for an empty story, under pandas 2 and 3)."""
    cols = [c for c in STORY_COLUMNS if c != "local_time" or zone is not None]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    for c in ("timestamp", "first", "last"):
        out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[ns, UTC]")
    if zone is not None:
        out["local_time"] = out["timestamp"].dt.tz_convert(zone)
    host = out["host"].astype(object)
    out["host"] = host.where(host.notna() & (host.astype(str).str.strip() != ""), UNKNOWN_HOST)
    out["count"] = out["count"].astype("int64")
    for c in ("level", "technique", "finding", "detector", "rule_id", *PROVENANCE):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out.reindex(columns=cols)


def _sigma_findings(data: Any, df: pd.DataFrame, rules: Any, burst: str) -> pd.DataFrame | None:
    """Sigma's findings for the story: ``rules`` paths (run now), a SigmaRun, None (the detections saved in
    the case, if any) or False (none)."""
    if rules is None:
        if not isinstance(data, Timeline) or not data._detection_files():
            return None
        run = _sigma.saved(data)
    elif rules is False:
        return None
    elif isinstance(rules, _sigma.SigmaRun):
        run = rules
    else:
        run = _sigma.run(data if isinstance(data, Timeline) else df, rules)
    f = _sigma.findings(run, burst=burst)
    if f.empty:
        return None
    f = f.assign(level=f["level"].where(f["level"].isin(LEVELS), "informational"))
    return f.drop(columns=["techniques", "title"])


@helper('sigma="rules/windows", min_level="medium"')
def story(data: Any, sigma: Any = None, *, min_level: str | None = None, burst: str = "1h") -> pd.DataFrame:
    """The attack as one ordered table: the findings of every curated helper and Sigma's, in time order.

    ``sigma``: Sigma rules to apply (a file or folder, or a list of them), or a :class:`forensics.sigma.SigmaRun`
    already made; ``None`` (default) takes the detections saved in the case (``forensics hunt --sigma ...
    --save``), if any; ``False`` leaves Sigma out.  Sigma's findings are one row per rule, host and burst
    (matches less than ``burst`` apart).  ``min_level``: keep the findings of this level or above
    (``informational`` < ``low`` < ``medium`` < ``high`` < ``critical``).

    Columns: ``timestamp`` (UTC), ``local_time`` (the case's zone, when known), ``host`` (never empty:
    ``(unknown host)``), ``level``, ``technique`` (ATT&CK), ``finding``, ``detector`` (the helper's name, or
    ``sigma``), ``rule_id`` (Sigma), ``count``, ``first``, ``last`` (the events the finding stands for), and the
    provenance of its first supporting record: ``evidence_id``, ``evidence_path``, ``record_ref``.  Curated
    findings take their level from :data:`FINDING_LEVELS`, Sigma's from the rule."""
    from forensics.query import _duration

    if min_level is not None and min_level not in LEVELS:
        raise QueryError(f"unknown level {min_level!r}; levels are: {', '.join(LEVELS)}")
    _duration(burst)  # a bad burst fails before anything is read
    df = story_rows(data) if isinstance(data, Timeline) else _frame(data)
    parts: list[pd.DataFrame] = []

    def add(frame: pd.DataFrame, detector: str, technique: Any, finding: Callable[[pd.DataFrame], pd.Series], *,
            time: str = "timestamp", host: str = "host", count: str | None = None) -> None:
        """Findings of ``detector``, one per row of ``frame``; ``technique``: an ATT&CK id or a function of the
        frame; ``time``/``count``: the columns of the first time and of how many events (else 1)."""
        if frame is None or frame.empty:
            return
        f = frame.reset_index(drop=True)
        spans = count is not None and "last" in f
        parts.append(pd.DataFrame({
            "timestamp": f[time], "host": f[host] if host in f else None, "level": f["level"] if "level" in f else None,
            "technique": technique(f) if callable(technique) else technique, "finding": finding(f),
            "detector": detector, "rule_id": None, "count": f[count] if count is not None else 1,
            "first": f[time], "last": f["last"] if spans else f[time],
            **{c: f[c] if c in f else None for c in PROVENANCE}}))

    lg = logons(df)  # once: brute force and spraying read it
    add(brute_force(df, _logons=lg), "brute_force", "T1110",
        lambda f: "brute force from " + _txt(f["source"]) + ": " + f["attempts"].astype(str) + " failures, "
                  + f["users"].astype(str) + " accounts" + f["success_after"].map({True: ", then a success", False: ""}),
        time="first", count="attempts")
    si = service_installs(df)
    if not si.empty:  # of the services read from disk, only admin-installed systemd units tell a story
        disk = si["event_id"].isna()
        si = si[~disk | _text(si["evidence_path"]).str.startswith("/etc/systemd/system/")]
    add(si, "service_installs", "T1543.003",
        lambda f: "service installed: " + _txt(f["service_name"]) + " -> " + _txt(f["image_path"]))
    st = scheduled_tasks(df)
    add(st[st["action"].astype(str).str.startswith("created")] if not st.empty else st, "scheduled_tasks",
        lambda f: (f["action"] == "created (at)").map({True: "T1053.002", False: "T1053.005"}),
        lambda f: "scheduled task " + _txt(f["action"]) + ": " + _txt(f["task"]) + " " + _txt(f["command_line"]))
    add(accounts_created(df), "accounts_created", "T1136", lambda f: "account created: " + _txt(f["account"]))
    add(group_changes(df), "group_changes", "T1098",
        lambda f: "group change: " + _txt(f["member"]) + " " + _txt(f["change"]) + " " + _txt(f["group"]))
    add(credential_access(df, _logons=lg), "credential_access", lambda f: f["technique"], lambda f: _txt(f["finding"]))
    add(log_cleared(df), "log_cleared", "T1070.001", lambda f: "log cleared: " + _txt(f["log"]) + " by " + _txt(f["user"]))
    add(shadow_copy_deletion(df), "shadow_copy_deletion", "T1490",
        lambda f: "recovery inhibited: " + _txt(f["command_line"]).str.strip().str.slice(0, 160))
    ps = powershell(df)
    if not ps.empty:
        ps = ps[ps["download"] | ps["encoded"] | ps["obfuscated"]]
    add(ps, "powershell", "T1059.001", lambda f: "PowerShell " + f.apply(
        lambda r: "/".join(k for k in ("download", "encoded", "obfuscated") if r[k]), axis=1).astype(str)
        + ": " + _txt(f["command_line"]).str.slice(0, 160))
    add(encryption_burst(data if isinstance(data, Timeline) else df), "encryption_burst", "T1486",
        lambda f: "encryption burst: " + f["files"].astype(str) + " files to ." + _txt(f["extension"]) + " in "
                  + f["directories"].astype(str) + " folders, " + f["notes"].astype(str) + " ransom notes",
        time="first", count="files")
    web_technique = {"scanner": "T1595", "upload": "T1105", "web shell": "T1505.003", "tunnel": "T1572"}
    add(web_attacks(df), "web_attacks", lambda f: f["finding"].map(web_technique),
        lambda f: _txt(f["finding"]) + ": " + _txt(f["url"]) + " from " + _txt(f["src_ip"]) + " ("
                  + f["requests"].astype(str) + " requests; " + _txt(f["detail"]) + ")", count="requests")
    sudo = df[(df["source"] == "SYSLOG") & (df["provider"] == "sudo") & (df["target_user"] == "root")
              & _text(df["command_line"]).str.contains(_ROOT_SHELL)] if len(df) and "provider" in df else df.iloc[0:0]
    add(sudo, "sudo_root_shell", "T1548.003",
        lambda f: "sudo to a root shell by " + _txt(f["user"]) + ": " + _txt(f["command_line"]))
    add(defense_impairment(df), "defense_impairment", lambda f: f["technique"], lambda f: _txt(f["finding"]))
    lm = lateral_movement(df)  # every edge but plain network logons and SSH, which are no finding alone
    add(lm[~lm["method"].isin(["network logon (SMB/WinRM)", "SSH"])] if not lm.empty else lm, "lateral_movement",
        lambda f: f["technique"],
        lambda f: _txt(f["method"]) + " from " + _txt(f["source"]) + " to " + _txt(f["destination"]) + " as "
                  + _txt(f["user"]) + " (" + f["count"].astype(str) + " event" + (f["count"] != 1).map({True: "s", False: ""})
                  + ")", time="first", host="destination", count="count")
    for p in parts:  # a helper that judges each row (credential_access, lateral_movement) gives its level
        p["level"] = [lv if isinstance(lv, str) and lv in LEVELS else finding_level(t, d)
                      for lv, t, d in zip(p["level"], p["technique"], p["detector"])]
    found = _sigma_findings(data, df, sigma, burst)
    if found is not None:
        parts.append(found)
    zone = data.tz if isinstance(data, Timeline) else (df["local_time"].dt.tz if "local_time" in df else None)
    out = _story_frame(parts, zone)
    out["finding"] = out["finding"].astype(str).str.replace(r"\s+", " ", regex=True).astype(object)
    if min_level is not None:
        out = out[out["level"].map(LEVELS.index) >= LEVELS.index(min_level)]
    return out.sort_values(["timestamp", "host"], kind="stable").reset_index(drop=True)


@helper()
def onset(data: Any) -> pd.DataFrame:
    """The estimated start of the attack: the first finding of :func:`story` per host and overall ('*'),
    with the finding that supports it."""
    s = story(data)
    if s.empty:
        return pd.DataFrame(columns=["host", "onset", "technique", "finding"] + PROVENANCE)
    rows = [s.iloc[[0]].assign(host_key="*")]
    rows += [g.iloc[[0]].assign(host_key=h) for h, g in s.groupby("host", sort=True)]
    out = pd.concat(rows, ignore_index=True)
    out = out.rename(columns={"timestamp": "onset"}).drop(columns=["host"]).rename(columns={"host_key": "host"})
    return out.reindex(columns=["host", "onset", "technique", "finding"] + PROVENANCE)


_SIGMA_COUNT = re.compile(r" \(\d+ events?\)$")  # sigma.findings' "<title> (N events)"


def summary(st: pd.DataFrame, top: int = 10) -> dict[str, Any]:
    """A story's summary, as Hayabusa prints one before its timeline: ``findings`` and ``events`` (the events
    they stand for), ``by_detector`` (curated / sigma), ``levels`` (findings per level, highest first, every
    level present), ``hosts`` (per host: findings, events and findings per level; the hosts with the highest
    findings first), ``top`` (the ``top`` detections, a Sigma rule or a curated helper's technique, by level then
    findings: ``level``, ``detection``, ``detector``, ``rule_id``, ``technique``, ``findings``, ``events``,
    ``hosts``), and the ``first`` and ``last`` findings (rows of the story as dicts, None when empty)."""
    order = list(reversed(LEVELS))
    out: dict[str, Any] = {"findings": len(st), "events": int(st["count"].sum()) if len(st) else 0,
                           "by_detector": {"curated": int((st["detector"] != "sigma").sum()),
                                           "sigma": int((st["detector"] == "sigma").sum())},
                           "levels": {lv: int((st["level"] == lv).sum()) for lv in order},
                           "hosts": [], "top": [], "first": None, "last": None}
    if st.empty:
        return out
    rank = st["level"].map(lambda lv: LEVELS.index(lv) if lv in LEVELS else 0)
    for host, g in st.assign(_rank=rank).groupby("host", sort=True):
        levels = {lv: int((g["level"] == lv).sum()) for lv in order if (g["level"] == lv).any()}
        out["hosts"].append({"host": host, "findings": len(g), "events": int(g["count"].sum()), "levels": levels,
                             "_key": (-int(g["_rank"].max()), -len(g), str(host))})
    out["hosts"] = [{k: v for k, v in h.items() if k != "_key"} for h in sorted(out["hosts"], key=lambda h: h["_key"])]
    sig = st["detector"] == "sigma"
    name = st["finding"].astype(str).str.replace(_SIGMA_COUNT, "", regex=True).where(
        sig, st["detector"].astype(str) + " " + st["technique"].astype(object).where(st["technique"].notna(), "").astype(str))
    key = st["rule_id"].astype(object).where(sig, st["detector"].astype(str) + ":" + st["technique"].astype(str))
    rows = []
    for _, g in st.assign(_name=name, _key=key, _rank=rank).groupby("_key", sort=False):
        first = g.iloc[0]
        rows.append({"level": first["level"], "detection": str(first["_name"]).strip(), "detector": first["detector"],
                     "rule_id": first["rule_id"], "technique": first["technique"], "findings": len(g),
                     "events": int(g["count"].sum()), "hosts": int(g["host"].nunique()),
                     "_key": (-int(g["_rank"].max()), -len(g), -int(g["count"].sum()), str(first["_name"]))})
    rows.sort(key=lambda r: r["_key"])
    out["top"] = [{k: v for k, v in r.items() if k != "_key"} for r in rows[:top]]
    ordered = st.sort_values("timestamp", kind="stable")
    out["first"], out["last"] = ordered.iloc[0].to_dict(), ordered.iloc[-1].to_dict()
    return out


# --- web ---------------------------------------------------------------------------------------

_SCRIPT = re.compile(r"\.(?:jsp|jspx|jspf|asp|aspx|ashx|asmx|php\d?|phtml|phar|cgi|pl|cfm)/?$", re.I)
_SCANNER = re.compile(r"sqlmap|nikto|nmap|masscan|zgrab|gobuster|dirbuster|dirb/|wfuzz|ffuf|feroxbuster|wpscan|"
                      r"nuclei|acunetix|netsparker|openvas|nessus|whatweb|burp|jaeles|httpx|arachni|w3af|zmeu|"
                      r"morfeus|hydra|python-requests|go-http-client|libwww-perl|curl/|wget/", re.I)
_UPLOAD = re.compile(r"/manager/(?:html/upload|text/deploy)|(?:^|/)(?:file_?)?upload(?:er|file)?(?:\.\w+)?$|"
                     r"/wp-admin/(?:update|plugin-install)\.php|/admin/[^?]*(?:upload|deploy)[^/]*$", re.I)
# Parameters that carry a command (their name), and values that read as one (URL-decoded), GET or POST query
_CMD_NAMES = frozenset({"cmd", "exec", "execute", "command", "cmdline", "shell", "run", "system", "passthru", "z0",
                        "z1", "z2", "code", "payload"})
_CMD_VALUE = re.compile(
    r"(?:^|[;&|`$(]\s*)(?:whoami|id|uname(?:\s+-\w+)?|ipconfig|ifconfig|hostname|systeminfo|pwd|ver|tasklist|netstat"
    r"|net\s+(?:user|group|localgroup|view|use|share)|cat\s+/|type\s+\S|ls(?:\s+-?\w*)?|dir(?:\s+\S+)?|cd\s+\S"
    r"|echo\s|ping\s|nslookup\s|/bin/\w*sh|(?:ba|z)?sh\s+-c|cmd(?:\.exe)?\s+/c|powershell|certutil|bitsadmin"
    r"|wget\s|curl\s|nc\s+-|ncat\s|python\d?\s+-c|perl\s+-e|chmod\s|rm\s+-)(?:\s|;|&|\||$)", re.I)
# Tunnels through a script: reGeorg/Neo-reGeorg-style verbs, Tunna's "proxy" requests, reDuh's actions; the
# requests that open a connection name the address (ip/target/host + port) or the action that opens it
_TUNNEL_VERB = re.compile(r"(?:^|&)(?:cmd|action|op)=(?:connect|read|forward|disconnect|send|recv)(?:&|$)|(?:^|&)proxy(?:&|=|$)",
                          re.I)
_TUNNEL_REDUH = re.compile(r"(?:^|&)action=(?:getdata|newdata|killsocket)(?:&|$)", re.I)
_TUNNEL_OPEN = re.compile(r"(?:^|&)(?:cmd=connect|action=(?:createsocket|checkport))(?:&|$)|"
                          r"(?:^|&)(?:target|ip|host|remote_?ip|remote_?host|rhost|remotehost)=[^&]+"
                          r"&(?:.*&)?(?:port|rport|remote_?port|remoteport)=\d+", re.I)


def _command_like(query: str) -> bool:
    """The query string (GET, or POST with a query) carries a command: a parameter named like one (``cmd=``,
    ``exec=``...) with a value, or any value that reads as a shell command once URL-decoded."""
    if not query:
        return False
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(query, keep_blank_values=True)
    except ValueError:
        return False
    return any((k.lower() in _CMD_NAMES and v.strip()) or _CMD_VALUE.search(v) for k, v in pairs)


def _web(df: pd.DataFrame) -> pd.DataFrame:
    """The web rows with their request fields (method, status, user agent, query, url); a row of an unknown host
    under :data:`timeline.schema.UNKNOWN_HOST`, so that grouping by host keeps it."""
    from timeline.schema import UNKNOWN_HOST

    w = df[df["source"] == "WEB"].copy() if len(df) else df.iloc[0:0].copy()
    if not len(w):
        return w.assign(method=None, status=None, user_agent=None, query=None, url=None)
    w["host"] = w["host"].astype(object).where(w["host"].notna() & (w["host"].astype(object) != ""), UNKNOWN_HOST)
    if "src_host" in w:  # a client logged by name
        w["src_ip"] = w["src_ip"].astype(object).where(w["src_ip"].notna(), w["src_host"].astype(object))
    if "uri" in w and "method" in w:  # the fields were read out of attrs already (DuckDB)
        w["status"] = pd.to_numeric(w["status"], errors="coerce")
        w["query"] = w["query"].astype(object).where(w["query"].notna(), "")
        w["url"] = w["path"].astype(object).where(w["path"].notna(), w["uri"].astype(object))
        return w
    import orjson

    def fields(text: Any) -> tuple:  # one pass over attrs: (method, status, user agent, query, uri)
        try:
            x = orjson.loads(text) if isinstance(text, str) else None
        except orjson.JSONDecodeError:
            x = None
        if not isinstance(x, dict):
            return None, None, None, "", None
        return (str(x.get("method") or "").upper() or None, x.get("status"), x.get("user_agent"),
                x.get("query") or "", x.get("uri"))

    method, status, agent, query, uri = (list(c) for c in zip(*map(fields, w["attrs"].tolist())))
    w["method"] = pd.Series(method, index=w.index, dtype=object)
    w["status"] = pd.to_numeric(pd.Series(status, index=w.index, dtype=object), errors="coerce")
    w["user_agent"] = pd.Series(agent, index=w.index, dtype=object)
    w["query"] = pd.Series([q if isinstance(q, str) else str(q) for q in query], index=w.index, dtype=object)
    w["url"] = w["path"].astype(object).where(w["path"].notna(), pd.Series(uri, index=w.index, dtype=object))
    return w


@helper('tunnel_hits=500')
def web_attacks(data: Any, tunnel_hits: int = 200, baseline: str = "1D", driven_hits: int = 3) -> pd.DataFrame:
    """Web attacks seen in web server logs (``source == "WEB"``), one row per finding, per host (rows of an
    unknown host under ``(unknown host)``):

    - ``scanner``: requests whose user agent is a known scanner or attack tool, per source and agent;
    - ``upload``: POST/PUT to an upload or deploy endpoint (Tomcat manager, WordPress, ``/upload``), or a PUT
      of a script itself (``PUT /x.jsp/``);
    - ``web shell``: requests to a script (``.jsp/.aspx/.php``...) that were answered (status below 400) and

      - come from the source of an upload, after it, to a script nobody requested before that upload (a new
        script URL after an upload), or
      - carry a command in their query (``cmd=``, ``exec=``... or a value such as ``whoami``, ``uname -a``;
        GET or POST), or
      - go to a script first requested after the log's first ``baseline`` (newly seen), and are POSTs or come
        from one source that sent at least ``driven_hits`` of them and nine in ten of all (one source driving
        a newly seen script);
    - ``tunnel``: at least ``tunnel_hits`` requests to one script with tunnel-style parameters (reGeorg's
      ``cmd=connect|read|forward|disconnect``, Tunna's ``proxy``, reDuh's actions, ip/target + port), of which
      at least one is a reGeorg/Tunna verb or opens a connection: the request shape, even when only a few
      requests carry the address.

    Columns: ``finding``, ``url``, ``src_ip``, ``requests``, ``first``, ``last``, ``user_agent``, ``detail``
    (and the provenance of the first supporting row)."""
    from forensics.query import Timeline

    if isinstance(data, Timeline):  # only the web rows, only the fields read here, taken out of attrs by DuckDB
        df = data._with("source = 'WEB'").sql(
            "SELECT timestamp, host, source, path, src_ip, src_host, evidence_id, evidence_path, record_ref, "
            "nullif(upper(json_extract_string(attrs, '$.method')), '') AS method, "
            "TRY_CAST(json_extract_string(attrs, '$.status') AS DOUBLE) AS status, "
            "json_extract_string(attrs, '$.user_agent') AS user_agent, "
            "coalesce(json_extract_string(attrs, '$.query'), '') AS query, json_extract_string(attrs, '$.uri') AS uri "
            "FROM timeline ORDER BY timestamp, event_hash")
    else:
        df = _frame(data)
    w = _web(df)
    cols = ["finding", "url", "src_ip", "requests", "first", "last", "user_agent", "detail"]
    if not len(w):
        return pd.DataFrame(columns=["timestamp", "host"] + cols + PROVENANCE)
    w = w.sort_values("timestamp", kind="stable")
    found: list[dict[str, Any]] = []

    def emit(rows: pd.DataFrame, keys: list[str], finding: str, detail: Callable[[pd.DataFrame], str]) -> None:
        """One finding per group of ``rows`` (in time order): its first row's fields and provenance."""
        if rows.empty:
            return
        first_cols = ["host", "url", "src_ip", "user_agent"] + [k for k in PROVENANCE if k in rows]
        values = {c: rows[c].to_numpy(dtype=object) for c in first_cols}
        ts = rows["timestamp"]
        narrow = rows[["timestamp", "url", "status", "method", "src_ip"]]  # what the details read
        for pos in rows.groupby(keys, dropna=False, sort=False).indices.values():
            i0 = pos[0]
            found.append({"timestamp": ts.iloc[i0], "host": values["host"][i0], "finding": finding,
                          "url": values["url"][i0], "src_ip": values["src_ip"][i0], "requests": len(pos),
                          "first": ts.iloc[i0], "last": ts.iloc[pos[-1]], "user_agent": values["user_agent"][i0],
                          "detail": detail(narrow.iloc[pos]), **{k: values[k][i0] for k in PROVENANCE if k in values}})

    url = w["url"].fillna("").astype(str)
    answered = w["status"].isna() | (w["status"] < 400)
    scan = w[w["user_agent"].fillna("").astype(str).str.contains(_SCANNER)]
    emit(scan, ["host", "src_ip", "user_agent"], "scanner",
         lambda g: f"{g['url'].nunique()} distinct URLs, statuses {sorted(set(g['status'].dropna().astype(int)))[:6]}")
    is_script = url.str.contains(_SCRIPT)
    up = w[((w["method"].isin(["POST", "PUT"]) & url.str.contains(_UPLOAD)) | ((w["method"] == "PUT") & is_script))
           & answered]
    emit(up, ["host", "src_ip", "url"], "upload", lambda g: f"{g['method'].iloc[0]} status {_status(g['status'].iloc[0])}")

    script = w[is_script & ~w.index.isin(up.index)]
    if len(script):
        start = w.groupby("host")["timestamp"].transform("min").loc[script.index]
        first_seen = script.groupby(["host", "url"])["timestamp"].transform("min")
        new = first_seen > start + pd.Timedelta(baseline)
        ok = answered.loc[script.index]
        # a new script URL after an upload: from the uploading source, after it, to a script first requested after it
        uploaded = pd.Series(False, index=script.index)
        for (host, ip), u in up.groupby(["host", "src_ip"], dropna=False):
            t0 = u["timestamp"].min()
            uploaded |= ((script["host"] == host) & (script["src_ip"].astype(object) == ip) & (script["timestamp"] > t0)
                         & (first_seen >= t0))
        queries = script["query"].astype(str)
        memo: dict[str, bool] = {}
        cmd = queries.map(lambda q: memo[q] if q in memo else memo.setdefault(q, _command_like(q))).astype(bool)
        # one source driving a newly seen script
        per_src = script.groupby(["host", "url", "src_ip"], dropna=False)["timestamp"].transform("size")
        per_url = script.groupby(["host", "url"])["timestamp"].transform("size")
        driven = new & (per_src >= driven_hits) & (per_src >= 0.9 * per_url)
        shell_rows = ok & (uploaded | cmd | (new & ((script["method"] == "POST") | driven)))
        shell = script[shell_rows]

        def shell_detail(g: pd.DataFrame) -> str:
            i = g.index
            why = [w_ for w_, m in (("a new script after an upload from the same source", uploaded),
                                    ("command parameters", cmd), ("first requested after the baseline", new),
                                    ("one source driving it", driven)) if bool(m.loc[i].any())]
            return (f"{(g['method'] == 'POST').sum()} POST(s), {(g['method'] == 'GET').sum()} GET(s) from "
                    f"{g['src_ip'].nunique()} source(s); " + "; ".join(why))

        emit(shell, ["host", "url"], "web shell", shell_detail)
        verb = queries.str.contains(_TUNNEL_VERB)
        opens = queries.str.contains(_TUNNEL_OPEN)
        tun_rows = verb | opens | queries.str.contains(_TUNNEL_REDUH)
        tun = script[tun_rows]
        if len(tun):
            keys = [tun["host"], tun["url"]]
            hits = tun.groupby(keys)["timestamp"].transform("size")
            strong = (verb | opens).loc[tun.index].groupby(keys).transform("any")
            tun = tun[(hits >= tunnel_hits) & strong]

            def tunnel_detail(g: pd.DataFrame) -> str:
                addr = int(opens.loc[g.index].sum())
                srcs = g["src_ip"].value_counts()
                return (f"{len(g)} requests with tunnel parameters, {addr} opening a connection (address or connect); "
                        f"{int(srcs.iloc[0])} from {srcs.index[0]}" + (f", {len(srcs) - 1} other source(s)" if len(srcs) > 1 else ""))

            emit(tun, ["host", "url"], "tunnel", tunnel_detail)
    if not found:
        return pd.DataFrame(columns=["timestamp", "host"] + cols + PROVENANCE)
    out = pd.DataFrame(found)
    return out.reindex(columns=["timestamp", "host"] + cols + PROVENANCE).sort_values(["timestamp", "host"], kind="stable").reset_index(drop=True)


def _status(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else str(int(v))
