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
import struct
import tempfile
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import orjson
import pyarrow as pa

from collectors.base import Artifact, ArtifactReport, Collector, RecordError, read_magic
from collectors import sevenzip
from collectors.filesystem import FS_LIBRARIES, FS_READERS, WHOLE, Context, Counts, Part, sniff_file, volume_stream, volume_tables
from collectors.os_artifacts import plugin_rows
from collectors.shell_history import history_kind
from collectors.utmp import login_file_kind
from timeline.custody import open_evidence
from timeline.errors import EvidenceNotFound, UnknownFormat
from timeline.schema import TZ_ANALYST, TZ_EVIDENCE_CONFIG, TZ_SOURCE_UTC, event_hash, iso_ns

__all__ = ["GATHER", "TargetCollector", "ewf_media_hashes", "image_segments", "is_container"]

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

GATHERED_DIR = "gathered"  # folder of the case holding gathered artifacts, one sub-folder per evidence item
LIVE = "local:/"  # evidence_path of a live host's root (``forensics collect local``)
LIVE_ROOTS = ("/var/log", "/etc/hostname", "/etc/timezone", "/etc/localtime", "/etc/crontab", "/etc/cron.d",
              "/var/spool/cron", "/etc/systemd/system", "/run/utmp", "/var/run/utmp")
_HOME_FILES = (".bash_history", ".zsh_history", ".sh_history", ".history", ".local/share/fish/fish_history",
               ".ssh/authorized_keys")


def _live_roots(t) -> tuple[str, ...]:
    """Where a live host keeps what we read: log folders, autostart configuration, each user's histories."""
    homes = ["/root"]
    try:
        homes += [f"/home/{n}" for n in sorted(t.fs.get("/home").listdir())]
    except Exception:
        pass
    return LIVE_ROOTS + tuple(f"{h}/{f}" for h in homes for f in _HOME_FILES)

# Files inside an image handed to the log collectors (everything else only gets file-system rows).
_LOG_NAMES = {".bash_history", ".zsh_history", ".history", ".sh_history", "fish_history", "wtmp", "btmp", "utmp",
              "lastlog", "consolehost_history.txt"}

_NS_MIN, _NS_MAX = -(2**63) + 1, 2**63 - 1  # what Arrow's timestamp[ns] holds (years 1677..2262)
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
    """A disk image or archive (by name or magic), a raw file-system image (by its superblock or boot sector);
    plain compressed logs (``syslog.gz``) are not."""
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
        return Target.open(path)
    except Exception as exc:
        raise UnknownFormat(f"{path}: cannot open as a disk image or archive (tried: {FORMATS}): "
                            f"{type(exc).__name__}: {exc}") from exc


# Windows zone names map to IANA through CLDR's windowsZones, which keeps some old names (still valid
# IANA links); the current name is reported
_CLDR_LEGACY = {"Asia/Calcutta": "Asia/Kolkata", "Asia/Katmandu": "Asia/Kathmandu", "Asia/Saigon": "Asia/Ho_Chi_Minh",
                "Asia/Rangoon": "Asia/Yangon", "Europe/Kiev": "Europe/Kyiv", "Atlantic/Faeroe": "Atlantic/Faroe",
                "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
                "America/Indianapolis": "America/Indiana/Indianapolis", "Pacific/Truk": "Pacific/Chuuk",
                "Pacific/Ponape": "Pacific/Pohnpei", "Asia/Ulan_Bator": "Asia/Ulaanbaatar"}


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


