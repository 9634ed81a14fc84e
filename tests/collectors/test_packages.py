"""Package-manager logs: apt history (plaso's real sample and rotations), dpkg.log, yum.log, dnf.rpm.log;
loose and inside an ext4 image (where dissect's packagemanager plugin must not give them twice)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
from pathlib import Path

import pytest

from collectors import collector_for
from collectors.packages import PackagesCollector, package_log_kind
from collectors.syslog import SyslogCollector
from forensics import Case

UTC = dt.timezone.utc


def _t(*a) -> dt.datetime:
    return dt.datetime(*a, tzinfo=UTC)


def rep_os(rep) -> str:
    return next(a["facts"]["os"] for a in rep.artifacts if a["collector"] == "target")


def _case(tmp_path: Path, files, tz=None):
    case = Case(tmp_path / "case", create=True)
    rep = case.collect(files, workers=1, tz=tz)
    return case, rep, case.timeline().to_pandas()


@pytest.fixture
def plaso(evidence: Path) -> Path:
    return evidence / "plaso" / "test_data"


def test_plasos_apt_history_one_row_per_package_operation(plaso, tmp_path):
    case, rep, t = _case(tmp_path, [plaso / "apt_history.log"], tz="Asia/Kolkata")
    assert rep.errors == 0 and rep.warnings == 0
    assert [(a["collector"], a["rows"]) for a in rep.artifacts] == [("packages", 797)]
    # one row per package named on an Install/Upgrade/Remove/Purge line (grep -o "(" on those lines)
    assert t.groupby("timestamp_desc").size().to_dict() == {"Package Installed": 780, "Package Upgraded": 8,
                                                            "Package Removed": 8, "Package Purged": 1}
    assert set(t.artifact) == {"packages:apt"} and set(t.source) == {"PACKAGE"} and set(t.tz_source) == {"analyst"}
    purge = t[t.timestamp_desc == "Package Purged"].iloc[0]
    # Start-Date: 2019-07-12  04:12:51 IST
    assert purge.timestamp == _t(2019, 7, 11, 22, 42, 51) and purge.record_ref == "line=40 package=1"
    assert (purge.user, purge.command_line, purge.process) == ("jxs", "apt-get purge python-pytest", "apt")
    a = json.loads(purge["attrs"])
    assert (a["package"], a["arch"], a["version"], a["requested_by_uid"], a["start_date"], a["end_date"]) == (
        "python-pytest", "amd64", "3.0.6-1", 1005, "2019-07-12  04:12:51", "2019-07-12  04:12:51")
    assert purge.message == "apt purge python-pytest:amd64 3.0.6-1 (apt-get purge python-pytest)"
    up = json.loads(t[t.record_ref == "line=2 package=6"]["attrs"].iloc[0])
    assert (up["package"], up["old_version"], up["version"]) == ("libssl1.1", "1.1.0j-1~deb9u1", "1.1.0k-1~deb9u1")
    auto = json.loads(t[t.record_ref == "line=7 package=1"]["attrs"].iloc[0])
    assert (auto["package"], auto["version"], auto["automatic"]) == ("python-six", "1.10.0-3", True)
    # the docker-ce run that failed: its 14 packages carry the error
    failed = [json.loads(x) for x in t["attrs"] if "error" in json.loads(x)]
    assert len(failed) == 14 and {f["error"] for f in failed} == {"Sub-process /usr/bin/dpkg returned an error code (1)"}


def test_plasos_dpkg_log_every_line(plaso, tmp_path):
    case, rep, t = _case(tmp_path, [plaso / "dpkg.log"], tz="Asia/Kolkata")
    assert rep.errors == 0
    t = t.sort_values("record_ref")
    assert list(zip(t.record_ref, t.timestamp_desc, t.timestamp)) == [
        ("line=1", "Conffile Handled", _t(2009, 2, 25, 6, 15, 23)),
        ("line=2", "Package Manager Started", _t(2016, 8, 3, 9, 55, 53)),
        ("line=3", "Package Installed", _t(2016, 8, 6, 12, 5, 39)),
        ("line=4", "Package Status Changed", _t(2016, 8, 8, 23, 27, 14))]
    a = [json.loads(x) for x in t["attrs"]]
    assert (a[0]["conffile"], a[0]["decision"]) == ("/etc/X11/Xsession", "keep")
    assert (a[2]["package"], a[2]["arch"], a[2]["version"], "old_version" in a[2]) == ("base-passwd", "amd64", "3.5.33", False)
    assert (a[3]["state"], a[3]["package"], a[3]["version"]) == ("half-installed", "base-passwd", "3.5.33")


def test_without_a_zone_utc_is_assumed_and_flagged(plaso, tmp_path):
    _, _, t = _case(tmp_path, [plaso / "dpkg.log"])
    assert set(t.tz_source) == {"assumed_utc"}
    assert t.sort_values("record_ref").timestamp.iloc[2] == _t(2016, 8, 6, 17, 35, 39)


HISTORY = """Start-Date: 2022-10-30  01:59:00
Commandline: apt-get install netcat-openbsd
Requested-By: admin (1000)
Install: netcat-openbsd:amd64 (1.219-1)
End-Date: 2022-10-30  01:59:05

