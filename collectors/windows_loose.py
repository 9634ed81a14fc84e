"""Windows artifacts collected loose, outside a disk image or a collection layout dissect recognises: Prefetch
files (``*.pf``, version 17 to 30, Windows 10's MAM-compressed ones included) and the Amcache hive, as KAPE
targets and the DFIR Artifact Museum ship them (a 7z of a Prefetch folder, of ``Amcache.hve`` and its logs).

Recognised by content, not name: a Prefetch file opens with ``MAM\\x04`` (compressed) or holds ``SCCA`` at byte 4;
an Amcache hive is a primary registry hive (``regf``, file type 0) whose base block names ``Amcache.hve``, as
Windows writes it.  Each is read by the dissect plugin that reads it inside an image, on a Windows file system of
that one file, and its records become rows by the same rules (:data:`collectors.os_artifacts.PLUGINS`): a loose
file gives the rows it gives in an image, ``evidence_path`` the file itself.
"""

from __future__ import annotations

import logging
import os
from typing import Iterator

import pyarrow as pa

from collectors.base import Artifact, Collector, read_magic
from collectors.os_artifacts import plugin, plugin_rows
from timeline.errors import UnknownFormat

__all__ = ["AmcacheCollector", "PrefetchCollector", "is_amcache", "is_prefetch"]

log = logging.getLogger(__name__)


def is_prefetch(path: str) -> bool:
    head = read_magic(path, 8)
    return head[:4] == b"MAM\x04" or (len(head) == 8 and head[4:8] == b"SCCA")


def is_amcache(path: str) -> bool:
    """A primary registry hive whose base block names Amcache.hve (the name Windows gave the file it wrote)."""
    head = read_magic(path, 0x70)
    if len(head) < 0x70 or head[:4] != b"regf" or int.from_bytes(head[0x1C:0x20], "little") != 0:
        return False
    name = head[0x30:0x70].decode("utf-16-le", "ignore").split("\x00", 1)[0]
    return name.lower().replace("/", "\\").endswith("amcache.hve")


class _OneFile:
    """A dissect target holding one Windows file at its place (``sysvol/windows/...``), with no OS around it:
    ``%windir%`` is ``sysvol/windows``, the host unnamed (the collector names it)."""

    def __init__(self, place: str, path: str):
        from dissect.target import Target
        from dissect.target.filesystem import VirtualFilesystem

        self.target = t = Target()
        t.hostname = t.domain = None  # records ask the target for them; there is no OS to ask
        vfs = VirtualFilesystem(case_sensitive=False)
        vfs.map_file(place, path)
        t.filesystems.add(vfs)
        t.fs.mount("sysvol", vfs)
        t.resolve = lambda p, user_sid=None: t.fs.path(str(p).replace("%windir%", "sysvol/windows"))


class _Loose(Collector):
    source = "FILE"
    engines = ("dissect.target",)
    parser = ("dissect.target", "dissect.target")
    function = ""
    test = staticmethod(lambda path: False)

    @classmethod
    def matches(cls, path: str) -> bool:
        return cls.test(path)

    @classmethod
    def check_compatible(cls, path: str) -> None:
        if not cls.test(path):
            raise UnknownFormat(f"{path}: not a {cls.name} file")

    def _target(self, artifact: Artifact):
        raise NotImplementedError

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        rep = self.report(artifact)
        mtime = artifact.mtime_ns if artifact.mtime_ns else os.stat(artifact.fs_path).st_mtime_ns
        n = 0
        for k in plugin_rows(self._target(artifact), self._rows, rep, artifact.evidence_id, artifact.evidence_path,
                             artifact.host, self._parser, lambda p: mtime, artifact.tz, artifact.tz_source,
                             plugins=(plugin(self.function),), where=lambda spec: artifact.evidence_path):
            n += k
            if len(self._rows) >= batch_rows:
                yield self._rows.to_table()
        if not rep.stats.get(f"plugin:{self.function}"):
            rep.warn("no_records", f"{artifact.evidence_path}: dissect's {self.function} plugin read no record from it")
        rep.stats["rows"] = n


class PrefetchCollector(_Loose):
    """A loose Prefetch file: its last run and the seven before it (Windows 8+), rows ``os:prefetch``."""

    name = "prefetch"
    function = "prefetch"
    test = staticmethod(is_prefetch)

    def _target(self, artifact: Artifact):
        from dissect.target.plugins.os.windows.prefetch import PrefetchPlugin

        one = _OneFile(f"windows/prefetch/{os.path.basename(artifact.evidence_path) or 'x.pf'}", artifact.fs_path)
        p = PrefetchPlugin(one.target)
        one.target.prefetch = p.prefetch
        return one.target


class AmcacheCollector(_Loose):
    """A loose Amcache hive: its program, file, driver, shortcut and device entries, rows ``reg:amcache``."""

    name = "amcache"
    function = "amcache"
    test = staticmethod(is_amcache)

    def _target(self, artifact: Artifact):
        from dissect.target.plugins.os.windows.amcache import AmcachePlugin

        one = _OneFile("windows/appcompat/programs/amcache.hve", artifact.fs_path)
        a = AmcachePlugin(one.target)
        kinds = ("programs", "files", "applications", "application_files", "drivers", "shortcuts", "device_containers")

        def amcache():
            for kind in kinds:  # the functions of dissect's amcache namespace, in its order
                yield from getattr(a, kind)()

        one.target.amcache = amcache
        return one.target
