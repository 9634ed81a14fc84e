"""EVTX collection on the real corpus: counts, exact times, fields, damaged files, engines."""

from __future__ import annotations

import collections

import pyarrow.compute as pc
import pytest

from collectors import Artifact, EvtxCollector
from timeline.schema import SCHEMA, iso_ns

# Rows per file of the corpus with the default engine (each record once).  Every value is
# at least the corpus README's reference minimum; several are above it: records in chunk
# slack and in a truncated chunk that neither reference parser returns on its own.
EXPECTED_ROWS = {
    "EVTX-to-MITRE-Attack/Antivirus/ID1151-Defender health status.evtx": 455,
    "EVTX-to-MITRE-Attack/TA0002-Execution/T1059.001-PowerShell/ID4103-4104-Payload download via PowerShell.evtx": 3,
    "EVTX-to-MITRE-Attack/TA0002-Execution/T1059.001-PowerShell/ID800-4103-Interactive PipeShell over named pipe (server and client).evtx": 30,
    "EVTX-to-MITRE-Attack/TA0007-Discovery/T1087-Account discovery/ID800 - SPN discovery (PowerShell).evtx": 21,
    "omerbenamram-evtx/samples/2-system-Microsoft-Windows-LiveId%4Operational.evtx": 399,
    "omerbenamram-evtx/samples/2-vss_0-Microsoft-Windows-RemoteDesktopServices-RdpCoreTS%4Operational.evtx": 1951,
    "omerbenamram-evtx/samples/2-vss_0-Microsoft-Windows-TerminalServices-RemoteConnectionManager%4Operational.evtx": 1944,
    "omerbenamram-evtx/samples/2-vss_7-System.evtx": 1160,
    "omerbenamram-evtx/samples/Application_no_crc32.evtx": 17,
    "omerbenamram-evtx/samples/E_ShadowCopy6_windows_system32_winevt_logs_Microsoft-Windows-CAPI2%4Operational.evtx": 459,
    "omerbenamram-evtx/samples/E_Windows_system32_winevt_logs_Microsoft-Windows-CAPI2%4Operational.evtx": 340,
    "omerbenamram-evtx/samples/E_Windows_system32_winevt_logs_Microsoft-Windows-Shell-Core%4Operational.evtx": 1146,
    "omerbenamram-evtx/samples/MSExchange_Management_wec.evtx": 1,
    "omerbenamram-evtx/samples/Microsoft-Windows-HelloForBusiness%4Operational.evtx": 6,
    "omerbenamram-evtx/samples/Microsoft-Windows-LanguagePackSetup%4Operational.evtx": 17,
    "omerbenamram-evtx/samples/Security_short_selected.evtx": 7,
    "omerbenamram-evtx/samples/Security_with_size_t.evtx": 636,
    "omerbenamram-evtx/samples/issue_201.evtx": 1,
    "omerbenamram-evtx/samples/new-user-security.evtx": 4,
    "omerbenamram-evtx/samples/post-Security.evtx": 126,
    "omerbenamram-evtx/samples/sample-with-irregular-bool-values.evtx": 3028,
    "omerbenamram-evtx/samples/sample-with-zero-data-size-event.evtx": 449,
    "omerbenamram-evtx/samples/sample_with_a_bad_chunk_magic.evtx": 301,
    "omerbenamram-evtx/samples/security_bad_string_cache.evtx": 2261,
    "omerbenamram-evtx/samples/sysmon.evtx": 358,
    "omerbenamram-evtx/samples/system.evtx": 1881,
    "plaso/test_data/evtx/System.evtx": 5009,
    "plaso/test_data/evtx/System2.evtx": 284,
    "python-evtx/tests/data/dns_log_malformed.evtx": 5,
    "python-evtx/tests/data/issue_38.evtx": 1,
    "python-evtx/tests/data/issue_39.evtx": 394,
    "python-evtx/tests/data/issue_43.evtx": 1730,
    "python-evtx/tests/data/security.evtx": 2261,
    "python-evtx/tests/data/system.evtx": 1601,
}


def _collect(path, engine=None):
    c = EvtxCollector(engine=engine)
    art = Artifact("e1", path.name, str(path), "0" * 64, path.stat().st_size)
    tables = list(c.collect(art)) + list(c.finish())
    import pyarrow as pa

    return (pa.concat_tables(tables) if tables else SCHEMA.empty_table()), c.report(art)


