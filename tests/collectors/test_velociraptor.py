"""A Velociraptor offline collection as the offline collector writes it (``Collection-<HOST>-<time>.zip``), built here
from real artifacts of one host: the APTSimulator Windows 10 VM of the DFIR Artifact Museum (DESKTOP-TMKU40H: its
System and Sysmon EVTX, its ``$UsnJrnl:$J``, Amcache hive and Prefetch files), the ``$MFT`` of the NTFS volume
Windows formatted in Velocidex/go-ewf's E01, and a SOFTWARE hive and alice's NTUSER.DAT written with
:mod:`collectors.regf_writer` (the corpus holds no real ones).

The layout follows Velociraptor's source (``vql/tools/collector``, ``utils/sanitize.go``, the collector's golden
fixtures): every path part stored as ``SanitizeString`` writes it (bytes other than letters, digits and
``-_.~ $`` as ``%XX``, a leading ``.`` as ``%2E``, a ``_`` appended to names ending in ``.db`` or ``_``); the
``auto`` accessor's files under ``uploads/auto/C%3A/``, the raw NTFS files under
``uploads/ntfs/%5C%5C.%5CC%3A/`` with the sparse ``$J`` stored as its data ranges and an ``.idx`` of them;
``uploads.json`` (one JSON object per line), ``results/<artifact>.json``, ``log.json``, ``requests.json``,
``collection_context.json`` (the flow context: no host in it) and ``client_info.json`` (the ``info()`` of the
host, with ``Hostname``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import zipfile
from pathlib import Path

import pytest

from collectors.regf_writer import write_hive
from collectors.target import velociraptor_name
from forensics import Case

MUSEUM = "AndrewRathbun-DFIRArtifactMuseum/Windows"
HOST = "DESKTOP-TMKU40H"
NAME = f"Collection-{HOST}-2022-03-10T21_45_12Z"
J_AT = 209_715_200  # the journal's first USN: where its data begins in the $J stream (its zero run is sparse)
KAPE = "Windows.KapeFiles.Targets"
TARGET_ROWS = 1099  # 201 upload-tree rows (one time per zip member), 533 Prefetch, 359 Amcache, 6 Run/UserAssist/users
PREFETCH_ROWS = 533
AMCACHE_ROWS = 359
USN_LAST = 1646948646870587900  # 2022-03-10 21:44:06.8705879 UTC
# 7z.exe's eight runs; the last, 63 ms before the .pf file's own last-write time as the museum's 7z stores it
SEVEN_ZIP_RUNS = [("Prefetch Previous Run", f"2022-03-10 {t}+00:00") for t in (
    "20:32:23.882957", "20:37:20.257284", "20:37:44.835314", "20:41:20.069710", "20:46:17.554003", "20:57:18.725885",
    "21:03:28.426554")] + [("Prefetch Last Run", "2022-03-10 21:07:51.251003+00:00")]
AMCACHE_PIN = ("amcache: c:\\program files (x86)\\microsoft\\edge\\application\\99.0.1150.36\\"
               "cookie_exporter.exe sha1=None")


def sanitize(part: str) -> str:
    """One path part as Velociraptor's ``utils.SanitizeString`` stores it."""
    if part.startswith("."):
        return "%2E" + sanitize(part[1:])
    if part.endswith(".db") or part.endswith("_"):
        part += "_"
    return "".join(chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "-_.~ $") else f"%{b:02X}"
                   for b in part.encode("utf-8"))


