"""Disk images and archives through dissect.target: real images of dfvfs and plaso, and Linux
server images this test builds with ``mke2fs -d`` (no root, no mounting)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pytest

from collectors.target import image_segments, is_container
from forensics import Case
from forensics.cli import main
from timeline.errors import UnknownFormat

UTC = dt.timezone.utc
EXT2_FORMATS = ("ext2.E01", "ext2.split.E01", "ext2.qcow2", "ext2.vmdk", "ext2.vhd", "ext2.splitraw.000")


@pytest.fixture
def dfvfs(evidence: Path) -> Path:
    return evidence / "dfvfs" / "test_data"


@pytest.fixture
def plaso(evidence: Path) -> Path:
    return evidence / "plaso" / "test_data"


def _rows(case: Case, **where):
    t = case.timeline().to_pandas()
    for k, v in where.items():
        t = t[t[k] == v]
    return t


def test_segments_of_split_and_differencing_images(dfvfs):
    assert [p.name for p in image_segments(dfvfs / "ext2.split.E01")] == ["ext2.split.E01", "ext2.split.E02"]
    assert [p.name for p in image_segments(dfvfs / "ext2.splitraw.000")] == ["ext2.splitraw.000", "ext2.splitraw.001"]
    assert [p.name for p in image_segments(dfvfs / "image-differential.vhd")] == ["image-differential.vhd", "image.vhd"]
    assert is_container(str(dfvfs / "ext2.vmdk")) and not is_container(str(dfvfs / "syslog"))


def test_every_container_format_gives_the_same_file_system_timeline(dfvfs, tmp_path):
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([dfvfs / name for name in EXT2_FORMATS], workers=1)
    assert rep.errors == 0
    t = case.timeline().to_pandas()
    per_image = {}
    for ev in rep.evidence:
        rows = t[t.evidence_id == ev["evidence_id"]]
        per_image[Path(ev["path"]).name] = sorted(zip(rows.path, rows.timestamp_desc, rows.timestamp.astype("int64")))
        if "split" in ev["path"]:
            assert len(ev["files"]) == 2  # both segments hashed before and after
    first = per_image["ext2.E01"]
    assert len(first) == 18
    assert all(v == first for v in per_image.values())
    pw = [r for r in first if r[0] == "/passwords.txt"]
    ts = int(dt.datetime(2021, 7, 22, 14, 7, 32, tzinfo=UTC).timestamp() * 1e9)
    assert pw == [("/passwords.txt", "Content Modification Time", ts), ("/passwords.txt", "Last Access Time", ts),
                  ("/passwords.txt", "Metadata Modification Time", ts)]
    row = _rows(case, path="/passwords.txt", timestamp_desc="Content Modification Time").iloc[0]
    attrs = json.loads(row["attrs"])
    assert (attrs["inode"], attrs["size"], attrs["mode"], attrs["macb"]) == (14, 116, "-rw-rw-r--", "MAC.")
    assert (row.source, row.artifact, row.tz_source) == ("FILE", "fs:ext", "source_utc")


def test_file_times_match_the_mactime_body_of_the_image(plaso, dfvfs, tmp_path):
    """dfvfs's mactime.body lists plaso's image.qcow2 (atime|mtime|ctime|crtime, seconds), deleted and orphan
    names included, as an earlier state of the image: /a_directory/another_file's times there (…583/584/585) are
    not the image's (1337961563, as `fls` and `istat` of the image give them)."""
    case = Case(tmp_path / "case", create=True)
    case.collect([plaso / "image.qcow2"], workers=1)
    t = case.timeline().to_pandas()
    kind = {"Last Access Time": 7, "Content Modification Time": 8, "Metadata Modification Time": 9}
    checked = []
    for line in (dfvfs / "mactime.body").read_text().splitlines():
        f = line.split("|")
        path = f[1].removesuffix(" (deleted)")
        rows = t[t.path == path]
        if path == "/a_directory/another_file":
            assert {int(r.timestamp.timestamp()) for r in rows.itertuples()} == {1337961563}
            continue
        if not int(f[2]) or not any(int(x) for x in f[7:]):  # a deleted name whose inode number is gone, TSK's
            assert rows.empty, path  # virtual $OrphanFiles folder: nothing dates them, no row
            continue
        got = {r.timestamp_desc: int(r.timestamp.timestamp()) for r in rows.itertuples()}
        assert got == {k: int(f[i]) for k, i in kind.items()}, f[1]
        attrs = json.loads(rows["attrs"].iloc[0])
        assert (attrs["inode"], attrs["uid"], attrs["gid"], attrs["size"]) == (int(f[2]), int(f[4]), int(f[5]), int(f[6])), f[1]
        assert attrs.get("deleted", False) == f[1].endswith(" (deleted)")
        checked.append(path)
    assert checked == ["/lost+found", "/a_directory", "/a_directory/a_file", "/passwords.txt", "/$OrphanFiles/OrphanFile-13"]


