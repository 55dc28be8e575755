"""Blob Storage: publish artifacts (CLI side) and fetch them (serving side).

Layout of a container::

    <version>/manifest.json      written after every other file of the version
    <version>/<files...>
    latest                       {"version", "manifest_sha256", "published_at"}: moved last

A reader follows ``latest``, checks the manifest's sha256 against the pointer,
downloads the files the manifest lists into a staging folder beside the local
cache, and only then renames the folder into place. A reader therefore never
sees a half-written or tampered version.

Each file is fetched with parallel ranged GETs (``CHUNK_BYTES`` each, at most
``MAX_CONCURRENCY`` in flight across all files of a version): a chunk is written
at its offset into ``<file>.part`` as soon as it arrives and fed to the file's
sha256 strictly in order, so the hash is computed while streaming and no file is
ever held whole in memory (at most ``MAX_CONCURRENCY`` chunks are). The ``.part``
file becomes the file only when size and sha256 match the manifest; any failure
or cancellation removes the staging folder. Every call has its own
``BLOB_TIMEOUT_S`` and is retried (``_RANGE_ATTEMPTS`` in all) only for
retryable errors: timeouts, connection errors, 408/429/5xx. Why our own ranged
GETs rather than the SDK's ``download_blob(max_concurrency=...)``, with figures:
``bench/bench_blob.py`` and the README's "Measured" section.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from core.artifacts import MANIFEST, ArtifactError, format_ok, read_manifest, staging_dir, verify
from core.settings import Settings

log = logging.getLogger("core.blob")

POINTER = "latest"
T = TypeVar("T")
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
CHUNK_BYTES = 8 << 20       # one ranged GET; measured in bench/bench_blob.py (README "Measured")
MAX_CONCURRENCY = 4         # ranged GETs in flight across all files of a version (= chunk buffers held)
MAX_FILES = 4               # files downloading at once
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_RANGE_ATTEMPTS = 3


def _retryable(exc: BaseException) -> bool:
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, (TimeoutError, ServiceRequestError, ServiceResponseError, ConnectionError)):
        return True
    if isinstance(exc, HttpResponseError):
        # No status: a body that broke off, which the SDK's downloader has already retried itself.
        return exc.status_code in _RETRY_STATUS
    return False


class _Download:
    """One file of a version: ranged GETs at offsets, sha256 in order while they arrive.

    Chunks are written at their offsets as soon as they arrive (``os.pwrite``) and
    fed to the hash strictly in order; a chunk's buffer is released only once it is
    hashed, so memory is bounded by the shared permits (``MAX_CONCURRENCY`` chunks).
    """

    def __init__(self, part: Path, size: int, sha256: str) -> None:
        self.part, self.size, self.sha256 = part, size, sha256
        self.hash = hashlib.sha256()
        self.next = 0                       # index of the next chunk to hash
        self.turn = asyncio.Condition()
        self.fd = -1
        self._pending: set[asyncio.Future] = set()

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking work in a thread; the thread is waited for even if the caller is cancelled."""
        fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        return await asyncio.shield(fut)

    async def drain(self) -> None:
        if self._pending:
            done, _ = await asyncio.wait(set(self._pending))
            for fut in done:  # already reported through the awaiting task, or moot after a cancellation
                fut.cancelled() or fut.exception()


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _check_header(manifest: dict[str, Any], root: Path, *, kind: str, format_version: int | tuple[int, ...]) -> None:
    if manifest.get("kind") != kind:
        raise ArtifactError(f"{root}: kind {manifest.get('kind')!r}, expected {kind!r}")
    if not format_ok(manifest.get("format_version"), format_version):
        raise ArtifactError(
            f"{root}: format version {manifest.get('format_version')!r}, this code reads {format_version}")


def _first_error(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)] or list(exc.exceptions)
        exc = leaves[0]
    return exc


async def _spawning(produce: Callable[[Callable[[Awaitable[None]], Any]], Awaitable[None]]) -> None:
    """Run ``produce(spawn)``; the first failure of it or of anything it spawned cancels the rest and is raised."""
    error: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as tg:
            await produce(tg.create_task)
    except BaseExceptionGroup as group:
        error = _first_error(group)
    if error is not None:
        raise error  # raised outside the handler: it keeps its own __cause__


async def _all(coros: list[Awaitable[None]]) -> None:
    async def produce(spawn: Callable[[Awaitable[None]], Any]) -> None:
        for c in coros:
            spawn(c)

    await _spawning(produce)