def test_every_file_holds_at_least_the_reference_minimum_each_record_once(corpus_case, reference_minimum):
    case, report = corpus_case
    sightings = case.sightings()
    per_file = collections.Counter(sightings.column("evidence_path").to_pylist())
    assert dict(per_file) == EXPECTED_ROWS
    for path, minimum in reference_minimum.items():
        assert per_file[path] >= minimum, path
    # each record once per file: no event hash twice within one file
    pairs = collections.Counter(zip(sightings.column("evidence_path").to_pylist(), sightings.column("event_hash").to_pylist()))
    assert max(pairs.values()) == 1
    # records read: rows, and the records counted lost (frames no parser decodes, records of damaged stretches
    # of frames and of a zeroed chunk: issue 16 section 9)
    assert sum(EXPECTED_ROWS.values()) == 28286
    assert report.records_read == 28286 + report.errors and report.errors == 473


def test_exact_times_to_100ns(corpus_case):
    case, _ = corpus_case
    t = case.timeline()

    def ts(path, ref):
        m = t.filter(pc.and_(pc.equal(t["evidence_path"], path), pc.equal(t["record_ref"], ref)))
        assert m.num_rows == 1
        return iso_ns(m["timestamp"][0].value)

    # written time == TimeCreated: the record header's FILETIME gives the 7th digit
    assert ts("plaso/test_data/evtx/System.evtx", "record=1 offset=0x1200") == "2010-11-21T03:55:59.626427100Z"
    assert ts("omerbenamram-evtx/samples/2-vss_0-Microsoft-Windows-TerminalServices-RemoteConnectionManager%4Operational.evtx",
              "record=462939 offset=0xf828") == "2018-08-07T18:37:12.964091100Z"
    assert ts("plaso/test_data/evtx/System2.evtx", "record=195 offset=0x21200") == "2015-08-09T09:17:38.765625000Z"
    assert ts("python-evtx/tests/data/system.evtx", "record=12331 offset=0x1c520") == "2012-03-15T22:11:55.216665800Z"
    # written 31 ms after it was created: TimeCreated's own FILETIME, written time kept in attrs
    assert ts("omerbenamram-evtx/samples/new-user-security.evtx", "record=4 offset=0x2598") == "2013-10-23T16:22:40.004750000Z"
    m = t.filter(pc.equal(t["record_ref"], "record=4 offset=0x2598"))
    m = m.filter(pc.equal(m["evidence_path"], "omerbenamram-evtx/samples/new-user-security.evtx"))
    assert m["attrs"][0].as_py().startswith('{"host_source":"log","Record":{"written_time":"2013-10-23T16:22:40.036000000Z"},"Event":{')


def test_row_provenance_and_constants(corpus_case):
    case, _ = corpus_case
    t = case.timeline()
    m = t.filter(pc.and_(pc.equal(t["evidence_path"], "plaso/test_data/evtx/System.evtx"),
                         pc.equal(t["record_ref"], "record=1 offset=0x1200")))
    row = m.drop_columns(["timestamp", "attrs"]).to_pylist()[0]
    assert row["parser"].startswith("evtx-rs/")
    row.pop("parser")
    assert row == {
        "timestamp_desc": "Event Logged", "host": "37L4247F27-26", "source": "EVTX", "artifact": "evtx:System",
        "event_id": 7036, "channel": "System", "provider": "Service Control Manager", "user": None,
        "target_user": None, "logon_type": None, "src_ip": None, "src_host": None, "dst_ip": None, "dst_port": None,
        "process": None, "parent_process": None, "command_line": None, "path": None,
        "service_name": "Windows Event Log", "message": "7036 service Windows Event Log entered the stopped state",
        "tags": [], "tz_source": "source_utc", "evidence_id": row["evidence_id"],
        "evidence_path": "plaso/test_data/evtx/System.evtx", "record_ref": "record=1 offset=0x1200",
        "event_hash": "b4eb19e6cdbeddf376b70d5dbbbc6624",
    }
    attrs = m["attrs"][0].as_py()
    assert attrs.startswith('{"host_source":"log","Event":{') and '"param1":"Windows Event Log"' in attrs