class TargetCollector(Collector):
    name = "target"
    source = "FILE"
    engines = ("dissect.target",)
    parser = ("dissect.target", "dissect.target")

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
        a differencing disk without its parent, naming the parent)."""
        parent = differencing_parent(Path(path))
        if parent is not None and not parent.exists():
            raise EvidenceNotFound(f"{path}: a differencing disk (snapshot/checkpoint) whose parent {parent} is not "
                                   "there: every sector not written since the snapshot is read from the parent, so "
                                   "the parent must be collected with it (beside it, as the image names it)")
        if sevenzip.is_7z(path):  # dissect.target opens a 7z but sees no files in it: collectors.sevenzip reads it
            return sevenzip.check(path)
        if _opens_raw(path):  # a raw file-system image its C library opens: no need to load dissect here
            return
        t = _open(path)
        if not list(t.filesystems):
            raise UnknownFormat(f"{path}: no file system found in it (tried: {FORMATS}; "
                                f"{len(t.volumes)} volume(s), none with a known file system)")

    # -----------------------------------------------------------------------------------------

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        rep = self.report(artifact)
        live = artifact.evidence_path == LIVE
        if sevenzip.is_7z(artifact.fs_path):
            tz = artifact.tz if artifact.tz_source == TZ_ANALYST else None
            rep.facts = {"live": False, "host": None, "os": None, "archive": f"7z (py7zr {version('py7zr')})", "tz": tz,
                         "tz_source": TZ_ANALYST if tz else None, "tz_from": None}
            self._rows_n = 0
            with tempfile.TemporaryDirectory(prefix="forensics-extract-") as tmp:
                yield from self._seven_zip(artifact, rep, artifact.fs_path, "", tz, rep.facts["tz_source"], tmp,
                                           batch_rows, depth=0)
            rep.stats["rows"] = self._rows_n
            return
        # a live host: only where logs, histories and autostart configuration live (not /proc, not every file)
        t = _open(artifact.fs_path)
        self._roots = _live_roots(t) if live else ("/",)
        host, tz, where = _host_and_zone(t)
        if artifact.tz and artifact.tz_source == TZ_ANALYST:  # the analyst's --tz wins over the evidence
            tz, tz_source = artifact.tz, TZ_ANALYST
        elif tz:
            tz_source = TZ_EVIDENCE_CONFIG
        else:  # the case's zone, given by the analyst at creation, or nothing (UTC assumed, per row)
            tz, tz_source = artifact.tz, (TZ_ANALYST if artifact.tz else None)
        rep.facts = {"live": live, "host": host, "os": t.os, "tz": tz, "tz_source": tz_source, "tz_from": where if tz_source == TZ_EVIDENCE_CONFIG else None}
        first = self.part.k == 0  # one part of a split image reads everything but its share of the file names
        if first:
            self._verify_ewf(artifact, rep)
        self._rows_n = 0
        with tempfile.TemporaryDirectory(prefix="forensics-extract-") as tmp:
            yield from self._target(artifact, rep, t, "", host, tz, tz_source, tmp, batch_rows, depth=0)
        if first and t.os not in ("default", None):
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

    def _target(self, art: Artifact, rep: ArtifactReport, t, outer: str, host, tz, tz_source, tmp: str,
                batch_rows: int, depth: int) -> Iterator[pa.Table]:
        """Walk every file system of an opened target (an image, or an archive found inside one)."""
        from collectors import collector_for

        filesystems = list(t.filesystems)
        if not filesystems:
            raise UnknownFormat(f"{art.fs_path if not outer else outer}: no file system found (tried: {FORMATS})")
        first = self.part.k == 0
        for v in t.volumes if first else ():
            if getattr(v, "fs", None) is None and not any(getattr(f, "volume", None) is v for f in filesystems):
                rep.warn("no_filesystem", f"{outer}volume {v.name or v.number} at offset {v.offset} ({v.size} bytes): "
                                          "no file system recognised")
        rep.stats.setdefault("filesystems", []).extend(f"{outer}{getattr(f, '__type__', '?')}" for f in filesystems)
        rows = self._rows
        multi = len(filesystems) > 1
        archive = not t.disks  # a tar/zip collection: every file is offered to the log collectors
        mounts = getattr(t.fs, "mounts", {}) or {}
        for i, fs in enumerate(filesystems):
            names = [m for m, f in mounts.items() if f is fs]
            drive = next((m for m in names if len(m) == 2 and m[1] == ":"), None)
            # the drive letter where the OS is Windows ("c:/Windows/..."), else "fsN:" when there are several
            prefix = outer + (drive if drive else f"fs{i}:" if multi and "/" not in names else "")
            fstype = getattr(fs, "__type__", type(fs).__name__)
            wanted: list[str] | None = None
            if not archive and self._roots == ("/",) and fstype in FS_READERS:
                wanted = []
                try:
                    yield from self._c_filesystem(art, rep, t, fs, fstype, prefix, host, batch_rows, wanted)
                except Exception as exc:  # the C library refuses it: dissect reads it (the same rows, deduplicated)
                    rep.warn("fs_reader_fallback", f"{prefix or '/'} ({fstype}): {FS_LIBRARIES[fstype]} "
                                                   f"failed ({type(exc).__name__}: {exc}); read with dissect instead")
                    wanted = None
            if wanted is None and not first:  # a file system dissect reads: part 0 reads it whole
                continue
            if wanted is None:
                listing = ((path, entry, st, True) for path, entry, st in self._walk(fs, rep, prefix, self._roots))
            else:
                listing = ((path, entry, st, False) for path, entry, st in self._entries(fs, rep, prefix, wanted))
            for path, entry, st, rows_of_it in listing:
                inner = f"{prefix}{path}"
                if rows_of_it:
                    self._rows_n += self._fs_rows(art, host, fstype, inner, entry, st)
                    if len(rows) >= batch_rows:
                        yield rows.to_table()
                if not _stat.S_ISREG(st.st_mode):
                    continue
                log_file = _is_log(path)
                if self.gather_dir is not None and (log_file or GATHER.search(path.lower())):
                    copy = self._gather(art, rep, entry, inner, st)
                elif archive or log_file:
                    copy = self._copy(rep, entry, inner, tmp)
                else:
                    continue
                if copy is None or not (archive or log_file):
                    continue
                dest, sha = copy
                cls = collector_for(str(dest))
                if cls is TargetCollector and depth < 3:  # an archive inside: its files, as "outer!inner"
                    if sevenzip.is_7z(str(dest)):
                        yield from self._seven_zip(art, rep, str(dest), f"{inner}!", tz, tz_source, tmp, batch_rows,
                                                   depth + 1, host)
                        continue
                    try:
                        nested = _open(str(dest))
                        yield from self._target(art, rep, nested, f"{inner}!", host, tz, tz_source, tmp, batch_rows, depth + 1)
                    except UnknownFormat as exc:
                        rep.warn("unreadable_archive", str(exc), inner)
                    continue
                if cls is None or cls is TargetCollector:
                    rep.stats["logs_unrecognised"] = rep.stats.get("logs_unrecognised", 0) + 1
                    continue
                a = Artifact(art.evidence_id, inner, str(dest), sha, st.st_size, host=host, tz=tz,
                             tz_source=tz_source, mtime_ns=st.st_mtime_ns)
                yield from self._inner(a, cls, batch_rows)

    def _c_filesystem(self, art: Artifact, rep: ArtifactReport, t, fs, fstype: str, prefix: str, host: str | None,
                      batch_rows: int, wanted: list[str]) -> Iterator[pa.Table]:
        """The file-system timeline of ``fs`` read by a C library (:mod:`collectors.filesystem`), deleted and
        orphan names included; the allocated regular files worth reading (logs, gathered artifacts) are
        appended to ``wanted``, to be read through dissect afterwards."""
        gather = self.gather_dir is not None
        stream = _volume_stream(art, t, fs)

        def offered(entries):
            for e in entries:
                path, extra = e[0], e[-1]
                if (_stat.S_ISREG(e[3]) and e[6] in ("", "$SI") and not (extra and extra.get("deleted"))
                        and (_is_log(path) or (gather and GATHER.search(path.lower())))):
                    wanted.append(path)
                yield e

        ctx = Context(art.evidence_id, art.evidence_path, host, self._parser, fstype, prefix)
        try:
            for table in volume_tables(stream, fstype, self.part, ctx, rep, batch_rows, offered):
                self._rows_n += table.num_rows
                yield table
        finally:
            stream.close()
        rep.stats.setdefault("fs_readers", {})[prefix or "/"] = FS_LIBRARIES[fstype]

    @staticmethod
    def _entries(fs, rep: ArtifactReport, prefix: str, paths: list[str]) -> Iterator[tuple[str, Any, Any]]:
        """(path, entry, lstat) through dissect of the files a C reader listed (unreadable ones are counted)."""
        for p in dict.fromkeys(paths):
            try:
                e = fs.get(p)
                yield p, e, _lstat(e)
            except Exception as exc:
                rep.errors.append(RecordError(f"{prefix}{p}", "unreadable", f"cannot stat: {exc}"))

    def _seven_zip(self, art: Artifact, rep: ArtifactReport, path: str, outer: str, tz, tz_source, tmp: str,
                   batch_rows: int, depth: int, host: str | None = None) -> Iterator[pa.Table]:
        """Every member of a 7z archive (``collectors.sevenzip``: one member at a time in ``tmp``), as a tar/zip
        collection's: file-system rows (``fs:7z``, the times 7z stores) and each file handed to the collector
        that recognises it, as ``outer/member``."""
        from collectors import collector_for

        problems: list[sevenzip.Problem] = []
        rows = self._rows
        n_members = 0
        for m in sevenzip.members(path, tmp, problems):
            n_members += 1
            inner = f"{outer}/{m.name.lstrip('/')}"
            st = SimpleNamespace(st_mode=(_stat.S_IFDIR | 0o555) if m.is_dir else (_stat.S_IFREG | 0o444),
                                 st_size=m.size, st_ino=m.index, st_uid=None, st_gid=None, st_mtime_ns=m.mtime_ns,
                                 st_atime_ns=m.atime_ns, st_ctime_ns=None, st_birthtime_ns=m.ctime_ns)
            self._rows_n += self._fs_rows(art, host, "7z", inner, None, st)
            if len(rows) >= batch_rows:
                yield rows.to_table()
            if m.is_dir:
                continue
            dest, sha = Path(m.path), m.sha256
            if self.gather_dir is not None:
                copy = self._gather(art, rep, SimpleNamespace(open=lambda p=m.path: open(p, "rb")), inner, st)
                if copy is None:
                    continue
                dest, sha = copy
            cls = collector_for(str(dest))
            if cls is TargetCollector and depth < 3:  # an archive inside
                if sevenzip.is_7z(str(dest)):
                    yield from self._seven_zip(art, rep, str(dest), f"{inner}!", tz, tz_source, tmp, batch_rows,
                                               depth + 1, host)
                    continue
                try:
                    yield from self._target(art, rep, _open(str(dest)), f"{inner}!", host, tz, tz_source, tmp,
                                            batch_rows, depth + 1)
                except UnknownFormat as exc:
                    rep.warn("unreadable_archive", str(exc), inner)
                continue
            if cls is None or cls is TargetCollector:
                rep.stats["logs_unrecognised"] = rep.stats.get("logs_unrecognised", 0) + 1
                continue
            a = Artifact(art.evidence_id, inner, str(dest), sha, m.size, host=host, tz=tz, tz_source=tz_source,
                         mtime_ns=m.mtime_ns)
            yield from self._inner(a, cls, batch_rows)
        rep.stats["7z_members"] = rep.stats.get("7z_members", 0) + n_members
        for p in problems:
            where = f"{outer}/{p.name.lstrip('/')}" if p.name else (outer.rstrip("!") or art.evidence_path)
            rep.errors.append(RecordError(where, p.kind, p.message))

    @staticmethod
    def _walk(fs, rep: ArtifactReport, prefix: str, roots: tuple[str, ...] = ("/",)) -> Iterator[tuple[str, Any, Any]]:
        """(path, entry, lstat) for every entry under ``roots``, depth first, names sorted; unreadable ones are
        counted errors (a missing root of a live host is skipped).

        A Velociraptor collection folder stores names URL-encoded (``%2Ebash_history``, ``C%3A``,
        ``Sysmon%254Operational.evtx``): they are looked up as stored and reported decoded, as dissect
        does for the zip form."""
        shown = _decoder(fs)
        stack = []
        for r in reversed(roots):
            if r == "/":
                stack.append(r)
                continue
            try:
                e = fs.get(r)
                st = _lstat(e)
            except Exception:
                continue
            yield r, e, st
            if _stat.S_ISDIR(st.st_mode):
                stack.append(r)
        while stack:
            d = stack.pop()
            try:
                names = sorted(fs.get(d).listdir())
            except Exception as exc:
                rep.errors.append(RecordError(f"{prefix}{d}", "unreadable", f"cannot list directory: {exc}"))
                continue
            subdirs = []
            for name in names:
                if name in (".", ".."):
                    continue
                p = d.rstrip("/") + "/" + name
                try:
                    e = fs.get(p)
                    st = _lstat(e)
                except Exception as exc:
                    rep.errors.append(RecordError(f"{prefix}{p}", "unreadable", f"cannot stat: {exc}"))
                    continue
                yield shown(p), e, st
                if _stat.S_ISDIR(st.st_mode):
                    subdirs.append(p)
            stack.extend(reversed(subdirs))

    def _fs_rows(self, art: Artifact, host: str | None, fstype: str, inner: str, entry, st) -> int:
        """File-system timeline rows of one entry: one per time kind (and per NTFS attribute)."""
        rows = self._rows
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
        n = 0
        for label, times in kinds:
            art_name = f"fs:{fstype}" + (f":{label}" if label else "")
            present = [(mac, desc, ns) for mac, desc, ns in times if ns]
            bad = [(mac, ns) for mac, _, ns in present if not _NS_MIN <= ns <= _NS_MAX]
            if bad:  # a time no clock could hold (a wiped or crafted inode): kept in the warning, not as a row
                self.report(art).warn("bad_time", f"{inner}: {label or 'inode'} time(s) out of range {bad}", inner)
                present = [p for p in present if _NS_MIN <= p[2] <= _NS_MAX]
            for mac, desc, ns in present:
                macb = "".join(m if any(m == x and ns == y for x, _, y in present) else "." for m in "MACB")
                attrs = {"inode": st.st_ino, "size": size, "mode": mode, "uid": uid, "gid": gid,
                         "fs": fstype, "macb": macb, "times_from": label or "inode"}
                rows.add(
                    timestamp=ns, timestamp_desc=desc, host=host, source="FILE", artifact=art_name, path=inner,
                    message=f"{macb} {label + ' ' if label else ''}{inner} ({mode}, {size} bytes)",
                    attrs=orjson.dumps(attrs).decode(), tags=[], tz_source=TZ_SOURCE_UTC,
                    evidence_id=art.evidence_id, evidence_path=art.evidence_path,
                    record_ref=f"{inner} inode={st.st_ino}", parser=self._parser,
                    event_hash=event_hash("FILE", art.evidence_id, inner, st.st_ino, label, mac, ns),
                )
                n += 1
        return n

    def _copy(self, rep: ArtifactReport, entry, inner: str, tmp: str) -> tuple[Path, str] | None:
        """A private read-only copy of one file of the image, and its SHA-256."""
        self._copies += 1
        dest = Path(tmp) / f"{self._copies:06d}" / Path(inner.rsplit("!", 1)[-1].split(":", 1)[-1]).name
        digests = _copy_out(rep, entry, inner, dest, hashlib.sha256())
        return None if digests is None else (dest, digests[0])

    def _gather(self, art: Artifact, rep: ArtifactReport, entry, inner: str, st) -> tuple[Path, str] | None:
        """Copy one file of the evidence to ``gather_dir/<evidence_id>/<path inside>``, read-only, hashed, with its
        path and times recorded in ``facts.gathered``; the copy is also what the log collectors read."""
        rel = "/".join(p for p in re.split(r"[/\\]", inner.replace(":", "")) if p not in ("", ".", ".."))
        dest = self.gather_dir / art.evidence_id / rel
        digests = _copy_out(rep, entry, inner, dest, hashlib.sha256(), hashlib.md5())
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
            sub.report(a).errors.append(RecordError(None, "file_failed", f"{type(exc).__name__}: {exc}"))
        self.reports[a.key] = sub.report(a)
        self.reports[a.key].collector = cls.name


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


def _decoder(fs):
    """How paths of ``fs`` are shown: URL-decoded for a Velociraptor collection folder, else as they are."""
    if type(fs).__name__ != "VelociraptorDirectoryFilesystem":
        return lambda p: p
    from urllib.parse import unquote

    return unquote


def _copy_out(rep: ArtifactReport, entry, inner: str, dest: Path, *hashes) -> list[str] | None:
    """Copy one file of the evidence to ``dest`` (read-only; whole or not at all), feeding ``hashes``; their
    hex digests, or None (a counted error of the image) when the file cannot be read."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with entry.open() as src, open(part, "wb") as out:
            while chunk := src.read(1 << 20):
                for h in hashes:
                    h.update(chunk)
                out.write(chunk)
    except Exception as exc:
        part.unlink(missing_ok=True)
        rep.errors.append(RecordError(inner, "unreadable", f"cannot read file from the image: {exc}"))
        return None
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
        from types import SimpleNamespace

        mode = (_stat.S_IFDIR | 0o555) if rec.is_dir() else (_stat.S_IFREG | 0o444)
        return SimpleNamespace(st_mode=mode, st_size=0, st_ino=rec.segment, st_uid=None, st_gid=None,
                               st_mtime_ns=None, st_atime_ns=None, st_ctime_ns=None, st_birthtime_ns=None)


_LOG_NAME = re.compile(r"^(syslog|messages|auth\.log|secure|kern\.log|daemon\.log|cron|user\.log|access\.log|error\.log|"
                       r"access_log|error_log|audit\.log|u_ex\d+\.log)([.-]\d+)*(\.(gz|bz2|xz))?$")


def _is_log(path: str) -> bool:
    """Worth reading as a log: under a log folder, a known log or history name (login records and shell
    histories wherever they lie: ``/run/utmp``, ``/var/run/utmpx``, ``~/.local/share/fish/fish_history``,
    ``PSReadLine/ConsoleHost_history.txt``), an EVTX file."""
    folder, _, name = path.lower().rpartition("/")
    return _log_name(name) or _log_folder(folder)


@functools.lru_cache(maxsize=1 << 16)  # asked once per file of an image: names and folders repeat
def _log_name(name: str) -> bool:
    return (name.endswith(".evtx") or name in _LOG_NAMES or bool(_LOG_NAME.match(name))
            or login_file_kind(name) is not None or history_kind(name) is not None)


@functools.lru_cache(maxsize=1 << 14)
def _log_folder(folder: str) -> bool:
    return any(d in ("log", "logs", "winevt", "logfiles") for d in folder.split("/"))