Start-Date: 2022-10-30  02:30:00
Commandline: apt-get remove netcat-openbsd
Requested-By: admin (1000)
Remove: netcat-openbsd:amd64 (1.219-1)
End-Date: 2022-10-30  02:30:01

Start-Date: 2022-10-30  03:00:00
Commandline: apt-get upgrade
Upgrade: openssh-server:amd64 (1:8.4p1-5, 1:8.4p1-5+deb11u1), openssh-client:amd64 (1:8.4p1-5, 1:8.4p1-5+deb11u1)
End-Date: 2022-10-30  03:00:09
"""
ROTATED = """Start-Date: 2022-03-27  02:30:00
Commandline: apt-get install --reinstall curl
Requested-By: admin (1000)
Reinstall: curl:amd64 (7.74.0-1.3+deb11u3)
End-Date: 2022-03-27  02:30:04

Start-Date: 2022-03-27  03:10:00
Commandline: apt-get -f install
Error: Sub-process /usr/bin/dpkg returned an error code (1)
End-Date: 2022-03-27  03:10:02
"""


def _apt_logs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "history.log").write_text(HISTORY)
    (folder / "history.log.1.gz").write_bytes(gzip.compress(ROTATED.encode(), mtime=0))
    return [folder / "history.log", folder / "history.log.1.gz"]


def test_apt_history_across_dst_changes_in_berlin(tmp_path):
    """CEST → CET on 2022-10-30 (02:00-03:00 happens twice) and CET → CEST on 2022-03-27 (02:00-03:00 never
    happens): the earlier offset is taken and the row says so; a .gz rotation is read like the live file."""
    case, rep, t = _case(tmp_path, _apt_logs(tmp_path / "apt"), tz="Europe/Berlin")
    assert rep.errors == 0
    got = sorted(zip(t.timestamp, t.timestamp_desc, t.evidence_path, t.record_ref))
    assert got == [
        (_t(2022, 3, 27, 1, 10), "Package Manager Run", "history.log.1.gz", "line=7"),  # 03:10 CEST
        (_t(2022, 3, 27, 1, 30), "Package Reinstalled", "history.log.1.gz", "line=1 package=1"),  # gap: +01:00
        (_t(2022, 10, 29, 23, 59), "Package Installed", "history.log", "line=1 package=1"),  # 01:59 CEST
        (_t(2022, 10, 30, 0, 30), "Package Removed", "history.log", "line=7 package=1"),  # ambiguous: CEST taken
        (_t(2022, 10, 30, 2, 0), "Package Upgraded", "history.log", "line=13 package=1"),  # 03:00 CET
        (_t(2022, 10, 30, 2, 0), "Package Upgraded", "history.log", "line=13 package=2"),
    ]
    notes = {(r.evidence_path, r.record_ref): json.loads(r.attrs).get("time_note") for r in t.itertuples()}
    assert notes[("history.log", "line=7 package=1")].startswith("ambiguous local time in Europe/Berlin")
    assert sorted(k for k, v in notes.items() if v) == [("history.log", "line=7 package=1"), ("history.log.1.gz", "line=1 package=1")]
    gap = t[(t.evidence_path == "history.log.1.gz") & (t.record_ref == "line=1 package=1")]
    assert "does not exist in Europe/Berlin" in json.loads(gap["attrs"].iloc[0])["time_note"]
    run = t[t.timestamp_desc == "Package Manager Run"].iloc[0]
    assert (run.command_line, json.loads(run["attrs"])["error"]) == (
        "apt-get -f install", "Sub-process /usr/bin/dpkg returned an error code (1)")
    ssh = t[t.record_ref == "line=13 package=1"].iloc[0]
    assert ssh.message == "apt upgrade openssh-server:amd64 1:8.4p1-5 -> 1:8.4p1-5+deb11u1 (apt-get upgrade)"
    assert ssh.isna()["user"] and set(t.tz_source) == {"analyst"}


YUM = """Dec 31 23:50:00 Installed: 1:nmap-ncat-6.40-19.el7.x86_64
Jan 01 00:10:00 Updated: 1:openssl-libs-1.0.2k-26.el7_9.x86_64
Jan 01 00:20:00 Erased: telnet-0.17-66.el7.x86_64
"""
DNF = """2022-11-23T07:10:00+0530 INFO --- logging initialized ---
2022-11-23T07:10:05+0530 SUBDEBUG Installed: nmap-ncat-3:7.92-1.el9.x86_64
2022-11-23T07:10:06+0530 SUBDEBUG Upgrade: openssl-1:3.0.7-6.el9.x86_64
2022-11-23T07:10:06+0530 SUBDEBUG Upgraded: openssl-1:3.0.1-43.el9.x86_64
2022-11-23T07:11:00+0530 SUBDEBUG Erase: telnet-1:0.17-85.el9.x86_64
2022-11-23T01:45:00Z INFO --- logging initialized ---
"""


def test_yum_log_years_and_dnf_offsets(tmp_path):
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "yum.log").write_text(YUM)
    os.utime(logs / "yum.log", (1672617600, 1672617600))  # 2023-01-02 00:00 UTC
    (logs / "dnf.rpm.log").write_text(DNF)
    case, rep, t = _case(tmp_path, [logs], tz="Asia/Kolkata")
    assert rep.errors == 0
    assert sorted((a["evidence_path"], a["collector"], a["rows"]) for a in rep.artifacts) == [
        ("dnf.rpm.log", "packages", 4), ("yum.log", "packages", 3)]
    yum = t[t.artifact == "packages:yum"].sort_values("record_ref")
    assert list(yum.timestamp) == [_t(2022, 12, 31, 18, 20), _t(2022, 12, 31, 18, 40), _t(2022, 12, 31, 18, 50)]
    assert list(yum.timestamp_desc) == ["Package Installed", "Package Upgraded", "Package Removed"]
    a = [json.loads(x) for x in yum["attrs"]]
    assert [(x["package"], x.get("version"), x.get("arch"), x["year"]) for x in a] == [
        ("nmap-ncat", "1:6.40-19.el7", "x86_64", 2022), ("openssl-libs", "1:1.0.2k-26.el7_9", "x86_64", 2023),
        ("telnet", "0.17-66.el7", "x86_64", 2023)]
    assert a[0]["year_source"] == "file modification time 2023-01-02, 1 New Year roll-over(s)"
    dnf = t[t.artifact == "packages:dnf"].sort_values("record_ref")
    assert list(zip(dnf.timestamp, dnf.timestamp_desc)) == [
        (_t(2022, 11, 23, 1, 40, 5), "Package Installed"), (_t(2022, 11, 23, 1, 40, 6), "Package Upgraded"),
        (_t(2022, 11, 23, 1, 40, 6), "Package Upgraded"), (_t(2022, 11, 23, 1, 41), "Package Removed")]
    assert set(dnf.tz_source) == {"embedded_offset"}
    d = [json.loads(x) for x in dnf["attrs"]]
    assert [(x["dnf_operation"], x["package"], x["version"]) for x in d] == [
        ("Installed", "nmap-ncat", "3:7.92-1.el9"), ("Upgrade", "openssl", "1:3.0.7-6.el9"),
        ("Upgraded", "openssl", "1:3.0.1-43.el9"), ("Erase", "telnet", "1:0.17-85.el9")]
    stats = next(a["stats"] for a in rep.artifacts if a["evidence_path"] == "dnf.rpm.log")
    assert stats["other_lines"] == 2


def test_package_logs_go_to_the_packages_collector_not_syslog(plaso, tmp_path):
    (tmp_path / "yum.log").write_text(YUM)
    (tmp_path / "dnf.rpm.log").write_text(DNF)
    for p in (plaso / "apt_history.log", plaso / "dpkg.log", tmp_path / "yum.log", tmp_path / "dnf.rpm.log"):
        assert collector_for(str(p)) is PackagesCollector, p
    assert [package_log_kind(str(p)) for p in (plaso / "apt_history.log", plaso / "dpkg.log", tmp_path / "yum.log",
                                                tmp_path / "dnf.rpm.log", plaso / "syslog")] == ["apt", "dpkg", "yum", "dnf", None]
    (tmp_path / "messages").write_text(YUM)  # yum's shape under another name is left to syslog
    assert collector_for(str(tmp_path / "messages")) is SyslogCollector


def test_package_logs_inside_an_image_are_read_once(tmp_path, ext4_image):
    """dissect's packagemanager plugin also reads apt history and yum.log: its records of those are left to
    the packages collector, so each operation is one row, in the image's zone."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("ehosp-app01\n")
    (root / "etc" / "timezone").write_text("Asia/Kolkata\n")
    (root / "etc" / "debian_version").write_text("11.5\n")  # dissect then sees Debian and runs its apt plugin
    (root / "etc" / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nNAME="Debian GNU/Linux"\n'
                                             'VERSION_ID="11"\nID=debian\n')
    _apt_logs(root / "var" / "log" / "apt")
    (root / "var" / "log" / "dpkg.log").write_text("2022-11-23 07:10:00 install netcat:amd64 <none> 1.10-46\n"
                                                    "2022-11-23 07:10:01 status installed netcat:amd64 1.10-46\n")
    (root / "var" / "log" / "yum.log").write_text(YUM)
    os.utime(root / "var" / "log" / "yum.log", (1672617600, 1672617600))
    img = ext4_image(root, tmp_path / "app01.raw")
    case, rep, t = _case(tmp_path, [img])
    assert rep.errors == 0
    pk = t[t.source == "PACKAGE"]
    assert pk.groupby("artifact").size().to_dict() == {"packages:apt": 6, "packages:dpkg": 2, "packages:yum": 3}
    assert set(pk.tz_source) == {"evidence_config"} and set(pk.host) == {"ehosp-app01"}
    assert sorted(set(pk.evidence_path)) == ["/var/log/apt/history.log", "/var/log/apt/history.log.1.gz",
                                             "/var/log/dpkg.log", "/var/log/yum.log"]
    # 01:59 Berlin time read as IST now: the image's zone decides
    first = pk[(pk.evidence_path == "/var/log/apt/history.log") & (pk.record_ref == "line=1 package=1")].iloc[0]
    assert first.timestamp == _t(2022, 10, 29, 20, 29)
    stats = next(a["stats"] for a in rep.artifacts if a["collector"] == "target")
    # dissect's apt records (one per package: 5) were seen and left to the collector (its yum plugin runs on
    # Red Hat systems only)
    assert stats["plugin:packagemanager:left_to_collectors"] == 5 and stats["plugin:packagemanager"] == 0
    assert rep_os(rep) == "linux"