# One real record per family: (evidence path, record_ref) -> the extracted fields.
FAMILY_ROWS = [
    ("plaso/test_data/evtx/System2.evtx", "record=2 offset=0x1808",
     {"event_id": 4624, "user": "NT AUTHORITY\\SYSTEM", "logon_type": 0, "message": "4624 logon type 0 by NT AUTHORITY\\SYSTEM"}),
    ("omerbenamram-evtx/samples/Security_with_size_t.evtx", "record=441 offset=0x44460",
     {"event_id": 4625, "user": "WIN-L0ZZQ76PMUF\\Guest", "logon_type": 3, "src_host": "WIN-L0ZZQ76PMUF",
      "process": "C:\\Windows\\explorer.exe",
      "message": "4625 failed logon type 3 (network) by WIN-L0ZZQ76PMUF\\Guest from WIN-L0ZZQ76PMUF via Advapi/Negotiate "
                 "(status 0xC000006E, sub-status 0xC0000072)"}),
    ("plaso/test_data/evtx/System2.evtx", "record=212 offset=0x248c8",
     {"event_id": 4634, "user": "INTERNAL\\STUDENT-PC1$", "logon_type": 3,
      "message": "4634 logoff of INTERNAL\\STUDENT-PC1$ (logon type 3 (network))"}),
    ("plaso/test_data/evtx/System2.evtx", "record=132 offset=0x176b0",
     {"event_id": 4647, "user": "GREENDALEGOLD\\gold_administrator",
      "message": "4647 user-initiated logoff by GREENDALEGOLD\\gold_administrator"}),
    ("plaso/test_data/evtx/System2.evtx", "record=118 offset=0x14d20",
     {"event_id": 4648, "user": "WORKGROUP\\WIN-LK5OF8CDD94$", "target_user": "GREENDALEGOLD\\gold_administrator",
      "src_ip": "127.0.0.1", "process": "C:\\Windows\\System32\\winlogon.exe",
      "message": "4648 WORKGROUP\\WIN-LK5OF8CDD94$ used explicit credentials of GREENDALEGOLD\\gold_administrator "
                 "for localhost from 127.0.0.1 (process C:\\Windows\\System32\\winlogon.exe)"}),
    ("plaso/test_data/evtx/System2.evtx", "record=17 offset=0x3ba0", {"event_id": 4672, "user": "NT AUTHORITY\\SYSTEM"}),
    ("omerbenamram-evtx/samples/new-user-security.evtx", "record=2 offset=0x1b00",
     {"event_id": 4720, "user": "WORKGROUP\\WIN-QALA5Q3KJ43$", "target_user": "IE8Win7\\IEUser",
      "message": "4720 account IE8Win7\\IEUser created by WORKGROUP\\WIN-QALA5Q3KJ43$"}),
    ("plaso/test_data/evtx/System2.evtx", "record=109 offset=0x129b0",
     {"event_id": 4722, "target_user": "GREENDALEGOLD\\gold_administrator",
      "message": "4722 account GREENDALEGOLD\\gold_administrator enabled by WORKGROUP\\WIN-LK5OF8CDD94$"}),
    ("plaso/test_data/evtx/System2.evtx", "record=114 offset=0x13d10",
     {"event_id": 4724, "message": "4724 password reset attempted for account GREENDALEGOLD\\gold_administrator by WORKGROUP\\WIN-LK5OF8CDD94$"}),
    ("omerbenamram-evtx/samples/new-user-security.evtx", "record=1 offset=0x1200",
     {"event_id": 4728, "target_user": "S-1-5-21-3463664321-2923530833-3546627382-1000", "service_name": "IE8Win7\\None"}),
    ("omerbenamram-evtx/samples/new-user-security.evtx", "record=3 offset=0x23c8",
     {"event_id": 4732, "service_name": "Builtin\\Users",
      "message": "4732 S-1-5-21-3463664321-2923530833-3546627382-1000 added to group Builtin\\Users by WORKGROUP\\WIN-QALA5Q3KJ43$"}),
    ("plaso/test_data/evtx/System2.evtx", "record=33 offset=0x65c8",
     {"event_id": 4738, "target_user": "37L4247E29-32\\Administrator"}),
    ("omerbenamram-evtx/samples/Security_with_size_t.evtx", "record=434 offset=0x433c0",
     {"event_id": 4776, "user": "Administrator", "src_host": "WIN-L0ZZQ76PMUF",
      "message": "4776 NTLM credential validation for Administrator from WIN-L0ZZQ76PMUF (status 0x0)"}),
    ("python-evtx/tests/data/system.evtx", "record=12331 offset=0x1c520",
     {"event_id": 7045, "service_name": "BCSWAP", "path": "C:\\Windows\\system32\\drivers\\BCSWAP.sys",
      "user": "S-1-5-21-2036804247-3058324640-2116585241-1114",
      "message": "7045 service BCSWAP installed: C:\\Windows\\system32\\drivers\\BCSWAP.sys (start disabled, account -)"}),
    ("plaso/test_data/evtx/System.evtx", "record=7 offset=0x2368",
     {"event_id": 7036, "service_name": "IPsec Policy Agent", "message": "7036 service IPsec Policy Agent entered the stopped state"}),
    ("python-evtx/tests/data/system.evtx", "record=12060 offset=0x2b48",
     {"event_id": 7040, "user": "S-1-5-18", "service_name": "Background Intelligent Transfer Service",
      "message": "7040 start type of service Background Intelligent Transfer Service changed from demand start to auto start"}),
    ("omerbenamram-evtx/samples/system.evtx", "record=1847 offset=0xe44f0",
     {"event_id": 104, "user": "DESKTOP-2KGM189\\tony",
      "message": "104 Microsoft-Windows-Sysmon/Operational log cleared by DESKTOP-2KGM189\\tony"}),
    ("python-evtx/tests/data/issue_43.evtx", "record=3 offset=0x1bd8",
     {"event_id": 1, "user": "NT AUTHORITY\\SYSTEM", "process": "C:\\Windows\\Sysmon.exe",
      "parent_process": "C:\\Windows\\System32\\services.exe", "command_line": "C:\\Windows\\Sysmon.exe"}),
    ("python-evtx/tests/data/issue_43.evtx", "record=513 offset=0x701c0",
     {"event_id": 3, "src_ip": "192.168.62.128", "dst_ip": "192.168.62.254", "dst_port": 67,
      "message": "Sysmon 3 network connection by C:\\Windows\\System32\\svchost.exe (NT AUTHORITY\\LOCAL SERVICE): "
                 "192.168.62.128:68 -> 192.168.62.254:67 udp"}),
    ("omerbenamram-evtx/samples/sysmon.evtx", "record=1754 offset=0x6318",
     {"event_id": 10, "process": "C:\\Windows\\system32\\svchost.exe", "path": "C:\\Windows\\system32\\lsass.exe",
      "message": "Sysmon 10 C:\\Windows\\system32\\svchost.exe opened C:\\Windows\\system32\\lsass.exe (access 0x1000)"}),
    ("omerbenamram-evtx/samples/sysmon.evtx", "record=1765 offset=0xad08",
     {"event_id": 11, "path": "C:\\Windows\\SoftwareDistribution\\Download\\Install\\AM_Delta.exe"}),
    ("omerbenamram-evtx/samples/sysmon.evtx", "record=1873 offset=0x34ce0",
     {"event_id": 12, "path": "\\REGISTRY\\MACHINE\\SYSTEM\\ControlSet001\\Services\\PROCMON23\\Start"}),
    ("omerbenamram-evtx/samples/sysmon.evtx", "record=1769 offset=0xc3f8",
     {"event_id": 13, "message": "Sysmon 13 registry SetValue by C:\\Windows\\system32\\services.exe: "
                                 "\\REGISTRY\\MACHINE\\SYSTEM\\ControlSet001\\Services\\MpKsle59912eb\\Start = DWORD (0x00000004)"}),
    ("EVTX-to-MITRE-Attack/TA0002-Execution/T1059.001-PowerShell/ID800-4103-Interactive PipeShell over named pipe (server and client).evtx",
     "record=1 offset=0x1200",
     {"event_id": 4103, "user": "OFFSEC\\admmig", "process": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
      "path": "C:\\Program Files\\WindowsPowerShell\\Modules\\PSReadline\\1.2\\PSReadLine.psm1"}),
    ("EVTX-to-MITRE-Attack/TA0002-Execution/T1059.001-PowerShell/ID800-4103-Interactive PipeShell over named pipe (server and client).evtx",
     "record=6 offset=0x3f80", {"event_id": 4104, "command_line": "prompt", "message": "4104 PowerShell script block: prompt"}),
    ("EVTX-to-MITRE-Attack/TA0007-Discovery/T1087-Account discovery/ID800 - SPN discovery (PowerShell).evtx",
     "record=11 offset=0x4258",
     {"event_id": 400, "process": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
      "message": "400 PowerShell engine started (None -> Available): C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"}),
    ("EVTX-to-MITRE-Attack/TA0007-Discovery/T1087-Account discovery/ID800 - SPN discovery (PowerShell).evtx",
     "record=2 offset=0x1a08", {"event_id": 800, "user": "OFFSEC\\admmig"}),
    ("omerbenamram-evtx/samples/2-vss_0-Microsoft-Windows-TerminalServices-RemoteConnectionManager%4Operational.evtx",
     "record=462939 offset=0xf828",
     {"event_id": 1149, "user": "MAGNETIC-DESKTO\\mpowers", "src_ip": "174.127.93.2"}),
]


