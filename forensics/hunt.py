"""The analyst's questions, one call each.

Every helper is a plain function that takes a timeline DataFrame (as returned by
``Timeline.to_pandas()``) or a :class:`forensics.Timeline` and returns a DataFrame.
Given a ``Timeline``, a helper first narrows it to the rows it can use (pushed down to
DuckDB), so it works on cases larger than memory.  The same helpers are reachable as
``df.fx.<name>(...)`` and ``Timeline.<name>(...)``.

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
import json
import re
from typing import Any, Callable

import numpy as np
import pandas as pd

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
    "lateral_movement",
    "powershell",
    "first_seen",
    "encryption_burst",
    "web_attacks",
    "story",
    "story_rows",
    "onset",
]

SEC = "Security"
SYS = "System"
SYSMON = "Microsoft-Windows-Sysmon/Operational"
TS_LOCAL = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"
TS_RCM = "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational"

PROVENANCE = ["evidence_id", "evidence_path", "record_ref"]

_LOGON_TYPE = {2: "interactive", 3: "network", 4: "batch", 5: "service", 7: "unlock", 8: "network cleartext",
               9: "new credentials", 10: "remote interactive (RDP)", 11: "cached interactive"}


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
        method = lt.map(lambda x: _LOGON_TYPE.get(int(x), f"type {int(x)}") if pd.notna(x) else None)
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


def brute_force(data: Any, threshold: int = 10, window: str = "10min", *,
                _logons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Failed-logon bursts: one row per attacking source and target host with at least ``threshold``
    failures inside ``window``: attempts, distinct users tried, first, last, and whether a
    successful logon from that source to that host followed."""
    tries = logons(data) if _logons is None else _logons
    if tries.empty:
        return pd.DataFrame(columns=["source", "host", "attempts", "users", "first", "last", "success_after"])
    tries = tries.assign(source=tries["src_ip"].fillna(tries["src_host"]))
    tries = tries[tries["source"].notna() & ~tries["source"].isin(["-", "127.0.0.1", "::1", "LOCAL"])]
    fails = tries[tries["outcome"] == "failure"]
    rows = []
    span = pd.Timedelta(window)
    for (src, host), g in fails.groupby(["source", "host"], sort=True, dropna=False):  # loose logs: no host
        t = g["timestamp"].sort_values().reset_index(drop=True)
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
                     "first_success": ok["timestamp"].min() if not ok.empty else pd.NaT})
    return pd.DataFrame(rows, columns=["source", "host", "attempts", "max_in_window", "users", "first", "last",
                                       "success_after", "first_success"])


# --- persistence and execution -----------------------------------------------------------------

_SVC_KEY = re.compile(r"\\Services\\([^\\]+)\\ImagePath$", re.I)


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


@_partitionwise
def accounts_created(data: Any) -> pd.DataFrame:
    """Accounts created (Security 4720).  Columns: ``account`` (the new one), ``user`` (who)."""
    df = _frame(data, lambda tl: tl.where(event_id=4720))
    out = df[_is(df, SEC, 4720)].rename(columns={"target_user": "account"}) if len(df) else df
    return _out(out, ["account", "user", "event_id"])


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


@_partitionwise
def scheduled_tasks(data: Any) -> pd.DataFrame:
    """Scheduled tasks created, deleted, enabled, disabled or updated (4698-4702): ``task``, ``action``,
    ``command_line``, ``user``."""
    ids = (4698, 4699, 4700, 4701, 4702)
    df = _frame(data, lambda tl: tl.where(event_id=list(ids)))
    out = df[_is(df, SEC, *ids)].copy() if len(df) else df
    if len(out):
        out["task"] = out["service_name"]
        out["action"] = out["event_id"].map({4698: "created", 4699: "deleted", 4700: "enabled", 4701: "disabled",
                                             4702: "updated"})
    return _out(out, ["task", "action", "command_line", "user", "event_id"])


# --- credentials, movement, scripts -------------------------------------------------------------

