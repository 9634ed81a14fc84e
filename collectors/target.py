"""Disk images, archives and triage collections, opened read-only through ``dissect.target``.

E01 (and split E01), raw/dd (and split raw), QCOW2, VMDK, VHD/VHDX (with a differencing
disk's parent), tar/zip/tgz archives (KAPE, Velociraptor, UAC, acquire collections among them):
volumes and file systems are found by dissect.  One image is one artifact of this collector,
which

* decides the host (``/etc/hostname`` or the registry, through dissect) and its zone
  (``/etc/timezone``, ``/etc/localtime``, the registry's TimeZoneInformation), recorded as
  ``tz_source`` evidence_config unless the analyst gave ``--tz``;
* writes the file-system timeline: one row per file and time kind (ext/XFS inode times,
  NTFS ``$STANDARD_INFORMATION`` and ``$FILE_NAME`` times), ``source`` FILE, ``attrs.macb``;
* hands every log file it finds (``/var/log``, shell histories, ``*.evtx``, web server log
  folders) to the collector of the registry that recognises it, on a private temporary copy
  read from the image, so the same parsers (and EVTX's loss-free recovery) apply; each such
  artifact keeps its path inside the image as ``evidence_path`` and is reported on its own;
* verifies an E01's stored media hashes (MD5, and SHA-1 when stored) against hashes computed over
  its media data (``facts.ewf`` of the custody entry; a mismatch is a counted warning);
* with :attr:`TargetCollector.gather_dir` set (``forensics collect --gather``), keeps a copy of every
  log it reads and of the raw artifacts in :data:`GATHER` (registry hives, prefetch, tasks...) for
  re-examination with other tools, each hashed (SHA-256, MD5) with its path and times inside the
  evidence (``facts.gathered``).

A file that cannot be read is a counted error of the image; a volume without a file system
a warning.  An image with no file system at all fails :meth:`check_compatible` with the
formats tried, before anything is written.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import stat as _stat
import shutil
import struct
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import orjson
import pyarrow as pa

from collectors import sevenzip
from collectors.base import Artifact, ArtifactReport, Collector, RecordError, name_bytes, read_magic, shown_name
from collectors.hosts import clean_host
from collectors.filesystem import (FS_LIBRARIES, FS_READERS, WHOLE, Context, Counts, Mft, Part, sniff_file,
                                   volume_stream, volume_tables)
from collectors.os_artifacts import plugin_rows
from timeline.custody import EvidencePath, open_evidence
from timeline.errors import EvidenceNotFound, UnknownFormat
from timeline.schema import NS_MAX as _NS_MAX, NS_MIN as _NS_MIN, HOST_GIVEN, HOST_OS, TZ_ANALYST, TZ_EVIDENCE_CONFIG, TZ_SOURCE_UTC, event_hash, iso_ns

__all__ = ["GATHER", "TargetCollector", "archive_kind", "collection_host", "ewf_media_hashes", "fs_rows", "image_segments",
           "is_container", "link_leaves", "velociraptor_name"]

log = logging.getLogger(__name__)

_IMAGE_EXT = re.compile(r"\.(e01|ex01|s01|l01|qcow2?|vmdk|a?vhdx|vhd|vdi|dd|raw|img|bin|00[01]|iso|asdf)$", re.I)
_ARCHIVE_EXT = re.compile(r"\.(zip|tar|tgz|tar\.gz|tar\.bz2|tar\.xz|7z)$", re.I)
_MAGIC = (b"EVF\x09\x0d\x0a\xff\x00", b"EVF2\r\n\x81\x00", b"QFI\xfb", b"KDMV", b"# Disk DescriptorFile",
          b"vhdxfile", b"conectix", b"PK\x03\x04", sevenzip.MAGIC)
FORMATS = "E01/Ex01, split E01, raw/dd (and split raw), QCOW2, VMDK, VHD/VHDX, VDI, ISO, tar/zip/7z archives"

_EWF_MAGIC = b"EVF\x09\x0d\x0a\xff\x00"

# Raw artifacts copied into the case by ``--gather`` besides the logs (as KAPE / acquire targets do), matched on
# the lower-cased path inside a file system: registry hives and their transaction logs, Amcache, prefetch,
# scheduled tasks, recycle-bin index files; accounts, sudo, cron, systemd units, SSH keys, host name and zone.
GATHER = re.compile(
    r"(^|/)windows/system32/config/(system|software|sam|security|default)(\.log\d?)?$"
    r"|(^|/)(ntuser|usrclass)\.dat(\.log\d?)?$|(^|/)amcache\.hve(\.log\d?)?$"
    r"|(^|/)windows/prefetch/[^/]+\.pf$|(^|/)windows/system32/tasks/|(^|/)\$recycle\.bin/[^/]+/\$i[^/]*$"
    r"|^/etc/(passwd|shadow|group|sudoers|hostname|timezone|localtime|crontab|hosts)$"
    r"|^/etc/(cron\.[^/]+|sudoers\.d|systemd/system)/|^/var/spool/cron/|/\.ssh/authorized_keys2?$")

# What reading one evidence item may copy out of it (into temporary space, or into the case with --gather), checked
# while copying: a file cut at a cap has its first bytes read and is a counted error naming it; each temporary copy
# is deleted once read, so temporary space holds one file (and the archives it is nested in) at a time.
EXTRACT_FILE_MAX = 4 << 30  # bytes copied out of one file of an image or archive
EXTRACT_ITEM_MAX = 64 << 30  # bytes copied out of one evidence item in all (at least twice its own size)
EXPANSION_MAX = 200  # an archive member, or an archive's content in all, may expand this many times its packed size...
EXPANSION_FREE = 64 << 20  # ... once past this many bytes (a small file may compress far better): beyond, a bomb
NESTING_MAX = 3  # archives inside archives (inside an image) are opened this many levels deep

GATHERED_DIR = "gathered"  # folder of the case holding gathered artifacts, one sub-folder per evidence item
LIVE = "local:/"  # evidence_path of a live host's root (``forensics collect local``)


def _live_roots(t) -> tuple[str, ...]:
    """Where a live host keeps what we read: the target collector's own places (log folders, host name and zone,
    autostart configuration), then what each collector of the registry reads there (``live_paths``); under each
    user's home, the collectors' ``home_files``, then the target's own (SSH keys)."""
    from collectors import REGISTRY  # the registry imports this module

    others = [c for c in REGISTRY if c is not TargetCollector]
    homes = ["/root"]
    try:
        homes += [f"/home/{n}" for n in sorted(t.fs.get("/home").listdir())]
    except Exception:
        pass
    return (TargetCollector.live_paths + tuple(p for c in others for p in c.live_paths)
            + tuple(f"{h}/{f}" for h in homes for c in (*others, TargetCollector) for f in c.home_files))

_TIME_KINDS = (  # (stat attribute, MACB letter, timestamp_desc)
    ("st_mtime_ns", "M", "Content Modification Time"),
    ("st_atime_ns", "A", "Last Access Time"),
    ("st_ctime_ns", "C", "Metadata Modification Time"),
    ("st_birthtime_ns", "B", "Creation Time"),
)
_NTFS_KINDS = (
    ("last_modification_time_ns", "M", "Content Modification Time"),
    ("last_access_time_ns", "A", "Last Access Time"),
    ("last_change_time_ns", "C", "Metadata Modification Time"),
    ("creation_time_ns", "B", "Creation Time"),
)


def image_segments(first: str | os.PathLike) -> list[Path]:
    """All files of a (possibly split) image, first segment first: E01 → E02…, .000/.001 → .001/.002…, a
    VMDK descriptor's extent files, and the parent a differencing image reads through (a VHD's or VHDX's
    parent, a QCOW2 backing file, a VMDK snapshot's parentFileNameHint), with the parent's own files."""
    p = Path(first)
    out = [p]
    m = re.search(r"\.([Ee])(\d\d)$", p.name)
    if m:
        n = int(m.group(2)) + 1
        while (q := p.with_name(f"{p.name[:-3]}{m.group(1)}{n:02d}")).exists():
            out.append(q)
            n += 1
    m = re.search(r"\.(\d{3})$", p.name)
    if m:
        n = int(m.group(1)) + 1
        while (q := p.with_name(f"{p.name[:-4]}.{n:03d}")).exists():
            out.append(q)
            n += 1
    extents, _ = _vmdk_files(p)
    out += [e for e in extents if e not in out and e.exists()]
    parent = differencing_parent(p)
    if parent is not None and parent.exists() and parent not in out:
        out += [s for s in image_segments(parent) if s not in out]
    return out


def differencing_parent(p: Path) -> Path | None:
    """The parent a differencing image reads through (VHD, VHDX/.avhdx, QCOW2 overlay, VMDK snapshot), where
    dissect will look for it; None for an image that stands alone."""
    return _vhd_parent(p) or _vhdx_parent(p) or _qcow2_backing(p) or _vmdk_files(p)[1]


def _beside(p: Path, name: str) -> Path:
    """A file an image names (its parent, an extent): as written when absolute and present, else beside it."""
    q = Path(name)
    return q if q.is_absolute() and q.exists() else p.with_name(name.replace("\\", "/").rsplit("/", 1)[-1])


def _qcow2_backing(p: Path) -> Path | None:
    """A QCOW2 overlay names its backing file in its header (offset and size at bytes 8 and 16)."""
    head = read_magic(str(p), 20)
    if len(head) < 20 or head[:4] != b"QFI\xfb":
        return None
    offset, size = struct.unpack(">QI", head[8:20])
    if not offset or not 0 < size < 4096:
        return None
    name = read_magic(str(p), size, offset).decode("utf-8", "replace")
    return _beside(p, name) if name else None


_VMDK_EXTENT = re.compile(r'^\s*(?:RW|RDONLY|NOACCESS)\s+\d+\s+\w+\s+"([^"]+)"', re.M)
_VMDK_PARENT = re.compile(r'^\s*parentFileNameHint\s*=\s*"([^"]+)"', re.M)


