"""Symbolic links never lead out of the evidence: in a plain folder, in an OS-tree folder, in a tar, in an ext4
image.  A link is a FILE row with its own times and ``attrs.link_target``; a link that would lead out of a folder
of this machine is a counted warning; a link inside the folder is not followed (its target is read once, under
its own name)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from forensics import Case

LINE = "Jan 10 10:00:00 web01 sshd[1]: Accepted password for root from {ip} port 22 ssh2\n"
SECRET = "root:$6$HOSTSECRET$analysts-own-machine:19000:0:99999:7:::\n"


def _outside(tmp_path: Path) -> Path:
    """Files of 'the analyst's machine': a dpkg log and a shadow file outside every evidence folder."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "dpkg.log").write_text("".join(f"2024-01-0{d} 10:00:00 install pkg{d}:amd64 <none> 1.0\n" for d in range(1, 8)))
    (host / "shadow").write_text(SECRET)
    return host


def _timeline(case: Case):
    return case.timeline().to_pandas()


def _no_host_content(case: Case) -> None:
    t = _timeline(case)
    text = " ".join(t.message.astype(str)) + " ".join(t["attrs"].astype(str))
    assert "HOSTSECRET" not in text and "pkg1" not in text
    assert not (t.artifact == "packages:dpkg").any()


def test_a_link_in_a_plain_folder_is_listed_never_followed(tmp_path):
    host = _outside(tmp_path)
    ev = tmp_path / "logs"
    ev.mkdir()
    (ev / "auth.log").write_text(LINE.format(ip="203.0.113.7"))
    (ev / "dpkg.log").symlink_to(host / "dpkg.log")
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([ev], workers=1)
    _no_host_content(case)
    assert sorted((a["evidence_path"], a["collector"], a["rows"]) for a in rep.artifacts) == [
        ("auth.log", "syslog", 1), ("dpkg.log", "link", 3)]
    assert (rep.errors, rep.warnings) == (0, 1)
    t = _timeline(case)
    link = t[t.evidence_path == "dpkg.log"].sort_values("timestamp_desc")
    st = os.lstat(ev / "dpkg.log")
    assert list(zip(link.timestamp_desc, link.timestamp.astype("int64"))) == sorted([
        ("Content Modification Time", st.st_mtime_ns), ("Last Access Time", st.st_atime_ns),
        ("Metadata Modification Time", st.st_ctime_ns)])
    attrs = json.loads(link.iloc[0]["attrs"])
    assert (attrs["link_target"], attrs["leads_outside"], attrs["mode"][0]) == (str(host / "dpkg.log"), True, "l")
    assert set(link.source) == {"FILE"} and set(link.artifact) == {"fs:dir"} and set(link.path) == {"dpkg.log"}
    p = case.problems().to_pandas()
    assert list(zip(p.severity, p.kind, p.evidence_path)) == [("warning", "link_outside_evidence", "dpkg.log")]
    assert str(host / "dpkg.log") in p.message.iloc[0]
    # custody: the link's identity is the target it stores, not the host's file
    f = {f["path"]: f for f in rep.evidence[0]["files"]}["dpkg.log"]
    target = str(host / "dpkg.log").encode()
    assert (f["link"], f["size"], f["sha256"]) == (True, len(target), hashlib.sha256(target).hexdigest())
    assert f["sha256"] != hashlib.sha256((host / "dpkg.log").read_bytes()).hexdigest()
    assert case.verify().ok
    (host / "dpkg.log").write_text("changed on the analyst's machine\n")  # not evidence: verify still OK
    assert case.verify().ok
    (ev / "dpkg.log").unlink()
    (ev / "dpkg.log").symlink_to("/etc/hostname")  # the link itself changed: verify names it
    assert any(x.startswith(f"evidence {ev / 'dpkg.log'}: SHA-256") for x in case.verify().problems)


