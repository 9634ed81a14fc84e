"""Several disk images in one collection: read in parallel, one host per image, a progress line per image."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from forensics import Case
from forensics.cli import main

UTC = dt.timezone.utc


def _image(tmp_path: Path, ext4_image, host: str, tz: str) -> Path:
    root = tmp_path / host
    (root / "etc").mkdir(parents=True)
    (root / "var" / "log").mkdir(parents=True)
    (root / "etc" / "hostname").write_text(host + "\n")
    (root / "etc" / "timezone").write_text(tz + "\n")
    auth = root / "var" / "log" / "auth.log"
    auth.write_text(f"Nov 23 07:00:01 {host} sshd[100]: Accepted password for root from 203.0.113.7 port 50001 ssh2\n")
    os.utime(auth, ns=(1669200000_000_000_000,) * 2)  # 2022-11-23 10:40 UTC: dates the year-less line
    return ext4_image(root, tmp_path / f"{host}.raw")


def test_two_images_two_hosts_in_parallel_with_a_progress_line_each(tmp_path, ext4_image):
    app = _image(tmp_path, ext4_image, "ehosp-app01", "Asia/Kolkata")
    db = _image(tmp_path, ext4_image, "ehosp-db01", "Europe/Berlin")
    case = Case(tmp_path / "case", create=True)
    calls: list[tuple] = []
    rep = case.collect([app, db], workers=2, on_item=lambda *a: calls.append(a))
    assert rep.errors == 0
    commits = [e for e in case.store.custody.entries() if e.get("action") == "commit"]
    assert [(e["unit"], e["units"], len(e["artifacts"])) for e in commits] in (
        [(0, 2, 2), (1, 2, 2)], [(1, 2, 2), (0, 2, 2)])  # one unit per image (the image, its auth.log)
    assert calls[:2] == [(str(app), 0, 1, 0, None), (str(db), 0, 1, 0, None)]
    last = {c[0]: c for c in calls}
    t = case.timeline().to_pandas()
    ids = {Path(e["path"]).name: e["evidence_id"] for e in rep.evidence}
    for img, host in ((app, "ehosp-app01"), (db, "ehosp-db01")):
        rows = t[t.evidence_id == ids[img.name]]
        assert last[str(img)] == (str(img), 1, 1, len(rows), host)
        assert set(rows.host) == {host}
    auth = t[t.evidence_path == "/var/log/auth.log"].set_index("host").timestamp
    assert auth["ehosp-app01"] == dt.datetime(2022, 11, 23, 1, 30, 1, tzinfo=UTC)  # 07:00:01 IST
    assert auth["ehosp-db01"] == dt.datetime(2022, 11, 23, 6, 0, 1, tzinfo=UTC)  # 07:00:01 CET


def test_the_cli_prints_a_progress_line_per_image(tmp_path, ext4_image, capsys, monkeypatch):
    app = _image(tmp_path, ext4_image, "ehosp-app01", "Asia/Kolkata")
    db = _image(tmp_path, ext4_image, "ehosp-db01", "Asia/Kolkata")
    with monkeypatch.context() as m:  # on a terminal: progress bars
        m.setattr(sys.stderr, "isatty", lambda: True)
        assert main(["collect", str(app), str(db), "--case", str(tmp_path / "case"), "--workers", "2"]) == 0
    err = capsys.readouterr().err
    assert "ehosp-app01.raw: 100%" in err and "host=ehosp-app01" in err
    assert "ehosp-db01.raw: 100%" in err and "host=ehosp-db01" in err
    # without a terminal (a log file): plain lines, no escape codes; nothing left to read, and each line says so
    assert main(["collect", str(app), str(db), "--case", str(tmp_path / "case")]) == 0
    err = capsys.readouterr().err
    assert "ehosp-app01.raw: 0/0 artifact(s), rows=0 (already in the case)" in err.splitlines()
    assert "ehosp-db01.raw: 0/0 artifact(s), rows=0 (already in the case)" in err.splitlines()
    assert "\x1b" not in err and "\r" not in err
    assert main(["collect", str(app), str(db), "--case", str(tmp_path / "other"), "--workers", "2"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert "ehosp-app01.raw: 1/1 artifact(s), rows=29 host=ehosp-app01" in lines
    assert "ehosp-db01.raw: 1/1 artifact(s), rows=29 host=ehosp-db01" in lines
    assert "collect: 2/2 file(s), 58 rows" in lines