class BlobArtifactSource:
    """Reads the versions of one artifact from one container, asynchronously."""

    def __init__(self, settings: Settings, container: str, *, kind: str, format_version: int | tuple[int, ...],
                 chunk_bytes: int = CHUNK_BYTES, max_concurrency: int = MAX_CONCURRENCY,
                 max_files: int = MAX_FILES) -> None:
        self.settings = settings
        self.container = container
        self.kind = kind
        self.format_version = format_version
        self.cache_root = settings.cache_path / container
        self.chunk_bytes = max(1, int(chunk_bytes))
        self.max_concurrency = max(1, int(max_concurrency))
        self.max_files = max(1, int(max_files))
        self._service = None
        self._credential = None

    def describe(self) -> str:
        where = self.settings.blob_account_url or "connection string"
        return f"blob:{self.container} ({where})"

    def _container(self):
        if self._service is None:
            from azure.storage.blob.aio import BlobServiceClient

            # Retries are ours (``_call``): the SDK's would multiply with them.
            kw = {**_client_kwargs(self.settings), "retry_total": 0}
            if self.settings.blob_connection_string:
                self._service = BlobServiceClient.from_connection_string(self.settings.blob_connection_string, **kw)
            else:
                from azure.identity.aio import DefaultAzureCredential

                self._credential = DefaultAzureCredential(
                    managed_identity_client_id=self.settings.azure_client_id or None)
                self._service = BlobServiceClient(self.settings.blob_account_url, credential=self._credential, **kw)
        return self._service.get_container_client(self.container)

    async def _call(self, name: str, op: Callable[[], Awaitable[T]]) -> T:
        """One Blob operation under BLOB_TIMEOUT_S, retried (few times) only when retryable."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        for attempt in range(_RANGE_ATTEMPTS):
            try:
                async with asyncio.timeout(self.settings.blob_timeout_s):
                    return await op()
            except ResourceNotFoundError as exc:
                raise ArtifactError(f"{self.describe()}: blob {name!r} not found") from exc
            except (AzureError, OSError, TimeoutError) as exc:
                if attempt + 1 >= _RANGE_ATTEMPTS or not _retryable(exc):
                    raise BlobUnavailable(f"{self.describe()}: {name}: {type(exc).__name__}: "
                                          f"{str(exc)[:200]}") from exc
                log.info("%s: %s: %s, retrying", self.describe(), name, type(exc).__name__)
                await asyncio.sleep(0.25 * 2 ** attempt)
        raise AssertionError("unreachable")

    async def _download(self, name: str) -> bytes:
        """A small blob (pointer, manifest) whole, in memory."""
        t = int(self.settings.blob_timeout_s)

        async def op() -> bytes:
            stream = await self._container().download_blob(name, timeout=t)
            return await stream.readall()

        return await self._call(name, op)

    async def _range(self, blob: Any, name: str, offset: int, length: int, size: int) -> bytes:
        """Bytes [offset, offset+length) of a blob that the manifest says has ``size`` bytes."""
        t = int(self.settings.blob_timeout_s)

        async def op() -> tuple[bytes, str]:
            stream = await blob.download_blob(offset=offset, length=length, timeout=t)
            return await stream.readall(), stream.properties.content_range or ""

        data, content_range = await self._call(name, op)
        total = content_range.rpartition("/")[2]
        if not total.isdigit() or int(total) != size:
            raise ArtifactError(f"{self.describe()}: {name} has {total or '?'} bytes in Blob, manifest says {size}")
        if len(data) != length:
            raise BlobUnavailable(f"{self.describe()}: {name}: short read at {offset} ({len(data)} of {length})")
        return data

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
            # Refuse a wrong kind or format before downloading hundreds of MB of it.
            _check_header(manifest, tmp, kind=self.kind, format_version=self.format_version)
            files = []
            for rel, meta in manifest["files"].items():
                if rel.startswith("/") or ".." in Path(rel).parts or rel == MANIFEST:
                    raise ArtifactError(f"{self.describe()}: unsafe path {rel!r} in manifest")
                try:
                    files.append((rel, int(meta["size"]), str(meta["sha256"])))
                except (KeyError, TypeError, ValueError) as exc:
                    raise ArtifactError(f"{self.describe()}: manifest entry of {rel!r} is malformed") from exc
            permits = asyncio.Semaphore(self.max_concurrency)
            file_slots = asyncio.Semaphore(self.max_files)

            async def one(rel: str, size: int, sha: str) -> None:
                async with file_slots:
                    await self._fetch_file(f"{version}/{rel}", tmp / rel, size, sha, permits)

            await _all([one(*f) for f in files])
            # Every file was hashed while it streamed; a shallow check confirms the folder is complete.
            await asyncio.to_thread(verify, tmp, kind=self.kind, format_version=self.format_version, deep=False)
            (tmp / _VERIFIED).write_text(pointer.get("manifest_sha256") or "")
        self._prune(keep=version)
        return final

    async def _fetch_file(self, name: str, dest: Path, size: int, sha: str, permits: asyncio.Semaphore) -> None:
        """Ranged GETs of one blob into ``dest.part``, hashed in order; renamed to ``dest`` when it matches."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        blob = self._container().get_blob_client(name)
        st = _Download(part, size, sha)
        st.fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        ok = False
        try:
            if size == 0:
                t = int(self.settings.blob_timeout_s)
                async with permits:
                    props = await self._call(name, lambda: blob.get_blob_properties(timeout=t))
                if props.size != 0:
                    raise ArtifactError(f"{self.describe()}: {name} has {props.size} bytes in Blob, manifest says 0")
            else:
                async def chunk(i: int, offset: int, length: int) -> None:
                    try:
                        data = await self._range(blob, name, offset, length, size)
                        await st.in_thread(_pwrite_all, st.fd, data, offset)
                        async with st.turn:
                            await st.turn.wait_for(lambda: st.next == i)
                        await st.in_thread(st.hash.update, data)  # hashlib releases the GIL
                        async with st.turn:
                            st.next += 1
                            st.turn.notify_all()
                    finally:
                        permits.release()

                async def produce(spawn: Callable[[Awaitable[None]], None]) -> None:
                    # Permits are taken in chunk order, so the lowest unhashed chunk of a file
                    # always holds one: the window slides and can never deadlock.
                    for i, offset in enumerate(range(0, size, self.chunk_bytes)):
                        await permits.acquire()
                        spawn(chunk(i, offset, min(self.chunk_bytes, size - offset)))

                await _spawning(produce)
            if st.hash.hexdigest() != sha:
                raise ArtifactError(f"{self.describe()}: {name} does not match its sha256 in the manifest")
            ok = True
        finally:
            await st.drain()  # no thread may still write to the descriptor when it closes
            os.close(st.fd)
            if not ok:
                part.unlink(missing_ok=True)
        os.replace(part, dest)

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
