"""Package-manager logs: what was installed, upgraded or removed, by whom and when.

Recognised by content (the first line's shape), compressed rotations by magic:

``apt``   ``/var/log/apt/history.log*``: blocks of ``Start-Date:`` / ``Commandline:`` /
          ``Requested-By:`` / ``Install:|Upgrade:|Downgrade:|Reinstall:|Remove:|Purge:`` /
          ``Error:`` / ``End-Date:``.  One row per package of each operation, at the block's
          Start-Date; a block that names no package (only an ``Error:``) is one row
          "Package Manager Run".  ``record_ref`` ``line=N package=K`` (N: the Start-Date line).
``dpkg``  ``/var/log/dpkg.log*``: one row per line (``install``, ``upgrade``, ``remove``, ``purge``,
          ``configure``, ``trigproc``, ``status``, ``conffile``, ``startup``).
``yum``   ``/var/log/yum.log*`` (named ``yum*``): ``Mmm dd hh:mm:ss Installed: nevra`` lines, no year
          (dated like BSD syslog: from the file's modification time, or the gzip header's, walking back
          over New Year).
``dnf``   ``/var/log/dnf.rpm.log*`` (named ``dnf.rpm.log*``): ``yyyy-mm-ddThh:mm:ss+hhmm LEVEL Op: nevra``;
          lines that name no package operation (``--- logging initialized ---``, scriptlet output) are
          counted in ``stats.other_lines``, not rows.

Times
    apt, dpkg and yum write local time: read in the analyst's ``--tz``, else the evidence's zone
    (``/etc/timezone`` of the image), else UTC assumed and flagged (``tz_source`` as in
    :mod:`collectors.syslog`); an ambiguous or missing local time at a DST change is noted in
    ``attrs.time_note``.  dnf writes its offset (``embedded_offset``).

Rows: ``source`` PACKAGE, ``artifact`` ``packages:apt`` / ``packages:dpkg`` / ``packages:yum`` /
``packages:dnf``; ``timestamp_desc`` "Package Installed", "Package Upgraded", "Package Downgraded",
"Package Reinstalled", "Package Removed", "Package Purged", "Package Configured", "Package Status
Changed", "Package Triggers Processed", "Conffile Handled", "Package Manager Started",
"Package Obsoleted", "Package Manager Run"; ``process``/``provider`` the manager, ``user`` apt's
Requested-By, ``command_line`` apt's Commandline; ``attrs``: ``operation``, ``package``, ``arch``,
``version``, ``old_version``, ``automatic`` and the rest of what the line says.

Inside a disk image these files are read here, not by dissect's ``packagemanager`` plugin (whose apt
and yum records :mod:`collectors.os_artifacts` leaves out, so no operation appears twice).
"""

from __future__ import annotations

import datetime as _dt
import logging
import lzma
import os
import re
import zlib
from typing import Any, Iterator

import orjson
import pyarrow as pa

from collectors.base import Artifact, ArtifactReport, Collector, RecordError
from collectors.text import MONTHS, Clock, lines, ns_of, open_lines, read_head, year_less_dating
from timeline.errors import UnknownFormat
from timeline.schema import TZ_EMBEDDED_OFFSET, event_hash

__all__ = ["PackagesCollector", "package_log_kind"]

log = logging.getLogger(__name__)

_APT_START = re.compile(r"^Start-Date: (\d{4})-(\d\d)-(\d\d)\s+(\d\d):(\d\d):(\d\d)\s*$")
_APT_FIELD = re.compile(r"^([A-Za-z-]+): ?(.*)$")
_APT_OPS = {"Install": "install", "Reinstall": "reinstall", "Upgrade": "upgrade", "Downgrade": "downgrade",
            "Remove": "remove", "Purge": "purge"}
_APT_PKG = re.compile(r"([^\s,()]+) \(([^)]*)\)")
_DPKG = re.compile(r"^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) (?P<rest>(?P<action>install|upgrade|remove|purge|configure|"
                   r"trigproc|status|conffile|startup) .*)$")
_YUM = re.compile(r"^(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(?P<day>\d{1,2}) (?P<h>\d\d):(?P<mi>\d\d):"
                  r"(?P<s>\d\d) (?P<op>Installed|Updated|Erased|Obsoleted|Dep-Installed|Reinstalled|Downgraded): "
                  r"(?P<pkg>\S+)\s*$")
_DNF = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(?P<off>Z|[+-]\d\d:?\d\d)? (?P<level>[A-Z]+) (?P<msg>.*)$")
_DNF_OP = re.compile(r"^(?P<op>Installed|Install|Upgraded|Upgrade|Downgraded|Downgrade|Reinstalled|Reinstall|Erase|"
                     r"Erased|Obsoleted|Obsolete|Cleanup|Removed|Remove): (?P<pkg>\S+)\s*$")