def _vmdk_files(p: Path) -> tuple[list[Path], Path | None]:
    """(extent files other than ``p``, parent) named by a VMDK's descriptor: a descriptor file of its own
    (``# Disk DescriptorFile``) or the one embedded in a sparse extent (``KDMV``)."""
    head = read_magic(str(p), 64)
    if head.startswith(b"# Disk DescriptorFile"):
        text = read_magic(str(p), 65536)
    elif head[:4] == b"KDMV":
        d_off, d_size = struct.unpack("<QQ", head[28:44])
        text = read_magic(str(p), min(d_size, 128) * 512, d_off * 512) if d_off else b""
    else:
        return [], None
    text = text.split(b"\x00", 1)[0].decode("utf-8", "replace")
    extents = [_beside(p, n) for n in _VMDK_EXTENT.findall(text)]
    parent = _VMDK_PARENT.search(text)
    return [e for e in extents if e != p], (_beside(p, parent.group(1)) if parent else None)


def _vhd_parent(p: Path) -> Path | None:
    """A differencing VHD names its parent in its dynamic header (UTF-16BE)."""
    try:
        size = p.stat().st_size
        if size < 1024 or not p.name.lower().endswith(".vhd"):
            return None
        fd = open_evidence(p)
        try:
            footer = os.pread(fd, 512, size - 512)
            if footer[:8] != b"conectix" or struct.unpack(">I", footer[60:64])[0] != 4:
                return None
            dyn = os.pread(fd, 1024, struct.unpack(">Q", footer[16:24])[0])
        finally:
            os.close(fd)
        if dyn[:8] != b"cxsparse":
            return None
        name = dyn[64:576].decode("utf-16-be", "ignore").split("\x00", 1)[0]
        return p.with_name(name.replace("\\", "/").rsplit("/", 1)[-1]) if name else None
    except OSError:
        return None


def _vhdx_parent(p: Path) -> Path | None:
    """A differencing VHDX (a Hyper-V checkpoint's ``.avhdx``) names its parent in the parent locator of its
    metadata; resolved as dissect opens it: ``relative_path`` beside the child, else ``absolute_win32_path``."""
    if read_magic(str(p), 8) != b"vhdxfile":
        return None
    try:
        from dissect.hypervisor.disk.c_vhdx import (ALIGNMENT, FILE_PARAMETERS_GUID, METADATA_REGION_GUID,
                                                    PARENT_LOCATOR_GUID)
        from dissect.hypervisor.disk.vhdx import MetadataTable, RegionTable

        with os.fdopen(open_evidence(p), "rb") as fh:
            region = RegionTable(fh, 3 * ALIGNMENT).get(METADATA_REGION_GUID)
            meta = MetadataTable(fh, region.file_offset, region.length)
            if not meta.get(FILE_PARAMETERS_GUID).has_parent:
                return None
            entries = meta.get(PARENT_LOCATOR_GUID).entries
    except Exception:
        return None
    rel, absolute = entries.get("relative_path"), entries.get("absolute_win32_path")
    found = ([p.parent / rel.replace("\\", "/")] if rel else []) + ([Path("/" + absolute.replace("\\", "/"))] if absolute else [])
    for q in found:
        if q.exists():
            return Path(os.path.normpath(q))
    return found[0] if found else None


def is_container(path: str) -> bool:
    """A disk image or archive (by name or magic); plain compressed logs (``syslog.gz``) are not."""
    name = os.path.basename(path)
    if _IMAGE_EXT.search(name) or _ARCHIVE_EXT.search(name):
        return True
    head = read_magic(path, 512)
    if any(head.startswith(m) for m in _MAGIC) or head[257:262] == b"ustar":
        return True
    if sniff_file(path) is not None:  # a raw file-system image (ext, XFS, NTFS, FAT, exFAT) whatever its name
        return True
    try:
        size = os.path.getsize(path)
    except OSError:
        return False
    return size >= 1024 and read_magic(path, 8, size - 512) == b"conectix"


def ewf_media_hashes(first: str | os.PathLike) -> dict[str, Any] | None:
    """An E01's media hashes: those it stores (``hash`` section: MD5; ``digest`` section: MD5 and SHA-1) and
    those computed over its media data (all segments, read-only), and whether they agree.  None when
    ``first`` is not an EWF (version 1) image."""
    import time

    from dissect.evidence.ewf import EWF

    if read_magic(str(first), 8) != _EWF_MAGIC:
        return None
    t0 = time.monotonic()
    fhs = [os.fdopen(open_evidence(p), "rb") for p in image_segments(first)]
    try:
        ewf = EWF(fhs)
        stored: dict[str, str | None] = {"md5": None, "sha1": None}
        for i in range(len(fhs)):
            seg = ewf.segment(i)
            for sec in seg.sections:
                if sec.type in (b"hash", b"digest") and sec.size >= 16:
                    seg.fh.seek(sec.data_offset)
                    data = seg.fh.read(36)
                    for name, raw in (("md5", data[:16]), ("sha1", data[16:36] if sec.type == b"digest" else b"")):
                        if raw.strip(b"\x00"):  # all zeros: not set
                            stored[name] = raw.hex()
        md5, sha1 = hashlib.md5(), hashlib.sha1()
        stream, left = ewf.open(), ewf.size
        while left > 0:
            block = stream.read(min(4 << 20, left))
            if not block:
                break
            md5.update(block)
            sha1.update(block)
            left -= len(block)
        computed = {"md5": md5.hexdigest(), "sha1": sha1.hexdigest()}
        checked = [k for k, v in stored.items() if v]
        return {"segments": len(fhs), "media_size": ewf.size, "media_read": ewf.size - left, "stored": stored,
                "computed": computed, "verified": all(stored[k] == computed[k] for k in checked) and not left
                if checked else None, "seconds": round(time.monotonic() - t0, 3)}
    finally:
        for fh in fhs:
            fh.close()


def _open(path: str):
    from dissect.target import Target  # AGPL-3.0; imported only where images are opened

    try:
        return Target.open(EvidencePath(path))  # every file dissect opens goes through open_evidence (O_NOATIME)
    except Exception as exc:
        raise UnknownFormat(f"{path}: cannot open as a disk image or archive (tried: {FORMATS}): "
                            f"{type(exc).__name__}: {exc}") from exc


def _open_without_os(path: str, failure: Exception):
    """The target's disks, volumes and file systems without dissect's OS detection, which a hostile tree can break
    (``/etc/hostname -> /etc/hostname``: a link loop stops it, and with it the whole image); None when they cannot
    be read either."""
    from dissect.target import Target

    try:
        t = Target.open(path, apply=False)
        t.disks.apply()
        t.volumes.apply()
        t.filesystems.apply()
    except Exception:
        return None
    if not list(t.filesystems):
        return None
    log.warning("%s: OS not read (%s); its file systems are walked without it", path, failure)
    return t


def _os_of(t) -> str | None:
    try:
        return t.os
    except Exception:  # opened without OS detection
        return None


# Windows zone names map to IANA through CLDR's windowsZones, which keeps some old names (still valid
# IANA links); the current name is reported
_CLDR_LEGACY = {"Asia/Calcutta": "Asia/Kolkata", "Asia/Katmandu": "Asia/Kathmandu", "Asia/Saigon": "Asia/Ho_Chi_Minh",
                "Asia/Rangoon": "Asia/Yangon", "Europe/Kiev": "Europe/Kyiv", "Atlantic/Faeroe": "Atlantic/Faroe",
                "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
                "America/Indianapolis": "America/Indiana/Indianapolis", "Pacific/Truk": "Pacific/Chuuk",
                "Pacific/Ponape": "Pacific/Pohnpei", "Asia/Ulan_Bator": "Asia/Ulaanbaatar"}


def _decide_host(artifact: Artifact, stated: str | None) -> tuple[str | None, str | None]:
    """The evidence item's host and how it was decided (collectors.hosts): the analyst's, else the one the OS
    states, else the artifact's own (a folder named like a host)."""
    if artifact.host_source == HOST_GIVEN and artifact.host:
        return artifact.host, HOST_GIVEN
    stated = clean_host(stated)
    if stated:
        return stated, HOST_OS
    return (artifact.host, artifact.host_source) if artifact.host else (None, None)


def _host_and_zone(t) -> tuple[str | None, str | None, str | None]:
    """(host, zone, where the zone came from) as the evidence states them; None when it does not."""
    host = tz = where = None
    try:
        host = t.hostname or None
    except Exception:
        pass
    try:
        tz = t.timezone or None
    except Exception:
        tz = None
    if tz:
        if t.os == "windows":
            where = "registry TimeZoneInformation"
        else:
            where = "/etc/timezone" if t.fs.path("/etc/timezone").exists() else "/etc/localtime"
        from zoneinfo import ZoneInfo

        tz = _CLDR_LEGACY.get(tz, tz)
        try:
            ZoneInfo(tz)
        except Exception:
            log.warning("zone %r stated by the evidence (%s) is not an IANA zone; not used", tz, where)
            tz, where = None, f"{where}: unknown zone {tz!r}"
    return host, tz, where


@dataclass
class _Reading:
    """What the reading of one evidence item carries down its walk: the host and zone it states, its temporary
    folder, the bytes it may still copy out, and the names its gathered copies took (files and their folders)."""

    host: str | None
    tz: str | None
    tz_source: str | None
    batch_rows: int
    budget: int  # bytes it may still copy out (of ``allowance`` in all)
    allowance: int = 0
    tmp: str = ""
    stored: set[str] = field(default_factory=set)
    stored_dirs: set[str] = field(default_factory=set)
    plugins: frozenset[str] = frozenset()  # collectors whose files dissect's plugins read in the top-level target
    mfts: dict[str, Any] = field(default_factory=dict)  # drive prefix -> the collection's loose $MFT of it (Mft)


