"""Symbolic links of a folder given as evidence, listed and never followed.

A folder read file by file (not an OS tree or a triage collection, which the target collector reads
through dissect) lives on the analyst's machine: a link in it may lead anywhere there (``dpkg.log ->
/var/log/dpkg.log``).  Such a link is one artifact of this collector, never opened: its identity (hash
and size, before and after) is the target it stores, and it gives the file-system rows of the link
itself.  A link that stays inside the folder is not followed either: its target is read once, under its
own name, by the walk of the folder.

Rows (``source`` FILE, ``artifact`` fs:dir, as the file-system rows of a folder read through dissect)
    one per time of the link's own ``lstat`` (``timestamp_desc`` "Content Modification Time", "Last
    Access Time", "Metadata Modification Time"; ``attrs.macb``), ``path`` the link's path inside the
    folder, ``attrs.link_target`` the target it stores (``attrs.link_target_bytes``, hex, when that
    is not UTF-8) and ``attrs.leads_outside`` when this machine would take it out of the folder.

Warnings
    ``link_outside_evidence``: the link leads out of the evidence folder (where to, as this machine
    resolves it, is in the message); counted, not followed.  A link changed since it was hashed is an
    error (``file_failed``), as any changed evidence.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from collectors.base import Artifact, Collector, name_bytes, shown_name
from collectors.target import fs_rows, link_leaves
from timeline.custody import FileHashes
from timeline.errors import EvidenceChanged, UnknownFormat

__all__ = ["LinkCollector", "link_hashes"]

log = logging.getLogger(__name__)


def link_hashes(path: str | os.PathLike, md5: bool = True) -> FileHashes:
    """The identity of a symbolic link: SHA-256 (and MD5) and length of the target it stores, read with
    ``readlink``; the target itself is never opened."""
    target = os.readlink(os.fsencode(path))
    return FileHashes(len(target), hashlib.sha256(target).hexdigest(), hashlib.md5(target).hexdigest() if md5 else None)


class LinkCollector(Collector):
    name = "link"
    source = "FILE"
    engines = ("lstat",)
    parser = ("forensics-link", "forensics")

    @classmethod
    def matches(cls, path: str) -> bool:
        return os.path.islink(path)

    @classmethod
    def check_compatible(cls, path: str) -> None:
        if not os.path.islink(path):
            raise UnknownFormat(f"{path}: not a symbolic link")

    def collect(self, artifact: Artifact, batch_rows: int = 100_000) -> Iterator[pa.Table]:
        rep = self.report(artifact)
        path = artifact.fs_path
        st = os.lstat(path)
        if link_hashes(path, md5=False).sha256 != artifact.sha256:
            raise EvidenceChanged(f"{shown_name(path)}: the link's target changed since it was hashed")
        target = os.readlink(path)
        # the folder given as evidence: as many levels up from the link as its path inside has parts
        root = os.path.realpath(Path(path).parents[artifact.evidence_path.count("/")])
        extra = {"link_target": shown_name(target)}
        if (raw := name_bytes(target)) is not None:
            extra["link_target_bytes"] = raw
        leaves = link_leaves(path, root)
        if leaves is not None:
            extra["leads_outside"] = True
            rep.warn("link_outside_evidence", f"{artifact.evidence_path} -> {shown_name(target)}: on this machine the "
                                              f"link leads out of the evidence ({shown_name(leaves)}); not followed",
                     artifact.evidence_path)
        n = fs_rows(self._rows, rep, artifact, None, "dir", artifact.evidence_path, None, st, self._parser, extra)
        rep.stats["rows"] = rep.stats.get("rows", 0) + n
        if len(self._rows) >= batch_rows:
            yield self._rows.to_table()
