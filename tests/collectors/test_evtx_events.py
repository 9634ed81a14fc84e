"""Field extraction for the event families the shared corpus does not contain.

The corpus has no 4688, 4697, 4698/4699, 4740, 4768/4769/4771, 5140/5145, 1102, Sysmon 8/22,
RDP 21-25 or Defender 1116/1117 record, so these tests feed :func:`extract` the fields
exactly as the collector hands them over (the flat System fields and the EventData /
UserData of the Rust parser's rendering), with values in Microsoft's documented layout.
Families present in the corpus are tested on real records in ``test_evtx.py``.
"""

from __future__ import annotations

import pytest

from collectors.evtx_events import extract

SEC = "Security"


def s(channel, eid, **kw):
    base = {"Provider": "Microsoft-Windows-Security-Auditing", "EventID": eid, "TimeCreated": None,
            "EventRecordID": 1, "Channel": channel, "Computer": "DC1.corp.local", "UserID": None}
    base.update(kw)
    return base


SUBJ = {"SubjectUserSid": "S-1-5-21-1-2-3-1105", "SubjectUserName": "admin", "SubjectDomainName": "CORP",
        "SubjectLogonId": "0x3e7"}

CASES = [
    (s(SEC, 4688), {**SUBJ, "NewProcessName": "C:\\Windows\\System32\\vssadmin.exe", "TokenElevationType": "%%1937",
                    "CommandLine": "vssadmin.exe delete shadows /all /quiet", "TargetUserName": "-",
                    "ParentProcessName": "C:\\Windows\\System32\\cmd.exe"},
     {"user": "CORP\\admin", "process": "C:\\Windows\\System32\\vssadmin.exe", "parent_process": "C:\\Windows\\System32\\cmd.exe",
      "command_line": "vssadmin.exe delete shadows /all /quiet", "target_user": None,
      "message": "4688 process C:\\Windows\\System32\\vssadmin.exe started by CORP\\admin: vssadmin.exe delete shadows /all /quiet "
                 "(parent C:\\Windows\\System32\\cmd.exe)"}),
    (s(SEC, 4697), {**SUBJ, "ServiceName": "PSEXESVC", "ServiceFileName": "%SystemRoot%\\PSEXESVC.exe",
                    "ServiceType": "0x10", "ServiceStartType": "3", "ServiceAccount": "LocalSystem"},
     {"user": "CORP\\admin", "service_name": "PSEXESVC", "path": "%SystemRoot%\\PSEXESVC.exe", "target_user": "LocalSystem",
      "message": "4697 service PSEXESVC installed by CORP\\admin: %SystemRoot%\\PSEXESVC.exe (start type 3, account LocalSystem)"}),
    (s(SEC, 4698), {**SUBJ, "TaskName": "\\Updater",
                    "TaskContent": "<?xml version=\"1.0\"?><Task><Actions><Exec><Command>C:\\ProgramData\\enc.exe</Command>"
                                   "<Arguments>-all</Arguments></Exec></Actions></Task>"},
     {"service_name": "\\Updater", "command_line": "C:\\ProgramData\\enc.exe -all",
      "message": "4698 scheduled task \\Updater created by CORP\\admin: C:\\ProgramData\\enc.exe -all"}),
    # the task XML's text is escaped (a > in a command is &gt;): decoded once, so &amp;gt; stays &gt;
    (s(SEC, 4698), {**SUBJ, "TaskName": "\\Dump",
                    "TaskContent": "<?xml version=\"1.0\" encoding=\"UTF-16\"?><Task><Actions Context=\"Author\"><Exec>"
                                   "<Command>cmd.exe</Command><Arguments>/c whoami &gt; C:\\t\\o.txt &amp;&amp; echo "
                                   "&quot;a&apos;b&quot; &#233;&#x41; &amp;gt;</Arguments></Exec></Actions></Task>"},
     {"service_name": "\\Dump", "command_line": "cmd.exe /c whoami > C:\\t\\o.txt && echo \"a'b\" \u00e9A &gt;",
      "message": "4698 scheduled task \\Dump created by CORP\\admin: cmd.exe /c whoami > C:\\t\\o.txt && echo \"a'b\" \u00e9A &gt;"}),
    (s(SEC, 4699), {**SUBJ, "TaskName": "\\Updater", "TaskContent": ""},
     {"service_name": "\\Updater", "command_line": None, "message": "4699 scheduled task \\Updater deleted by CORP\\admin"}),
    (s(SEC, 4740), {**SUBJ, "TargetUserName": "nurse01", "TargetDomainName": "WS-ER-04", "TargetSid": "S-1-5-21-1-2-3-2001"},
     {"target_user": "nurse01", "src_host": "WS-ER-04", "message": "4740 account nurse01 locked out (caller computer WS-ER-04)"}),
    (s(SEC, 4768), {"TargetUserName": "nurse01", "TargetDomainName": "CORP.LOCAL", "IpAddress": "::ffff:10.0.0.5",
                    "Status": "0x0", "TicketEncryptionType": "0x12"},
     {"user": "CORP.LOCAL\\nurse01", "src_ip": "10.0.0.5",
      "message": "4768 Kerberos TGT requested for CORP.LOCAL\\nurse01 from 10.0.0.5 (status 0x0, encryption 0x12)"}),
    (s(SEC, 4769), {"TargetUserName": "admin@CORP.LOCAL", "ServiceName": "MSSQLSvc", "IpAddress": "::ffff:10.0.0.66",
                    "Status": "0x0", "TicketEncryptionType": "0x17"},
     {"user": "admin@CORP.LOCAL", "service_name": "MSSQLSvc", "src_ip": "10.0.0.66",
      "message": "4769 Kerberos service ticket for MSSQLSvc requested by admin@CORP.LOCAL from 10.0.0.66 (status 0x0, encryption 0x17)"}),
    (s(SEC, 4771), {"TargetUserName": "nurse01", "IpAddress": "::ffff:10.0.0.66", "Status": "0x18"},
     {"user": "nurse01", "src_ip": "10.0.0.66",
      "message": "4771 Kerberos pre-authentication failed for nurse01 from 10.0.0.66 (status 0x18)"}),
    (s(SEC, 5140), {**SUBJ, "IpAddress": "10.0.0.66", "ShareName": "\\\\*\\ADMIN$", "ShareLocalPath": "\\??\\C:\\Windows"},
     {"user": "CORP\\admin", "src_ip": "10.0.0.66", "service_name": "\\\\*\\ADMIN$", "path": "\\??\\C:\\Windows",
      "message": "5140 share \\\\*\\ADMIN$ accessed by CORP\\admin from 10.0.0.66"}),
    (s(SEC, 5145), {**SUBJ, "IpAddress": "10.0.0.66", "ShareName": "\\\\*\\C$", "ShareLocalPath": "\\??\\C:\\",
                    "RelativeTargetName": "Windows\\Temp\\enc.exe"},
     {"path": "Windows\\Temp\\enc.exe",
      "message": "5145 share \\\\*\\C$ accessed by CORP\\admin from 10.0.0.66: Windows\\Temp\\enc.exe"}),
    (s(SEC, 1102, Provider="Microsoft-Windows-Eventlog"),
     {"#attributes": {"xmlns": "http://manifests.microsoft.com/win/2004/08/windows/eventlog"}, **SUBJ},
     {"user": "CORP\\admin", "message": "1102 Security log cleared by CORP\\admin"}),
    (s("Microsoft-Windows-Sysmon/Operational", 8, Provider="Microsoft-Windows-Sysmon"),
     {"SourceImage": "C:\\Users\\Public\\x.exe", "TargetImage": "C:\\Windows\\System32\\lsass.exe", "StartAddress": "0x7FF6"},
     {"process": "C:\\Users\\Public\\x.exe", "path": "C:\\Windows\\System32\\lsass.exe",
      "message": "Sysmon 8 C:\\Users\\Public\\x.exe created a remote thread in C:\\Windows\\System32\\lsass.exe"}),
    (s("Microsoft-Windows-Sysmon/Operational", 22, Provider="Microsoft-Windows-Sysmon"),
     {"QueryName": "pastebin.com", "QueryResults": "::ffff:104.20.67.143;", "Image": "C:\\Windows\\System32\\rundll32.exe",
      "User": "CORP\\admin"},
     {"user": "CORP\\admin", "process": "C:\\Windows\\System32\\rundll32.exe", "path": "pastebin.com",
      "message": "Sysmon 22 DNS query by C:\\Windows\\System32\\rundll32.exe: pastebin.com -> ::ffff:104.20.67.143;"}),
    (s("Microsoft-Windows-TerminalServices-LocalSessionManager/Operational", 21,
       Provider="Microsoft-Windows-TerminalServices-LocalSessionManager"),
     {"#attributes": {"xmlns": "Event_NS"}, "User": "CORP\\admin", "SessionID": "3", "Address": "10.0.0.66"},
     {"user": "CORP\\admin", "src_ip": "10.0.0.66", "message": "21 RDP session logon of CORP\\admin (session 3) from 10.0.0.66"}),
    (s("Microsoft-Windows-TerminalServices-LocalSessionManager/Operational", 22,
       Provider="Microsoft-Windows-TerminalServices-LocalSessionManager"),
     {"User": "CORP\\admin", "SessionID": "3", "Address": "LOCAL"},
     {"user": "CORP\\admin", "src_ip": None, "message": "22 RDP session shell start of CORP\\admin (session 3) from LOCAL"}),
    (s("Microsoft-Windows-TerminalServices-LocalSessionManager/Operational", 24,
       Provider="Microsoft-Windows-TerminalServices-LocalSessionManager"),
     {"User": "CORP\\admin", "SessionID": "3", "Address": "10.0.0.66"},
     {"message": "24 RDP session disconnect of CORP\\admin (session 3) from 10.0.0.66"}),
    (s("Microsoft-Windows-TerminalServices-LocalSessionManager/Operational", 25,
       Provider="Microsoft-Windows-TerminalServices-LocalSessionManager"),
     {"User": "CORP\\admin", "SessionID": "3", "Address": "10.0.0.77"},
     {"src_ip": "10.0.0.77", "message": "25 RDP session reconnection of CORP\\admin (session 3) from 10.0.0.77"}),
    (s("Microsoft-Windows-Windows Defender/Operational", 1116, Provider="Microsoft-Windows-Windows Defender"),
     {"Threat Name": "Ransom:Win32/LockBit.A", "Severity Name": "Severe", "Path": "file:_C:\\ProgramData\\enc.exe",
      "Detection User": "CORP\\admin", "Process Name": "C:\\Windows\\explorer.exe"},
     {"user": "CORP\\admin", "process": "C:\\Windows\\explorer.exe", "path": "file:_C:\\ProgramData\\enc.exe",
      "message": "Defender 1116 detected Ransom:Win32/LockBit.A (Severe) in file:_C:\\ProgramData\\enc.exe "
                 "(process C:\\Windows\\explorer.exe, user CORP\\admin)"}),
    (s("Microsoft-Windows-Windows Defender/Operational", 1117, Provider="Microsoft-Windows-Windows Defender"),
     {"Threat Name": "Ransom:Win32/LockBit.A", "Severity Name": "Severe", "Path": "file:_C:\\ProgramData\\enc.exe",
      "Detection User": "CORP\\admin", "Process Name": "Unknown", "Action Name": "Quarantine"},
     {"message": "Defender 1117 action Quarantine taken on Ransom:Win32/LockBit.A (Severe) in file:_C:\\ProgramData\\enc.exe "
                 "(process Unknown, user CORP\\admin)"}),
]