@dataclass
class _Packed:
    """An archive files are copied out of: its name, its size, and the bytes copied out of it so far."""

    name: str
    size: int
    out: int = 0


class TargetCollector(Collector):
    name = "target"
    source = "FILE"
    engines = ("dissect.target",)
    parser = ("dissect.target", "dissect.target")
    live_paths = ("/var/log", "/etc/hostname", "/etc/timezone", "/etc/localtime", "/etc/crontab", "/etc/cron.d",
                  "/var/spool/cron", "/etc/systemd/system")
    home_files = (".ssh/authorized_keys",)

    def __init__(self, engine: str | None = None, threads: int = 1):
        super().__init__(engine, threads)
        self._subs: dict[str, Collector] = {}
        self.inner: dict[tuple[str, str], Artifact] = {}  # artifacts found inside images, for reporting
        self._copies = 0
        self._roots: tuple[str, ...] = ("/",)
        self.gather_dir: Path | None = None  # set: keep the logs read and the GATHER artifacts there
        # the share of each file system's names this collector reads (the C readers'; the logs among them too):
        # part 0 also reads everything else (E01 hashes, OS artifacts, file systems only dissect reads)
        self.part: Part = WHOLE

    @classmethod
    def matches(cls, path: str) -> bool:
        return is_container(path)

    @classmethod
    def check_compatible(cls, path: str) -> None:
        """Open the image and demand at least one file system (a bogus image fails here, naming the formats;
        a differencing disk without its parent, naming the parent).  A tar or zip archive dissect cannot open
        (a file and a folder of the same name, say) passes: it is read member by member."""
        parent = differencing_parent(Path(path))
        if parent is not None and not parent.exists():
            raise EvidenceNotFound(f"{path}: a differencing disk (snapshot/checkpoint) whose parent {parent} is not "
                                   "there: every sector not written since the snapshot is read from the parent, so "
                                   "the parent must be collected with it (beside it, as the image names it)")
        if sevenzip.is_7z(path):  # dissect.target opens a 7z but sees no files in it: collectors.sevenzip reads it
            return sevenzip.check(path)
        if _opens_raw(path):  # a raw file-system image its C library opens: no need to load dissect here
            return
        try:
            t = _open(path)
        except UnknownFormat as exc:
            if archive_kind(path) is not None or _open_without_os(path, exc) is not None:
                return
            raise
        if not list(t.filesystems):
            raise UnknownFormat(f"{path}: no file system found in it (tried: {FORMATS}; "
                                f"{len(t.volumes)} volume(s), none with a known file system)")

    # -----------------------------------------------------------------------------------------

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        rep = self.report(artifact)
        live = artifact.evidence_path == LIVE
        allowance = max(EXTRACT_ITEM_MAX, 2 * artifact.size)
        if sevenzip.is_7z(artifact.fs_path):
            tz = artifact.tz if artifact.tz_source == TZ_ANALYST else None
            host, host_source = _decide_host(artifact, None)
            rep.facts = {"live": False, "host": host, "host_source": host_source, "os": None,
                         "archive": f"7z (py7zr {version('py7zr')})", "tz": tz,
                         "tz_source": TZ_ANALYST if tz else None, "tz_from": None}
            self._rows_n = 0
            ctx = _Reading(host, tz, rep.facts["tz_source"], batch_rows, budget=allowance, allowance=allowance)
            with tempfile.TemporaryDirectory(prefix="forensics-extract-") as tmp:
                ctx.tmp = tmp
                yield from self._seven_zip(artifact, rep, ctx, artifact.fs_path, "", 0,
                                           _Packed(artifact.evidence_path, artifact.size))
            rep.stats["rows"] = self._rows_n
            return
        no_os = None
        try:
            t = _open(artifact.fs_path)
        except UnknownFormat as exc:
            # its file systems without the OS (a link loop in /etc breaks dissect's OS detection); a tar or zip dissect
            # cannot open at all: its members, from its own list
            t, failure = (None if live else _open_without_os(artifact.fs_path, exc)), exc
            if t is not None:
                no_os = f"{exc.__cause__ or exc}"
            elif live or archive_kind(artifact.fs_path) is None:
                raise
        # a live host: only where logs, histories and autostart configuration live (not /proc, not every file)
        self._roots = _live_roots(t) if live else ("/",)
        host, tz, where = _host_and_zone(t) if t is not None else (None, None, None)
        host_from = (("registry ComputerName" if _os_of(t) == "windows" else "OS configuration") if host else None)
        if host is None and t is not None and (named := collection_host(t, artifact.evidence_path)) is not None:
            host, host_from = named  # a triage collection names the host it was run on
        host, host_source = _decide_host(artifact, host)
        if host_source == HOST_GIVEN:
            host_from = "given by the analyst"
        if artifact.tz and artifact.tz_source == TZ_ANALYST:  # the analyst's --tz wins over the evidence
            tz, tz_source = artifact.tz, TZ_ANALYST
        elif tz:
            tz_source = TZ_EVIDENCE_CONFIG
        else:  # the case's zone, given by the analyst at creation, or nothing (UTC assumed, per row)
            tz, tz_source = artifact.tz, (TZ_ANALYST if artifact.tz else None)
        rep.facts = {"live": live, "host": host, "host_source": host_source, "host_from": host_from,
                     "os": _os_of(t) if t is not None else None, "tz": tz, "tz_source": tz_source,
                     "tz_from": where if tz_source == TZ_EVIDENCE_CONFIG else None}
        if no_os is not None:
            rep.warn("os_not_read", f"dissect could not read the OS of this evidence ({no_os}); its file systems are "
                                    "walked without it: no host, zone or OS artifacts")
        first = self.part.k == 0  # one share of a split image reads everything but its share of the file names
        if first:
            self._verify_ewf(artifact, rep)
        self._rows_n = 0
        ctx = _Reading(host, tz, tz_source, batch_rows, budget=allowance, allowance=allowance)
        if first and t is not None and _os_of(t) not in ("default", None):
            ctx.plugins = _PLUGIN_READ  # its Prefetch files and Amcache hive are read by the plugins, not again
        packed = _Packed(artifact.evidence_path, artifact.size) if archive_kind(artifact.fs_path) else None
        with tempfile.TemporaryDirectory(prefix="forensics-extract-") as tmp:
            ctx.tmp = tmp
            if t is None:
                rep.warn("archive_read_by_members", f"{failure}; read member by member from the archive's own list "
                                                    "(no host, zone or OS artifacts)")
                yield from self._members(artifact, rep, ctx, None, "", artifact.fs_path, set(), set(), 0, packed)
            else:
                yield from self._target(artifact, rep, t, "", ctx, artifact.fs_path, 0, packed)
            for mft in ctx.mfts.values():
                try:
                    mft.reader.close()
                except Exception:
                    pass
        if first and t is not None and _os_of(t) == "windows":
            _user_hives(t, rep)
        if first and t is not None and _os_of(t) not in ("default", None):
            def mtime_of(p: str) -> int | None:
                try:
                    return t.fs.path(p).stat().st_mtime_ns
                except Exception:
                    return None

            for n in plugin_rows(t, self._rows, rep, artifact.evidence_id, artifact.evidence_path, host,
                                 self._parser, mtime_of, tz, tz_source):
                self._rows_n += n
                if len(self._rows) >= batch_rows:
                    yield self._rows.to_table()
        rep.stats["rows"] = self._rows_n

    @staticmethod
    def _verify_ewf(art: Artifact, rep: ArtifactReport) -> None:
        try:
            ewf = ewf_media_hashes(art.fs_path)
        except Exception as exc:
            rep.warn("ewf_unverified", f"E01 media hashes not verified: {type(exc).__name__}: {exc}")
            return
        if ewf is None:
            return
        rep.facts["ewf"] = ewf
        for k, v in ewf["stored"].items():
            if v and v != ewf["computed"][k]:
                rep.warn("ewf_hash_mismatch", f"E01 stores media {k.upper()} {v} but its media data hashes to "
                                              f"{ewf['computed'][k]}: the image is not the media that was acquired")
        if ewf["media_read"] != ewf["media_size"]:
            rep.warn("ewf_hash_mismatch", f"E01 media data ended after {ewf['media_read']} of {ewf['media_size']} bytes")

    def _target(self, art: Artifact, rep: ArtifactReport, t, outer: str, ctx: _Reading, source: str, depth: int,
                packed: _Packed | None) -> Iterator[pa.Table]:
        """Walk every file system of an opened target (an image, or an archive found inside one); for a tar or zip
        archive, then read the members the walk did not reach (:meth:`_members`)."""
        filesystems = [f for f in t.filesystems if not _metafile_ntfs(t, f)]
        if len(filesystems) < len(t.filesystems):
            rep.stats["ntfs_metafiles"] = rep.stats.get("ntfs_metafiles", 0) + len(t.filesystems) - len(filesystems)
        if not filesystems:
            raise UnknownFormat(f"{art.fs_path if not outer else outer}: no file system found (tried: {FORMATS})")
        first = self.part.k == 0
        for v in t.volumes if first else ():
            if getattr(v, "fs", None) is None and not any(getattr(f, "volume", None) is v for f in filesystems):
                rep.warn("no_filesystem", f"{outer}volume {v.name or v.number} at offset {v.offset} ({v.size} bytes): "
                                          "no file system recognised")
        rep.stats.setdefault("filesystems", []).extend(f"{outer}{getattr(f, '__type__', '?')}" for f in filesystems)
        multi = len(filesystems) > 1
        archive = not t.disks  # a tar/zip collection: every file is offered to the log collectors
        members = archive and archive_kind(source) is not None
        reached: set[int] = set()  # the archive's members the walk reached (offsets), and the paths it gave
        paths: set[str] = set()
        mounts = getattr(t.fs, "mounts", {}) or {}
        for i, fs in enumerate(filesystems):
            names = [m for m, f in mounts.items() if f is fs]
            drive = next((m for m in names if len(m) == 2 and m[1] == ":"), None)
            # the drive letter where the OS is Windows ("c:/Windows/..."), else "fsN:" when there are several
            prefix = outer + (drive if drive else f"fs{i}:" if multi and "/" not in names else "")
            fstype = getattr(fs, "__type__", type(fs).__name__)
            if fstype == "layer" and getattr(fs, "layers", None):  # a drive's accessors layered (Velociraptor)
                fstype = getattr(fs.layers[0], "__type__", fstype)
            if not archive and self._roots == ("/",) and fstype in FS_READERS:
                wanted: list[tuple[str, str]] = []
                try:
                    yield from self._c_filesystem(art, rep, t, fs, fstype, prefix, ctx, wanted)
                except Exception as exc:  # the C library refuses it: dissect reads it (the same rows, deduplicated)
                    rep.warn("fs_reader_fallback", f"{prefix or '/'} ({fstype}): {FS_LIBRARIES[fstype]} failed "
                                                   f"({type(exc).__name__}: {exc}); read with dissect instead")
                else:  # the logs and gathered artifacts it listed, read through dissect
                    for path, raw in dict.fromkeys(wanted):
                        try:
                            entry = fs.get(raw)
                            st = _lstat(entry)
                        except Exception as exc:
                            rep.errors.append(RecordError(shown_name(f"{prefix}{path}"), "unreadable",
                                                          shown_name(f"cannot stat: {exc}")))
                            continue
                        yield from self._file(art, rep, ctx, f"{prefix}{path}", path, entry, st, fstype, archive, depth,
                                              {}, packed, f"{prefix}{raw}", fs_row=False)
                    continue
            if not first:  # a file system dissect reads: share 0 reads it whole
                continue
            host_root = _host_root(fs)
            velo = _velociraptor_form(fs) is not None
            if archive:
                self._loose_mft(rep, ctx, fs, prefix, packed)
            for path, entry, st, raw in self._walk(fs, rep, prefix, self._roots):
                inner = f"{prefix}{path}"
                if members:
                    offset = _member_offset(entry)
                    if offset is not None:
                        reached.add(offset)
                    paths.add(inner)
                if velo and _sparse_index(entry, st, path):
                    # Velociraptor's own index of a sparse upload (the file beside it holds only the data ranges,
                    # in order: a $J without its zero run): not a file of the host
                    rep.facts.setdefault("sparse_uploads", []).append(inner[:-4])
                    continue
                extra: dict[str, Any] = {"name_bytes": nb} if (nb := name_bytes(raw)) is not None else {}
                extra.update(_link_attrs(rep, entry, inner, st, host_root))
                yield from self._file(art, rep, ctx, inner, path, entry, st, fstype, archive, depth, extra, packed,
                                      f"{prefix}{raw}")
        if members:
            yield from self._members(art, rep, ctx, t, outer, source, reached, paths, depth, packed)

    def _members(self, art: Artifact, rep: ArtifactReport, ctx: _Reading, t, outer: str, source: str, reached: set[int],
                 paths: set[str], depth: int, packed: _Packed | None) -> Iterator[pa.Table]:
        """The members of a tar or zip archive that the walk through dissect did not reach (every member when
        dissect cannot open it, ``t`` None), read from the archive's own list under a safe name
        (:func:`_member_path`; ``attrs.stored_name`` keeps the name as stored): a name that climbs out of the
        archive is a warning (``member_renamed``), so is a member hidden by another of the same name
        (``member_hidden``) and any other member a plain archive's walk missed (``member_unreached``).  In a
        triage collection (acquire, UAC, Velociraptor...), the collector's own files beside the host's (its log,
        its command outputs) are not the host's: named in ``facts.outside_layout``, counted, not read -- as
        for the same collection as a folder."""
        try:
            listing = _Listing.open(t, source)
        except Exception as exc:
            rep.errors.append(RecordError(outer or None, "unreadable", f"{outer or source}: members not listed: {exc}"))
            return
        if listing is None:
            return
        layout = _layout(t)
        with listing:
            if listing.damaged:
                rep.errors.append(RecordError(outer or None, "damaged_archive", f"{outer or art.evidence_path}: the "
                                              f"member list ends early ({listing.damaged}); the members before were read"))
            for info in listing.members:
                offset = listing.offset(info)
                if offset in reached:
                    continue
                stored = listing.name(info)
                safe, climbs = _member_path(stored)
                if safe == "/" and listing.is_dir(info):
                    continue  # the archive's own root folder (".")
                inner, raw_inner = f"{outer}{shown_name(safe)}", f"{outer}{safe}"
                hidden = inner in paths
                if layout and not climbs and not hidden:
                    rep.facts.setdefault("outside_layout", []).append(f"{outer}{shown_name(stored)}")
                    rep.stats["members_outside_layout"] = rep.stats.get("members_outside_layout", 0) + 1
                    continue
                if hidden:
                    inner, raw_inner = f"{inner}#member@{offset}", f"{raw_inner}#member@{offset}"
                paths.add(inner)
                entry = _Member(listing, info)
                st = entry.lstat()
                extra: dict[str, Any] = {"stored_name": shown_name(stored), "member_offset": offset}
                if (raw := name_bytes(stored)) is not None:
                    extra["name_bytes"] = raw
                extra.update(_link_attrs(rep, entry, inner, st, None))
                if climbs:
                    rep.warn("member_renamed", f"{inner}: the member stored as {shown_name(stored)!r} climbs out of the "
                                               f"archive; read under this name", inner)
                elif hidden:
                    rep.warn("member_hidden", f"{inner}: another member of the archive has the same name "
                                              f"{shown_name(stored)!r}; this one (at offset {offset}) read as well", inner)
                elif t is not None:
                    rep.warn("member_unreached", f"{inner}: dissect's walk of the archive did not reach this member; "
                                                 "read from the archive's list", inner)
                yield from self._file(art, rep, ctx, inner, shown_name(safe), entry, st, listing.kind, True, depth, extra,
                                      packed, raw_inner)

    def _file(self, art: Artifact, rep: ArtifactReport, ctx: _Reading, inner: str, path: str, entry, st, fstype: str,
              archive: bool, depth: int, extra: dict[str, Any], packed: _Packed | None, raw_inner: str,
              fs_row: bool = True) -> Iterator[pa.Table]:
        """One entry of the evidence: its file-system rows; a log (or, in an archive, any file) copied out and read
        by the collector that knows it, an archive inside opened in turn; with --gather, the copy kept.  ``inner``
        is its path inside the evidence as shown, ``raw_inner`` as stored (copies are named from it); ``fs_row``
        False: its rows came from a C reader."""
        if fs_row:
            self._rows_n += self._fs_rows(art, ctx.host, fstype, inner, entry, st, extra)
            if len(self._rows) >= ctx.batch_rows:
                yield self._rows.to_table()
        if not _stat.S_ISREG(st.st_mode) or _no_content(entry):
            return
        log_file = _is_log(path)
        gather = self.gather_dir is not None and bool(log_file or GATHER.search(path.lower()))
        if not (gather or archive or log_file):
            return
        missing = _missing_link_target(entry)
        if missing is not None:  # a tar hard link to a name the archive does not hold: no content of its own
            rep.warn("link_target_missing", f"{inner}: a hard link to {shown_name(missing)!r}, which the archive does "
                                            "not hold; nothing to read", inner)
            return
        copy = (self._gather(art, rep, ctx, entry, inner, raw_inner, st, packed) if gather
                else self._copy(rep, ctx, entry, inner, raw_inner, packed))
        if copy is None:
            return
        dest, sha = copy
        try:
            if archive or log_file:
                yield from self._read_copy(art, rep, ctx, inner, dest, sha, st, depth)
        finally:
            if not gather:  # temporary space holds one copy at a time
                shutil.rmtree(dest.parent, ignore_errors=True)

    def _read_copy(self, art: Artifact, rep: ArtifactReport, ctx: _Reading, inner: str, dest: Path, sha: str, st,
                   depth: int) -> Iterator[pa.Table]:
        """Hand a copied file to the collector that recognises it; an archive or image inside is opened in turn
        (its files as ``outer!inner``), at most :data:`NESTING_MAX` levels deep."""
        from collectors import collector_for

        cls = collector_for(str(dest))
        if cls is TargetCollector:
            if depth >= NESTING_MAX:
                rep.warn("nesting_too_deep", f"{inner}: an archive or image nested {depth + 1} levels deep is not opened "
                                             f"(at most {NESTING_MAX}); only its own file-system rows are kept", inner)
                return
            packed = _Packed(inner, os.path.getsize(dest))
            if sevenzip.is_7z(str(dest)):
                yield from self._seven_zip(art, rep, ctx, str(dest), f"{inner}!", depth + 1, packed)
                return
            try:
                nested = _open(str(dest))
            except UnknownFormat as exc:
                if archive_kind(str(dest)) is None:
                    rep.warn("unreadable_archive", str(exc), inner)
                    return
                rep.warn("archive_read_by_members", f"{inner}: dissect cannot open it ({exc.__cause__ or exc}); read "
                                                    "member by member from the archive's own list", inner)
                yield from self._members(art, rep, ctx, None, f"{inner}!", str(dest), set(), set(), depth + 1, packed)
                return
            yield from self._target(art, rep, nested, f"{inner}!", ctx, str(dest), depth + 1, packed)
            return
        if cls is None:
            rep.stats["logs_unrecognised"] = rep.stats.get("logs_unrecognised", 0) + 1
            return
        if depth == 0 and cls.name in ctx.plugins:
            return
        a = Artifact(art.evidence_id, inner, str(dest), sha, st.st_size, host=ctx.host, tz=ctx.tz,
                     tz_source=ctx.tz_source, mtime_ns=st.st_mtime_ns)
        drive = next((d for d in ctx.mfts if inner.startswith(d + "/")), None) if cls.name == "usnjrnl" else None
        if drive is not None:  # the journal of a drive whose $MFT the collection holds: paths from it
            sub = self._subs.get(cls.name) or self._subs.setdefault(cls.name, cls(threads=self.threads))
            sub.directories[a.key] = (drive, ctx.mfts[drive].dir_path)
        yield from self._inner(a, cls, ctx.batch_rows)

    def _loose_mft(self, rep: ArtifactReport, ctx: _Reading, fs, prefix: str, packed: _Packed | None) -> None:
        """A collection holding a drive's ``$MFT`` and its ``$Extend/$UsnJrnl:$J`` (KAPE's and Velociraptor's NTFS
        targets): a private copy of the ``$MFT``, opened with libfsntfs, names the journal's directories
        (``ctx.mfts[prefix]``), as MFTECmd does with both files."""
        if not prefix.endswith(":") or prefix in ctx.mfts:
            return
        try:
            entry = fs.get("/$MFT")
            fs.get("/$Extend")  # its journal beside it ($UsnJrnl:$J as Velociraptor names it, $J as KAPE may)
            if not _stat.S_ISREG(_lstat(entry).st_mode):
                return
        except Exception:
            return
        self._copies += 1
        dest = Path(ctx.tmp) / f"{self._copies:06d}" / "$MFT"
        if _copy_out(rep, entry, f"{prefix}/$MFT", dest, [], ctx, packed) is None:
            return
        try:
            ctx.mfts[prefix] = Mft(volume_stream(open(dest, "rb"), own=True))
        except Exception as exc:
            rep.warn("mft_unreadable", f"{prefix}/$MFT: not opened to name the journal's directories "
                                       f"({type(exc).__name__}: {exc}); its rows keep the file names alone")

    def _seven_zip(self, art: Artifact, rep: ArtifactReport, ctx: _Reading, path: str, outer: str, depth: int,
                   packed: _Packed | None) -> Iterator[pa.Table]:
        """Every member of a 7z archive (``collectors.sevenzip``: one member at a time, in its own temporary copy),
        as a tar or zip member (:meth:`_file`): file-system rows (``fs:7z``, the times 7z stores) and each file
        copied out under the caps and handed to the collector that recognises it, as ``outer/member``."""
        problems: list[sevenzip.Problem] = []
        n_members = 0
        for m in sevenzip.members(path, ctx.tmp, problems):
            n_members += 1
            name = m.name.lstrip("/")
            st = SimpleNamespace(st_mode=(_stat.S_IFDIR | 0o555) if m.is_dir else (_stat.S_IFREG | 0o444),
                                 st_size=m.size, st_ino=m.index, st_uid=None, st_gid=None, st_mtime_ns=m.mtime_ns,
                                 st_atime_ns=m.atime_ns, st_ctime_ns=None, st_birthtime_ns=m.ctime_ns)
            entry = SimpleNamespace(open=lambda p=m.path: open(p, "rb"))
            extra = {"name_bytes": nb} if (nb := name_bytes(name)) is not None else {}
            yield from self._file(art, rep, ctx, f"{outer}/{shown_name(name)}", f"/{shown_name(name)}", entry, st, "7z",
                                  True, depth, extra, packed, f"{outer}/{name}")
        rep.stats["7z_members"] = rep.stats.get("7z_members", 0) + n_members
        for p in problems:
            where = f"{outer}/{p.name.lstrip('/')}" if p.name else (outer.rstrip("!") or art.evidence_path)
            rep.errors.append(RecordError(shown_name(where), p.kind, shown_name(p.message)))

    def _c_filesystem(self, art: Artifact, rep: ArtifactReport, t, fs, fstype: str, prefix: str, ctx: _Reading,
                      wanted: list[tuple[str, str]]) -> Iterator[pa.Table]:
        """The file-system timeline of ``fs`` read by a C library (:mod:`collectors.filesystem`), deleted and
        orphan names included; the allocated regular files worth reading (logs, gathered artifacts) are
        appended to ``wanted`` as (path shown, path stored), to be read through dissect afterwards."""
        gather = self.gather_dir is not None
        stream = _volume_stream(art, t, fs)

        def offered(entries):
            for e in entries:
                path, extra = e[0], e[-1]
                if (_stat.S_ISREG(e[3]) and e[6] in ("", "$SI") and not (extra and extra.get("deleted"))
                        and (_is_log(path) or (gather and GATHER.search(path.lower())))):
                    raw = extra.get("name_bytes") if extra else None
                    wanted.append((path, bytes.fromhex(raw).decode("utf-8", "surrogateescape") if raw else path))
                yield e

        fctx = Context(art.evidence_id, art.evidence_path, ctx.host, self._parser, fstype, prefix)
        try:
            for table in volume_tables(stream, fstype, self.part, fctx, rep, ctx.batch_rows, offered):
                self._rows_n += table.num_rows
                yield table
        finally:
            stream.close()
        rep.stats.setdefault("fs_readers", {})[prefix or "/"] = FS_LIBRARIES[fstype]

    @staticmethod
    def _walk(fs, rep: ArtifactReport, prefix: str, roots: tuple[str, ...] = ("/",)) -> Iterator[tuple[str, Any, Any, str]]:
        """(path as shown, entry, lstat, path as stored) for every entry under ``roots``, depth first (iteratively:
        any depth), names sorted, links never followed; unreadable ones are counted errors (a missing root of a
        live host is skipped).  A name that is not UTF-8 is shown with ``\\xNN`` for each such byte
        (:func:`collectors.base.shown_name`); as stored, it holds them as surrogates (``surrogateescape``).

        A Velociraptor collection folder stores names URL-encoded (``%2Ebash_history``, ``C%3A``,
        ``Sysmon%254Operational.evtx``): they are looked up as stored and reported decoded, as dissect
        does for the zip form."""
        shown = _decoder(fs)
        stack: list[tuple[str, Any]] = []
        for r in reversed(roots):
            if r == "/":
                stack.append((r, None))
                continue
            try:
                e = fs.get(r)
                st = _lstat(e)
            except Exception:
                continue
            yield r, e, st, r
            if _stat.S_ISDIR(st.st_mode):
                stack.append((r, e))
        while stack:
            d, folder = stack.pop()
            try:
                folder = folder if folder is not None else fs.get(d)
                names = sorted(folder.listdir())
            except Exception as exc:
                rep.errors.append(RecordError(shown_name(f"{prefix}{d}"), "unreadable", shown_name(f"cannot list directory: {exc}")))
                continue
            subdirs = []
            for name in names:
                if name in (".", ".."):
                    continue
                p = d.rstrip("/") + "/" + name
                try:
                    e = _child(fs, folder, name, p)
                    st = _lstat(e)
                except Exception as exc:
                    rep.errors.append(RecordError(shown_name(f"{prefix}{p}"), "unreadable", shown_name(f"cannot stat: {exc}")))
                    continue
                q = shown(p)
                yield shown_name(q), e, st, q
                if _stat.S_ISDIR(st.st_mode):
                    subdirs.append((p, e))
            stack.extend(reversed(subdirs))

    def _fs_rows(self, art: Artifact, host: str | None, fstype: str, inner: str, entry, st,
                 extra: dict[str, Any] | None = None) -> int:
        return fs_rows(self._rows, self.report(art), art, host, fstype, inner, entry, st, self._parser, extra)

    def _copy(self, rep: ArtifactReport, ctx: _Reading, entry, inner: str, raw_inner: str,
              packed: _Packed | None) -> tuple[Path, str] | None:
        """A private read-only copy of one file of the image, and its SHA-256 (its name: the file's, made safe)."""
        self._copies += 1
        name = _file_name(raw_inner.rsplit("!", 1)[-1].rsplit("/", 1)[-1]) or "file"
        dest = Path(ctx.tmp) / f"{self._copies:06d}" / name
        digests = _copy_out(rep, entry, inner, dest, [hashlib.sha256()], ctx, packed)
        return None if digests is None else (dest, digests[0])

    def _gather(self, art: Artifact, rep: ArtifactReport, ctx: _Reading, entry, inner: str, raw_inner: str, st,
                packed: _Packed | None) -> tuple[Path, str] | None:
        """Copy one file of the evidence to ``gather_dir/<evidence_id>/<path inside>`` (:func:`_stored_name`),
        read-only, hashed, with its path and times recorded in ``facts.gathered``; the copy is also what the log
        collectors read."""
        rel = _stored_name(raw_inner, ctx.stored, ctx.stored_dirs)
        dest = self.gather_dir / art.evidence_id / rel
        digests = _copy_out(rep, entry, inner, dest, [hashlib.sha256(), hashlib.md5()], ctx, packed)
        if digests is None:
            return None
        times = {k: iso_ns(v) if (v := getattr(st, f"st_{k}_ns", None)) else None
                 for k in ("mtime", "atime", "ctime", "birthtime")}
        rep.facts.setdefault("gathered", []).append(
            {"path": inner, "stored_as": f"{GATHERED_DIR}/{art.evidence_id}/{rel}", "sha256": digests[0],
             "md5": digests[1], "size": os.path.getsize(dest), **times})
        return dest, digests[0]

    def _inner(self, a: Artifact, cls: type[Collector], batch_rows: int) -> Iterator[pa.Table]:
        """Hand one copied log file to the collector that knows it; its report is kept under its own path."""
        sub = self._subs.get(cls.name)
        if sub is None:
            sub = self._subs[cls.name] = cls(threads=self.threads)
        self.inner[a.key] = a
        try:
            yield from sub.collect(a, batch_rows=batch_rows)
            # a sub-collector may keep rows of this copy buffered; flush now, the copy goes away with tmp
            yield from sub.finish()
        except Exception as exc:  # a corrupt file skips that file, not the image
            sub.report(a).errors.append(RecordError(None, "file_failed", shown_name(f"{type(exc).__name__}: {exc}")))
        self.reports[a.key] = sub.report(a)
        self.reports[a.key].collector = cls.name


