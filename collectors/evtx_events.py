"""What investigators need from the Windows events they live on.

One function per event family turns a decoded record (``s``: the flat System
fields, ``d``: the EventData/UserData fields) into the timeline's common
columns and a message that reads like an analyst's note.  :data:`EXTRACTORS`
maps ``(channel, event id)`` to those functions; :func:`extract` falls back to
a generic mapping for every other event so no record goes without a message.
"""

from __future__ import annotations

import re
from typing import Any, Callable

__all__ = ["extract", "EXTRACTORS", "one_line"]

_EMPTY = {None, "", "-", "NULL", "%%1793", "(NULL)"}


_WS = re.compile(r"\s*[\r\n\t\v\f]\s*")


def one_line(text: Any, limit: int | None = None) -> str:
    """Collapse a value to one readable line, cut at ``limit`` characters when given (the message column itself
    is cut where every row is built: :func:`timeline.schema.cap_messages`)."""
    s = text if isinstance(text, str) else str(text)
    if "\n" in s or "\r" in s or "\t" in s or "\v" in s or "\f" in s:
        s = _WS.sub(" ", s).strip()
    return s if limit is None or len(s) <= limit else s[: limit - 1] + "…"


def _v(d: dict, *keys: str) -> Any:
    """First present, meaningful value among ``keys``."""
    for k in keys:
        v = d.get(k)
        if v is None:
            continue
        if v.__class__ is dict:
            v = v.get("#text")
        if v.__class__ is list or v not in _EMPTY:
            return v
    return None


def _s(d: dict, *keys: str) -> str | None:
    for k in keys:
        v = d.get(k)
        if v is None:
            continue
        if v.__class__ is str:
            if v not in _EMPTY:
                return v
            continue
        if v.__class__ is dict:
            v = v.get("#text")
        if v.__class__ is list or v not in _EMPTY:
            return str(v)
    return None


def _q(v: Any) -> Any:
    """A value inside a message: '-' when missing."""
    return "-" if v is None else v


def _int(v: Any) -> int | None:
    if v is None:
        return None
    try:
        return int(str(v), 0) if isinstance(v, str) else int(v)
    except (TypeError, ValueError):
        return None


def _acct(d: dict, user_key: str, domain_key: str) -> str | None:
    user = _s(d, user_key)
    if user is None:
        return None
    dom = _s(d, domain_key)
    return f"{dom}\\{user}" if dom and "\\" not in user and "@" not in user else user


def _ip(d: dict, *keys: str) -> str | None:
    ip = _s(d, *keys)
    if ip and ip.startswith("::ffff:"):
        ip = ip[7:]
    return ip


def _hex(v: Any) -> str:
    i = _int(v)
    return f"0x{i:X}" if i is not None else str(v)


_LOGON_TYPES = {
    2: "interactive", 3: "network", 4: "batch", 5: "service", 7: "unlock", 8: "network cleartext",
    9: "new credentials", 10: "remote interactive", 11: "cached interactive",
}


def _lt(v: Any) -> str:
    i = _int(v)
    name = _LOGON_TYPES.get(i) if i is not None else None
    return f"{i} ({name})" if name else str(v)


def _from(ip: str | None, host: str | None) -> str:
    parts = [p for p in (ip, host) if p]
    return " from " + " / ".join(parts) if parts else ""


# --- Security ---------------------------------------------------------------------------------


def _logon(s: dict, d: dict) -> dict:
    eid = s["EventID"]
    user = _acct(d, "TargetUserName", "TargetDomainName")
    lt = _int(_v(d, "LogonType"))
    ip, ws = _ip(d, "IpAddress"), _s(d, "WorkstationName")
    verb = "logon" if eid == 4624 else "failed logon"
    msg = f"{eid} {verb} type {_lt(lt)} by {_q(user)}{_from(ip, ws)}"
    how = "/".join(x.strip() for x in (_s(d, "LogonProcessName"), _s(d, "AuthenticationPackageName")) if x and x.strip())
    if how:
        msg += f" via {how}"
    if eid == 4625:
        msg += f" (status {_hex(_v(d, 'Status'))}, sub-status {_hex(_v(d, 'SubStatus'))})"
    return dict(user=user, logon_type=lt, src_ip=ip, src_host=ws, process=_s(d, "ProcessName"),
                target_user=None, message=msg)