@pytest.mark.parametrize("path,ref,expected", FAMILY_ROWS, ids=[str(r[2]["event_id"]) for r in FAMILY_ROWS])
def test_fields_of_each_event_family(corpus_case, path, ref, expected):
    case, _ = corpus_case
    t = case.timeline()
    m = t.filter(pc.and_(pc.equal(t["evidence_path"], path), pc.equal(t["record_ref"], ref)))
    assert m.num_rows == 1
    row = m.drop_columns(["timestamp"]).to_pylist()[0]
    assert {k: row[k] for k in expected} == expected
    assert "\n" not in row["message"] and len(row["message"]) <= 400


def test_damaged_files_are_read_with_their_damage_reported(evidence):
    table, rep = _collect(evidence / "omerbenamram-evtx/samples/sample_with_a_bad_chunk_magic.evtx")
    assert table.num_rows == 301  # 31 more records found past damaged frames
    assert [(e.kind, e.count) for e in rep.errors] == [("damaged_frames", 116), ("damaged_frames", 34), ("damaged_frames", 16)]
    kinds = [(w.kind, w.message) for w in rep.warnings]
    assert ("damage", "2 chunk(s) with bad magic: [6, 10]") in kinds
    assert ("damage", "chunk data CRC mismatch in chunk(s) [0, 7, 9]") in kinds
    assert ("damage", "header chunk count 16 vs 4 chunks in file") in kinds

    table, rep = _collect(evidence / "plaso/test_data/evtx/System2.evtx")  # truncated: header says 96 chunks, 3 present
    # (record 284, whose size copy is damaged, is read from the recovery chunk that repairs it)
    assert table.num_rows == 284 and rep.errors == []
    assert rep.stats["rows[evtx-rs/%s+chunk-recovery]" % table["parser"][0].as_py().split("/")[1]] == 90
    assert ("damage", "file truncated (partial last chunk)") in [(w.kind, w.message) for w in rep.warnings]

    table, rep = _collect(evidence / "omerbenamram-evtx/samples/sample-with-zero-data-size-event.evtx")
    assert table.num_rows == 449  # 114 more records found past the frame of zero data size, which is lost
    assert [(e.kind, e.record_ref, e.count) for e in rep.errors] == [("damaged_frames", "offset=0x1820", 1)]
    assert [w.message for w in rep.warnings if w.kind == "parser_error"] == [
        "evtx-rs: Invalid EVTX record data size, should be equals or greater than 28, found `0`"]


