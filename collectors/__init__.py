"""Evidence collectors: one module per artifact family, in one explicit, ordered registry.

The first collector whose ``matches()`` accepts a file reads it.  New families
are added here by hand (no import-time directory walks).
"""

from __future__ import annotations

from collectors.base import Artifact, Collector, RecordError
from collectors.evtx import EvtxCollector

__all__ = ["REGISTRY", "Artifact", "Collector", "RecordError", "EvtxCollector", "collector_for", "by_name"]

REGISTRY: tuple[type[Collector], ...] = (EvtxCollector,)


def collector_for(path: str) -> type[Collector] | None:
    for cls in REGISTRY:
        if cls.matches(path):
            return cls
    return None


def by_name(name: str) -> type[Collector]:
    for cls in REGISTRY:
        if cls.name == name:
            return cls
    raise KeyError(name)