def fs_rows(rows, rep: ArtifactReport, art: Artifact, host: str | None, fstype: str, inner: str, entry, st, parser: str,
            extra: dict[str, Any] | None = None) -> int:
    """File-system timeline rows of one entry: one per time kind (and per NTFS attribute), ``source`` FILE,
    ``artifact`` fs:<type>, ``attrs`` its inode, size, mode, owner, MACB and ``extra`` (a link's target...)."""
    kinds: list[tuple[str, list[tuple[str, str, int]]]] = []
    ntfs = getattr(entry, "entry", None) if fstype == "ntfs" else None
    if ntfs is not None:
        try:
            from dissect.ntfs.c_ntfs import ATTRIBUTE_TYPE_CODE as A

            for code, label in ((A.STANDARD_INFORMATION, "$SI"), (A.FILE_NAME, "$FN")):
                for attr in ntfs.attributes[code][:1]:
                    kinds.append((label, [(mac, desc, getattr(attr, a)) for a, mac, desc in _NTFS_KINDS]))
        except Exception:
            kinds = []
    if not kinds:
        kinds.append(("", [(mac, desc, getattr(st, a, None)) for a, mac, desc in _TIME_KINDS]))
    mode = _stat.filemode(st.st_mode)
    size = st.st_size
    uid, gid = st.st_uid, st.st_gid
    raw = getattr(getattr(entry, "entry", None), "inode", None) if fstype == "ext" else None
    if raw is not None and uid is not None:  # dissect's stat drops the high 16 bits of ext owner ids
        uid |= (getattr(raw, "i_uid_high", 0) or 0) << 16
        gid |= (getattr(raw, "i_gid_high", 0) or 0) << 16
    link = f" -> {extra['link_target']}" if extra and extra.get("link_target") is not None else ""
    n = 0
    for label, times in kinds:
        art_name = f"fs:{fstype}" + (f":{label}" if label else "")
        present = [(mac, desc, ns) for mac, desc, ns in times if ns]
        bad = [(mac, ns) for mac, _, ns in present if not _NS_MIN <= ns <= _NS_MAX]
        if bad:  # a time no clock could hold (a wiped or crafted inode): kept in the warning, not as a row
            rep.warn("bad_time", f"{inner}: {label or 'inode'} time(s) out of range {bad}", inner)
            present = [p for p in present if _NS_MIN <= p[2] <= _NS_MAX]
        for mac, desc, ns in present:
            macb = "".join(m if any(m == x and ns == y for x, _, y in present) else "." for m in "MACB")
            attrs = {"inode": st.st_ino, "size": size, "mode": mode, "uid": uid, "gid": gid,
                     "fs": fstype, "macb": macb, "times_from": label or "inode", **(extra or {})}
            rows.add(
                timestamp=ns, timestamp_desc=desc, host=host, source="FILE", artifact=art_name, path=inner,
                message=f"{macb} {label + ' ' if label else ''}{inner}{link} ({mode}, {size} bytes)",
                attrs=orjson.dumps(attrs).decode(), tags=[], tz_source=TZ_SOURCE_UTC,
                evidence_id=art.evidence_id, evidence_path=art.evidence_path,
                record_ref=f"{inner} inode={st.st_ino}", parser=parser,
                event_hash=event_hash("FILE", art.evidence_id, inner, st.st_ino, label, mac, ns),
            )
            n += 1
    return n