def _logoff(s: dict, d: dict) -> dict:
    user = _acct(d, "TargetUserName", "TargetDomainName")
    lt = _int(_v(d, "LogonType"))
    if s["EventID"] == 4647:
        return dict(user=user, message=f"4647 user-initiated logoff by {_q(user)}")
    return dict(user=user, logon_type=lt, message=f"4634 logoff of {_q(user)} (logon type {_lt(lt)})")


def _explicit(s: dict, d: dict) -> dict:
    user = _acct(d, "SubjectUserName", "SubjectDomainName")
    target = _acct(d, "TargetUserName", "TargetDomainName")
    ip, server = _ip(d, "IpAddress"), _s(d, "TargetServerName")
    proc = _s(d, "ProcessName")
    return dict(user=user, target_user=target, src_ip=ip, process=proc,
                message=f"4648 {_q(user)} used explicit credentials of {_q(target)} for {_q(server)}{_from(ip, None)} (process {_q(proc)})")


def _special(s: dict, d: dict) -> dict:
    user = _acct(d, "SubjectUserName", "SubjectDomainName")
    privs = one_line(_s(d, "PrivilegeList") or "", 120)
    return dict(user=user, message=f"4672 special privileges assigned to {_q(user)}: {privs}")


def _proc4688(s: dict, d: dict) -> dict:
    user = _acct(d, "SubjectUserName", "SubjectDomainName")
    target = _acct(d, "TargetUserName", "TargetDomainName")
    proc, parent = _s(d, "NewProcessName"), _s(d, "ParentProcessName")
    cmd = _s(d, "CommandLine")
    msg = f"4688 process {_q(proc)} started by {_q(user)}" + (f": {_q(cmd)}" if cmd else "") + (f" (parent {_q(parent)})" if parent else "")
    return dict(user=user, target_user=target, process=proc, parent_process=parent, command_line=cmd, message=msg)


def _svc4697(s: dict, d: dict) -> dict:
    user = _acct(d, "SubjectUserName", "SubjectDomainName")
    name, image = _s(d, "ServiceName"), _s(d, "ServiceFileName")
    account = _s(d, "ServiceAccount")
    return dict(user=user, target_user=account, service_name=name, path=image, command_line=image,
                message=f"4697 service {_q(name)} installed by {_q(user)}: {_q(image)} (start type {_q(_v(d, 'ServiceStartType'))}, account {_q(account)})")


_XML_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot|apos)|#(\d+)|#[xX]([0-9A-Fa-f]+));")
_XML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


def _xml_char(m: re.Match) -> str:
    if m.group(1):
        return _XML_NAMED[m.group(1)]
    code = int(m.group(2)) if m.group(2) else int(m.group(3), 16)
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else m.group(0)


def _xml_text(text: str) -> str:
    """XML character data as text: the five predefined entities and character references decoded, in one
    pass (``&amp;gt;`` is ``&gt;``, not ``>``); anything else left as written."""
    return _XML_ENTITY.sub(_xml_char, text)


_TASK_CMD = re.compile(r"<Command>(.*?)</Command>(?:\s*<Arguments>(.*?)</Arguments>)?", re.S)