def test_ntfs_standard_information_and_file_name_times_keep_100ns(plaso, tmp_path):
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([plaso / "vsstest.qcow2"], workers=1)
    t = _rows(case, path="/password.txt")
    assert sorted(set(t.artifact)) == ["fs:ntfs:$FN", "fs:ntfs:$SI"]
    assert len(t) == 8
    assert set(t.timestamp.astype("int64")) == {1386052733783972200}  # 2013-12-03 06:38:53.7839722 UTC
    assert set(json.loads(a)["macb"] for a in t["attrs"]) == {"MACB"}
    # metafiles without a data stream ($Secure...) still get their times from the MFT record
    assert len(_rows(case, path="/$Secure")) == 8
    # the only records lost: the two damaged lines of plaso's syslog sample ("MMM 22 ...", "Mar 23 Wrong line ...")
    lost = case.problems().filter(pa.compute.equal(case.problems().column("severity"), "error")).to_pylist()
    assert rep.errors == 2 and {(p["kind"], p["record_ref"]) for p in lost} == {("unparsed_line", "line=7"), ("unparsed_line", "line=11")}
    # the log inside the NTFS volume went through the syslog collector
    logs = _rows(case, evidence_path="/syslog.gz")
    assert len(logs) == 12 and set(logs.artifact) == {"syslog:syslog"}


def test_logs_inside_archives_inside_an_image(plaso, tmp_path):
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([plaso / "syslog_image.dd"], workers=1)
    inner = sorted((a["evidence_path"], a["collector"], a["rows"]) for a in rep.artifacts)
    assert inner == [("/logs/hidden.zip!/syslog", "syslog", 12), ("/logs/sys.tgz!/syslog.gz", "syslog", 12),
                     ("syslog_image.dd", "target", 20)]
    # 11 rows of the three names listed, 9 of the three orphan inodes (deleted files whose names are gone)
    orphans = _rows(case, source="FILE")
    orphans = orphans[orphans.path.str.startswith("/$OrphanFiles/")]
    assert sorted(set(orphans.path)) == ["/$OrphanFiles/OrphanFile-14", "/$OrphanFiles/OrphanFile-15",
                                         "/$OrphanFiles/OrphanFile-16"]
    assert all(json.loads(a)["deleted"] for a in orphans.attrs) and len(orphans) == 9
    # the same twelve lines in both archives: one row each, two sightings
    t = case.timeline().to_pandas()
    assert (t.source == "SYSLOG").sum() == 12
    s = case.sightings().to_pandas()
    assert sorted(set(s[s.event_hash.isin(t[t.source == "SYSLOG"].event_hash)].evidence_path)) == [
        "/logs/hidden.zip!/syslog", "/logs/sys.tgz!/syslog.gz"]
    first = t[t.source == "SYSLOG"].sort_values("record_ref").iloc[0]
    assert first.host == "myhostname.myhost.com" and first.record_ref == "line=1"