def link_leaves(link: str | os.PathLike, root: str) -> str | None:
    """Where this machine would take a symbolic link of a folder given as evidence, when that is outside the
    folder's real ``root`` (``os.path.realpath``: the link, and any link it leads through, resolved here, not
    opened); None when it stays inside (or dangles inside)."""
    real = os.path.realpath(link)
    return None if real == root or real.startswith(root.rstrip("/") + "/") else real


def _host_root(fs) -> str | None:
    """The real root of a folder of this machine read as a file system (an OS tree, a triage folder), else None."""
    base = getattr(fs, "base_path", None)
    return os.path.realpath(base) if base is not None and type(fs).__name__.endswith("DirectoryFilesystem") else None


def _link_attrs(rep: ArtifactReport, entry, inner: str, st, host_root: str | None) -> dict[str, Any]:
    """A symbolic link's target, ``link_target`` (never followed here: dissect resolves it inside the evidence, as
    the evidence's own system would), a tar hard link's, ``hardlink_to``; in a folder of this machine, a link
    that would lead out of it here is a warning.  {} for any other entry."""
    if not _stat.S_ISLNK(st.st_mode):
        info = getattr(entry, "entry", None)
        return {"hardlink_to": shown_name(info.linkname)} if isinstance(info, tarfile.TarInfo) and info.islnk() else {}
    target = _link_target(entry)
    if target is None:
        return {}
    out: dict[str, Any] = {"link_target": shown_name(target)}
    if (raw := name_bytes(target)) is not None:
        out["link_target_bytes"] = raw
    host_path = getattr(entry, "entry", None)
    if host_root is not None and isinstance(host_path, os.PathLike):
        leaves = link_leaves(host_path, host_root)
        if leaves is not None:
            out["leads_outside"] = True
            rep.warn("link_outside_evidence", f"{inner} -> {shown_name(target)}: on this machine the link leads out of "
                                              f"the evidence ({shown_name(leaves)}); not followed", inner)
    return out