ZYPPER = """# 2022-12-16 12:56:23 unzip-6.00-41.1.x86_64.rpm installed ok
2022-12-16 12:56:23|install|unzip|6.00-41.1|x86_64|root@sles01|repo-oss|d7e42c9d83f97cf3b7eceb4d3fa64e445a33a7a33f387366734c444d5571cb3a|
2022-12-16 12:57:50|command|root@sles01|'zypper' 'remove' 'unzip'|
2022-12-16 12:57:50|remove |unzip|6.00-41.1|x86_64|root@sles01|
"""


def _suse_image(tmp_path: Path, ext4_image) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("sles01\n")
    (root / "etc" / "timezone").write_text("Asia/Kolkata\n")
    (root / "etc" / "os-release").write_text('NAME="SLES"\nVERSION_ID="15.4"\nID="sles"\nID_LIKE="suse"\n'
                                             'PRETTY_NAME="SUSE Linux Enterprise Server 15 SP4"\n')
    (root / "etc" / "zypp").mkdir()  # dissect knows SUSE by its package manager's configuration
    (root / "etc" / "zypp" / "zypp.conf").write_text("[main]\n")
    (root / "var" / "log" / "zypp").mkdir(parents=True)
    (root / "var" / "log" / "zypp" / "history").write_text(ZYPPER)
    return ext4_image(root, tmp_path / "sles01.raw")


