"""Archive members never vanish: a name that climbs out, a member hidden by another of the same name, a file and a
folder of the same name, archives nested deeper than the cap, names that clash once gathered, hostile names (NUL,
control characters, very long, absolute).  Each member is a row under a safe name (``attrs.stored_name`` keeps the
name as stored) or a counted warning naming it."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from forensics import Case

LINE = "Jan 10 10:00:00 web01 sshd[1]: Accepted password for root from {ip} port 22 ssh2\n"
ZIP_TIME = (2023, 11, 14, 22, 13, 20)


def _tar(path: Path, members: list[tuple[str, str]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for name, text in members:
            data = text.encode()
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return path


def _zip(path: Path, members: list[tuple[str, str]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members:
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text)
    return path


def _write(path: Path, members: list[tuple[str, str]]) -> Path:
    return _tar(path, members) if path.suffix == ".tar" else _zip(path, members)


def _logins(case: Case) -> dict[str, str]:
    """evidence_path -> source address of every sshd row read (every sighting: duplicates count)."""
    s = case.sightings().to_pandas()
    t = case.timeline().to_pandas().set_index("event_hash")
    s = s[s.parser.str.startswith("forensics-syslog")]
    return {p: t.loc[h, "src_ip"] for p, h in zip(s.evidence_path, s.event_hash)}


def _fs(case: Case) -> dict[str, dict]:
    t = case.timeline().to_pandas()
    return {r.path: json.loads(r.attrs) for r in t[t.source == "FILE"].itertuples()}


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_members_that_climb_out_are_read_under_a_safe_name(tmp_path, kind):
    arc = _write(tmp_path / f"triage.{kind}", [
        ("var/log/auth.log", LINE.format(ip="203.0.113.7")),
        ("../../tmp/x/auth.log", LINE.format(ip="198.51.100.9")),
        ("/abs/var/log/auth.log", LINE.format(ip="192.0.2.1")),
        ("./var/log/../../../etc/cron.log", LINE.format(ip="192.0.2.2")),
    ])
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([arc], workers=1)
    assert _logins(case) == {"/var/log/auth.log": "203.0.113.7", "/%2E%2E/%2E%2E/tmp/x/auth.log": "198.51.100.9",
                             "/abs/var/log/auth.log": "192.0.2.1",
                             "/var/log/%2E%2E/%2E%2E/%2E%2E/etc/cron.log": "192.0.2.2"}
    fs = _fs(case)
    assert fs["/%2E%2E/%2E%2E/tmp/x/auth.log"]["stored_name"] == "../../tmp/x/auth.log"
    assert fs["/var/log/%2E%2E/%2E%2E/%2E%2E/etc/cron.log"]["stored_name"] == "./var/log/../../../etc/cron.log"
    p = case.problems().to_pandas()
    assert sorted(zip(p.kind, p.record_ref)) == [("member_renamed", "/%2E%2E/%2E%2E/tmp/x/auth.log"),
                                                 ("member_renamed", "/var/log/%2E%2E/%2E%2E/%2E%2E/etc/cron.log")]
    assert (rep.errors, rep.warnings) == (0, 2)
    assert "../../tmp/x/auth.log" in p.message.iloc[0] + p.message.iloc[1]
    assert not (tmp_path.parent / "tmp").exists() and not Path("/tmp/x/auth.log").exists()


def test_a_member_hidden_by_another_of_the_same_name_is_read_too(tmp_path):
    arc = _tar(tmp_path / "triage.tar", [("var/log/auth.log", LINE.format(ip="198.51.100.9")),
                                         ("var/log/auth.log", LINE.format(ip="203.0.113.7"))])
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([arc], workers=1)
    assert _logins(case) == {"/var/log/auth.log": "203.0.113.7", "/var/log/auth.log#member@0": "198.51.100.9"}
    p = case.problems().to_pandas()
    assert list(zip(p.kind, p.record_ref)) == [("member_hidden", "/var/log/auth.log#member@0")]
    assert rep.warnings == 1 and rep.errors == 0


def test_a_file_and_a_folder_of_the_same_name_abort_nothing(tmp_path):
    """dissect cannot map ``var/log/a`` as a file and a folder: the archive is read member by member."""
    arc = _tar(tmp_path / "triage.tar", [("var/log/a", LINE.format(ip="192.0.2.1")),
                                         ("var/log/a/b", LINE.format(ip="192.0.2.2")),
                                         ("var/log/z.log", LINE.format(ip="192.0.2.3"))])
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([arc], workers=1, gather=True)
    assert _logins(case) == {"/var/log/a": "192.0.2.1", "/var/log/a/b": "192.0.2.2", "/var/log/z.log": "192.0.2.3"}
    assert set(_fs(case)) == {"/var/log/a", "/var/log/a/b", "/var/log/z.log"}
    p = case.problems().to_pandas()
    assert list(p.kind) == ["archive_read_by_members"] and rep.errors == 0
    target = next(a for a in rep.artifacts if a["collector"] == "target")
    stored = {g["path"]: g["stored_as"].split("/", 2)[2] for g in target["facts"]["gathered"]}
    assert stored == {"/var/log/a": "var/log/a", "/var/log/a/b": "var/log/a~2/b", "/var/log/z.log": "var/log/z.log"}
    assert case.verify().ok


def test_gathered_members_keep_distinct_names_each_verified(tmp_path):
    """``var/log/a:b`` and ``var/log/ab`` were both stored as ``var/log/ab``: one copy lost, verify OK."""
    texts = {"var/log/a:b": LINE.format(ip="192.0.2.1"), "var/log/ab": LINE.format(ip="192.0.2.2"),
             "var/log/a%3Ab": LINE.format(ip="192.0.2.3"), "var/log/c\\d": LINE.format(ip="192.0.2.4")}
    arc = _tar(tmp_path / "triage.tar", list(texts.items()))
    case_dir = tmp_path / "case"
    case = Case(case_dir, create=True)
    rep = case.collect([arc], workers=1, gather=True)
    target = next(a for a in rep.artifacts if a["collector"] == "target")
    got = {g["path"]: (g["stored_as"], g["sha256"]) for g in target["facts"]["gathered"]}
    eid = target["evidence_id"]
    assert {k: v[0] for k, v in got.items()} == {
        "/var/log/a:b": f"gathered/{eid}/var/log/a%3Ab", "/var/log/ab": f"gathered/{eid}/var/log/ab",
        "/var/log/a%3Ab": f"gathered/{eid}/var/log/a%253Ab", "/var/log/c\\d": f"gathered/{eid}/var/log/c%5Cd"}
    for path, (stored, sha) in got.items():
        data = (case_dir / stored).read_bytes()
        assert data == texts[path[1:]].encode() and sha == hashlib.sha256(data).hexdigest()
    assert case.verify().ok
    victim = case_dir / got["/var/log/ab"][0]
    victim.chmod(0o644)
    victim.write_text("altered\n")
    assert case.verify().problems == [f"{got['/var/log/ab'][0]}: SHA-256 differs from the custody log (file was altered)"]


def _nested(depth: int) -> bytes:
    data, name = LINE.format(ip="203.0.113.7").encode(), "auth.log"
    for i in range(depth):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(zipfile.ZipInfo(f"var/log/{name}", ZIP_TIME), data)
        data, name = buf.getvalue(), f"n{i}.zip"
    return data


def test_archives_nested_deeper_than_the_cap_are_named_in_a_warning(tmp_path):
    arc = tmp_path / "nested.zip"
    arc.write_bytes(_nested(5))  # nested.zip > n3 > n2 > n1 > n0 > auth.log: n0 is 4 levels deep
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([arc], workers=1)
    deepest = "/var/log/n3.zip!/var/log/n2.zip!/var/log/n1.zip!/var/log/n0.zip"
    assert set(_fs(case)) == {"/var/log/n3.zip", "/var/log/n3.zip!/var/log/n2.zip",
                              "/var/log/n3.zip!/var/log/n2.zip!/var/log/n1.zip", deepest}
    p = case.problems().to_pandas()
    assert list(zip(p.severity, p.kind, p.record_ref)) == [("warning", "nesting_too_deep", deepest)]
    assert "4 levels deep is not opened (at most 3)" in p.message.iloc[0]
    assert rep.warnings == 1
    arc.write_bytes(_nested(4))  # 3 levels: read
    case = Case(tmp_path / "case3", create=True)
    case.collect([arc], workers=1)
    assert _logins(case) == {"/var/log/n2.zip!/var/log/n1.zip!/var/log/n0.zip!/var/log/auth.log": "203.0.113.7"}


def test_hostile_member_names_are_each_read(tmp_path):
    """Control characters, a 300-character name, a name that is not UTF-8, a NUL (tar and zip end a name at
    its first NUL: the member is read under the name before it)."""
    long = "L" * 300 + ".log"
    members = [("var/log/ctl\x1b[31m\r.log", LINE.format(ip="192.0.2.1")), (f"var/log/{long}", LINE.format(ip="192.0.2.2")),
               ("var/log/bad\udcff.log", LINE.format(ip="192.0.2.3")), ("var/log/nul.log\x00.evil", LINE.format(ip="192.0.2.4"))]
    arc = _tar(tmp_path / "triage.tar", members)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([arc], workers=1, gather=True)
    assert _logins(case) == {"/var/log/ctl\x1b[31m\r.log": "192.0.2.1", f"/var/log/{long}": "192.0.2.2",
                             "/var/log/bad\\xff.log": "192.0.2.3", "/var/log/nul.log": "192.0.2.4"}
    assert _fs(case)["/var/log/bad\\xff.log"]["name_bytes"] == b"/var/log/bad\xff.log".hex()
    assert rep.errors == 0 and rep.warnings == 0
    target = next(a for a in rep.artifacts if a["collector"] == "target")
    stored = sorted(g["stored_as"].rsplit("/", 1)[1] for g in target["facts"]["gathered"])
    digest = hashlib.sha256(long.encode()).hexdigest()[:16]
    assert stored == ["L" * 178 + f"~{digest}.log", "bad%FF.log", "ctl%1B[31m%0D.log", "nul.log"]
    assert case.verify().ok
    zarc = _zip(tmp_path / "triage.zip", [("var/log/nul.log\x00.evil", LINE.format(ip="192.0.2.4")),
                                          ("/var/log/abs.log", LINE.format(ip="192.0.2.5"))])
    case = Case(tmp_path / "case-zip", create=True)
    case.collect([zarc], workers=1)
    assert _logins(case) == {"/var/log/nul.log": "192.0.2.4", "/var/log/abs.log": "192.0.2.5"}


def test_a_triage_zips_own_files_are_named_and_its_climbing_members_read(tmp_path, capsys):
    """A Velociraptor collection: the host's files under ``uploads/auto/`` are the target; the tool's own files
    (uploads.json, log.json) are named in ``facts.outside_layout``, not read as the host's (as for the same
    collection as a folder); a member climbing out of it is read under a safe name and warned about."""
    from forensics.cli import main

    arc = _zip(tmp_path / "Collection-web01.zip", [
        ("uploads/auto/etc/hostname", "web01\n"),
        ("uploads/auto/var/log/auth.log", LINE.format(ip="203.0.113.7")),
        ("uploads.json", '{"vfs_path":"/auto/etc/hostname"}\n'),
        ("log.json", '{"message":"Collection completed"}\n'),
        ("uploads/auto/../../../x/auth.log", LINE.format(ip="198.51.100.9")),
    ])
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([arc], workers=1)
    target = next(a for a in rep.artifacts if a["collector"] == "target")
    assert target["facts"]["host"] == "web01"
    assert target["facts"]["outside_layout"] == ["uploads.json", "log.json"]  # in archive order
    assert target["stats"]["members_outside_layout"] == 2
    assert _logins(case) == {"/var/log/auth.log": "203.0.113.7", "/uploads/auto/%2E%2E/%2E%2E/%2E%2E/x/auth.log": "198.51.100.9"}
    p = case.problems().to_pandas()
    assert list(zip(p.kind, p.record_ref)) == [("member_renamed", "/uploads/auto/%2E%2E/%2E%2E/%2E%2E/x/auth.log")]
    assert case.info()["evidence"][0]["outside_layout"] == 2
    capsys.readouterr()
    assert main(["info", str(tmp_path / "case")]) == 0
    assert "2 file(s) of the collection tool outside the host's tree" in capsys.readouterr().out


def test_device_and_fifo_members_are_rows_never_opened(tmp_path):
    arc = tmp_path / "triage.tar"
    with tarfile.open(arc, "w") as tf:
        for name, typ in (("dev/sda", tarfile.BLKTYPE), ("dev/null", tarfile.CHRTYPE), ("run/initctl", tarfile.FIFOTYPE)):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mtime = typ, 1700000000
            tf.addfile(ti)
        data = LINE.format(ip="203.0.113.7").encode()
        ti = tarfile.TarInfo("var/log/auth.log")
        ti.size, ti.mtime = len(data), 1700000000
        tf.addfile(ti, io.BytesIO(data))
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([arc], workers=1)
    assert set(_fs(case)) == {"/dev/sda", "/dev/null", "/run/initctl", "/var/log/auth.log"}
    assert _logins(case) == {"/var/log/auth.log": "203.0.113.7"}
    assert rep.errors == 0 and rep.warnings == 0
