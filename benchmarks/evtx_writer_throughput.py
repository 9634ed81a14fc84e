"""EVTX writer throughput (records/s), and how fast the Rust parser reads the result back.  Run by hand:

    .venv/bin/python benchmarks/evtx_writer_throughput.py [--records 200000] [--out /tmp/bench.evtx]

The events are built first (not timed): a Security-like mix of 4624 logons (18 typed fields),
Sysmon 1 process creations (16 fields) and TerminalServices 21 logons (UserData), with
distinct users, addresses and 100 ns times.  Then they are written with ``write_evtx`` (timed).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.evtx_writer import Event, UserData, unix_ns_to_filetime, write_evtx  # noqa: E402

SEC = "Microsoft-Windows-Security-Auditing"


def events(n: int) -> list[Event]:
    t = unix_ns_to_filetime(1669167000_000000000)
    out = []
    for i in range(n):
        t += 1_234_567
        user, ip = f"user{i % 5000:04d}", f"10.{i % 200}.{i % 250}.{i % 253 + 1}"
        k = i % 3
        if k == 0:
            out.append(Event(4624, t, SEC, "Security", "DC01.hospital.local", level=0, task=12544,
                             keywords=0x8020000000000000, provider_guid="{54849625-5478-4994-A5BA-3E3B0328C30D}",
                             process_id=652, thread_id=700 + i % 50, event_data={
                                 "SubjectUserSid": ("sid", "S-1-5-18"), "SubjectUserName": "DC01$",
                                 "SubjectDomainName": "HOSP", "SubjectLogonId": ("hex64", 0x3E7),
                                 "TargetUserSid": ("sid", f"S-1-5-21-1-2-3-{1000 + i % 5000}"),
                                 "TargetUserName": user, "TargetDomainName": "HOSP",
                                 "TargetLogonId": ("hex64", 0x100000 + i), "LogonType": ("uint32", 3),
                                 "LogonProcessName": "NtLmSsp ", "AuthenticationPackageName": "NTLM",
                                 "WorkstationName": f"WS{i % 300:03d}", "LogonGuid": uuid.UUID(int=i),
                                 "TransmittedServices": "-", "LmPackageName": "NTLM V2", "KeyLength": ("uint32", 128),
                                 "ProcessId": ("hex64", 0), "IpAddress": ip}))
        elif k == 1:
            out.append(Event(1, t, "Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational", "FS01",
                             task=1, version=5, keywords=0x8000000000000000, user_sid="S-1-5-18", event_data={
                                 "RuleName": "-", "UtcTime": "2022-11-23 01:30:00.123", "ProcessGuid": uuid.UUID(int=i),
                                 "ProcessId": ("uint32", 4000 + i % 60000), "Image": "C:\\Windows\\System32\\cmd.exe",
                                 "FileVersion": "10.0.17763.1", "CommandLine": f"cmd.exe /c copy \\\\FS01\\share\\{i}.docx",
                                 "CurrentDirectory": "C:\\Windows\\system32\\", "User": f"HOSP\\{user}",
                                 "LogonGuid": uuid.UUID(int=i // 7), "LogonId": ("hex64", 0x100000 + i),
                                 "TerminalSessionId": ("uint32", 1), "IntegrityLevel": "High",
                                 "Hashes": "SHA256=" + f"{i:064x}", "ParentProcessGuid": uuid.UUID(int=i + 1),
                                 "ParentImage": "C:\\Windows\\explorer.exe"}))
        else:
            out.append(Event(21, t, "Microsoft-Windows-TerminalServices-LocalSessionManager",
                             "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational", "FS01",
                             user_sid="S-1-5-18", user_data=UserData(
                                 "EventXML", {"User": f"HOSP\\{user}", "SessionID": ("uint32", 2), "Address": ip},
                                 xmlns="Event_NS")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp()) / "bench.evtx"
    evs = events(a.records)
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    n = write_evtx(out, evs)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    size = out.stat().st_size
    from evtx import PyEvtxParser

    t1 = time.perf_counter()
    read = sum(1 for _ in PyEvtxParser(str(out)).records_json())
    dr = time.perf_counter() - t1
    print(f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    print(f"load average before the run: {load:.1f} (the machine is shared)")
    print("| what | records | seconds | records/s | records/s of CPU time | MiB |")
    print("|---|---|---|---|---|---|")
    print(f"| write_evtx | {n:,} | {dt:.2f} | {n / dt:,.0f} | {n / dc:,.0f} | {size / 2**20:.1f} |")
    print(f"| evtx-rs records_json() of it | {read:,} | {dr:.2f} | {read / dr:,.0f} | | |")


if __name__ == "__main__":
    main()