# operation -> timestamp_desc
_DESC = {"install": "Package Installed", "upgrade": "Package Upgraded", "downgrade": "Package Downgraded",
         "reinstall": "Package Reinstalled", "remove": "Package Removed", "purge": "Package Purged",
         "configure": "Package Configured", "status": "Package Status Changed", "trigproc": "Package Triggers Processed",
         "conffile": "Conffile Handled", "startup": "Package Manager Started", "obsolete": "Package Obsoleted",
         "cleanup": "Package Removed", "run": "Package Manager Run"}
_YUM_OPS = {"Installed": "install", "Dep-Installed": "install", "Updated": "upgrade", "Erased": "remove",
            "Obsoleted": "obsolete", "Reinstalled": "reinstall", "Downgraded": "downgrade"}
# dnf.rpm.log: "Upgrade: new" and "Upgraded: old" are the two halves of one upgrade (likewise Downgrade);
# the old half is kept as its own row with the operation saying so
_DNF_OPS = {"Installed": "install", "Install": "install", "Upgrade": "upgrade", "Upgraded": "upgrade",
            "Downgrade": "downgrade", "Downgraded": "downgrade", "Reinstall": "reinstall", "Reinstalled": "reinstall",
            "Erase": "remove", "Erased": "remove", "Remove": "remove", "Removed": "remove", "Obsoleted": "obsolete",
            "Obsolete": "obsolete", "Cleanup": "cleanup"}


def package_log_kind(path: str) -> str | None:
    """``apt``, ``dpkg``, ``yum`` or ``dnf`` when the file's first line (and, for yum and dnf, its name)
    is one of theirs; None otherwise."""
    head = read_head(path, 4096)
    if not head or b"\x00" in head[:512]:
        return None
    first = next((ln for ln in head.decode("utf-8", "replace").splitlines() if ln.strip()), "")
    name = os.path.basename(path).lower()
    if _APT_START.match(first):
        return "apt"
    if _DPKG.match(first):
        return "dpkg"
    if name.startswith("yum") and _YUM.match(first):
        return "yum"
    if name.startswith("dnf.rpm.log") and _DNF.match(first):
        return "dnf"
    return None


def _nevra(s: str) -> dict[str, Any]:
    """``1:unzip-6.0-24.el7_9.x86_64`` / ``nmap-ncat-3:7.92-1.el9.x86_64`` → name, version (epoch:ver-rel),
    arch; a bare name stays a name."""
    out: dict[str, Any] = {"nevra": s}
    epoch = None
    m = re.match(r"^(\d+):(.*)$", s)
    if m:
        epoch, s = m.group(1), m.group(2)
    m = re.match(r"^(?P<name>.+)-(?:(?P<e>\d+):)?(?P<ver>[^-]+)-(?P<rel>[^-]+?)\.(?P<arch>[^.]+)$", s)
    if not m:
        out["package"] = s
        return out
    e = epoch or m["e"]
    out.update(package=m["name"], version=f"{e + ':' if e else ''}{m['ver']}-{m['rel']}", arch=m["arch"])
    return out


def _deb(pkg: str) -> dict[str, Any]:
    name, _, arch = pkg.partition(":")
    return {"package": name, "arch": arch or None}