_DUMP_CMD = re.compile(r"comsvcs(?:\.dll)?[\s,#]+(?:minidump|#24)|procdump(?:64)?(?:\.exe)?\s.*-ma\s.*lsass"
                       r"|sekurlsa::|lsadump::|ntdsutil.*\bifm\b|reg(?:\.exe)?\s+save\s+hklm\\(?:sam|security|system)",
                       re.I | re.S)


def _hexint(v: Any) -> int | None:
    try:
        return int(str(v), 16) if isinstance(v, str) and v.lower().startswith("0x") else int(v)
    except (TypeError, ValueError):
        return None


def credential_access(data: Any, spray_users: int = 5, spray_window: str = "30min", *,
                      _logons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Credential theft: LSASS memory opened for reading (Sysmon 10 with PROCESS_VM_READ), dump tools and
    comsvcs MiniDump on command lines, Kerberoasting (4769 service tickets with RC4, 0x17), and password
    spraying (failed 4625/4771/4776/4648 against at least ``spray_users`` accounts from one source).

    Columns: ``technique`` (ATT&CK id), ``finding``, ``user``, ``process``, ``src_ip``.
    """
    df = _frame(data, lambda tl: tl.where(event_id=[10, 1, 4688, 4104, 4769, 4625, 4771, 4776, 4648]))
    parts = []
    if len(df):
        lsass = df[_is(df, SYSMON, 10) & df["path"].str.lower().str.endswith("lsass.exe", na=False)].copy()
        if len(lsass):
            access = _attr(lsass, "GrantedAccess").map(_hexint)
            lsass = lsass[access.notna() & (access.fillna(0).astype(int) & 0x10 != 0)].copy()
            lsass["technique"], lsass["finding"] = "T1003.001", "LSASS memory opened for reading by " + lsass["process"].fillna("?")
            parts.append(lsass)
        cmd = df[df["command_line"].fillna("").str.contains(_DUMP_CMD)].copy()
        if len(cmd):
            cmd["technique"], cmd["finding"] = "T1003", "credential dumping command: " + cmd["command_line"].str.slice(0, 200)
            parts.append(cmd)
        tgs = df[_is(df, SEC, 4769)].copy()
        if len(tgs):
            enc = _attr(tgs, "TicketEncryptionType").map(_hexint)
            svc = tgs["service_name"].fillna("")
            tgs = tgs[(enc == 0x17) & ~svc.str.endswith("$") & (svc.str.lower() != "krbtgt")].copy()
            tgs["technique"], tgs["finding"] = "T1558.003", "RC4 service ticket (Kerberoasting) for " + tgs["service_name"]
            parts.append(tgs)
    fails = (logons(df) if _logons is None else _logons) if len(df) else pd.DataFrame()
    if len(fails):
        fails = fails[fails["outcome"] == "failure"].assign(source=lambda x: x["src_ip"].fillna(x["src_host"]))
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
                    row["technique"] = "T1110.003"
                    row["finding"] = f"password spraying from {src}: {len(counts)} accounts, {j - i} failures"
                    parts.append(row)
                    break
                counts[users[i]] -= 1
                if not counts[users[i]]:
                    del counts[users[i]]
    out = pd.concat(parts) if parts else df.iloc[0:0].assign(technique=None, finding=None)
    return _out(out, ["technique", "finding", "user", "process", "src_ip", "event_id"])


_PSEXEC_PIPE = re.compile(r"(?:psexesvc|remcom|csexec|paexec)|-(?:stdin|stdout|stderr)$", re.I)


def lateral_movement(data: Any) -> pd.DataFrame:
    """Who moved where, how: edges ``source`` → ``destination`` with ``method`` (RDP, SMB/PsExec incl. renamed
    PsExec seen through its 5145 pipes and service installs, network logon, SSH), ``user``, ``first``,
    ``last``, ``count``."""
    df = _frame(data, lambda tl: tl.where(event_id=[4624, 1149, 21, 25, 5145, 7045, 4697]))
    edges = []
    if len(df):
        lg = logons(df)
        lg = lg[(lg["outcome"] == "success") & lg["src_ip"].notna()
                & ~lg["src_ip"].isin(["-", "127.0.0.1", "::1", "LOCAL"])]
        rdp = lg[(lg["method"] == "RDP") | (lg["logon_type"] == 10)].assign(method="RDP")
        net = lg[(lg["logon_type"] == 3)].assign(method="network logon (SMB/WinRM)")
        ssh = lg[lg["method"].fillna("").str.startswith("ssh")].assign(method="SSH")
        edges += [rdp, net, ssh]
        pipes = df[_is(df, SEC, 5145) & df["path"].fillna("").str.contains(_PSEXEC_PIPE)]
        edges.append(pipes.assign(method="SMB/PsExec (named pipe)"))
        svc = service_installs(df)
        psx = svc[svc["service_name"].fillna("").str.contains(r"psexe|paexe|remcom|csexec", case=False)
                  | svc["image_path"].fillna("").str.contains(r"\\ADMIN\$|%SystemRoot%\\[A-Za-z0-9]{8}\.exe", case=False)]
        edges.append(psx.assign(method="SMB/PsExec (service)", src_ip=None))
    edges = [e for e in edges if len(e)]
    if not edges:
        return pd.DataFrame(columns=["source", "destination", "method", "user", "first", "last", "count"])
    all_ = pd.concat(edges)
    all_ = all_.assign(source=all_["src_ip"].fillna(all_.get("src_host")).fillna("?"), destination=all_["host"])
    g = all_.groupby(["source", "destination", "method", all_["user"].fillna("?")], sort=True)
    out = g["timestamp"].agg(first="min", last="max", count="size").reset_index()
    return out.sort_values(["first", "source"]).reset_index(drop=True)


_CRADLE = re.compile(r"(?:net\.webclient|downloadstring|downloadfile|downloaddata|invoke-webrequest|\biwr\b|"
                     r"start-bitstransfer|invoke-restmethod|\birm\b|bitsadmin)", re.I)
_ENCODED = re.compile(r"(?:\s-e(?:nc(?:odedcommand)?)?\s+[A-Za-z0-9+/=]{20,}|frombase64string)", re.I)
_OBFUSCATION = re.compile(r"(?:[a-z]`[a-z]|\[char\]\s*\d+|-join\s*\(|\(\s*'[^']{1,3}'\s*\+\s*'|-bxor|\.invoke\(|"
                          r"-replace\s*'[^']*'\s*,\s*''.*-replace)", re.I)


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


def first_seen(data: Any, indicator: str) -> pd.DataFrame:
    """First and last appearance of an indicator (IP, user, file name, hash...) per host, and overall
    (the row with ``host`` = '*'), searching messages, attrs and the common columns."""
    from forensics.query import Timeline

    if isinstance(data, Timeline):
        df = data.search(indicator).to_pandas()
    else:
        df = _frame(data)
        cols = ["message", "attrs", "user", "src_ip", "process", "command_line", "path"]
        hay = df[[c for c in cols if c in df]].astype(str).agg(" ".join, axis=1)
        df = df[hay.str.contains(indicator, case=False, regex=False)]
    if df.empty:
        return pd.DataFrame(columns=["host", "first", "last", "count", "first_evidence_path", "first_record_ref"])
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


def encryption_burst(data: Any, window: str = "10min", min_files: int = 100) -> pd.DataFrame:
    """Mass encryption: per host, at least ``min_files`` files written or renamed to one extension inside
    ``window``, that extension not seen on that host before the burst; with the ransom notes (README /
    DECRYPT / HOW_TO ... .txt/.html) that appeared.  Reads file events: Sysmon 11 (file created), Sysmon 2
    and, with the file-system collector, ``source == "FILE"`` rows (``path`` is the file)."""
    df = _frame(data, lambda tl: tl._with(
        "(source = 'FILE' OR (channel = 'Microsoft-Windows-Sysmon/Operational' AND event_id IN (2, 11)))"))
    files = df[df["path"].notna() & ((df.get("source") == "FILE") | _is(df, SYSMON, 2, 11))] if len(df) else df
    if len(files) and (files["source"] == "FILE").any():
        # a file-system timeline has a row per time kind: a file counts once, at its content modification
        # (encryption rewrites the content; inode change and birth times may be those of the acquisition)
        fs = files[(files["source"] == "FILE") & (files["timestamp_desc"] == "Content Modification Time")]
        fs = fs.sort_values("timestamp").drop_duplicates(["host", "path"], keep="last")
        files = pd.concat([files[files["source"] != "FILE"], fs])
    cols = ["host", "extension", "first", "last", "files", "directories", "notes", "first_note",
            "evidence_path", "record_ref"]
    if files.empty:
        return pd.DataFrame(columns=cols)
    files = files.assign(extension=files["path"].str.extract(_EXT)[0].str.lower(),
                         directory=files["path"].str.replace(r"[\\/][^\\/]*$", "", regex=True),
                         note=files["path"].str.contains(_NOTE)).sort_values("timestamp")
    span = pd.Timedelta(window).value
    rows = []
    for (host, ext), g in files[files["extension"].notna() & ~files["note"]].groupby(["host", "extension"], sort=True):
        ns = g["timestamp"].astype("int64").to_numpy()
        ends = np.searchsorted(ns, ns + span, side="right")
        counts = ends - np.arange(len(ns))
        i = int(np.argmax(counts >= min_files)) if (counts >= min_files).any() else -1
        if i < 0:
            continue
        if i > 0 and len(g.iloc[:i]) > max(5, min_files // 20):  # the extension was common before: not new
            continue
        burst = g.iloc[i:]
        notes = files[(files["host"] == host) & files["note"] & (files["timestamp"] >= burst["timestamp"].iloc[0]
                                                                - pd.Timedelta(window))]
        rows.append({"host": host, "extension": ext, "first": burst["timestamp"].iloc[0],
                     "last": burst["timestamp"].iloc[-1], "files": len(burst),
                     "directories": burst["directory"].nunique(), "notes": len(notes),
                     "first_note": notes["path"].iloc[0] if len(notes) else None,
                     "evidence_path": burst["evidence_path"].iloc[0], "record_ref": burst["record_ref"].iloc[0]})
    return pd.DataFrame(rows, columns=cols).sort_values("first").reset_index(drop=True) if rows else pd.DataFrame(columns=cols)


# --- the story ---------------------------------------------------------------------------------------

# Families the story uses whole: rare events.
_STORY_WHOLE = (7045, 4697, 4698, 4699, 4700, 4701, 4702, 4720, 4728, 4729, 4732, 4733, 4756, 4757, 1102, 104, 7040,
                4103, 4104, 400, 800, 1149, 21, 24, 25, 4625, 4771, 4648)


def story_rows(tl: Any) -> pd.DataFrame:
    """The rows :func:`story` can use, read from a Timeline with the filter pushed down to DuckDB, so a
    story over a case far larger than memory reads only candidates: the rare families whole; of the
    frequent ones (logons, Kerberos, process starts, Sysmon) only what a finding can come from —
    failures, RDP logons, logons from sources that failed, LSASS access, service keys, inhibit-recovery
    and dump commands, RC4 service tickets."""
    whole = ", ".join(str(i) for i in _STORY_WHOLE)
    failed_sources = "SELECT DISTINCT src_ip FROM timeline_all WHERE event_id IN (4625, 4771) AND src_ip IS NOT NULL"
    clause = (
        f"(event_id IN ({whole})"
        " OR (event_id IN (4768, 4776) AND lower(coalesce(json_extract_string(attrs, '$.Event.EventData.Status'), '0x0'))"
        " NOT IN ('0x0', '0'))"
        " OR (event_id = 4769 AND json_extract_string(attrs, '$.Event.EventData.TicketEncryptionType') = '0x17')"
        f" OR (event_id = 4624 AND (logon_type = 10 OR src_ip IN ({failed_sources})))"
        " OR (channel = 'Microsoft-Windows-Sysmon/Operational' AND ((event_id = 10 AND lower(path) LIKE '%lsass.exe')"
        "     OR (event_id = 13 AND path ILIKE '%\\services\\%\\imagepath')))"
        " OR ((event_id IN (1, 4688) OR source = 'SHELL') AND regexp_matches(coalesce(command_line, ''), ?))"
        " OR source IN ('SYSLOG', 'WEB', 'LOGIN'))"
    )
    pattern = r"(?i)vssadmin|wmic|wbadmin|bcdedit|shadowcopy|comsvcs|procdump|sekurlsa|lsadump|ntdsutil|reg(\.exe)?\s+save"
    # attrs is the biggest column: keep it only where a helper reads a field from it
    need = ", ".join(str(i) for i in (4625, 4768, 4771, 4776, 7045, 4697, 10, 13, 4769, 1102, 104))
    return tl._with(clause, pattern).to_pandas(
        replace={"attrs": f"CASE WHEN event_id IN ({need}) OR source IN ('WEB', 'SERVICE') THEN attrs END"})


def _txt(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), "?").astype(str)


_ROOT_SHELL = re.compile(r"(?:^|/)(?:ba|z|da|k|c|tc|fi)?sh(?:\s+-[il]+)?\s*$|(?:^|/)su(?:\s+-)?\s*$|(?:^|/)su\s+-?\s*root\s*$")


def story(data: Any) -> pd.DataFrame:
    """The attack as one ordered table of findings from every helper: time (UTC and local), host,
    ATT&CK technique, finding, and a reference back to the supporting row (evidence, record)."""
    from forensics.query import Timeline

    df = story_rows(data) if isinstance(data, Timeline) else _frame(data)
    findings: list[pd.DataFrame] = []

    def add(frame: pd.DataFrame, technique: Any, finding: Callable[[pd.DataFrame], pd.Series]) -> None:
        if frame is not None and not frame.empty:
            findings.append(frame.assign(technique=technique if isinstance(technique, str) else technique,
                                         finding=finding(frame)))

    lg = logons(df)  # once: brute force, spraying and RDP findings all read it
    bf = brute_force(df, _logons=lg)
    if not bf.empty:
        findings.append(pd.DataFrame({
            "timestamp": bf["first"], "host": bf["host"], "technique": "T1110",
            "finding": "brute force from " + _txt(bf["source"]) + ": " + bf["attempts"].astype(str) + " failures, "
                       + bf["users"].astype(str) + " accounts" + bf["success_after"].map({True: ", then a success", False: ""})}))
    si = service_installs(df)
    if not si.empty:  # of the services read from disk, only admin-installed systemd units tell a story
        disk = si["event_id"].isna()
        si = si[~disk | si["evidence_path"].astype(str).str.startswith("/etc/systemd/system/")]
    add(si, "T1543.003",
        lambda f: "service installed: " + _txt(f["service_name"]) + " -> " + _txt(f["image_path"]))
    st = scheduled_tasks(df)
    add(st[st["action"] == "created"] if not st.empty else st, "T1053.005",
        lambda f: "scheduled task created: " + _txt(f["task"]) + " " + _txt(f["command_line"]))
    add(accounts_created(df), "T1136", lambda f: "account created: " + _txt(f["account"]))
    add(group_changes(df), "T1098",
        lambda f: "group change: " + _txt(f["member"]) + " " + _txt(f["change"]) + " " + _txt(f["group"]))
    ca = credential_access(df, _logons=lg)
    add(ca, ca["technique"] if not ca.empty else "", lambda f: f["finding"])
    add(log_cleared(df), "T1070.001", lambda f: "log cleared: " + _txt(f["log"]) + " by " + _txt(f["user"]))
    add(shadow_copy_deletion(df), "T1490",
        lambda f: "recovery inhibited: " + _txt(f["command_line"]).str.strip().str.slice(0, 160))
    ps = powershell(df)
    if not ps.empty:
        flagged = ps[ps["download"] | ps["encoded"] | ps["obfuscated"]]
        add(flagged, "T1059.001", lambda f: "PowerShell " + f.apply(
            lambda r: "/".join(k for k in ("download", "encoded", "obfuscated") if r[k]), axis=1)
            + ": " + _txt(f["command_line"]).str.slice(0, 160))
    eb = encryption_burst(data if isinstance(data, Timeline) else df)
    if not eb.empty:
        findings.append(pd.DataFrame({
            "timestamp": eb["first"], "host": eb["host"], "technique": "T1486",
            "finding": "encryption burst: " + eb["files"].astype(str) + " files to ." + eb["extension"] + " in "
                       + eb["directories"].astype(str) + " folders, " + eb["notes"].astype(str) + " ransom notes",
            "evidence_path": eb["evidence_path"], "record_ref": eb["record_ref"]}))
    wa = web_attacks(df)
    _WEB_TECH = {"scanner": "T1595", "upload": "T1105", "web shell": "T1505.003", "tunnel": "T1572"}
    add(wa, wa["finding"].map(_WEB_TECH) if not wa.empty else "",
        lambda f: f["finding"] + ": " + _txt(f["url"]) + " from " + _txt(f["src_ip"]) + " (" + f["requests"].astype(str)
                  + " requests; " + _txt(f["detail"]) + ")")
    sudo = df[(df["source"] == "SYSLOG") & (df["provider"] == "sudo") & (df["target_user"] == "root")
              & df["command_line"].fillna("").str.contains(_ROOT_SHELL)] if len(df) and "provider" in df else df.iloc[0:0]
    add(sudo, "T1548.003", lambda f: "sudo to a root shell by " + _txt(f["user"]) + ": " + _txt(f["command_line"]))
    rdp = lg[(lg["method"] == "RDP") & (lg["outcome"] == "success")] if not lg.empty else lg
    add(rdp, "T1021.001", lambda f: "RDP logon by " + _txt(f["user"]) + " from " + _txt(f["src_ip"]))
    zone = data.tz if isinstance(data, Timeline) else (df["local_time"].dt.tz if "local_time" in df else None)
    cols = ["timestamp"] + (["local_time"] if zone is not None else []) + ["host", "technique", "finding"] + PROVENANCE
    if not findings:
        return pd.DataFrame(columns=cols)
    out = pd.concat(findings, ignore_index=True)
    out["finding"] = out["finding"].astype(str).str.replace(r"\s+", " ", regex=True)
    if zone is not None:
        out["local_time"] = out["timestamp"].dt.tz_convert(zone)
    return out.reindex(columns=cols).sort_values(["timestamp", "host"], kind="stable").reset_index(drop=True)


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


# --- web ---------------------------------------------------------------------------------------

_SCRIPT = re.compile(r"\.(?:jsp|jspx|asp|aspx|ashx|asmx|php\d?|phtml|cgi|pl|cfm)$", re.I)
_SCANNER = re.compile(r"sqlmap|nikto|nmap|masscan|zgrab|gobuster|dirbuster|dirb/|wfuzz|ffuf|feroxbuster|wpscan|"
                      r"nuclei|acunetix|netsparker|openvas|nessus|whatweb|burp|jaeles|httpx|arachni|w3af|zmeu|"
                      r"morfeus|hydra|python-requests|go-http-client|libwww-perl|curl/|wget/", re.I)
_UPLOAD = re.compile(r"/manager/(?:html/upload|text/deploy)|(?:^|/)(?:file_?)?upload(?:er|file)?(?:\.\w+)?$|"
                     r"/wp-admin/(?:update|plugin-install)\.php|/admin/[^?]*(?:upload|deploy)[^/]*$", re.I)
_TUNNEL_Q = re.compile(r"(?:^|&)(?:cmd=(?:connect|forward|read|disconnect)|(?:target|ip|host|remote_?ip|rhost)=[^&]+"
                       r"&(?:.*&)?(?:port|rport|remote_?port)=\d+)", re.I)
_CMD_Q = re.compile(r"(?:^|&)(?:cmd|exec|command|c|code|shell|pass|z0|e)=", re.I)


def _web(df: pd.DataFrame) -> pd.DataFrame:
    w = df[df["source"] == "WEB"].copy() if len(df) else df.iloc[0:0].copy()
    if not len(w):
        return w.assign(method=None, status=None, user_agent=None, query=None, url=None)
    a = w["attrs"].map(lambda t: json.loads(t) if isinstance(t, str) else {})
    w["method"] = a.map(lambda x: (x.get("method") or "").upper() or None)
    w["status"] = a.map(lambda x: x.get("status"))
    w["user_agent"] = a.map(lambda x: x.get("user_agent"))
    w["query"] = a.map(lambda x: x.get("query") or "")
    w["url"] = w["path"].fillna(a.map(lambda x: x.get("uri")))
    return w


def web_attacks(data: Any, tunnel_hits: int = 1000, baseline: str = "1D") -> pd.DataFrame:
    """Web attacks seen in web server logs (``source == "WEB"``), one row per finding:

    - ``scanner``: requests whose user agent is a known scanner or attack tool, per source and agent;
    - ``upload``: POST/PUT to an upload or deploy endpoint (Tomcat manager, WordPress, ``/upload``);
    - ``web shell``: POSTs to a script (``.jsp/.aspx/.php``...) first requested after the log's first
      ``baseline`` (newly seen), or after an upload from the same source, or with command-like parameters;
    - ``tunnel``: one script hit ``tunnel_hits`` times or more with ``ip``/``port`` (reGeorg-style) parameters.

    Columns: ``finding``, ``url``, ``src_ip``, ``requests``, ``first``, ``last``, ``user_agent``, ``detail``
    (and the provenance of the first supporting row)."""
    df = _frame(data, lambda tl: tl._with("source = 'WEB'"))
    w = _web(df)
    cols = ["finding", "url", "src_ip", "requests", "first", "last", "user_agent", "detail"]
    if not len(w):
        return pd.DataFrame(columns=["timestamp", "host"] + cols + PROVENANCE)
    w = w.sort_values("timestamp", kind="stable")
    found: list[pd.DataFrame] = []

    def emit(rows: pd.DataFrame, keys: list[str], finding: str, detail: Callable[[pd.DataFrame], str]) -> None:
        if rows.empty:
            return
        for _, g in rows.groupby(keys, dropna=False, sort=False):
            first = g.iloc[0]
            found.append(pd.DataFrame([{
                "timestamp": first["timestamp"], "host": first["host"], "finding": finding, "url": first["url"],
                "src_ip": first["src_ip"], "requests": len(g), "first": first["timestamp"],
                "last": g["timestamp"].iloc[-1], "user_agent": first["user_agent"], "detail": detail(g),
                **{k: first[k] for k in PROVENANCE if k in g}}]))

    scan = w[w["user_agent"].fillna("").str.contains(_SCANNER)]
    emit(scan, ["host", "src_ip", "user_agent"], "scanner",
         lambda g: f"{g['url'].nunique()} distinct URLs, statuses {sorted(set(g['status'].dropna().astype(int)))[:6]}")
    up = w[w["method"].isin(["POST", "PUT"]) & w["url"].fillna("").str.contains(_UPLOAD)]
    emit(up, ["host", "src_ip", "url"], "upload", lambda g: f"{g['method'].iloc[0]} status {g['status'].iloc[0]}")

    script = w[w["url"].fillna("").str.contains(_SCRIPT)]
    if len(script):
        start = w.groupby("host")["timestamp"].transform("min")
        first_seen = script.groupby(["host", "url"])["timestamp"].transform("min")
        new = first_seen > start.loc[script.index] + pd.Timedelta(baseline)
        uploaded = pd.Series(False, index=script.index)
        for (host, ip), u in up.groupby(["host", "src_ip"]):
            t0 = u["timestamp"].min()
            uploaded |= (script["host"] == host) & (script["src_ip"] == ip) & (script["timestamp"] > t0)
        cmd = script["query"].str.contains(_CMD_Q)
        posts = script[(script["method"] == "POST") & (new | uploaded | cmd)]
        shell = pd.concat([posts, script[cmd & ~script.index.isin(posts.index)]]).sort_values("timestamp")
        emit(shell, ["host", "url"], "web shell",
             lambda g: f"{(g['method'] == 'POST').sum()} POST(s) from {g['src_ip'].nunique()} source(s)"
                       + ("; first requested after the baseline" if bool(new.loc[g.index].any()) else "")
                       + ("; after an upload" if bool(uploaded.loc[g.index].any()) else "")
                       + ("; command parameters" if bool(cmd.loc[g.index].any()) else ""))
        tun = script[script["query"].str.contains(_TUNNEL_Q)]
        if len(tun):
            hits = tun.groupby(["host", "url"])["timestamp"].transform("size")
            emit(tun[hits >= tunnel_hits], ["host", "url"], "tunnel",
                 lambda g: f"{len(g)} requests with ip/port parameters")
    if not found:
        return pd.DataFrame(columns=["timestamp", "host"] + cols + PROVENANCE)
    out = pd.concat(found, ignore_index=True)
    return out.reindex(columns=["timestamp", "host"] + cols + PROVENANCE).sort_values(["timestamp", "host"]).reset_index(drop=True)


# --- df.fx accessor ------------------------------------------------------------------------------


@pd.api.extensions.register_dataframe_accessor("fx")
class FxAccessor:
    """``df.fx.logons()`` and friends: thin shims over the functions of :mod:`forensics.hunt`."""

    def __init__(self, df: pd.DataFrame):
        self._df = df

    def logons(self, success: bool | None = None) -> pd.DataFrame:
        return logons(self._df, success=success)

    def brute_force(self, threshold: int = 10, window: str = "10min") -> pd.DataFrame:
        return brute_force(self._df, threshold=threshold, window=window)

    def service_installs(self) -> pd.DataFrame:
        return service_installs(self._df)

    def process_executions(self) -> pd.DataFrame:
        return process_executions(self._df)

    def log_cleared(self) -> pd.DataFrame:
        return log_cleared(self._df)

    def shadow_copy_deletion(self) -> pd.DataFrame:
        return shadow_copy_deletion(self._df)

    def accounts_created(self) -> pd.DataFrame:
        return accounts_created(self._df)

    def group_changes(self) -> pd.DataFrame:
        return group_changes(self._df)

    def scheduled_tasks(self) -> pd.DataFrame:
        return scheduled_tasks(self._df)

    def credential_access(self, spray_users: int = 5, spray_window: str = "30min") -> pd.DataFrame:
        return credential_access(self._df, spray_users=spray_users, spray_window=spray_window)

    def lateral_movement(self) -> pd.DataFrame:
        return lateral_movement(self._df)

    def powershell(self) -> pd.DataFrame:
        return powershell(self._df)

    def first_seen(self, indicator: str) -> pd.DataFrame:
        return first_seen(self._df, indicator)

    def encryption_burst(self, window: str = "10min", min_files: int = 100) -> pd.DataFrame:
        return encryption_burst(self._df, window=window, min_files=min_files)

    def web_attacks(self, tunnel_hits: int = 1000, baseline: str = "1D") -> pd.DataFrame:
        return web_attacks(self._df, tunnel_hits=tunnel_hits, baseline=baseline)

    def story(self) -> pd.DataFrame:
        return story(self._df)

    def onset(self) -> pd.DataFrame:
        return onset(self._df)