def _task(s: dict, d: dict) -> dict:
    eid = s["EventID"]
    user = _acct(d, "SubjectUserName", "SubjectDomainName")
    name = _s(d, "TaskName")
    cmd = None
    m = _TASK_CMD.search(_s(d, "TaskContent", "TaskContentNew") or "")
    if m:  # the task's XML text: its entities decoded once (&gt; is >)
        cmd = " ".join(_xml_text(x).strip() for x in m.groups() if x)
    verb = {4698: "created", 4699: "deleted", 4700: "enabled", 4701: "disabled", 4702: "updated"}[eid]
    return dict(user=user, service_name=name, command_line=cmd,
                message=f"{eid} scheduled task {_q(name)} {verb} by {_q(user)}" + (f": {_q(cmd)}" if cmd else ""))


_ACCOUNT_VERBS = {
    4720: "account {t} created", 4722: "account {t} enabled", 4723: "password change attempted for account {t}",
    4724: "password reset attempted for account {t}", 4725: "account {t} disabled", 4726: "account {t} deleted",
    4738: "account {t} changed", 4740: "account {t} locked out",
}


def _account(s: dict, d: dict) -> dict:
    eid = s["EventID"]
    user = _acct(d, "SubjectUserName", "SubjectDomainName")
    if eid == 4740:
        target, caller = _s(d, "TargetUserName"), _s(d, "TargetDomainName")
        return dict(user=user, target_user=target, src_host=caller,
                    message=f"4740 account {_q(target)} locked out (caller computer {_q(caller)})")
    target = _acct(d, "TargetUserName", "TargetDomainName")
    what = _ACCOUNT_VERBS[eid].format(t=_q(target))
    return dict(user=user, target_user=target, message=f"{eid} {what} by {_q(user)}")


def _group(s: dict, d: dict) -> dict:
    eid = s["EventID"]
    user = _acct(d, "SubjectUserName", "SubjectDomainName")
    group = _acct(d, "TargetUserName", "TargetDomainName")
    member = _s(d, "MemberName", "MemberSid")
    verb = "added to" if eid in (4728, 4732, 4756) else "removed from"
    return dict(user=user, target_user=member, service_name=group,
                message=f"{eid} {_q(member)} {verb} group {_q(group)} by {_q(user)}")


def _kerberos(s: dict, d: dict) -> dict:
    eid = s["EventID"]
    user = _acct(d, "TargetUserName", "TargetDomainName") if eid != 4769 else _s(d, "TargetUserName")
    ip = _ip(d, "IpAddress")
    status = _hex(_v(d, "Status"))
    if eid == 4768:
        msg = f"4768 Kerberos TGT requested for {_q(user)}{_from(ip, None)} (status {_q(status)}, encryption {_hex(_v(d, 'TicketEncryptionType'))})"
        return dict(user=user, src_ip=ip, message=msg)
    if eid == 4769:
        svc = _s(d, "ServiceName")
        msg = f"4769 Kerberos service ticket for {_q(svc)} requested by {_q(user)}{_from(ip, None)} (status {_q(status)}, encryption {_hex(_v(d, 'TicketEncryptionType'))})"
        return dict(user=user, src_ip=ip, service_name=svc, message=msg)
    return dict(user=user, src_ip=ip, message=f"4771 Kerberos pre-authentication failed for {_q(user)}{_from(ip, None)} (status {_q(status)})")


def _ntlm(s: dict, d: dict) -> dict:
    user, ws = _s(d, "TargetUserName"), _s(d, "Workstation")
    return dict(user=user, src_host=ws,
                message=f"4776 NTLM credential validation for {_q(user)}{_from(None, ws)} (status {_hex(_v(d, 'Status'))})")


def _share(s: dict, d: dict) -> dict:
    eid = s["EventID"]
    user = _acct(d, "SubjectUserName", "SubjectDomainName")
    ip, share = _ip(d, "IpAddress"), _s(d, "ShareName")
    rel = _s(d, "RelativeTargetName")
    path = rel if eid == 5145 and rel else _s(d, "ShareLocalPath")
    msg = f"{eid} share {_q(share)} accessed by {_q(user)}{_from(ip, None)}" + (f": {_q(rel)}" if eid == 5145 and rel else "")
    return dict(user=user, src_ip=ip, service_name=share, path=path, message=msg)