def test_a_volume_without_a_file_system_is_a_warning(plaso, tmp_path):
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([plaso / "tsk_volume_system.raw"], workers=1)
    p = case.problems().to_pandas()
    assert list(p.kind) == ["no_filesystem"] and rep.warnings == 1
    assert "offset 512" in p.message[0]


def test_a_bogus_image_fails_clearly_and_leaves_no_case(dfvfs, tmp_path, capsys):
    with pytest.raises(UnknownFormat, match="no file system found"):
        Case(tmp_path / "c1", create=True).collect([dfvfs / "bogus.001"])
    assert main(["collect", str(dfvfs / "bogus.001"), "--case", str(tmp_path / "c2")]) == 4
    err = capsys.readouterr().err
    assert "bogus.001: no file system found in it (tried: E01/Ex01" in err
    assert not (tmp_path / "c2").exists()


def _server(root: Path, tz: str = "Asia/Kolkata") -> Path:
    (root / "etc").mkdir(parents=True)
    for d in ("usr/bin", "opt", "root", "home/alice"):
        (root / d).mkdir(parents=True)
    (root / "var" / "log" / "nginx").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("ehosp-app01\n")
    (root / "etc" / "timezone").write_text(tz + "\n")
    auth = root / "var" / "log" / "auth.log"
    auth.write_text(
        "Dec 31 23:59:58 ehosp-app01 sshd[100]: Failed password for root from 203.0.113.7 port 50000 ssh2\n"
        "Jan  1 00:00:03 ehosp-app01 sshd[101]: Accepted password for root from 203.0.113.7 port 50001 ssh2\n")
    os.utime(auth, ns=(1672552800_000_000_000, 1672552800_000_000_000))  # 2023-01-01 06:00 UTC
    rotated = root / "var" / "log" / "syslog.2.gz"
    import gzip

    rotated.write_bytes(gzip.compress(b"Nov 23 07:00:01 ehosp-app01 CRON[7]: (root) CMD (backup.sh)\n", mtime=0))
    os.utime(rotated, ns=(1669200000_000_000_000, 1669200000_000_000_000))  # 2022-11-23 10:40 UTC
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\nsvc-backup:x:998:998::/home/svc:/bin/bash\n")
    unit = root / "etc" / "systemd" / "system" / "kworker.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Unit]\nDescription=kernel worker\n[Service]\nExecStart=/tmp/.x/kworker -c /tmp/.x/c.json\n"
                    "[Install]\nWantedBy=multi-user.target\n")
    cron = root / "etc" / "cron.d" / "upd"
    cron.parent.mkdir(parents=True)
    cron.write_text("*/5 * * * * root /tmp/.x/kworker\n")
    for f in (unit, cron):
        os.utime(f, ns=(1669167120_000_000_000, 1669167120_000_000_000))  # 2022-11-23 01:32 UTC (07:02 IST)
    (root / "var" / "log" / "dpkg.log").write_text("2022-11-23 07:10:00 install netcat:amd64 <none> 1.10-46\n")
    return root


def _image(tmp_path: Path, ext4_image, tz: str = "Asia/Kolkata") -> Path:
    return ext4_image(_server(tmp_path / "root", tz), tmp_path / "app01.raw")


