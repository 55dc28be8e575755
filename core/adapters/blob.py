"""Blob Storage: publish artifacts (CLI side) and fetch them (serving side).

Layout of a container::

    <version>/manifest.json      written after every other file of the version
    <version>/<files...>
    latest                       {"version", "manifest_sha256", "published_at"}: moved last

A reader follows ``latest``, checks the manifest's sha256 against the pointer,
downloads the files the manifest lists into a local cache folder, verifies every
sha256, and only then renames the folder into place. A reader therefore never
sees a half-written or tampered version.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.artifacts import MANIFEST, ArtifactError, read_manifest, staging_dir, verify
from core.settings import Settings

log = logging.getLogger("core.blob")

POINTER = "latest"
_VERIFIED = ".verified"


class BlobUnavailable(Exception):
    """Blob Storage could not be reached or answered with an error."""


def _client_kwargs(settings: Settings) -> dict[str, Any]:
    # Azure SDK transport timeouts (seconds) and a small retry budget: the caller
    # has its own back-off, so the SDK must not stall a cold start for minutes.
    return {"connection_timeout": min(10.0, settings.blob_timeout_s), "read_timeout": settings.blob_timeout_s,
            "retry_total": 2, "retry_backoff_factor": 0.5, "retry_backoff_max": 2}


# --------------------------------------------------------------------------------- publish
def sync_service_client(settings: Settings):
    from azure.storage.blob import BlobServiceClient

    kw = _client_kwargs(settings)
    if settings.blob_connection_string:
        return BlobServiceClient.from_connection_string(settings.blob_connection_string, **kw)
    if settings.blob_account_url:
        from azure.identity import DefaultAzureCredential

        cred = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id or None)
        return BlobServiceClient(settings.blob_account_url, credential=cred, **kw)
    raise BlobUnavailable("no Blob Storage configured: set BLOB_CONNECTION_STRING or BLOB_ACCOUNT_URL")


def publish_artifact(settings: Settings, artifact_dir: Path, container: str, *, progress: bool = True) -> str:
    """Upload a verified artifact folder under its version prefix, then move ``latest``.

    Returns the version published. Files go first, the manifest after them, the
    pointer last, so readers switch only to a complete version.
    """
    from azure.core.exceptions import ResourceExistsError
    from tqdm import tqdm

    artifact_dir = Path(artifact_dir)
    manifest = verify(artifact_dir)
    version = manifest["version"]
    service = sync_service_client(settings)
    cc = service.get_container_client(container)
    try:
        cc.create_container()
    except ResourceExistsError:
        pass
    files = list(manifest["files"].items())
    total = sum(meta["size"] for _, meta in files)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"upload {version}", disable=not progress) as bar:
        for rel, meta in files:
            with open(artifact_dir / rel, "rb") as fh:
                cc.upload_blob(f"{version}/{rel}", fh, overwrite=True, max_concurrency=4,
                               timeout=int(settings.blob_timeout_s) * 4)
            bar.update(meta["size"])
    manifest_bytes = (artifact_dir / MANIFEST).read_bytes()
    cc.upload_blob(f"{version}/{MANIFEST}", manifest_bytes, overwrite=True)
    pointer = {"version": version, "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
               "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    cc.upload_blob(POINTER, json.dumps(pointer).encode(), overwrite=True)
    log.info("published %s %s to container %s (%d files, %d bytes)",
             manifest.get("kind"), version, container, len(files), total)
    service.close()
    return version


# ----------------------------------------------------------------------------------- fetch
class BlobArtifactSource:
    """Reads the versions of one artifact from one container, asynchronously."""

    def __init__(self, settings: Settings, container: str, *, kind: str, format_version: int) -> None:
        self.settings = settings
        self.container = container
        self.kind = kind
        self.format_version = format_version
        self.cache_root = settings.cache_path / container
        self._service = None
        self._credential = None

    def describe(self) -> str:
        where = self.settings.blob_account_url or "connection string"
        return f"blob:{self.container} ({where})"

    def _container(self):
        if self._service is None:
            from azure.storage.blob.aio import BlobServiceClient

            kw = _client_kwargs(self.settings)
            if self.settings.blob_connection_string:
                self._service = BlobServiceClient.from_connection_string(self.settings.blob_connection_string, **kw)
            else:
                from azure.identity.aio import DefaultAzureCredential

                self._credential = DefaultAzureCredential(
                    managed_identity_client_id=self.settings.azure_client_id or None)
                self._service = BlobServiceClient(self.settings.blob_account_url, credential=self._credential, **kw)
        return self._service.get_container_client(self.container)

    async def _download(self, name: str) -> bytes:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            async with asyncio.timeout(self.settings.blob_timeout_s):
                stream = await self._container().download_blob(name, timeout=int(self.settings.blob_timeout_s))
                return await stream.readall()
        except ResourceNotFoundError as exc:
            raise ArtifactError(f"{self.describe()}: blob {name!r} not found") from exc
        except (AzureError, OSError, TimeoutError) as exc:
            raise BlobUnavailable(f"{self.describe()}: {type(exc).__name__}: {str(exc)[:200]}") from exc

    async def latest(self) -> dict[str, Any]:
        """The ``latest`` pointer: {"version", "manifest_sha256", ...}."""
        raw = await self._download(POINTER)
        try:
            pointer = json.loads(raw)
            str(pointer["version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{self.describe()}: malformed {POINTER} pointer") from exc
        return pointer

    async def fetch(self, pointer: dict[str, Any]) -> Path:
        """Download and verify the version named by ``pointer``; return its local folder."""
        version = str(pointer["version"])
        if "/" in version or version.startswith("."):
            raise ArtifactError(f"{self.describe()}: invalid version name {version!r}")
        final = self.cache_root / version
        marker = final / _VERIFIED
        if marker.exists() and marker.read_text() == pointer.get("manifest_sha256"):
            try:
                verify(final, kind=self.kind, format_version=self.format_version, deep=False)
                return final
            except ArtifactError as exc:
                log.warning("cached %s is damaged (%s); downloading it again", final, exc)
        manifest_bytes = await self._download(f"{version}/{MANIFEST}")
        if pointer.get("manifest_sha256") and hashlib.sha256(manifest_bytes).hexdigest() != pointer["manifest_sha256"]:
            raise ArtifactError(f"{self.describe()}: manifest of {version} does not match the checksum in {POINTER}")
        with staging_dir(final) as tmp:
            (tmp / MANIFEST).write_bytes(manifest_bytes)
            manifest = read_manifest(tmp)
            sem = asyncio.Semaphore(4)

            async def one(rel: str) -> None:
                if rel.startswith("/") or ".." in Path(rel).parts:
                    raise ArtifactError(f"{self.describe()}: unsafe path {rel!r} in manifest")
                async with sem:
                    data = await self._download(f"{version}/{rel}")
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(dest.write_bytes, data)

            await asyncio.gather(*(one(rel) for rel in manifest["files"]))
            await asyncio.to_thread(verify, tmp, kind=self.kind, format_version=self.format_version, deep=True)
            (tmp / _VERIFIED).write_text(pointer.get("manifest_sha256") or "")
        self._prune(keep=version)
        return final

    def _prune(self, keep: str, keep_count: int = 2) -> None:
        """Keep the newest few versions in the local cache, drop older ones."""
        try:
            versions = sorted((p for p in self.cache_root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                              key=lambda p: p.stat().st_mtime, reverse=True)
        except FileNotFoundError:
            return
        for p in versions[keep_count:]:
            if p.name != keep:
                shutil.rmtree(p, ignore_errors=True)

    async def close(self) -> None:
        if self._service is not None:
            await self._service.close()
        if self._credential is not None:
            await self._credential.close()
