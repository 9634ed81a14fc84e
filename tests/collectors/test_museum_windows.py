"""The DFIR Artifact Museum's Prefetch and Amcache of the APTSimulator hosts, as published (KAPE-collected; 7z
archives read through the 7z evidence path, one member at a time): every Prefetch file and the Server 2022
Amcache hive are recognised by content and read by dissect's plugins, with the exact rows and times they hold.
(The same host's ``$UsnJrnl:$J`` through the 7z path: ``test_usnjrnl.py``.)"""

from __future__ import annotations

import pytest

import forensics
from forensics import Case

MUSEUM = "AndrewRathbun-DFIRArtifactMuseum/Windows"
PREFETCH_7Z = f"{MUSEUM}/Prefetch/Win10/APTSimulatorVM/Version 30 Variant 2.7z"
PREFETCH_CTF = f"{MUSEUM}/Prefetch/Win10/BelkasoftCTF_InsiderThreat/Version 30 Variant 1.7z"
AMCACHE_7Z = f"{MUSEUM}/Amcache/Server2022/APTSimulatorVM/APTSimulatorVM_Amcache_Server2022.7z"
AMCACHE_WIN10 = f"{MUSEUM}/Amcache/Win10/APTSimulatorVM/Amcache.hve"
LAG_UNDER_A_MINUTE = 443  # of 447: most files are written ~10 s after the run starts


@pytest.fixture(scope="module")
def museum(evidence, tmp_path_factory):
    case = Case(tmp_path_factory.mktemp("museum") / "case", create=True)
    rep = case.collect([evidence / PREFETCH_7Z, evidence / AMCACHE_7Z, evidence / AMCACHE_WIN10, evidence / PREFETCH_CTF],
                       workers=1)
    return case, rep


def test_every_prefetch_file_of_the_7z(museum):
    case, rep = museum
    # the only problems: 28 Amcache rows whose time is implausible (before 1990 or in the future), kept and flagged
    assert rep.errors == 0 and rep.warnings == 28
    p = case.problems(as_pandas=True)
    assert set(p["kind"]) == {"implausible_time"} and p["count"].sum() == 28
    assert set(p["evidence_path"]) == {"/Amcache.hve", "Amcache.hve"}
    pf = [a for a in rep.artifacts if a["collector"] == "prefetch"]
    assert len(pf) == 191 + 256 and all(a["evidence_path"].endswith(".pf") for a in pf)
    tl = forensics.open(case.path)
    s = tl.sql("SELECT count(*) n, count(DISTINCT evidence_path) f, min(timestamp) a, max(timestamp) b "
               "FROM timeline WHERE artifact = 'os:prefetch' AND timestamp >= '2022-01-01'").iloc[0]
    assert (s.n, s.f) == (533, 191)
    assert (str(s.a), str(s.b)) == ("2022-03-10 16:34:29.902372+00:00", "2022-03-10 21:40:49.223898+00:00")
    seven = tl.sql("SELECT timestamp, timestamp_desc, process FROM timeline WHERE evidence_path = '/7Z.EXE-A137ACD8.pf' "
                   "ORDER BY timestamp")
    assert [(str(t), d) for t, d in zip(seven.timestamp, seven.timestamp_desc)] == [
        (f"2022-03-10 {t}+00:00", "Prefetch Previous Run") for t in (
            "20:32:23.882957", "20:37:20.257284", "20:37:44.835314", "20:41:20.069710", "20:46:17.554003",
            "20:57:18.725885", "21:03:28.426554")] + [("2022-03-10 21:07:51.251003+00:00", "Prefetch Last Run")]
    assert set(seven.process) == {"7Z.EXE"}
    # the run APTSimulator made of PsExec's service on this host
    ps = tl.sql("SELECT timestamp, timestamp_desc FROM timeline WHERE evidence_path = '/PSEXESVC.EXE-AD70946C.pf'")
    assert len(ps) >= 1 and ps.timestamp_desc.tolist().count("Prefetch Last Run") == 1


def test_the_insider_threat_hosts_prefetch(museum):
    """The Belkasoft CTF host's 256 Prefetch files (Windows 10 1809, MAM variant 1)."""
    case, rep = museum
    tl = forensics.open(case.path)
    s = tl.sql("SELECT count(*) n, count(DISTINCT evidence_path) f, min(timestamp) a, max(timestamp) b "
               "FROM timeline WHERE artifact = 'os:prefetch' AND timestamp < '2022-01-01'").iloc[0]
    assert (s.n, s.f) == (922, 256)
    assert (str(s.a), str(s.b)) == ("2020-04-01 19:57:54.483006+00:00", "2021-02-14 02:38:43.234001+00:00")


