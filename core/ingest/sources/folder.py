"""A local folder, walked recursively; hidden files and folders (".name") are not read."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from core.ingest.sources import SourceFile


def join_url(base_url: str, rel: str) -> str:
    if not base_url:
        return ""
    return base_url.rstrip("/") + "/" + quote(rel, safe="/")


def list_folder(root: Path, base_url: str = "") -> list[SourceFile]:
    root = Path(root)
    files: list[SourceFile] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            try:
                st = p.stat()
            except OSError:
                continue
            if not p.is_file():
                continue
            rel = p.relative_to(root).as_posix()
            files.append(SourceFile(
                id=rel, size=st.st_size,
                modified=datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(timespec="seconds"),
                url=join_url(base_url, rel), read=p.read_bytes))
    files.sort(key=lambda f: f.id)
    return files
