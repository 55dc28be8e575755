"""Sources: where files come from. A source lists :class:`SourceFile` items, sorted by id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

SIDECAR = "_meta.json"


@dataclass(frozen=True)
class SourceFile:
    id: str                       # path relative to the source root, forward slashes
    size: int
    modified: str                 # ISO-8601 UTC
    url: str
    read: Callable[[], bytes]     # the file's bytes (called only for files within the size limit)