def _link_target(entry) -> str | None:
    """The target a link stores (a zip keeps it as the member's content)."""
    try:
        return entry.readlink()
    except Exception:
        pass
    if isinstance(getattr(entry, "entry", None), zipfile.ZipInfo):
        try:
            with entry.open() as fh:
                return fh.read(4096).decode("utf-8", "surrogateescape")
        except Exception:
            return None
    return None


def _layout(t) -> str | None:
    """The triage layout dissect read an archive with (its loader: acquire, UAC, Velociraptor...); None for a
    plain tar or zip (or none opened)."""
    loader = getattr(t, "_loader", None)
    if loader is None:
        return None
    sub = getattr(loader, "subloader", None)
    if type(loader).__name__ in ("TarLoader", "ZipLoader"):
        return None if sub is None or type(sub).__name__.startswith("Generic") else type(sub).__name__
    return type(loader).__name__


def _metafile_ntfs(t, fs) -> bool:
    """The NTFS file system dissect builds from a triage collection's loose ``$MFT`` (and ``$J``, ``$Secure:$SDS``):
    no volume, names without contents.  Not walked: the loose files are read themselves (the ``mft`` and
    ``usnjrnl`` collectors), as in a collection without it."""
    return not t.disks and getattr(fs, "__type__", None) == "ntfs" and getattr(fs, "volume", None) is None


def _user_hives(t, rep: ArtifactReport) -> None:
    """Map the ``NTUSER.DAT`` of each ``Users/<name>/`` folder that dissect's registry did not load: it finds user
    hives through the accounts the SOFTWARE and SYSTEM hives list, and a triage collection may lack one of them
    (or the account).  Each is mapped at ``HKEY_USERS\\<name>`` for the user ``<name>``, so the HKCU artifacts
    (Run keys, UserAssist...) of every collected user are read.  The names mapped: ``facts.user_hives_by_folder``."""
    try:
        reg = t.registry
    except Exception:
        return
    try:
        reg.key("HKLM\\SYSTEM")
    except Exception:  # no SYSTEM hive collected: dissect's every multi-key lookup asks it for the control sets
        from dissect.target.helpers.regutil import VirtualHive

        reg._map_hive("HKEY_LOCAL_MACHINE\\SYSTEM", VirtualHive())
        reg.key.cache_clear()
    try:
        reg.load_user_hives()
    except Exception as exc:  # the accounts are not readable (no SYSTEM hive): the folders are all there is
        log.info("user hives not loaded through the accounts: %s", exc)
        reg._users_loaded = True  # dissect would otherwise retry (and fail) on every HKCU lookup
    try:
        loaded = {_volume_path(str(p)) for _, _, p in reg.iterhives()}
        homes = list(t.fs.path("sysvol/Users").iterdir())
    except Exception:
        return
    from dissect.target.helpers.record import WindowsUserRecord
    from dissect.target.helpers.regutil import RegfHive
    from dissect.target.plugins.general.users import UserDetails

    for home in sorted(homes, key=str):
        if home.name.lower() in _TEMPLATE_PROFILES:
            continue
        hive = next((p for p in _children(home) if p.name.lower() == "ntuser.dat"), None)
        if hive is None or _volume_path(str(hive)) in loaded:
            continue
        try:
            if not hive.is_file() or hive.stat().st_size == 0:
                continue
            regf = RegfHive(hive)
            reg.add_hive(home.name, f"HKEY_USERS\\{home.name}", regf, hive)
            reg._hives_to_users[regf] = UserDetails(WindowsUserRecord(sid=None, name=home.name, home=str(home)), home)
        except Exception as exc:
            rep.warn("user_hive_unreadable", f"{home}/NTUSER.DAT: not read as a registry hive: {type(exc).__name__}: {exc}")
            continue
        rep.facts.setdefault("user_hives_by_folder", []).append(home.name)


# profile folders that are no user's (the template new profiles are copied from, junctions to it and to Public)
_TEMPLATE_PROFILES = frozenset(("default", "default user", "all users", "public"))


def _volume_path(p: str) -> str:
    """A system-volume path as dissect writes it ("sysvol/Users/x", "C:/Users/x", "C:\\Users\\x"), to compare."""
    p = p.replace("\\", "/").lower().lstrip("/")
    head, _, rest = p.partition("/")
    return rest if head == "sysvol" or (len(head) == 2 and head[1] == ":") else p


def _children(p) -> list:
    try:
        return list(p.iterdir()) if p.is_dir() else []
    except Exception:
        return []