def test_a_link_inside_the_folder_is_read_once_under_its_targets_name(tmp_path):
    ev = tmp_path / "logs"
    (ev / "old").mkdir(parents=True)
    (ev / "auth.log").write_text(LINE.format(ip="203.0.113.7"))
    (ev / "old" / "auth.log.1").write_text(LINE.format(ip="198.51.100.9").replace("Jan 10", "Jan  9"))
    (ev / "current").symlink_to("auth.log")
    (ev / "rotated").symlink_to("old")  # a folder link: not walked into
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([ev], workers=1)
    assert sorted((a["evidence_path"], a["collector"]) for a in rep.artifacts) == [
        ("auth.log", "syslog"), ("current", "link"), ("old/auth.log.1", "syslog"), ("rotated", "link")]
    assert (rep.errors, rep.warnings, rep.records_read) == (0, 0, 2 + 3 + 3)
    s = case.sightings().to_pandas()
    assert sorted(s[s.parser.str.startswith("forensics-syslog")].evidence_path) == ["auth.log", "old/auth.log.1"]
    t = _timeline(case)
    assert {json.loads(a)["link_target"] for a in t[t.artifact == "fs:dir"]["attrs"]} == {"auth.log", "old"}
    assert case.verify().ok


def test_links_in_an_os_tree_folder_are_hashed_as_links_not_as_the_hosts_files(tmp_path):
    """The trial: ``etc/shadow -> /etc/shadow`` in an OS tree hashed the analyst's own file into the manifest."""
    host = _outside(tmp_path)
    tree = tmp_path / "app01"
    (tree / "etc").mkdir(parents=True)
    (tree / "var" / "log").mkdir(parents=True)
    (tree / "root").mkdir()
    (tree / "etc" / "hostname").write_text("app01\n")
    (tree / "var" / "log" / "auth.log").write_text(LINE.format(ip="203.0.113.7"))
    (tree / "etc" / "shadow").symlink_to(host / "shadow")
    (tree / "var" / "log" / "dpkg.log").symlink_to(host / "dpkg.log")
    (tree / "hostetc").symlink_to(host)
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([tree], workers=1)
    _no_host_content(case)
    files = {f["path"]: f for f in rep.evidence[0]["files"]}
    assert sorted(files) == ["etc/hostname", "etc/shadow", "hostetc", "var/log/auth.log", "var/log/dpkg.log"]
    for rel, target in (("etc/shadow", host / "shadow"), ("var/log/dpkg.log", host / "dpkg.log"), ("hostetc", host)):
        assert files[rel]["link"] is True
        assert files[rel]["sha256"] == hashlib.sha256(str(target).encode()).hexdigest()
    p = case.problems().to_pandas()
    out = sorted(p[p.kind == "link_outside_evidence"].record_ref)
    assert out == ["/etc/shadow", "/hostetc", "/var/log/dpkg.log"]
    t = _timeline(case)
    shadow = t[t.path == "/etc/shadow"]
    assert len(shadow) > 0 and {json.loads(a)["link_target"] for a in shadow["attrs"]} == {str(host / "shadow")}
    assert set(t[t.source == "FILE"].host) == {"app01"}  # the tree's own host name, not this machine's
    assert case.verify().ok


def _tar(path: Path, members: list[tuple[str, bytes | None, bytes | None, str | None]]) -> Path:
    """(name, type, content, link target) members, dated 2023-11-14 22:13:20 UTC."""
    with tarfile.open(path, "w") as tf:
        for name, typ, data, link in members:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mtime = typ, 1700000000
            if link is not None:
                ti.linkname = link
            ti.size = len(data or b"")
            tf.addfile(ti, io.BytesIO(data) if data else None)
    return path


def test_links_inside_a_tar_resolve_inside_the_archive(tmp_path):
    host = _outside(tmp_path)
    arc = _tar(tmp_path / "triage.tar", [
        ("var/log/auth.log", tarfile.REGTYPE, LINE.format(ip="203.0.113.7").encode(), None),
        ("var/log/shadow", tarfile.SYMTYPE, None, str(host / "shadow")),
        ("var/log/dpkg.log", tarfile.SYMTYPE, None, "../../../../../../" + str(host / "dpkg.log")),
        ("var/log/secure", tarfile.LNKTYPE, None, str(host / "shadow")),  # a hard link to a name not in the archive
        ("var/log/auth.log.0", tarfile.LNKTYPE, None, "var/log/auth.log"),  # one that is
    ])
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([arc], workers=1)
    _no_host_content(case)
    t = _timeline(case)
    fs = {r.path: json.loads(r.attrs) for r in t[t.source == "FILE"].itertuples()}
    assert fs["/var/log/shadow"]["link_target"] == str(host / "shadow")
    assert fs["/var/log/dpkg.log"]["link_target"] == "../../../../../../" + str(host / "dpkg.log")
    assert fs["/var/log/secure"]["hardlink_to"] == str(host / "shadow")
    assert fs["/var/log/auth.log.0"]["hardlink_to"] == "var/log/auth.log"
    p = case.problems().to_pandas()
    assert list(zip(p.severity, p.kind, p.record_ref)) == [("warning", "link_target_missing", "/var/log/secure")]
    assert rep.errors == 0
    # the hard link inside the archive is read (as the archive reads it): the same event, two sightings
    s = case.sightings().to_pandas()
    assert sorted(s[s.parser.str.startswith("forensics-syslog")].evidence_path) == ["/var/log/auth.log", "/var/log/auth.log.0"]