def _seven(path: Path, out: Path, names: list[str] | None = None) -> dict[str, bytes]:
    import py7zr

    out.mkdir(parents=True, exist_ok=True)
    with py7zr.SevenZipFile(path) as z:
        if names:
            z.extract(path=out, targets=names)
        else:
            z.extractall(path=out)
    return {p.name: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def host_files(evidence: Path, tmp: Path) -> dict[tuple[str, str], bytes]:
    """(accessor, path on the host) -> content: what the collection uploads."""
    from dissect.target import Target

    import importlib.util

    # the hives of the KAPE triage test beside this file
    spec = importlib.util.spec_from_file_location("_windows_triage", Path(__file__).with_name("test_windows_triage.py"))
    triage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(triage)
    ntuser_hive, software_hive = triage.ntuser_hive, triage.software_hive

    files: dict[tuple[str, str], bytes] = {}
    logs = _seven(evidence / MUSEUM / "EventLogs/Win10/APTSimulatorVM/APTSimulatorVM_EventLogs.7z", tmp / "evtx",
                  ["System.evtx", "Microsoft-Windows-Sysmon%4Operational.evtx"])
    for n, b in logs.items():
        files[("auto", f"C:/Windows/System32/winevt/Logs/{n}")] = b
    for n, b in _seven(evidence / MUSEUM / "Prefetch/Win10/APTSimulatorVM/Version 30 Variant 2.7z", tmp / "pf").items():
        files[("auto", f"C:/Windows/Prefetch/{n}")] = b
    amc = evidence / MUSEUM / "Amcache/Win10/APTSimulatorVM"
    for n in ("Amcache.hve", "Amcache.hve.LOG1", "Amcache.hve.LOG2"):
        files[("auto", f"C:/Windows/AppCompat/Programs/{n}")] = (amc / n).read_bytes()
    j = _seven(evidence / MUSEUM / "NTFSArtifacts/J/Win10/APTSimulatorVM/APTSimulatorVMJ.7z", tmp / "j")["$J"]
    files[("ntfs", "\\\\.\\C:/$Extend/$UsnJrnl:$J")] = j
    t = Target.open(evidence / "Velocidex-go-ewf/test/test.ntfs.dd.E01")
    # another volume of the host (d:): the corpus holds no $MFT of the museum host's c: (its journal stays names only)
    files[("ntfs", "\\\\.\\D:/$MFT")] = t.filesystems[0].ntfs.mft.get(0).open().read()
    write_hive(tmp / "SOFTWARE", software_hive(), "\\REGISTRY\\MACHINE\\SOFTWARE")
    files[("auto", "C:/Windows/System32/config/SOFTWARE")] = (tmp / "SOFTWARE").read_bytes()
    write_hive(tmp / "NTUSER.DAT", ntuser_hive(), "\\??\\C:\\Users\\alice\\ntuser.dat")
    files[("auto", "C:/Users/alice/NTUSER.DAT")] = (tmp / "NTUSER.DAT").read_bytes()
    files[("auto", "C:/Users/alice/AppData/Local/Microsoft/Windows/Explorer/thumbcache_256.db")] = b"CMMM" + bytes(60)
    return files


def write_collection(dest: Path, files: dict[tuple[str, str], bytes], client_info: bool = True,
                     folder: bool = False) -> Path:
    """The offline collector's zip (or the folder it unpacks to) of ``files``."""
    when = "2022-03-10T21:45:12Z"
    members: dict[str, bytes] = {}
    uploads, rows = [], []
    for (accessor, path), data in files.items():
        parts = path.split("/")
        stored = "/".join(["uploads", accessor, *map(sanitize, parts)])
        sparse = path.endswith("$UsnJrnl:$J")
        members[stored] = data
        size = J_AT + len(data) if sparse else len(data)
        upload = {"Timestamp": when, "started": "2022-03-10 21:45:12 +0000 UTC", "vfs_path": path.replace("/", "\\"),
                  "_Components": ["uploads", accessor, *parts], "file_size": size, "uploaded_size": len(data),
                  "Type": ""}
        if sparse:  # the ntfs accessor reads $J as runs: only the data run is stored, its place in the .idx
            idx = {"ranges": [{"original_offset": J_AT, "file_length": len(data), "length": len(data)}]}
            members[stored + ".idx"] = json.dumps(idx).encode()
            uploads.append({**upload, "vfs_path": upload["vfs_path"] + ".idx", "file_size": len(members[stored + ".idx"]),
                            "uploaded_size": len(members[stored + ".idx"]), "Type": "idx"})
        uploads.append(upload)
        rows.append({"SourceFile": path.replace("/", "\\"), "Size": size, "StoredName": "/" + stored,
                     "Created": when, "Modified": when})
    index = "".join(json.dumps(u) + "\n" for u in uploads).encode()
    members |= {
        "uploads.json": index,
        f"results/{KAPE}%2FUploads.json": "".join(json.dumps(r) + "\n" for r in rows).encode(),
        "log.json": b'{"_ts":1646948712,"client_time":1646948712,"level":"DEFAULT","message":"Starting collection of '
                    + KAPE.encode() + b'\\n"}\n',
        "requests.json": json.dumps({"items": [{"session_id": "F.C8LQ1H6T1TVU2", "request_id": 1}]}, indent=1).encode(),
        "collection_context.json": json.dumps({
            "session_id": "F.C8LQ1H6T1TVU2", "request": {"artifacts": [KAPE]}, "create_time": 1646948712000000000,
            "start_time": 1646948712000000000, "total_uploaded_files": len(uploads),
            "total_uploaded_bytes": sum(len(v) for k, v in members.items() if k.startswith("uploads/")),
            "total_collected_rows": len(rows), "state": 2, "artifacts_with_results": [f"{KAPE}/Uploads"]},
            indent=1).encode(),
    }
    if client_info:
        members["client_info.json"] = json.dumps({
            "Hostname": HOST, "Uptime": 18000, "BootTime": 1646930712, "OS": "windows", "Platform": "Microsoft Windows 10 Pro",
            "PlatformFamily": "Standalone Workstation", "PlatformVersion": "10.0.19044 Build 19044", "KernelVersion":
            "10.0.19044 Build 19044", "Fqdn": HOST, "Architecture": "amd64", "LocalTZ": "PST", "LocalTZOffset": -28800,
            "Name": "velociraptor", "BuildTime": "2022-02-09T02:32:46Z"}, indent=1).encode()
    mtime = dt.datetime(2022, 3, 10, 21, 45, 12).timetuple()[:6]
    if folder:
        for name, data in members.items():
            p = dest / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return dest
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, mtime), data, zipfile.ZIP_DEFLATED)
    os.chmod(dest, 0o444)
    return dest