def test_linux_server_image_host_zone_years_and_utc(tmp_path, ext4_image):
    img = _image(tmp_path, ext4_image)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([img], workers=1)
    assert rep.errors == 0
    facts = next(a["facts"] for a in rep.artifacts if a["collector"] == "target")
    assert facts["host"] == "ehosp-app01" and facts["tz"] == "Asia/Kolkata" and facts["tz_from"] == "/etc/timezone"
    auth = _rows(case, evidence_path="/var/log/auth.log").sort_values("timestamp")
    assert list(auth.timestamp) == [dt.datetime(2022, 12, 31, 18, 29, 58, tzinfo=UTC),
                                    dt.datetime(2022, 12, 31, 18, 30, 3, tzinfo=UTC)]
    assert [json.loads(a)["year"] for a in auth["attrs"]] == [2022, 2023]
    assert set(auth.tz_source) == {"evidence_config"} and set(auth.host) == {"ehosp-app01"}
    cron = _rows(case, evidence_path="/var/log/syslog.2.gz").iloc[0]
    assert cron.timestamp == dt.datetime(2022, 11, 23, 1, 30, 1, tzinfo=UTC)  # 07:00:01 IST
    assert cron.command_line == "backup.sh" and cron.user == "root"
    fs = _rows(case, path="/var/log/auth.log", timestamp_desc="Content Modification Time").iloc[0]
    assert fs.timestamp == dt.datetime(2023, 1, 1, 6, 0, tzinfo=UTC) and fs.host == "ehosp-app01"
    born = _rows(case, path="/var/log/auth.log", timestamp_desc="Creation Time").iloc[0]
    assert born.timestamp == dt.datetime(2022, 11, 23, 1, 13, 20, tzinfo=UTC)  # mke2fs's (fake) time


def test_the_analysts_tz_overrides_the_images_zone(tmp_path, ext4_image):
    img = _image(tmp_path, ext4_image)
    case = Case(tmp_path / "case", create=True)
    case.collect([img], workers=1, tz="UTC")
    cron = _rows(case, evidence_path="/var/log/syslog.2.gz").iloc[0]
    assert cron.timestamp == dt.datetime(2022, 11, 23, 7, 0, 1, tzinfo=UTC) and cron.tz_source == "analyst"


def test_image_collection_is_idempotent_and_custody_verifies(tmp_path, ext4_image):
    img = _image(tmp_path, ext4_image)
    case = Case(tmp_path / "case", create=True)
    first = case.collect([img], workers=1)
    again = case.collect([img], workers=1)
    assert first.rows_written > 0 and again.rows_written == 0 and again.skipped
    v = case.verify()
    assert v.ok and v.evidence_checked == 1


def test_os_artifacts_of_a_linux_image_services_cron_accounts_packages(tmp_path, ext4_image):
    from forensics.hunt import service_installs

    img = _image(tmp_path, ext4_image)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([img], workers=1)
    assert rep.errors == 0
    t = case.timeline().to_pandas()
    svc = t[t.source == "SERVICE"].iloc[0]
    assert (svc.service_name, svc.command_line, svc.evidence_path) == (
        "kworker.service", "/tmp/.x/kworker -c /tmp/.x/c.json", "/etc/systemd/system/kworker.service")
    assert svc.timestamp == dt.datetime(2022, 11, 23, 1, 32, tzinfo=UTC) and svc.timestamp_desc == "Service Key / Unit File Modified"
    cron = t[t.source == "CRON"].iloc[0]
    assert (cron.user, cron.command_line, cron.timestamp_desc) == ("root", "root /tmp/.x/kworker", "Crontab Modified (entry time unknown)")
    assert sorted(t[t.source == "ACCOUNT"].target_user) == ["root", "svc-backup"]
    pkg = t[t.artifact == "packages:dpkg"].iloc[0]
    assert pkg.timestamp == dt.datetime(2022, 11, 23, 1, 40, tzinfo=UTC)  # 07:10 IST, the image's zone
    assert (pkg.timestamp_desc, pkg.tz_source, pkg.source) == ("Package Installed", "evidence_config", "PACKAGE")
    a = json.loads(pkg["attrs"])
    assert (a["package"], a["arch"], a["version"]) == ("netcat", "amd64", "1.10-46")
    found = service_installs(case.timeline().to_pandas())
    assert list(found.service_name) == ["kworker.service"] and list(found.image_path) == ["/tmp/.x/kworker -c /tmp/.x/c.json"]
    assert list(found.start_type) == ["multi-user.target"]


