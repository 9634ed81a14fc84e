"""Windows events exported as text (NXLog/Logstash JSON lines, Log Analytics rows, Splunk XmlWinEventLog): the
real OTRF and Splunk attack_data exports give the rows EVTX gives, for the hunt helpers and Sigma alike."""

from __future__ import annotations

import csv
import datetime as dt
import json
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest

import forensics
from collectors import WinEventExportCollector, collector_for
from collectors.base import Artifact
from collectors.evtx import EvtxCollector
from collectors.evtx_writer import Event, EvtxWriter
from timeline.errors import UnknownFormat
from timeline.schema import SCHEMA, iso_ns

OTRF = "OTRF-Security-Datasets/datasets"
SPLUNK = "splunk-attack_data/datasets/attack_techniques"
ZIPS = {  # OTRF zip -> the JSON member inside it
    "atomic/windows/credential_access/host/cmd_dumping_ntds_dit_file_ntdsutil.zip": "cmd_dumping_ntds_dit_file_ntdsutil.json",
    "atomic/windows/credential_access/host/cmd_lsass_memory_dumpert_syscalls.zip":
        "cmd_lsass_memory_dumpert_syscalls_2020-10-1822561997.json",
    "compound/Log4Shell/securityauditing_log4shell_cve2021_44228_java_serialized_object.zip":
        "securityauditing_log4shell_cve2021_44228_java_serialized_object_2022-05-13045400.json",
    "compound/Log4Shell/syslog_sysmon_log4shell_cve2021_44228_jndi_reference.zip":
        "syslog_sysmon_log4shell_cve2021_44228_jndi_reference_2022-05-11181020.json",
}
TAR = f"{SPLUNK}/T1047/atomic_red_team/attack_data.tar.gz"