@pytest.fixture(scope="module")
def collected(evidence, tmp_path_factory):
    """The collection as a zip, collected once into a case."""
    tmp = tmp_path_factory.mktemp("velo")
    files = host_files(evidence, tmp / "src")
    z = write_collection(tmp / f"{NAME}.zip", files)
    case = Case(tmp / "case", create=True)
    rep = case.collect([z], workers=1)
    return case, rep, files, tmp


def _on_drive(path: str) -> str:
    """A host path as the timeline names it: ``C:/x`` and ``\\\\.\\C:/x`` are ``c:/x``."""
    head, _, rest = path.partition(":/")
    return f"{head[-1].lower()}:/{rest}"


def _rows(case: Case):
    return case.timeline().to_pandas()


def test_names_are_stored_as_velociraptor_sanitizes_them():
    assert sanitize("C:") == "C%3A" and sanitize("\\\\.\\C:") == "%5C%5C.%5CC%3A"
    assert sanitize("$UsnJrnl:$J") == "$UsnJrnl%3A$J" and sanitize(".bash_history") == "%2Ebash_history"
    assert sanitize("Microsoft-Windows-Sysmon%4Operational.evtx") == "Microsoft-Windows-Sysmon%254Operational.evtx"
    assert sanitize("thumbcache_256.db") == "thumbcache_256.db_" and sanitize("x_") == "x__"
    for name in ("C:", "$UsnJrnl:$J", ".bash_history", "thumbcache_256.db", "x_", "naïve", "a%4b"):
        assert velociraptor_name(sanitize(name)) == name


def test_every_artifact_of_the_collection_is_read_on_its_drive(collected, evidence):
    """EVTX as the corpus inventory counts them, every USN record of the real $J (read from its sparse upload),
    the $MFT's timeline on c:, the Prefetch and Amcache plugins, alice's NTUSER.DAT: one host, named by
    client_info.json; the collector's own files named, not read."""
    case, rep, files, tmp = collected
    got = sorted((a["evidence_path"], a["collector"], a["rows"], a["lost"]) for a in rep.artifacts)
    assert got == sorted([("c:/$Extend/$UsnJrnl:$J", "usnjrnl", 275_540, 0), ("d:/$MFT", "mft", 280, 0),
                          ("c:/Windows/System32/winevt/Logs/Microsoft-Windows-Sysmon%4Operational.evtx", "evtx", 1402, 0),
                          ("c:/Windows/System32/winevt/Logs/System.evtx", "evtx", 831, 0),
                          (f"{NAME}.zip", "target", TARGET_ROWS, 0)])
    assert rep.errors == 0
    facts = next(a["facts"] for a in rep.artifacts if a["collector"] == "target")
    assert (facts["host"], facts["host_from"], facts["os"]) == (HOST, "client_info.json", "windows")
    assert facts["sparse_uploads"] == ["c:/$Extend/$UsnJrnl:$J"]
    assert sorted(facts["outside_layout"]) == sorted([
        "client_info.json", "collection_context.json", "log.json", "requests.json", "uploads.json",
        f"results/{KAPE}%2FUploads.json"])
    t = _rows(case)
    assert set(t[t.source != "EVTX"].host) == {HOST}
    by = t.groupby("artifact").size().to_dict()
    assert by == {"evtx:Microsoft-Windows-Sysmon/Operational": 1402, "evtx:System": 831, "fs:ntfs:$FN": 140,
                  "fs:ntfs:$SI": 140, "fs:zip": 201, "ntfs:usnjrnl": 275_540, "os:prefetch": PREFETCH_ROWS,
                  "reg:amcache": AMCACHE_ROWS, "reg:runkeys": 2, "reg:userassist": 1, "os:users": 2}
    paths = set(t[t.artifact == "fs:zip"].path)
    assert paths == {_on_drive(p) for _, p in files}
    assert "c:/Users/alice/AppData/Local/Microsoft/Windows/Explorer/thumbcache_256.db" in paths
    assert "c:/Users/alice/NTUSER.DAT" in paths and "c:/$Extend/$UsnJrnl:$J" in paths
    assert not any("%" in p.replace("%4Operational", "") or p.endswith(".idx") or "uploads" in p for p in paths)
    assert case.verify().ok