def _cleared(s: dict, d: dict) -> dict:
    user = _acct(d, "SubjectUserName", "SubjectDomainName")
    log_name = _s(d, "Channel") or ("Security" if s["EventID"] == 1102 else s.get("Channel"))
    return dict(user=user, message=f"{s['EventID']} {_q(log_name)} log cleared by {_q(user)}")


# --- System ---------------------------------------------------------------------------------


_PARAM_KEYS = tuple(f"param{i}" for i in range(1, 8))


def _params(d: dict) -> list:
    """System events carry param1..N named, or unnamed Data (a list under "Data")."""
    if "param1" in d:
        return [d[k] for k in _PARAM_KEYS if k in d]
    data = d.get("Data")
    if isinstance(data, dict):
        data = data.get("#text")
    if isinstance(data, list):
        return data
    return [] if data is None else [data]


def _svc7045(s: dict, d: dict) -> dict:
    name, image = _s(d, "ServiceName"), _s(d, "ImagePath")
    account = _s(d, "AccountName")
    return dict(user=s.get("UserID"), target_user=account, service_name=name, path=image, command_line=image,
                message=f"7045 service {_q(name)} installed: {_q(image)} (start {_q(_v(d, 'StartType'))}, account {_q(account)})")


def _svc7036(s: dict, d: dict) -> dict:
    p = _params(d) + [None, None]
    return dict(service_name=p[0], message=f"7036 service {_q(p[0])} entered the {_q(p[1])} state")


def _svc7040(s: dict, d: dict) -> dict:
    p = _params(d) + [None, None, None]
    return dict(user=s.get("UserID"), service_name=p[0],
                message=f"7040 start type of service {_q(p[0])} changed from {_q(p[1])} to {_q(p[2])}")


# --- Sysmon ---------------------------------------------------------------------------------


def _sysmon(s: dict, d: dict) -> dict:
    eid = s["EventID"]
    img, user = _s(d, "Image", "SourceImage"), _s(d, "User", "SourceUser")
    if eid == 1:
        cmd, parent = _s(d, "CommandLine"), _s(d, "ParentImage")
        return dict(user=user, process=img, parent_process=parent, command_line=cmd,
                    message=f"Sysmon 1 process {_q(img)} started by {_q(user)}: {_q(cmd)} (parent {_q(parent)})")
    if eid == 3:
        sip, dip = _s(d, "SourceIp"), _s(d, "DestinationIp")
        dport = _int(_v(d, "DestinationPort"))
        dhost = _s(d, "DestinationHostname")
        return dict(user=user, process=img, src_ip=sip, dst_ip=dip, dst_port=dport,
                    message=f"Sysmon 3 network connection by {_q(img)} ({_q(user)}): {_q(sip)}:{_q(_v(d, 'SourcePort'))} -> "
                            f"{_q(dip)}:{_q(dport)}{' (' + dhost + ')' if dhost else ''} {_s(d, 'Protocol') or ''}".rstrip())
    if eid in (8, 10):
        target = _s(d, "TargetImage")
        what = "created a remote thread in" if eid == 8 else "opened"
        extra = f" (access {_q(_v(d, 'GrantedAccess'))})" if eid == 10 else ""
        return dict(user=user, process=img, path=target, message=f"Sysmon {eid} {_q(img)} {what} {_q(target)}{extra}")
    if eid == 11:
        target = _s(d, "TargetFilename")
        return dict(user=user, process=img, path=target, message=f"Sysmon 11 file created by {_q(img)}: {_q(target)}")
    if eid in (12, 13, 14):
        key = _s(d, "TargetObject")
        det = _s(d, "Details")
        return dict(user=user, process=img, path=key,
                    message=f"Sysmon {eid} registry {_q(_s(d, 'EventType'))} by {_q(img)}: {_q(key)}" + (f" = {_q(det)}" if det else ""))
    if eid == 22:
        q = _s(d, "QueryName")
        return dict(user=user, process=img, path=q,
                    message=f"Sysmon 22 DNS query by {_q(img)}: {_q(q)} -> {_q(_s(d, 'QueryResults'))}")
    return _generic(s, d)