def test_zypper_history_is_local_time_in_the_images_zone(tmp_path, ext4_image):
    """zypper writes its history in the host's local time: the rows are in the image's zone and say so
    (they were marked as UTC-stored before), and name the folder dissect read."""
    img = _suse_image(tmp_path, ext4_image)
    case, rep, t = _case(tmp_path, [img])
    assert rep.errors == 0
    pk = t[t.artifact == "os:packages"].sort_values(["timestamp", "record_ref"])
    # 12:56:23 and 12:57:50 IST
    assert list(zip(pk.timestamp, pk.tz_source, pk.evidence_path)) == [
        (_t(2022, 12, 16, 7, 26, 23), "evidence_config", "/var/log/zypp"),
        (_t(2022, 12, 16, 7, 27, 50), "evidence_config", "/var/log/zypp"),
        (_t(2022, 12, 16, 7, 27, 50), "evidence_config", "/var/log/zypp"),
    ]
    assert set(pk.host) == {"sles01"}


def test_zypper_history_with_the_analysts_zone(tmp_path, ext4_image):
    img = _suse_image(tmp_path, ext4_image)
    case, rep, t = _case(tmp_path, [img], tz="Europe/Berlin")
    pk = t[t.artifact == "os:packages"]
    assert set(pk.tz_source) == {"analyst"}
    assert pk.timestamp.min() == _t(2022, 12, 16, 11, 56, 23)  # 12:56:23 CET