def test_the_usn_journal_and_mft_as_read_alone(collected, evidence, tmp_path):
    """The $J and $MFT of the collection give the rows the same files give collected loose (on drive c:)."""
    case, rep, files, tmp = collected
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "$MFT").write_bytes(files[("ntfs", "\\\\.\\D:/$MFT")])
    alone = Case(tmp_path / "alone", create=True)
    alone.collect([loose / "$MFT"], workers=1)
    a = alone.timeline().to_pandas()
    t = _rows(case)
    m = t[t.evidence_path == "d:/$MFT"]
    key = lambda df, pre: sorted(zip(pre + df.path, df.timestamp_desc, df.timestamp.astype("int64")))  # noqa: E731
    assert key(m, "") == key(a, "d:") and len(m) == 280
    usn = t[t.artifact == "ntfs:usnjrnl"].sort_values("timestamp")
    assert usn.timestamp.iloc[0].value == 1646946766392180200  # 2022-03-10 21:12:46.3921802 UTC
    assert usn.timestamp.iloc[-1].value == USN_LAST
    first = json.loads(usn[usn.record_ref == "usn=209715200 offset=0x0"].iloc[0]["attrs"])
    assert first["usn"] == J_AT and first["name"] == "0d2609cc702e2545904e927af87deece.tmp"


def test_prefetch_amcache_and_user_hive(collected):
    case, rep, files, tmp = collected
    t = _rows(case)
    pf = t[t.artifact == "os:prefetch"]
    assert pf.evidence_path.str.startswith("c:/Windows/Prefetch/").all()
    seven = pf[pf.evidence_path == "c:/Windows/Prefetch/7Z.EXE-A137ACD8.pf"].sort_values("timestamp")
    assert [(d, str(ts)) for d, ts in zip(seven.timestamp_desc, seven.timestamp)] == SEVEN_ZIP_RUNS
    amc = t[t.artifact == "reg:amcache"]
    assert set(amc.evidence_path) == {"c:/Windows/AppCompat/Programs/Amcache.hve"}
    assert AMCACHE_PIN in set(amc.message)
    ua = t[t.artifact == "reg:userassist"].iloc[0]
    assert (str(ua.timestamp), ua.user, ua.evidence_path) == ("2024-03-12 09:43:12.500000+00:00", "alice",
                                                              "c:/Users/alice/NTUSER.DAT")
    run = t[(t.artifact == "reg:runkeys") & (t.evidence_path == "c:/Users/alice/NTUSER.DAT")].iloc[0]
    assert (str(run.timestamp), run.command_line) == ("2024-03-12 09:46:01+00:00",
                                                      "C:\\Users\\alice\\AppData\\Local\\Temp\\ods.exe -b")


def test_the_folder_gives_the_zips_rows(collected, tmp_path):
    """Unpacked, the collection reads the same: every row but the file-system rows of the upload tree."""
    case, rep, files, tmp = collected
    small = {k: v for k, v in files.items() if "$UsnJrnl" not in k[1]}
    folder = write_collection(tmp_path / NAME, small, folder=True)
    fcase = Case(tmp_path / "fcase", create=True)
    frep = fcase.collect([folder], workers=1)
    assert frep.errors == 0
    facts = next(a["facts"] for a in frep.artifacts if a["collector"] == "target")
    assert (facts["host"], facts["host_from"]) == (HOST, "client_info.json")
    f = _rows(fcase)
    assert "c:/Users/alice/AppData/Local/Microsoft/Windows/Explorer/thumbcache_256.db" in set(f.path)  # stored "..db_"
    assert not any(p.endswith(".idx") or "%3A" in p for p in f.path.dropna())
    z = _rows(case)
    keep = lambda df: sorted(zip(df.artifact, df.evidence_path, df.timestamp.astype("int64"), df.message))  # noqa: E731
    z = z[~z.artifact.isin(["fs:zip", "ntfs:usnjrnl"])]
    f = f[~f.artifact.str.startswith("fs:dir")]
    assert keep(f) == keep(z)