# --- PowerShell -------------------------------------------------------------------------------

_KV = re.compile(r"^\s*([A-Za-z ]+?)\s*=\s*(.*?)\s*$", re.M)


def _kv_text(text: str | None) -> dict[str, str]:
    return {k.replace(" ", ""): v for k, v in _KV.findall(text or "")}


def _ps4103(s: dict, d: dict) -> dict:
    ctx = _kv_text(_s(d, "ContextInfo"))
    cmd = ctx.get("CommandName")
    payload = _s(d, "Payload")
    return dict(user=ctx.get("User"), process=ctx.get("HostApplication"), command_line=payload or cmd,
                path=ctx.get("ScriptName") or None,
                message=f"4103 PowerShell pipeline by {_q(ctx.get('User'))}: {_q(cmd)}: {payload or ''}")


def _ps4104(s: dict, d: dict) -> dict:
    text, path = _s(d, "ScriptBlockText"), _s(d, "Path")
    part = f" (part {_q(_v(d, 'MessageNumber'))}/{_q(_v(d, 'MessageTotal'))})" if _int(_v(d, "MessageTotal")) not in (None, 1) else ""
    return dict(user=s.get("UserID"), command_line=text, path=path,
                message=f"4104 PowerShell script block{part}{' from ' + path if path else ''}: {_q(text)}")


def _ps_classic(s: dict, d: dict) -> dict:
    eid = s["EventID"]
    params = [p for p in _params(d) if isinstance(p, str)]
    ctx: dict[str, str] = {}
    for p in params:
        ctx.update(_kv_text(p))
    host_app = ctx.get("HostApplication")
    if eid == 400:
        return dict(process=host_app, command_line=host_app,
                    message=f"400 PowerShell engine started ({_q(ctx.get('PreviousEngineState'))} -> {_q(ctx.get('NewEngineState'))}): {_q(host_app)}")
    detail = next((p for p in params[2:] if p), params[-1] if params else "")
    return dict(user=ctx.get("UserId"), process=host_app, command_line=ctx.get("CommandLine") or host_app,
                message=f"800 PowerShell pipeline by {_q(ctx.get('UserId'))} in {_q(host_app)}: {_q(detail)}")


# --- Remote Desktop ---------------------------------------------------------------------------

_TS_VERBS = {21: "logon", 22: "shell start", 23: "logoff", 24: "disconnect", 25: "reconnection"}


def _ts_local(s: dict, d: dict) -> dict:
    eid = s["EventID"]
    user, addr = _s(d, "User"), _s(d, "Address")
    ip = addr if addr and addr.upper() != "LOCAL" else None
    return dict(user=user, src_ip=ip,
                message=f"{eid} RDP session {_q(_TS_VERBS[eid])} of {_q(user)} (session {_q(_v(d, 'SessionID'))}) from {_q(addr)}")


def _ts_1149(s: dict, d: dict) -> dict:
    user = _acct(d, "Param1", "Param2")
    ip = _s(d, "Param3")
    return dict(user=user, src_ip=ip, message=f"1149 RDP user authentication succeeded for {_q(user)}{_from(ip, None)}")


# --- Defender ---------------------------------------------------------------------------------


def _defender(s: dict, d: dict) -> dict:
    eid = s["EventID"]
    threat, path = _s(d, "Threat Name"), _s(d, "Path")
    user, proc = _s(d, "Detection User"), _s(d, "Process Name")
    what = "detected" if eid == 1116 else f"action {_q(_s(d, 'Action Name'))} taken on"
    return dict(user=user, process=proc, path=path,
                message=f"Defender {eid} {what} {_q(threat)} ({_q(_s(d, 'Severity Name'))}) in {_q(path)} (process {_q(proc)}, user {_q(user)})")