def test_a_triage_zip_reads_its_event_logs_with_the_same_recovery(evidence, tmp_path):
    """A KAPE-style zip: EVTX files inside archives go through the EVTX collector (chunk recovery,
    dissect fallback) exactly as loose files do."""
    import zipfile

    samples = evidence / "omerbenamram-evtx" / "samples"
    members = {"sample_with_a_bad_chunk_magic.evtx": 301, "Security_short_selected.evtx": 7}
    z = tmp_path / "DC01-triage.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for name in members:
            zf.write(samples / name, f"C/Windows/System32/winevt/Logs/{name}")
    os.chmod(z, 0o444)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([z], workers=1)
    got = {a["evidence_path"]: (a["collector"], a["rows"]) for a in rep.artifacts if a["collector"] != "target"}
    # dissect recognises the KAPE layout: C/ is the c: drive
    assert got == {f"c:/Windows/System32/winevt/Logs/{n}": ("evtx", rows) for n, rows in members.items()}
    loose = Case(tmp_path / "loose", create=True)
    loose.collect([samples / n for n in members], workers=1)
    assert set(case.timeline().column("event_hash").to_pylist()) >= set(loose.timeline().column("event_hash").to_pylist())


def test_a_collected_os_tree_folder_is_read_as_one_target(tmp_path):
    root = _server(tmp_path / "app01-triage")
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([root], workers=1)
    target = next(a for a in rep.artifacts if a["collector"] == "target")
    assert target["evidence_path"] == "app01-triage/" and target["facts"]["host"] == "ehosp-app01"
    assert target["facts"]["tz"] == "Asia/Kolkata"
    auth = _rows(case, evidence_path="/var/log/auth.log").sort_values("timestamp")
    assert list(auth.timestamp) == [dt.datetime(2022, 12, 31, 18, 29, 58, tzinfo=UTC),
                                    dt.datetime(2022, 12, 31, 18, 30, 3, tzinfo=UTC)]
    files = rep.evidence[0]["files"]
    assert sorted(f["path"] for f in files) == sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert case.verify().ok


def test_a_folder_of_loose_logs_stays_per_file(tmp_path):
    logs = tmp_path / "varlog"
    logs.mkdir()
    (logs / "auth.log").write_text("Nov 23 07:00:00 h1 sshd[1]: Accepted password for root from 10.0.0.5 port 22 ssh2\n")
    rep = Case(tmp_path / "case", create=True).collect([logs], workers=1, tz="Asia/Kolkata")
    assert [(a["evidence_path"], a["collector"]) for a in rep.artifacts] == [("auth.log", "syslog")]


def test_the_live_host_is_read_read_only_and_narrowly(tmp_path):
    """``forensics collect local``: this machine's root as an OS tree, only its log, history and
    autostart locations (not every file), each file hashed as it is read, a new evidence item each time."""
    import socket

    case = Case(tmp_path / "case", create=True)
    rep = case.collect(["local"], workers=1)
    target = next(a for a in rep.artifacts if a["collector"] == "target")
    assert target["evidence_path"] == "local:/" and target["facts"]["live"] is True
    assert target["facts"]["host"] == socket.gethostname().split(".")[0]
    t = case.timeline().to_pandas()
    assert len(t) > 0 and set(t.host.dropna()) == {target["facts"]["host"]}
    fs_paths = set(t[t.source == "FILE"].path)
    assert fs_paths and all(p.startswith(("/var/log", "/etc/", "/var/spool/cron", "/run/", "/var/run/", "/root/.", "/home/"))
                            for p in fs_paths)
    inner = [a for a in rep.artifacts if a.get("inside")]
    assert all(len(a["sha256"]) == 64 for a in inner)
    again = case.collect(["local"], workers=1)  # the host changed since: read again, a new evidence item
    assert again.evidence[0]["evidence_id"] != rep.evidence[0]["evidence_id"]
    assert case.verify().ok