@pytest.mark.parametrize("sysf,data,expected", CASES, ids=[f"{c[0]['EventID']}" for c in CASES])
def test_family(sysf, data, expected):
    out = extract(sysf, data)
    assert {k: out.get(k) for k in expected} == expected


def test_a_malformed_field_does_not_lose_the_record():
    out = extract(s(SEC, 4624), {"LogonType": {"unexpected": "shape"}, "TargetUserName": ["a", "list"]})
    assert out["message"].startswith("4624 ")


def test_generic_events_get_their_common_fields_and_a_digest():
    out = extract(s(SEC, 5152), {"ProcessId": 0, "Application": "-", "Direction": "%%14592",
                                 "SourceAddress": "23.94.153.202", "SourcePort": "59639", "DestPort": "3389"})
    assert out["src_ip"] == "23.94.153.202"
    assert out["message"] == ("5152 Microsoft-Windows-Security-Auditing: ProcessId=0; Direction=%%14592; "
                              "SourceAddress=23.94.153.202; SourcePort=59639; DestPort=3389")


def test_messages_are_one_line_and_bounded():
    text = "line1\r\nline2\n" + "x" * 1000
    out = extract(s("Microsoft-Windows-PowerShell/Operational", 4104, Provider="Microsoft-Windows-PowerShell"),
                  {"ScriptBlockText": text, "MessageNumber": 1, "MessageTotal": 3, "Path": "C:\\a.ps1"})
    assert out["command_line"] == text  # the full script stays in its column
    assert out["message"].startswith("4104 PowerShell script block (part 1/3) from C:\\a.ps1: line1 line2 xxx")
    assert "\n" not in out["message"]
    # bounded where every row is built (timeline.schema.cap_messages), the same for every collector
    import pyarrow as pa

    from timeline.schema import MESSAGE_MAX, cap_messages

    cut = cap_messages(pa.array([out["message"]])).to_pylist()[0]
    assert len(cut) == MESSAGE_MAX == 400 and cut.endswith("…") and cut[:-1] == out["message"][:399]