def test_records_in_chunk_slack_are_recovered(evidence):
    path = evidence / "omerbenamram-evtx/samples/2-vss_0-Microsoft-Windows-TerminalServices-RemoteConnectionManager%4Operational.evtx"
    table, rep = _collect(path)
    parsers = collections.Counter(table["parser"].to_pylist())
    assert sorted(parsers.values()) == [170, 1774]  # 1774 as the file's header describes it, 170 older ones in slack
    assert rep.stats["frames"] == 1944  # 32 of them past a damaged frame, which is counted lost
    assert [(e.kind, e.record_ref, e.count) for e in rep.errors] == [("damaged_frames", "offset=0x18e98", 1)]


def test_python_evtx_engine_documents_its_losses(evidence):
    # python-evtx trusts the header's chunk count: on this dirty file (1 chunk in the header,
    # 9 in the file) it yields 41 of the 358 records; the rest are counted as errors, not lost silently.
    table, rep = _collect(evidence / "omerbenamram-evtx/samples/sysmon.evtx", engine="python-evtx")
    assert table.num_rows == 41
    assert len(rep.errors) == 317
    assert {e.message for e in rep.errors} == {"python-evtx did not yield this record (it trusts the header's chunk count)"}
    assert table["parser"][0].as_py().startswith("python-evtx/")
    # the default engine reads them all
    assert _collect(evidence / "omerbenamram-evtx/samples/sysmon.evtx")[0].num_rows == 358