def test_each_last_run_precedes_the_files_own_write_time(museum):
    """Windows writes a Prefetch file after the run it records: every file's last run lies before the last-write time
    the 7z stores for it (within dissect's rounding of the 100 ns FILETIME to a microsecond), by at most the 22
    minutes a process started at boot waits for its file (CSRSS, WINLOGON, DWM on the CTF host)."""
    case, rep = museum
    d = forensics.open(case.path).sql(
        "SELECT p.evidence_path, epoch_ns(f.timestamp) - epoch_ns(p.timestamp) AS lag FROM timeline p JOIN timeline f "
        "ON f.path = p.evidence_path AND f.artifact = 'fs:7z' AND f.evidence_id = p.evidence_id "
        "WHERE p.artifact = 'os:prefetch' AND p.timestamp_desc = 'Prefetch Last Run'")
    assert len(d) == 191 + 256
    assert d.lag.min() == -300 and d.lag.max() == 1_309_645_942_100  # -300 ns: POWERCFG.EXE, rounded up to the µs
    assert (d.lag < 60 * 10**9).sum() == LAG_UNDER_A_MINUTE


def test_the_server_2022_amcache_of_the_7z(museum):
    case, rep = museum
    tl = forensics.open(case.path)
    a = tl.sql("SELECT timestamp, timestamp_desc, path, message FROM timeline WHERE artifact = 'reg:amcache' "
               "AND evidence_path = '/Amcache.hve' ORDER BY timestamp, timestamp_desc, path")
    assert len(a) == 79
    psexec = a[a.path == "c:\\windows\\psexesvc.exe"]
    assert [(str(t), d) for t, d in zip(psexec.timestamp, psexec.timestamp_desc)] == [
        ("2010-04-27 00:23:57+00:00", "Linked (Amcache)"), ("2023-10-18 03:00:17.686661+00:00", "Amcache Entry Written")]
    assert set(psexec.message) == {"amcache: c:\\windows\\psexesvc.exe sha1=26c0c7fbc2ee8b2aa8c1ae0f76af95d5fda72903"}
    # the last-written times of Root\\InventoryApplicationFile's 35 keys, as dissect.regf reads the hive itself:
    # first servermanagerlauncher.exe, last net.exe
    written = a[a.timestamp_desc == "Amcache Entry Written"]
    assert (str(written.timestamp.min()), str(written.timestamp.max())) == (
        "2023-10-18 02:44:56.015799+00:00", "2023-10-18 03:02:19.283371+00:00")
    assert written[written.timestamp == written.timestamp.max()].path.tolist() == ["c:\\windows\\system32\\net.exe"]


def test_the_loose_win10_amcache(museum):
    case, rep = museum
    tl = forensics.open(case.path)
    a = tl.sql("SELECT timestamp, timestamp_desc FROM timeline WHERE artifact = 'reg:amcache' "
               "AND evidence_path = 'Amcache.hve'")
    assert len(a) == 359  # as inside the Velociraptor collection of this host (test_velociraptor.py)
    assert sorted(x["evidence_path"] for x in rep.artifacts if x["collector"] == "amcache") == ["/Amcache.hve", "Amcache.hve"]



def test_an_amcache_time_before_1677_is_a_counted_warning(evidence, tmp_path):
    """The Stolen Szechuan DC's Amcache holds 148 install dates 160 s after 1601-01-01 (an almost-zero FILETIME),
    which no timestamp[ns] holds: each is a counted warning, the record stays on the timeline by its other times,
    and the collection goes on (it aborted with an OverflowError before)."""
    hive = evidence / f"{MUSEUM}/Amcache/Win2012R2/StolenSzechuan/Amcache.hve"
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([hive], workers=1)
    assert (rep.records_read, rep.rows_written, rep.errors, rep.warnings) == (420, 420, 0, 148)
    p = case.problems(as_pandas=True)
    assert p["kind"].tolist() == ["time_out_of_range"] * 148
    assert p["message"].str.contains(r"install_date: 1601-01-01T00:02:40\.046865\+00:00 is outside the years").all()
    tl = forensics.open(case.path)
    s = tl.sql("SELECT min(timestamp) a, max(timestamp) b FROM timeline").iloc[0]
    assert (str(s.a), str(s.b)) == ("2019-12-27 07:27:36.003769+00:00", "2020-09-18 22:37:33.252594+00:00")