# --- everything else ----------------------------------------------------------------------------


_SCALARS = (str, int, float, bool)
_GENERIC_KEYS = frozenset({"SubjectUserName", "TargetUserName", "User", "IpAddress", "SourceAddress", "SourceIp",
                           "ProcessName", "Image", "Application", "CommandLine"})


def _generic(s: dict, d: dict) -> dict:
    fields = []
    for k, v in d.items():
        if v.__class__ in _SCALARS and not k.startswith("#") and v not in _EMPTY:  # (a damaged record: k may be "")
            fields.append(f"{k}={v}")
            if len(fields) == 6:
                break
    if not fields and "Data" in d:
        fields = [str(p) for p in _params(d) if p.__class__ in _SCALARS and p not in _EMPTY][:6]
    msg = f"{s['EventID']} {s['Provider'] or ''}: {'; '.join(fields)}" if fields else f"{s['EventID']} {s['Provider'] or ''}"
    if not d or _GENERIC_KEYS.isdisjoint(d):  # none of the fields below: the same result, sooner
        return {"user": s.get("UserID"), "message": msg}
    user = _acct(d, "SubjectUserName", "SubjectDomainName") or _acct(d, "TargetUserName", "TargetDomainName") or _s(d, "User")
    return {"user": user or s.get("UserID"), "src_ip": _ip(d, "IpAddress", "SourceAddress", "SourceIp"),
            "process": _s(d, "ProcessName", "Image", "Application"), "command_line": _s(d, "CommandLine"), "message": msg}


SEC = "Security"
SYS = "System"
SYSMON = "Microsoft-Windows-Sysmon/Operational"
PS = "Microsoft-Windows-PowerShell/Operational"
PS_CLASSIC = "Windows PowerShell"
TS_LOCAL = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"
TS_RCM = "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational"
DEFENDER = "Microsoft-Windows-Windows Defender/Operational"

EXTRACTORS: dict[tuple[str, int], Callable[[dict, dict], dict]] = {
    **{(SEC, e): _logon for e in (4624, 4625)},
    **{(SEC, e): _logoff for e in (4634, 4647)},
    (SEC, 4648): _explicit,
    (SEC, 4672): _special,
    (SEC, 4688): _proc4688,
    (SEC, 4697): _svc4697,
    **{(SEC, e): _task for e in (4698, 4699, 4700, 4701, 4702)},
    **{(SEC, e): _account for e in _ACCOUNT_VERBS},
    **{(SEC, e): _group for e in (4728, 4729, 4732, 4733, 4756, 4757)},
    **{(SEC, e): _kerberos for e in (4768, 4769, 4771)},
    (SEC, 4776): _ntlm,
    **{(SEC, e): _share for e in (5140, 5145)},
    (SEC, 1102): _cleared,
    (SYS, 104): _cleared,
    (SYS, 7045): _svc7045,
    (SYS, 7036): _svc7036,
    (SYS, 7040): _svc7040,
    **{(SYSMON, e): _sysmon for e in (1, 3, 8, 10, 11, 12, 13, 14, 22)},
    (PS, 4103): _ps4103,
    (PS, 4104): _ps4104,
    **{(PS_CLASSIC, e): _ps_classic for e in (400, 800)},
    **{(TS_LOCAL, e): _ts_local for e in _TS_VERBS},
    (TS_RCM, 1149): _ts_1149,
    **{(DEFENDER, e): _defender for e in (1116, 1117)},
}


def extract(s: dict, d: dict) -> dict:
    """Common columns and message for one event (``s`` flat System fields, ``d`` event data)."""
    fn = EXTRACTORS.get((s.get("Channel"), s.get("EventID")), _generic)
    try:
        out = fn(s, d)
    except Exception as exc:  # a malformed field must not lose the record
        out = _generic(s, d)
        out["message"] += f" [field extraction failed: {exc!r}]"
    out["message"] = one_line(out["message"])
    return out