def test_an_absolute_link_inside_an_ext4_image_stays_inside_the_image(tmp_path, ext4_image):
    host = _outside(tmp_path)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "var" / "log").mkdir(parents=True)
    (root / "srv").mkdir()
    (root / "etc" / "hostname").write_text("img01\n")
    (root / "srv" / "app.log").write_text(LINE.format(ip="192.0.2.44"))
    (root / "etc" / "shadow").symlink_to(host / "shadow")  # exists on this machine, not in the image
    (root / "var" / "log" / "app.log").symlink_to("/srv/app.log")  # inside the image
    (root / "var" / "log" / "dpkg.log").symlink_to(host / "dpkg.log")
    img = ext4_image(root, tmp_path / "img01.raw")
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([img], workers=1)
    _no_host_content(case)
    t = _timeline(case)
    fs = {r.path: json.loads(r.attrs) for r in t[t.source == "FILE"].itertuples()}
    assert fs["/etc/shadow"]["link_target"] == str(host / "shadow")
    assert fs["/var/log/app.log"]["link_target"] == "/srv/app.log"
    assert fs["/var/log/dpkg.log"]["link_target"] == str(host / "dpkg.log")
    assert "leads_outside" not in fs["/etc/shadow"]  # an image is not this machine: nothing to lead out to
    assert rep.errors == 0 and rep.warnings == 0
    assert set(t.host.dropna()) == {"img01"}


def test_a_symlink_member_of_a_zip_is_listed_with_its_target(tmp_path):
    import stat
    import zipfile

    arc = tmp_path / "triage.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr(zipfile.ZipInfo("var/log/auth.log", (2023, 11, 14, 22, 13, 20)), LINE.format(ip="203.0.113.7"))
        link = zipfile.ZipInfo("var/log/shadow", (2023, 11, 14, 22, 13, 20))
        link.external_attr = (stat.S_IFLNK | 0o777) << 16  # as Info-ZIP stores a link: its target is the content
        zf.writestr(link, "/etc/shadow")
    case = Case(tmp_path / "case", create=True)
    rep = case.collect([arc], workers=1)
    t = _timeline(case)
    fs = {r.path: json.loads(r.attrs) for r in t[t.source == "FILE"].itertuples()}
    assert fs["/var/log/shadow"]["link_target"] == "/etc/shadow" and fs["/var/log/shadow"]["mode"][0] == "l"
    assert rep.errors == 0 and rep.warnings == 0


def test_a_link_loop_that_stops_os_detection_loses_nothing(tmp_path, ext4_image):
    """``/etc/hostname -> /etc/hostname`` is a loop inside the evidence: dissect's OS detection stops on it, which
    refused the whole image (and lost a whole OS-tree folder).  Its file systems are walked without the OS."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "var" / "log").mkdir(parents=True)
    (root / "root").mkdir()
    (root / "var" / "log" / "auth.log").write_text(LINE.format(ip="203.0.113.7"))
    (root / "etc" / "hostname").symlink_to("/etc/hostname")
    img = ext4_image(root, tmp_path / "loop.raw")
    for ev in (img, root):
        case = Case(tmp_path / f"case-{ev.name}", create=True)
        rep = case.collect([ev], workers=1)
        t = _timeline(case)
        fs = {r.path: json.loads(r.attrs) for r in t[t.source == "FILE"].itertuples()}
        assert fs["/etc/hostname"]["link_target"] == "/etc/hostname" and "/var/log/auth.log" in fs
        assert list(t[t.source == "SYSLOG"].src_ip) == ["203.0.113.7"]
        assert t[t.source == "FILE"].host.isna().all()  # no host name read (never this machine's)
        p = case.problems().to_pandas()
        assert "os_not_read" in set(p.kind) and rep.errors == 0