class PackagesCollector(Collector):
    name = "packages"
    source = "PACKAGE"
    engines = ("packages",)
    parser = ("forensics-packages", "forensics")

    @classmethod
    def matches(cls, path: str) -> bool:
        return package_log_kind(path) is not None

    @classmethod
    def check_compatible(cls, path: str) -> None:
        if package_log_kind(path) is None:
            raise UnknownFormat(f"{path}: not a package-manager log (expected apt history 'Start-Date:', dpkg.log "
                                "'yyyy-mm-dd hh:mm:ss install ...', yum.log 'Mmm dd hh:mm:ss Installed: ...' or "
                                "dnf.rpm.log 'yyyy-mm-ddThh:mm:ss+hhmm LEVEL ...')")

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        kind = package_log_kind(artifact.fs_path)
        if kind is None:
            self.check_compatible(artifact.fs_path)
        rep = self.report(artifact)
        clock = Clock.for_artifact(artifact.tz, artifact.tz_source)
        self._count = 0
        rows = {"apt": self._apt, "dpkg": self._dpkg, "yum": self._yum, "dnf": self._dnf}[kind](artifact, rep, clock)
        try:
            for _ in rows:
                if len(self._rows) >= batch_rows:
                    yield self._rows.to_table()
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            rep.errors.append(RecordError(None, "truncated", f"stream ended early: {exc}"))
        rep.stats["rows"] = self._count

    # -----------------------------------------------------------------------------------------

    def _add(self, art: Artifact, kind: str, ns: int, tz_source: str, ref: str, attrs: dict[str, Any],
             user: str | None = None, command: str | None = None) -> None:
        op = attrs["operation"]
        pkg = attrs.get("package")
        ver = attrs.get("version")
        what = f"{pkg}{':' + attrs['arch'] if attrs.get('arch') else ''}" if pkg else ""
        if attrs.get("old_version") and ver:
            ver = f"{attrs['old_version']} -> {ver}"
        msg = " ".join(x for x in (kind, op, what, ver or "") if x)
        if kind == "dpkg" and op in ("status", "conffile", "startup"):
            msg = f"dpkg {attrs['line']}"
        if command:
            msg += f" ({command})"
        self._rows.add(
            timestamp=ns, timestamp_desc=_DESC[op], host=art.host, source="PACKAGE", artifact=f"packages:{kind}",
            provider=kind, process=kind, user=user, command_line=command, message=msg,
            attrs=orjson.dumps(attrs).decode(), tags=[], tz_source=tz_source, evidence_id=art.evidence_id,
            evidence_path=art.evidence_path, record_ref=ref, parser=self._parser,
            event_hash=event_hash("PACKAGE", art.host, ns, kind, op, pkg, attrs.get("version"), attrs.get("line")),
        )
        self._count += 1

    def _local(self, clock: Clock, attrs: dict[str, Any], *parts: int) -> int:
        ns, note = clock.local_ns(*parts)
        if note:
            attrs["time_note"] = note
        return ns

    def _apt(self, art: Artifact, rep: ArtifactReport, clock: Clock) -> Iterator[None]:
        block: list[tuple[int, str]] = []
        with open_lines(art.fs_path, rep) as fh:  # lines cut at LINE_MAX bytes (a counted warning)
            for n, line in _chain(lines(fh)):
                if line.strip():
                    block.append((n, line.strip()))
                    continue
                if block:
                    yield from self._apt_block(art, rep, clock, block)
                    block = []

    def _apt_block(self, art: Artifact, rep: ArtifactReport, clock: Clock, block: list[tuple[int, str]]) -> Iterator[None]:
        fields: dict[str, str] = {}
        ops: list[tuple[str, str]] = []
        start = None
        for n, line in block:
            m = _APT_START.match(line)
            if m:
                start = (n, tuple(int(x) for x in m.groups()))
                fields["Start-Date"] = line.split(": ", 1)[1]
                continue
            f = _APT_FIELD.match(line)
            if f is None:
                rep.errors.append(RecordError(f"line={n}", "unparsed_line", f"not an apt history line: {line[:120]!r}"))
                continue
            key, value = f.groups()
            if key in _APT_OPS:
                ops.append((key, value))
            else:
                fields[key] = value
        if start is None:
            rep.errors.append(RecordError(f"line={block[0][0]}", "no_time",
                                          f"apt history block without Start-Date ({len(ops)} operation line(s)) lost"))
            return
        n0, parts = start
        user, uid = None, None
        if "Requested-By" in fields:
            m = re.match(r"^(.*?)(?: \((\d+)\))?$", fields["Requested-By"])
            user, uid = m.group(1), int(m.group(2)) if m.group(2) else None
        common = {"start_date": fields.get("Start-Date"), "end_date": fields.get("End-Date"),
                  "requested_by_uid": uid, "error": fields.get("Error")}
        common = {k: v for k, v in common.items() if v is not None}
        for k, v in fields.items():
            if k not in ("Commandline", "Requested-By", "Start-Date", "End-Date", "Error"):
                common[k.lower().replace("-", "_")] = v
        command = fields.get("Commandline")
        k = 0
        for key, value in ops:
            op = _APT_OPS[key]
            for pkg, inner in _APT_PKG.findall(value):
                k += 1
                vals = [v.strip() for v in inner.split(",")]
                vers = [v for v in vals if v != "automatic"]
                attrs: dict[str, Any] = {"operation": op, **_deb(pkg)}
                if op in ("upgrade", "downgrade") and len(vers) == 2:
                    attrs.update(old_version=vers[0], version=vers[1])
                elif vers:
                    attrs["version"] = vers[0]
                if "automatic" in vals:
                    attrs["automatic"] = True
                attrs.update(common)
                ns = self._local(clock, attrs, *parts)
                self._add(art, "apt", ns, clock.tz_source, f"line={n0} package={k}", attrs, user, command)
                yield None
        if k == 0:  # a run that changed nothing it lists (an error, a held package): still when and who
            attrs = {"operation": "run", **common}
            ns = self._local(clock, attrs, *parts)
            self._add(art, "apt", ns, clock.tz_source, f"line={n0}", attrs, user, command)
            yield None

    def _dpkg(self, art: Artifact, rep: ArtifactReport, clock: Clock) -> Iterator[None]:
        with open_lines(art.fs_path, rep) as fh:  # lines cut at LINE_MAX bytes (a counted warning)
            for n, line in lines(fh):
                if not line.strip():
                    continue
                m = _DPKG.match(line)
                if m is None:
                    rep.errors.append(RecordError(f"line={n}", "unparsed_line", f"not a dpkg.log line: {line[:120]!r}"))
                    continue
                action = m["action"]
                words = m["rest"].split(" ")[1:]
                attrs: dict[str, Any] = {"operation": action, "line": m["rest"]}
                if action in ("install", "upgrade", "remove", "purge", "configure", "trigproc") and words:
                    attrs.update(_deb(words[0]))
                    if len(words) > 2:
                        attrs.update(old_version=None if words[1] == "<none>" else words[1],
                                     version=None if words[2] == "<none>" else words[2])
                elif action == "status" and len(words) >= 3:
                    attrs.update(state=words[0], **_deb(words[1]), version=words[2])
                elif action == "conffile" and len(words) >= 2:
                    attrs.update(conffile=words[0], decision=words[1])
                elif action == "startup" and len(words) >= 2:
                    attrs.update(stage=words[0], command=words[1])
                attrs = {k: v for k, v in attrs.items() if v is not None}
                ns = self._local(clock, attrs, *(int(x) for x in m.groups()[:6]))
                self._add(art, "dpkg", ns, clock.tz_source, f"line={n}", attrs)
                yield None

    def _yum(self, art: Artifact, rep: ArtifactReport, clock: Clock) -> Iterator[None]:
        parsed = []
        with open_lines(art.fs_path, rep) as fh:  # lines cut at LINE_MAX bytes (a counted warning)
            for n, line in lines(fh):
                if not line.strip():
                    continue
                m = _YUM.match(line)
                if m is None:
                    rep.errors.append(RecordError(f"line={n}", "unparsed_line", f"not a yum.log line: {line[:120]!r}"))
                    continue
                parsed.append((n, m))
        dating = year_less_dating([MONTHS[m["mon"]] for _, m in parsed], int(parsed[-1][1]["day"]) if parsed else None,
                                  art.fs_path, art.mtime_ns, clock._zone)
        if dating is None:
            if parsed:
                rep.warn("no_year", f"{len(parsed)} year-less line(s) and no modification time to date them: skipped")
            return
        years, _, year_source = dating
        for (n, m), y in zip(parsed, years):
            attrs = {"operation": _YUM_OPS[m["op"]], "yum_operation": m["op"], **_nevra(m["pkg"]), "year": y,
                     "year_source": year_source}
            ns = self._local(clock, attrs, y, MONTHS[m["mon"]], int(m["day"]), int(m["h"]), int(m["mi"]), int(m["s"]))
            self._add(art, "yum", ns, clock.tz_source, f"line={n}", attrs)
            yield None

    def _dnf(self, art: Artifact, rep: ArtifactReport, clock: Clock) -> Iterator[None]:
        other = 0
        with open_lines(art.fs_path, rep) as fh:  # lines cut at LINE_MAX bytes (a counted warning)
            for n, line in lines(fh):
                m = _DNF.match(line)
                if m is None:
                    if line.strip():  # a scriptlet's output continues the line before: not an operation
                        other += 1
                    continue
                op = _DNF_OP.match(m["msg"])
                if op is None:
                    other += 1
                    continue
                attrs = {"operation": _DNF_OPS[op["op"]], "dnf_operation": op["op"], "level": m["level"], **_nevra(op["pkg"])}
                y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
                off = m["off"]
                if off:
                    off = off.replace(":", "")
                    tz = _dt.timezone.utc if off == "Z" else _dt.timezone(
                        (1 if off[0] == "+" else -1) * _dt.timedelta(hours=int(off[1:3]), minutes=int(off[3:5])))
                    ns, tz_source = ns_of(_dt.datetime(y, mo, d, h, mi, s, tzinfo=tz)), TZ_EMBEDDED_OFFSET
                else:
                    ns, tz_source = self._local(clock, attrs, y, mo, d, h, mi, s), clock.tz_source
                self._add(art, "dnf", ns, tz_source, f"line={n}", attrs)
                yield None
        rep.stats["other_lines"] = other


def _chain(it: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """The lines, then an empty one (closes the last block)."""
    n = 0
    for n, line in it:
        yield n, line
    yield n + 1, ""