def test_host_from_the_collections_name_without_client_info(collected, tmp_path):
    """No client_info.json (and no SYSTEM hive): the host is the one Velociraptor named the collection after."""
    case, rep, files, tmp = collected
    small = {k: v for k, v in files.items() if k[1].endswith(("System.evtx", "NTUSER.DAT", "SOFTWARE"))}
    z = write_collection(tmp_path / "Collection-WKS-0042.corp.example-2024-03-12T10_15_00Z.zip", small, client_info=False)
    c = Case(tmp_path / "c", create=True)
    r = c.collect([z], workers=1)
    facts = next(a["facts"] for a in r.artifacts if a["collector"] == "target")
    assert (facts["host"], facts["host_from"]) == ("WKS-0042.corp.example", "collection name")
    t = _rows(c)
    assert set(t[t.source != "EVTX"].host) == {"WKS-0042.corp.example"}


def test_the_journal_is_named_by_the_collections_mft(ntfs_image, tmp_path):
    """With its volume's $MFT beside it, each USN row's path is the file's full path on the drive (its parent
    folder found in the MFT, sequence number checked), as MFTECmd gives it; a parent record reused since
    (another sequence number) leaves the name alone.  The volume: an NTFS image with ward folders of scans
    (mkntfs, ntfs-3g); its journal written here (ntfs-3g keeps none) with the records of the scans' renames."""
    import datetime as dt
    import struct

    from dissect.target import Target

    def fill(mnt: Path) -> None:
        for d in range(3):
            (mnt / "Records" / f"ward{d}").mkdir(parents=True)
            for f in range(4):
                (mnt / "Records" / f"ward{d}" / f"scan{f}.pdf").write_bytes(b"%PDF-1.4\n" * 50)

    img = ntfs_image(tmp_path / "vol.img", fill, size="16M")
    ntfs = Target.open(img).filesystems[0].ntfs
    mft = ntfs.mft.get(0).open().read()
    t0 = dt.datetime(2024, 3, 12, 22, 0, tzinfo=dt.timezone.utc)
    recs, want = b"", []
    for d in range(3):
        folder = ntfs.mft.get(f"Records/ward{d}")
        ref = folder.segment | folder.header.SequenceNumber << 48
        for f in range(4):
            scan = ntfs.mft.get(f"Records/ward{d}/scan{f}.pdf")
            fref = scan.segment | scan.header.SequenceNumber << 48
            ns = int((t0 + dt.timedelta(seconds=d * 4 + f) - dt.datetime(1601, 1, 1, tzinfo=dt.timezone.utc))
                     / dt.timedelta(microseconds=1)) * 10
            for name, reason in ((f"scan{f}.pdf", 0x1000), (f"scan{f}.pdf.lockbit", 0x80002000)):
                raw = name.encode("utf-16-le")
                length = (60 + len(raw) + 7) // 8 * 8
                stale = ref + (1 << 48) if (d, f) == (2, 3) else ref  # the folder's record reused since
                recs += struct.pack("<IHHQQqqIIIIHH", length, 2, 0, fref, stale, J_AT + len(recs), ns, reason, 0, 0, 0x20,
                                    len(raw), 60).ljust(60) + raw + bytes(length - 60 - len(raw))
            want.append(f"scan{f}.pdf.lockbit" if (d, f) == (2, 3) else f"c:/Records/ward{d}/scan{f}.pdf.lockbit")
    files = {("ntfs", "\\\\.\\C:/$MFT"): mft, ("ntfs", "\\\\.\\C:/$Extend/$UsnJrnl:$J"): recs,
             ("auto", "C:/Windows/System32/drivers/etc/hosts"): b"127.0.0.1 localhost\r\n"}
    z = write_collection(tmp_path / "Collection-WARD-FS01-2024-03-12T23_00_00Z.zip", files)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([z], workers=1)
    usn = next(a for a in rep.artifacts if a["collector"] == "usnjrnl")
    assert (usn["rows"], usn["facts"].get("paths_from")) == (24, "c:/$MFT")
    t = _rows(case)
    new = t[(t.artifact == "ntfs:usnjrnl") & t["attrs"].str.contains("RENAME_NEW_NAME")].sort_values("timestamp")
    assert new.path.tolist() == want
    assert set(t[t.artifact == "fs:ntfs:$SI"].path) >= {"c:/Records/ward0/scan0.pdf", "c:/Records/ward2"}
