"""Evidence collectors: one module per artifact family, in one explicit, ordered registry.

The first collector whose ``matches()`` accepts a file reads it.  New families
are added here by hand (no import-time directory walks).
"""

from __future__ import annotations

from collectors.auditd import AuditdCollector
from collectors.base import Artifact, Collector, RecordError
from collectors.evtx import EvtxCollector
from collectors.filesystem import MftCollector
from collectors.journal import JournalCollector
from collectors.links import LinkCollector
from collectors.packages import PackagesCollector
from collectors.shell_history import ShellHistoryCollector
from collectors.syslog import SyslogCollector
from collectors.target import TargetCollector
from collectors.usnjrnl import UsnJrnlCollector
from collectors.utmp import UtmpCollector
from collectors.weblog import WebCollector
from collectors.windows_loose import AmcacheCollector, PrefetchCollector
from collectors.winevent_export import WinEventExportCollector

__all__ = ["REGISTRY", "Artifact", "Collector", "RecordError", "EvtxCollector", "JournalCollector", "SyslogCollector", "TargetCollector",
           "WebCollector", "AuditdCollector", "PackagesCollector", "UtmpCollector", "ShellHistoryCollector",
           "WinEventExportCollector", "LinkCollector", "MftCollector", "UsnJrnlCollector", "PrefetchCollector",
           "AmcacheCollector", "collector_for", "by_name"]

# A symbolic link first: listed, never opened (every other test reads the file it would lead to). Then magic and
# content tests; package-manager logs (whose dpkg, yum and dnf lines look like syslog's) and
# name-and-structure collectors (login records, shell histories) before syslog, whose test is the first line's shape.
# A loose $MFT (FILE0 records) and $J (USN records after zero padding) are binary: tested before the text collectors,
# as are loose Prefetch files (SCCA / MAM) and the Amcache hive (regf naming Amcache.hve).
REGISTRY: tuple[type[Collector], ...] = (LinkCollector, EvtxCollector, JournalCollector, TargetCollector,
                                         WinEventExportCollector, MftCollector, UsnJrnlCollector, PrefetchCollector, AmcacheCollector,
                                         PackagesCollector, WebCollector,
                                         AuditdCollector, UtmpCollector, ShellHistoryCollector, SyslogCollector)


def collector_for(path: str, only: frozenset[str] | None = None) -> type[Collector] | None:
    """The first collector of the registry (restricted to the names in ``only``) that reads ``path``."""
    for cls in REGISTRY:
        if only is not None and cls.name not in only:
            continue
        if cls.matches(path):
            return cls
    return None


def by_name(name: str) -> type[Collector]:
    for cls in REGISTRY:
        if cls.name == name:
            return cls
    raise KeyError(name)