def _member_offset(entry) -> int | None:
    """The offset of the tar or zip member behind a dissect entry (its identity in the archive), else None."""
    for e in (entry, getattr(entry, "top", None), *(getattr(entry, "entries", None) or ())):
        info = getattr(e, "entry", None)
        if isinstance(info, tarfile.TarInfo):
            return info.offset
        if isinstance(info, zipfile.ZipInfo):
            return info.header_offset
    return None


def _no_content(entry) -> bool:
    """A tar member dissect shows as a file that holds no content (a device, a fifo): its rows only."""
    info = getattr(entry, "entry", None)
    return isinstance(info, tarfile.TarInfo) and not (info.isreg() or info.islnk())


def _missing_link_target(entry) -> str | None:
    """The name a tar hard link points to when the archive does not hold it (None otherwise)."""
    info = getattr(entry, "entry", None)
    if not isinstance(info, tarfile.TarInfo) or not info.islnk():
        return None
    tar = entry.listing.archive if isinstance(entry, _Member) else getattr(getattr(entry, "fs", None), "tar", None)
    if not isinstance(tar, tarfile.TarFile):
        return None
    try:
        tar.getmember(info.linkname)
    except KeyError:
        return info.linkname
    return None


def archive_kind(path: str) -> str | None:
    """"tar" (any compression) or "zip" when ``path`` is a regular file Python's own readers open and find a
    member in (a disk image whose first sector is zeros is an empty tar to ``tarfile``), else None."""
    if not os.path.isfile(path):
        return None
    try:
        with os.fdopen(open_evidence(path), "rb") as fh:
            if zipfile.is_zipfile(fh):
                fh.seek(0)
                return "zip" if zipfile.ZipFile(fh).infolist() else None
            fh.seek(0)
            with tarfile.open(fileobj=fh, mode="r:*") as tar:
                return "tar" if tar.next() is not None else None
    except Exception:
        return None


class _Listing:
    """The members of a tar (any compression) or zip archive from its own list: the archive object dissect opened
    when it keeps one (no second pass over a compressed tar), else the file opened read-only."""

    def __init__(self, kind: str, archive, members: list, fh=None, damaged: str | None = None):
        self.kind, self.archive, self.members, self._fh, self.damaged = kind, archive, members, fh, damaged

    @classmethod
    def open(cls, t, path: str) -> _Listing | None:
        for fs in (list(t.filesystems) if t is not None else []):
            if isinstance(a := getattr(fs, "tar", None), tarfile.TarFile):
                return cls("tar", a, a.getmembers())
            if isinstance(a := getattr(fs, "zip", None), zipfile.ZipFile):
                return cls("zip", a, a.infolist())
        kind = archive_kind(path)
        if kind is None:
            return None
        fh = os.fdopen(open_evidence(path), "rb")
        try:
            if kind == "zip":
                z = zipfile.ZipFile(fh)
                return cls("zip", z, z.infolist(), fh)
            tar = tarfile.open(fileobj=fh, mode="r:*")
            members, damaged = [], None
            try:
                for m in tar:
                    members.append(m)
            except Exception as exc:  # a damaged or cut archive: the members before
                damaged = f"{type(exc).__name__}: {exc}"
            return cls("tar", tar, members, fh, damaged)
        except Exception:
            fh.close()
            raise

    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()

    def offset(self, info) -> int:
        return info.offset if self.kind == "tar" else info.header_offset

    def name(self, info) -> str:
        return info.name if self.kind == "tar" else info.filename

    def is_dir(self, info) -> bool:
        return info.isdir() if self.kind == "tar" else info.is_dir()


class _Member:
    """One member of a :class:`_Listing`, with what the walk needs of an entry (``open``, ``readlink``, ``entry``)."""

    def __init__(self, listing: _Listing, info):
        self.listing, self.entry = listing, info

    def open(self):
        if self.listing.kind == "zip":
            return self.listing.archive.open(self.entry)
        fh = self.listing.archive.extractfile(self.entry)
        if fh is None:
            raise OSError(f"member {self.entry.name!r} holds no file content")
        return fh

    def readlink(self) -> str:
        if self.listing.kind == "tar":
            if not self.entry.issym():
                raise OSError("not a symbolic link")
            return self.entry.linkname
        raise OSError("zip link targets are read from the content")

    def lstat(self):
        """The member's stat, as dissect gives one for a mapped member (zip times are UTC as stored)."""
        i = self.entry
        if self.listing.kind == "tar":
            kind = (_stat.S_IFLNK if i.issym() else _stat.S_IFDIR if i.isdir() else _stat.S_IFCHR if i.ischr()
                    else _stat.S_IFBLK if i.isblk() else _stat.S_IFIFO if i.isfifo() else _stat.S_IFREG)
            mtime = int(i.mtime * 1_000_000_000) if i.mtime else None
            return SimpleNamespace(st_mode=kind | (i.mode & 0o7777), st_size=i.size, st_ino=i.offset, st_uid=i.uid,
                                   st_gid=i.gid, st_mtime_ns=mtime, st_atime_ns=None, st_ctime_ns=None, st_birthtime_ns=None)
        import datetime as _dt

        mode = i.external_attr >> 16
        if not _stat.S_IFMT(mode):
            mode |= _stat.S_IFDIR if i.is_dir() else _stat.S_IFREG
        try:
            mtime = int(_dt.datetime(*i.date_time, tzinfo=_dt.timezone.utc).timestamp()) * 1_000_000_000
        except ValueError:
            mtime = None
        return SimpleNamespace(st_mode=mode, st_size=i.file_size, st_ino=i.header_offset, st_uid=None, st_gid=None,
                               st_mtime_ns=mtime, st_atime_ns=None, st_ctime_ns=None, st_birthtime_ns=None)


def _member_path(stored: str) -> tuple[str, bool]:
    """(safe path, whether the name climbs out): a member's stored name as a path inside the archive -- absolute
    made relative to it, empty and "." parts dropped, each ".." kept as the part "%2E%2E" (never a step up)."""
    parts = [p for p in stored.split("/") if p not in ("", ".")]
    climbs = ".." in parts
    return "/" + "/".join("%2E%2E" if p == ".." else p for p in parts), climbs


# Characters a file name the case writes must not hold (controls, the path separators of any system, those Windows
# refuses) and "%" itself, so that the spelling is reversible.
_UNSAFE = re.compile("[\\x00-\\x1f\\x7f%:\\\\*?\"<>|\\ud800-\\udfff]")
_DRIVE = re.compile(r"^([A-Za-z]|fs\d+):$")
_NAME_MAX = 200  # bytes of a file name the case writes (file systems allow 255)


def _pct(m: re.Match) -> str:
    c = m.group()
    if "\udc80" <= c <= "\udcff":
        return f"%{ord(c) - 0xDC00:02X}"
    return "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))


def _file_name(name: str) -> str:
    """One component of a path inside the evidence as a file name the case can hold on any system: undecodable
    bytes, controls, "%" and the characters Windows refuses percent-encoded, "." and ".." spelled "%2E" and
    "%2E%2E"; one longer than 200 bytes keeps its start and extension around a hash of the whole name."""
    if name in (".", ".."):
        return name.replace(".", "%2E")
    safe = _UNSAFE.sub(_pct, name)
    if len(safe.encode()) <= _NAME_MAX:
        return safe
    stem, dot, ext = safe.rpartition(".")
    ext = f".{ext}" if dot and len(ext.encode()) <= 32 else ""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    head = safe.encode()[:_NAME_MAX - len(ext.encode()) - 18].decode("utf-8", "ignore")
    return f"{head}~{digest}{ext}"


def _stored_name(inner: str, files: set[str], dirs: set[str]) -> str:
    """Where --gather keeps a file, relative to its evidence item's folder: its path inside the evidence, each part
    made a safe file name (:func:`_file_name`; a leading drive letter or "fsN:" loses its colon), and distinct from
    every name taken before in ``files`` and ``dirs`` (a name taken, or a file where a folder is needed and the
    reverse, gets "~2", "~3"...).  Updates ``files`` and ``dirs``."""
    raw = [c for c in inner.split("/") if c]
    out = [c[:-1] if i == 0 and _DRIVE.match(c) else _file_name(c) for i, c in enumerate(raw)]
    for k in range(len(out) - 1):  # a folder on the way that is a file already
        base, n = out[k], 1
        while "/".join(out[:k + 1]) in files:
            n += 1
            out[k] = f"{base}~{n}"
    base, n = out[-1], 1
    while "/".join(out) in files or "/".join(out) in dirs:
        n += 1
        out[-1] = f"{base}~{n}"
    rel = "/".join(out)
    files.add(rel)
    dirs.update("/".join(out[:k]) for k in range(1, len(out)))
    return rel


def _child(fs, folder, name: str, path: str):
    """The entry ``name`` of the folder entry ``folder``, looked up from the folder (a lookup from the root for
    every entry makes a deep tree quadratic: a 1,000-deep ext4 folder took minutes); ``fs.get(path)`` where an
    entry cannot look up its own children."""
    try:
        return folder.get(name)
    except NotImplementedError:
        return fs.get(path)


def _opens_raw(path: str) -> bool:
    """A raw file-system image (superblock or boot sector at its start) that its C library opens."""
    fstype = sniff_file(path)
    if fstype not in FS_READERS:
        return False
    try:
        with volume_stream(os.fdopen(open_evidence(path), "rb"), own=True) as stream:
            next(iter(FS_READERS[fstype](stream, WHOLE, Counts())), None)
        return True
    except Exception:
        return False


def _volume_stream(art: Artifact, t, fs):
    """A file-like object over the volume of ``fs`` for the C libraries: the image file itself at the volume's
    offset for a raw image of one file (no Python layer between), else dissect's volume stream."""
    vol = fs.volume
    raw = len(t.disks) == 1 and type(t.disks[0]).__name__ == "RawContainer" and len(image_segments(art.fs_path)) == 1
    if raw and vol.offset is not None:
        return volume_stream(os.fdopen(open_evidence(art.fs_path), "rb"), vol.offset, vol.size, own=True)
    return volume_stream(vol, 0, vol.size)


