"""Versioned, self-checking artifact folders (the search index bundle, the ads catalog).

An artifact is a folder with a ``manifest.json`` that names its kind, format
version, version string, creation time and the sha256 and size of every other
file in it. Whatever publishes or loads an artifact (local disk, Blob Storage)
goes through :func:`write_manifest` and :func:`verify`, so a truncated, tampered
or half-written artifact is refused in one place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


class ArtifactError(Exception):
    """An artifact is missing, incomplete, corrupt or of an unknown format."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".verified"):
            yield p


def new_version() -> str:
    """A sortable, unique version string: UTC time plus a short random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + os.urandom(3).hex()


def write_manifest(root: Path, *, kind: str, format_version: int, version: str | None = None,
                   **extra: Any) -> dict[str, Any]:
    """Hash every file under ``root`` and write the manifest last."""
    root = Path(root)
    manifest = {
        "kind": kind,
        "format_version": format_version,
        "version": version or new_version(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
        "files": {p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
                  for p in _files(root)},
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False), encoding="utf-8")
    return manifest


def read_manifest(root: Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{root}: no {MANIFEST}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: manifest is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"{path}: manifest has no file list")
    return manifest


def format_ok(found: Any, wanted: int | tuple[int, ...]) -> bool:
    """Whether a manifest's ``format_version`` is one this code reads (``wanted``: one version or several)."""
    return found in (wanted if isinstance(wanted, tuple) else (wanted,))


def verify(root: Path, *, kind: str | None = None, format_version: int | tuple[int, ...] | None = None,
           deep: bool = True) -> dict[str, Any]:
    """Check an artifact folder against its manifest and return the manifest.

    ``deep`` hashes every file; otherwise only presence and sizes are checked
    (used for a folder that was verified deeply when it was downloaded).
    """
    root = Path(root)
    manifest = read_manifest(root)
    if kind is not None and manifest.get("kind") != kind:
        raise ArtifactError(f"{root}: kind {manifest.get('kind')!r}, expected {kind!r}")
    if format_version is not None and not format_ok(manifest.get("format_version"), format_version):
        raise ArtifactError(
            f"{root}: format version {manifest.get('format_version')!r}, this code reads {format_version}")
    for rel, meta in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            raise ArtifactError(f"{root}: {rel} is missing")
        size = path.stat().st_size
        if size != meta.get("size"):
            raise ArtifactError(f"{root}: {rel} has {size} bytes, manifest says {meta.get('size')}")
        if deep and sha256_file(path) != meta.get("sha256"):
            raise ArtifactError(f"{root}: {rel} does not match its sha256 in the manifest")
    return manifest


class staging_dir:
    """A temporary folder beside ``final`` that becomes ``final`` only on success.

    ``with staging_dir(out) as tmp: ...build into tmp...`` leaves nothing behind
    when the block raises, and replaces ``final`` by a rename when it succeeds.
    """

    def __init__(self, final: Path) -> None:
        self.final = Path(final)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.", dir=self.final.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            self.final.rename(old)
        self.tmp.rename(self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