def rows_of(path: Path, tz: str | None = None, tz_source: str | None = None):
    c = WinEventExportCollector()
    art = Artifact("e" * 16, path.name, str(path), "0" * 64, path.stat().st_size, tz=tz, tz_source=tz_source)
    tables = list(c.collect(art)) + list(c.finish())
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    assert table.schema.equals(SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    for r in rows:
        r["a"] = json.loads(r["attrs"])
        r["t"] = iso_ns(r["timestamp"].value)
    return rows, c.report(art)


@pytest.fixture(scope="module")
def exports(evidence: Path, tmp_path_factory):
    """One case holding four OTRF zips and one Splunk attack_data tar.gz, collected through the target collector."""
    case = forensics.Case(tmp_path_factory.mktemp("winevent") / "case", create=True)
    report = case.collect([evidence / OTRF / z for z in ZIPS] + [evidence / TAR], workers=1)
    return case, report


def _inventory(evidence: Path) -> dict[str, int]:
    with open(evidence / "_real-attacks-inventory/other_inventory.tsv") as fh:
        return {r["path"]: int(r["count"]) for r in csv.DictReader(fh, delimiter="\t") if r["count"].isdigit()}


def test_rows_per_export_equal_the_inventory_and_the_line_counts(evidence, exports):
    case, report = exports
    inv = _inventory(evidence)
    tl = forensics.open(case.path)
    got = dict(tl.sql("SELECT evidence_path, count(*) n FROM timeline WHERE source = 'EVTX' GROUP BY 1")
               .itertuples(index=False))
    for z, member in ZIPS.items():
        with zipfile.ZipFile(evidence / OTRF / z) as zf:
            lines = sum(1 for line in zf.read(member).splitlines() if line.strip())
        assert got[f"/{member}"] == inv[f"datasets/{z}"] == lines, z
    with tarfile.open(evidence / TAR) as tf:
        lines = tf.extractfile("attack_data.txt").read().count(b"\n")
    assert got["/attack_data.txt"] == lines == 8220  # REAL-ATTACKS.md 2c
    assert "error" not in case.problems().column("severity").to_pylist()
    assert set(got) == {f"/{m}" for m in ZIPS.values()} | {"/attack_data.txt"}


def test_rows_look_like_evtx_rows(exports):
    case, _ = exports
    df = forensics.open(case.path).sql(
        "SELECT * FROM timeline WHERE evidence_path = '/attack_data.txt' AND record_ref = 'line=146'")
    r = df.iloc[0]
    assert (r.source, r.artifact, r.channel, r.event_id, r.provider) == (
        "EVTX", "winevent-json:Microsoft-Windows-Sysmon/Operational", "Microsoft-Windows-Sysmon/Operational", 10,
        "Microsoft-Windows-Sysmon")
    assert r.host == "win-dc-6178966.attackrange.local" and r.parser.startswith("forensics-winevent-json/")
    assert (r.process, r.path) == ("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", "C:\\Windows\\system32\\lsass.exe")
    a = json.loads(r["attrs"])
    assert a["Event"]["EventData"]["GrantedAccess"] == "0x1410" and a["Event"]["System"]["EventRecordID"] == 1019
    assert a["Event"]["System"]["Keywords"] == "0x8000000000000000" and a["Export"]["RecordNumber"] == 1019
    assert "GrantedAccess" not in a["Export"] and a["Event"]["RenderingInfo"]["Message"].startswith("Process accessed:")
    # NXLog's EventTime is local time without a zone: UTC assumed, and said so
    assert (iso_ns(r.timestamp.value), r.tz_source) == ("2020-08-01T07:53:24.000000000Z", "assumed_utc")
    assert a["Record"] == {"time_field": "EventTime"}


def test_hunt_helpers_see_export_rows(exports):
    case, _ = exports
    tl = forensics.open(case.path)
    logons = tl.logons()
    admin = logons[(logons["record_ref"] == "line=1508") & (logons["evidence_path"] == "/attack_data.txt")].iloc[0]
    assert (admin.user, admin.logon_type, admin.outcome, admin.src_host) == ("ATTACKRANGE\\Administrator", 3, "success",
                                                                              "WIN-DC-6178966")
    procs = tl.process_executions()
    ntds = procs[procs["command_line"].fillna("").str.contains("ifm")]
    assert len(ntds) >= 1 and set(ntds["process"]) >= {"C:\\Windows\\System32\\ntdsutil.exe"}
    row = ntds[ntds["event_id"] == 1].iloc[0]
    assert (row.parent, row.user, iso_ns(row.timestamp.value)) == (
        "C:\\Windows\\System32\\cmd.exe", "PANDALAB\\Administrator", "2023-07-19T09:03:37.281000000Z")
    cred = tl.credential_access()
    lsass = cred[(cred["evidence_path"] == "/attack_data.txt") & (cred["record_ref"] == "line=146")]
    assert list(lsass["technique"]) == ["T1003.001"]


def test_sigma_rules_fire_on_export_rows(exports, sigma_dir):
    pytest.importorskip("sigma")
    from forensics import sigma

    case, _ = exports
    run = sigma.run(forensics.open(case.path), sigma_dir / "rules/windows/process_creation/proc_creation_win_ntdsutil_usage.yml")
    assert run.rules_converted == 1 and len(run.matches) >= 1
    assert set(run.matches["evidence_path"]) == {"/cmd_dumping_ntds_dit_file_ntdsutil.json"}


def test_exact_times_and_zones(evidence, tmp_path):
    with zipfile.ZipFile(evidence / OTRF / next(iter(ZIPS))) as zf:
        (tmp_path / "ntds.json").write_bytes(zf.read("cmd_dumping_ntds_dit_file_ntdsutil.json"))
    rows, rep = rows_of(tmp_path / "ntds.json")
    r = rows[0]  # "TimeCreated":"2023-07-19T09:03:40.710Z"
    assert (r["t"], r["tz_source"], r["channel"], r["event_id"], r["provider"]) == (
        "2023-07-19T09:03:40.710000000Z", "source_utc", "Directory Service", 102, "NTDS ISAM")
    # the same events' Sysmon UtcTime is 7 h later: a warning, the times kept as stated
    assert [w.kind for w in rep.warnings] == ["zone_mismatch"] and "-07:00" in rep.warnings[0].message

    with zipfile.ZipFile(evidence / OTRF / list(ZIPS)[1]) as zf:
        (tmp_path / "dumpert.json").write_bytes(zf.read(list(ZIPS.values())[1]))
    rows, rep = rows_of(tmp_path / "dumpert.json")  # "TimeCreated":"2020-10-18 10:56:18.799": no zone
    assert (rows[0]["t"], rows[0]["tz_source"]) == ("2020-10-18T10:56:18.799000000Z", "assumed_utc")
    assert rep.warnings[0].kind == "zone_mismatch" and "by -16:00 (95 rows)" in rep.warnings[0].message
    rows, _ = rows_of(tmp_path / "dumpert.json", tz="Asia/Kolkata", tz_source="analyst")
    assert (rows[0]["t"], rows[0]["tz_source"]) == ("2020-10-18T05:26:18.799000000Z", "analyst")

    # Splunk XmlWinEventLog keeps all seven digits of SystemTime
    rows, rep = rows_of(evidence / SPLUNK / "T1003.002/atomic_red_team/sysmon.log")
    assert len(rows) == 10 and rep.errors == [] and rows[0]["record_ref"] == "line=1"
    assert (rows[0]["t"], rows[0]["tz_source"]) == ("2025-10-24T14:14:58.830193800Z", "source_utc")


def test_evtx_and_export_give_the_same_fields(evidence, tmp_path):
    """The same events written as a real EVTX file (evtx_writer) and read back by the EVTX collector give the
    same columns as the exports they came from."""
    xml_rows, _ = rows_of(evidence / SPLUNK / "T1003.002/atomic_red_team/sysmon.log")
    with tarfile.open(evidence / TAR) as tf:
        (tmp_path / "attack_data.txt").write_bytes(tf.extractfile("attack_data.txt").read())
    json_rows, _ = rows_of(tmp_path / "attack_data.txt")
    picked = [r for r in json_rows if r["record_ref"] in ("line=1508", "line=146", "line=378")] + xml_rows[:3]
    assert len(picked) == 6
    with EvtxWriter(tmp_path / "same.evtx") as w:
        for r in picked:
            data = {k: ("" if v is None else str(v)) for k, v in r["a"]["Event"]["EventData"].items()}
            w.write(Event(r["event_id"], dt.datetime.fromisoformat(r["t"][:26]).replace(tzinfo=dt.timezone.utc),
                          r["provider"], r["channel"], r["host"], event_data=data))
    c = EvtxCollector()
    art = Artifact("e" * 16, "same.evtx", str(tmp_path / "same.evtx"), "0" * 64, 0)
    evtx_rows = pa.concat_tables(list(c.collect(art)) + list(c.finish())).to_pylist()
    cols = ("host", "source", "event_id", "channel", "provider", "user", "target_user", "logon_type", "src_ip",
            "src_host", "process", "parent_process", "command_line", "path", "service_name")
    for mine, theirs in zip(picked, evtx_rows):
        assert {k: mine[k] for k in cols} == {k: theirs[k] for k in cols}
        assert mine["message"].replace("None", "-") == theirs["message"].replace("None", "-")


def test_log_analytics_rows(evidence, tmp_path):
    z = list(ZIPS)[2]
    with zipfile.ZipFile(evidence / OTRF / z) as zf:
        (tmp_path / "la.json").write_bytes(zf.read(ZIPS[z]))
    rows, rep = rows_of(tmp_path / "la.json")
    assert len(rows) == 39 and rep.errors == []
    r = rows[0]  # "TimeGenerated":"2022-05-13T08:54:05.21Z", EventData as an XML string
    assert (r["t"], r["host"], r["provider"], r["event_id"]) == (
        "2022-05-13T08:54:05.210000000Z", "WORKSTATION5", "Microsoft-Windows-Security-Auditing", 5156)
    assert r["a"]["Event"]["EventData"]["DestPort"] == "8080" and r["src_ip"] == "192.168.3.5"
    # Sysmon for Linux in Log Analytics Syslog rows: 93 events; one cut at 2 KiB by syslog, 16 with a bare '&'
    z = list(ZIPS)[3]
    with zipfile.ZipFile(evidence / OTRF / z) as zf:
        (tmp_path / "linux.json").write_bytes(zf.read(ZIPS[z]))
    rows, rep = rows_of(tmp_path / "linux.json")
    assert len(rows) == 93 and rep.errors == []
    assert sorted({w.kind for w in rep.warnings}) == ["repaired_record"] and len(rep.warnings) == 17
    cut = next(r for r in rows if r["record_ref"] == "line=8")
    assert "cut short after 2012 characters" in cut["a"]["Record"]["repaired"]
    assert rows[0]["channel"] == "Linux-Sysmon/Operational" and rows[0]["t"] == "2022-05-11T18:10:20.399931000Z"
    amp = next(r for r in rows if r["record_ref"] == "line=9")
    assert amp["a"]["Event"]["EventData"]["Image"] == "&lt unknown process&gt "


def test_xml_records_over_several_lines_and_comments(evidence):
    rows, rep = rows_of(evidence / SPLUNK / "T1087.002/4662_ad_enum/4662_priv_events.log")
    assert len(rows) == 16 and rep.errors == []  # 96 lines, 16 records (values with line breaks)
    assert [r["record_ref"] for r in rows[:2]] == ["line=1", "line=7"]
    rows, rep = rows_of(evidence / SPLUNK / "T1649/certify_abuse/certify_esc1_abuse.log")
    assert len(rows) == 38 and rep.errors == [] and rep.stats["comment_lines"] == 4
    rows, rep = rows_of(evidence / "splunk-attack_data/datasets/emerging_threats/shieldbreak/defender_kernel_object.log")
    assert [r["event_id"] for r in rows] == [1116, 1117]  # two records, no line end at the end of the file


def test_channel_spelling_and_recognition(evidence, tmp_path):
    line = {"EventID": 4624, "Channel": "security", "Hostname": "H", "SourceName": "Microsoft-Windows-Security-Auditing",
            "EventTime": "2020-09-21 18:58:29", "TargetUserName": "bob", "TargetDomainName": "D", "LogonType": "10",
            "IpAddress": "10.0.0.5"}
    p = tmp_path / "x.json"
    p.write_text(json.dumps(line) + "\n")
    assert collector_for(str(p)) is WinEventExportCollector
    rows, rep = rows_of(p)
    r = rows[0]
    assert (r["channel"], r["artifact"], r["a"]["Export"]["Channel"]) == ("Security", "winevent-json:Security", "security")
    assert (r["user"], r["logon_type"], r["src_ip"]) == ("D\\bob", 10, "10.0.0.5")
    syslog = tmp_path / "syslog"
    syslog.write_text("Nov 23 07:00:00 host sshd[1]: Accepted password for root from 1.2.3.4 port 22 ssh2\n")
    with pytest.raises(UnknownFormat):
        WinEventExportCollector.check_compatible(str(syslog))
    assert collector_for(str(syslog)) is not WinEventExportCollector
    other = tmp_path / "other.json"
    other.write_text('{"type": "PATH", "msg": "audit(1747951721.1:1)"}\n')
    assert not WinEventExportCollector.matches(str(other))