def _velociraptor_form(fs) -> str | None:
    """"dir" or "zip" when ``fs`` (or a layer of it: the accessors of one drive, ``auto`` and ``ntfs``, are layered
    into one file system) is a Velociraptor collection's upload tree, else None."""
    kinds = {type(x).__name__ for x in (fs, *(getattr(fs, "layers", None) or ()))}
    if "VelociraptorDirectoryFilesystem" in kinds:
        return "dir"
    if "VelociraptorZipFilesystem" in kinds:
        return "zip"
    return None


_PLUGIN_READ = frozenset(("prefetch", "amcache"))  # loose-file collectors of artifacts os_artifacts.PLUGINS reads
_RANGE_KEYS = frozenset(("file_offset", "original_offset", "file_length", "length"))


def _sparse_index(entry, st, path: str) -> bool:
    """A Velociraptor sparse-upload index (``<name>.idx``: ``{"ranges": [{"file_offset", "original_offset",
    "file_length", "length"}...]}``) in a collection's upload tree."""
    if not path.lower().endswith(".idx") or not _stat.S_ISREG(st.st_mode) or not 0 < st.st_size <= 16 << 20:
        return False
    try:
        with entry.open() as fh:
            doc = orjson.loads(fh.read(16 << 20))
    except Exception:
        return False
    ranges = doc.get("ranges") if isinstance(doc, dict) else None
    return (isinstance(ranges, list) and set(doc) <= {"ranges"}
            and all(isinstance(r, dict) and set(r) <= _RANGE_KEYS for r in ranges))


def velociraptor_name(stored: str, encoded: bool = True) -> str:
    """A path of a Velociraptor upload tree as the host named it: each part URL-decoded (``C%3A`` → ``C:``,
    ``%2Ebash_history`` → ``.bash_history``, ``%5C%5C.%5CC%3A`` → ``\\\\.\\C:``) unless ``encoded`` is False
    (dissect decoded it already), and the one ``_`` Velociraptor appends to a name ending in ``.db`` or ``_``
    (``utils.SanitizeString``: its store keeps those names for itself) taken off again."""
    from urllib.parse import unquote

    parts = stored.split("/")
    out = []
    for part in parts:
        if part.endswith("_") and part not in ("", "_"):
            part = part[:-1]
        out.append(unquote(part, errors="surrogateescape") if encoded else part)
    return "/".join(out)


def _decoder(fs):
    """How paths of ``fs`` are shown: as the host named them for a Velociraptor collection
    (:func:`velociraptor_name`), else as they are."""
    form = _velociraptor_form(fs)
    if form is None:
        return lambda p: p
    return functools.partial(velociraptor_name, encoded=form == "dir")


_VELO_NAME = re.compile(r"^Collection-(.+?)(?:-(\d{4}-\d\d-\d\dT\d\d[_:]\d\d[_:]\d\d(?:\.\d+)?(?:Z|[+-]\d\d[_:]?\d\d)?"
                        r"|\d{8,14}))?(?:\.zip)?/?$", re.I)
_HOST_KEYS = ("hostname", "fqdn", "computername", "computer_name")


def _host_in(doc: Any) -> str | None:
    """The host a Velociraptor metadata document names: ``Hostname`` (else ``Fqdn``) at its top or in its
    ``client_info`` (keys compared without case), as client_info.json and the collection contexts of the
    server's exports write them."""
    if not isinstance(doc, dict):
        return None
    for d in (doc, doc.get("client_info"), doc.get("ClientInfo")):
        if not isinstance(d, dict):
            continue
        low = {str(k).lower(): v for k, v in d.items()}
        for k in _HOST_KEYS:
            v = low.get(k)
            if isinstance(v, str) and v.strip():
                return v.strip()
    return None


def collection_host(t, name: str) -> tuple[str, str] | None:
    """(host, where it was read) for a Velociraptor offline collection whose OS does not name its host (no
    SYSTEM hive, no /etc/hostname collected): the collection's ``client_info.json`` (the ``info()`` of the host
    the collector ran on), else its ``collection_context.json``, else the name Velociraptor gave the collection,
    ``Collection-<HOST>-<time>.zip``.  None for any other target."""
    loader = getattr(t, "_loader", None)
    if "Velociraptor" not in type(loader).__name__ and "Velociraptor" not in type(getattr(loader, "subloader", None)).__name__:
        return None
    root = getattr(loader, "root", None) or getattr(getattr(loader, "subloader", None), "root", None)
    for meta in ("client_info.json", "collection_context.json"):
        try:
            raw = root.joinpath(meta).read_bytes()
        except Exception:
            continue
        docs = []
        try:
            docs = [orjson.loads(raw)]
        except orjson.JSONDecodeError:  # some builds write JSON lines
            for line in raw.splitlines():
                try:
                    docs.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
        for doc in docs:
            if (host := _host_in(doc)) is not None:
                return host, meta
    m = _VELO_NAME.match(name.rstrip("/").rsplit("/", 1)[-1].rsplit("!", 1)[-1])
    return (m.group(1), "collection name") if m and m.group(1) else None


def _zip_packed(entry) -> int | None:
    """The compressed size of a deflated/bzip2/lzma zip member behind ``entry`` (None: not one)."""
    info = getattr(entry, "entry", None)
    if isinstance(info, zipfile.ZipInfo) and info.compress_type != zipfile.ZIP_STORED:
        return info.compress_size
    return None


def _copy_out(rep: ArtifactReport, entry, inner: str, dest: Path, hashes: list, ctx: _Reading,
              packed: _Packed | None) -> list[str] | None:
    """Copy one file of the evidence to ``dest`` (read-only), feeding ``hashes``; their hex digests, or None (a counted
    error of the evidence) when it cannot be read.  Checked while copying, not after: a copy stops at
    :data:`EXTRACT_FILE_MAX`, at what the evidence item may still copy out (``ctx.budget``), and where a zip member,
    or the archive ``packed`` in all, expands beyond :data:`EXPANSION_MAX` times its packed size (past
    :data:`EXPANSION_FREE`); the bytes before the cut are kept and read, the cut is an error naming the file."""
    limits = [(EXTRACT_FILE_MAX, f"the cap of {EXTRACT_FILE_MAX} bytes per file"),
              (ctx.budget, f"the evidence item's cap of {ctx.allowance} bytes copied out in all")]
    if (zipped := _zip_packed(entry)) is not None:
        limits.append((max(EXPANSION_FREE, EXPANSION_MAX * zipped),
                       f"{EXPANSION_MAX} times its packed size of {zipped} bytes (a decompression bomb)"))
    if packed is not None:
        limits.append((max(EXPANSION_FREE, EXPANSION_MAX * packed.size) - packed.out,
                       f"{EXPANSION_MAX} times the size of the archive {packed.name} ({packed.size} bytes) "
                       f"copied out of it in all (a decompression bomb)"))
    cap, why = min(limits, key=lambda x: x[0])
    if cap <= 0:
        rep.errors.append(RecordError(inner, "extract_capped", f"{inner}: not copied out: {why} reached"))
        return None
    part = dest.with_name(dest.name + ".part")
    n, cut = 0, False
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with entry.open() as src, open(part, "wb") as out:
            while chunk := src.read(min(1 << 20, cap - n + 1)):
                if n + len(chunk) > cap:
                    chunk, cut = chunk[:cap - n], True
                for h in hashes:
                    h.update(chunk)
                out.write(chunk)
                n += len(chunk)
                if cut:
                    break
    except Exception as exc:
        try:
            part.unlink(missing_ok=True)
        except OSError:
            pass
        rep.errors.append(RecordError(inner, "unreadable", shown_name(f"cannot read file from the image: {exc}")))
        return None
    finally:
        ctx.budget -= n
        if packed is not None:
            packed.out += n
    if cut:
        rep.errors.append(RecordError(inner, "extract_capped", f"{inner}: copy stopped after {n} bytes at {why}; "
                                                               f"those {n} bytes were read, the rest of the file was not"))
    os.chmod(part, 0o444)
    os.replace(part, dest)
    return [h.hexdigest() for h in hashes]


def _lstat(e):
    """The entry's lstat; for NTFS metafiles without an unnamed data stream ($Secure, $Extend/$Quota...),
    which dissect cannot stat, the MFT record's segment number and kind (times come from $SI/$FN)."""
    try:
        return e.lstat()
    except Exception:
        rec = getattr(e, "entry", None)
        if rec is None or not hasattr(rec, "segment"):
            raise
        mode = (_stat.S_IFDIR | 0o555) if rec.is_dir() else (_stat.S_IFREG | 0o444)
        return SimpleNamespace(st_mode=mode, st_size=0, st_ino=rec.segment, st_uid=None, st_gid=None,
                               st_mtime_ns=None, st_atime_ns=None, st_ctime_ns=None, st_birthtime_ns=None)


def _is_log(path: str) -> bool:
    """Worth copying out of an image and offering to the collectors (everything else only gets file-system rows):
    under a log folder, or a name some collector of the registry wants (:meth:`Collector.wants`: an EVTX file, a
    known log, login records and shell histories wherever they lie: ``/run/utmp``, ``/var/run/utmpx``,
    ``~/.local/share/fish/fish_history``, ``PSReadLine/ConsoleHost_history.txt``)."""
    folder, _, name = path.lower().rpartition("/")
    return _log_name(name) or _log_folder(folder)


@functools.lru_cache(maxsize=1 << 16)  # asked once per file of an image: names and folders repeat
def _log_name(name: str) -> bool:
    from collectors import REGISTRY  # the registry imports this module

    return any(cls.wants(name) for cls in REGISTRY)


@functools.lru_cache(maxsize=1 << 14)
def _log_folder(folder: str) -> bool:
    return any(d in ("log", "logs", "winevt", "logfiles") for d in folder.split("/"))