def test_python_evtx_and_default_engine_agree_on_the_rows_they_both_read(evidence):
    path = evidence / "omerbenamram-evtx/samples/new-user-security.evtx"
    a, _ = _collect(path)
    b, _ = _collect(path, engine="python-evtx")
    cols = ["timestamp", "event_id", "host", "user", "target_user", "message", "event_hash", "record_ref"]
    assert a.select(cols).sort_by("record_ref").to_pylist() == b.select(cols).sort_by("record_ref").to_pylist()


def test_not_an_evtx_file_is_refused(tmp_path):
    from timeline.errors import UnknownFormat

    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(UnknownFormat, match="not an EVTX file"):
        EvtxCollector.check_compatible(str(p))
    assert not EvtxCollector.matches(str(p))


def test_column_wise_rows_equal_row_by_row_rows(evidence, monkeypatch):
    """The Rust engine's records are turned into columns a batch at a time (EvtxCollector._hot_table);
    the row-by-row path (_record), which also takes what the column-wise step refuses, gives the same rows."""
    import pyarrow as pa

    files = sorted(evidence.rglob("*.evtx"))
    fast = {f: _collect(f)[0] for f in files}
    monkeypatch.setattr(EvtxCollector, "_hot_table", lambda self, rows: None)
    key = [("record_ref", "ascending"), ("parser", "ascending"), ("event_hash", "ascending")]
    compared = 0
    for f in files:
        slow = _collect(f)[0]
        assert fast[f].num_rows == slow.num_rows, f
        assert fast[f].sort_by(key).equals(slow.sort_by(key)), f
        compared += slow.num_rows
    assert compared == 28286 + 2620  # the reference table's files and splunk attack_data's four loose EVTX


def test_time_created_parsed_column_wise_as_row_by_row():
    import pyarrow as pa

    from collectors.evtx import _created_ns, _iso_ns

    values = [
        "2019-03-09T07:23:05.468200Z", "2020-06-23T09:35:56.825510000Z", "2021-06-03T13:05:20.242837300Z",
        "2016-02-29T23:59:59.999999Z", "2015-02-29T00:00:00.000000Z", "2000-02-29T12:00:00.000001Z",
        "1900-02-29T12:00:00.000000Z", "1601-01-01T00:00:00.000000Z", "1678-01-01T00:00:00.000000Z",
        "1677-12-31T23:59:59.999999Z", "2261-12-31T23:59:59.999999Z", "2262-01-01T00:00:00.000000Z",
        "2019-13-01T00:00:00.000000Z", "2019-00-10T00:00:00.000000Z", "2019-04-31T00:00:00.000000Z",
        "2019-03-09T24:00:00.000000Z", "2019-03-09T23:60:00.000000Z", "2019-03-09T23:59:60.000000Z",
        "2019-03-09T07:23:05Z", "2019-03-09T07:23:05.4682Z", "2019-03-09 07:23:05.468200Z",
        "2019-03-09T07:23:05.468200garbage", "2019-03-09T07:23:05.46820éZ", "", "not a time at all, no",
        "1970-01-01T00:00:00.000000Z", "1969-12-31T23:59:59.999999Z", None,
    ]
    valid, ns, precise = _iso_ns(pa.array(values, pa.string()))
    for v, ok, u, p in zip(values, valid.tolist(), ns.tolist(), precise.tolist()):
        expected = _created_ns(v)
        if ok:
            assert (u, p) == expected, v
        else:  # left to _created_ns itself, row by row
            assert (u, p) == (0, False)
    assert [v for v, ok in zip(values, valid.tolist()) if ok] == [
        "2019-03-09T07:23:05.468200Z", "2020-06-23T09:35:56.825510000Z", "2021-06-03T13:05:20.242837300Z",
        "2016-02-29T23:59:59.999999Z", "2000-02-29T12:00:00.000001Z", "1678-01-01T00:00:00.000000Z",
        "2261-12-31T23:59:59.999999Z", "1970-01-01T00:00:00.000000Z", "1969-12-31T23:59:59.999999Z"]
    assert _created_ns("2016-02-29T23:59:59.999999Z") == (1456790399999999000, False)
    # every digit of evtx's nine-digit rendering (issue 16 section 12)
    assert _created_ns("2021-06-03T13:05:20.242837300Z") == (1622725520242837300, True)
    assert _created_ns("2019-03-09T07:23:05.468200garbage") == (None, False)
