"""Load a versioned artifact once, serve it, and swap in new versions atomically.

One :class:`ArtifactHolder` per artifact (the search index, the ads catalog). A
single supervisor task per process does every load, so concurrent first
requests cause exactly one load; they wait for it up to a bound and otherwise
get a 503 with ``Retry-After``. After the first load the supervisor polls the
source's ``latest`` pointer on an interval; a new version is loaded in the
background and swapped in by one reference assignment, so requests in flight
finish on the object they already hold. A failed load keeps the previous
version serving and is reported in health; before any version has loaded,
failures are retried with exponential back-off (never a crash loop).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Generic, Protocol, TypeVar

from core.artifacts import MANIFEST, ArtifactError, read_manifest
from core.errors import NotReady

T = TypeVar("T")
log = logging.getLogger("core.holder")


class ArtifactSource(Protocol):
    def describe(self) -> str: ...
    async def latest(self) -> dict[str, Any]: ...
    async def fetch(self, pointer: dict[str, Any]) -> Path: ...
    async def close(self) -> None: ...


class LocalArtifactSource:
    """An artifact folder on local disk, optionally produced on first use by ``ensure``."""

    fetched_verified = False  # the loader verifies the folder itself

    def __init__(self, path: Path, ensure: Callable[[], Awaitable[None]] | None = None) -> None:
        self.path = Path(path)
        self._ensure = ensure

    def describe(self) -> str:
        return f"local:{self.path}"

    async def latest(self) -> dict[str, Any]:
        if not (self.path / MANIFEST).exists() and self._ensure is not None:
            await self._ensure()
        manifest = await asyncio.to_thread(read_manifest, self.path)
        raw = await asyncio.to_thread((self.path / MANIFEST).read_bytes)
        return {"version": str(manifest.get("version")), "manifest_sha256": hashlib.sha256(raw).hexdigest()}

    async def fetch(self, pointer: dict[str, Any]) -> Path:
        return self.path

    async def close(self) -> None:
        return None


class ArtifactHolder(Generic[T]):
    def __init__(self, name: str, source: ArtifactSource, loader: Callable[[Path], T], *,
                 refresh_interval_s: float = 60.0, retry_initial_s: float = 1.0, retry_max_s: float = 30.0,
                 wait_s: float = 5.0, first_load_wait_s: float | None = None) -> None:
        self.name = name
        self.source = source
        self._loader = loader
        self.refresh_interval_s = refresh_interval_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._wait_s = wait_s
        self._first_load_wait_s = wait_s if first_load_wait_s is None else first_load_wait_s
        self.current: T | None = None
        self.pointer: dict[str, Any] | None = None
        self.loaded_at: float | None = None
        self.load_count = 0
        self.last_error: str | None = None
        self.last_check: float | None = None
        self._next_retry_at = 0.0
        self._task: asyncio.Task | None = None
        self._attempt_done = asyncio.Event()
        self._loaded = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -------------------------------------------------------------------- state
    @property
    def wait_s(self) -> float:
        """How long a request waits for a version: ``first_load_wait_s`` while the first load is under way
        and has not failed (a cold start), else ``wait_s`` (a failing source answers 503 sooner)."""
        if self.current is None and self.last_error is None:
            return self._first_load_wait_s
        return self._wait_s

    @property
    def version(self) -> str | None:
        return None if self.pointer is None else str(self.pointer["version"])

    def status(self) -> dict[str, Any]:
        if self.current is not None:
            state = "ready"
        elif self.last_error is not None:
            state = "failed"
        else:
            state = "loading" if self._task is not None else "not started"
        out: dict[str, Any] = {"state": state, "version": self.version, "source": self.source.describe(),
                               "loads": self.load_count}
        if self.last_error:
            out["last_error"] = self.last_error
        dense = getattr(self.current, "dense_kind", None)   # a search index says which dense index serves
        if isinstance(dense, str):
            out["dense"] = dense
        if self.loaded_at:
            out["loaded_at_age_s"] = round(time.monotonic() - self.loaded_at, 1)
        return out

    # ----------------------------------------------------------------- serving
    def start(self) -> None:
        """Start the supervisor if it is not running (idempotent; needs a running loop)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self._attempt_done = asyncio.Event()
            self._task = loop.create_task(self._supervise(), name=f"holder:{self.name}")

    async def get(self, wait_s: float | None = None) -> T:
        """The current version, waiting a bounded time for the first load."""
        current = self.current
        if current is not None:
            return current
        self.start()
        try:
            await asyncio.wait_for(self._attempt_done.wait(), self.wait_s if wait_s is None else wait_s)
        except asyncio.TimeoutError:
            pass
        if self.current is not None:
            return self.current
        retry = max(1, int(self._next_retry_at - time.monotonic() + 0.999)) if self.last_error else 2
        why = f"{self.name} is not loaded yet" + (f": {self.last_error}" if self.last_error else " (loading)")
        raise NotReady(why, retry_after_s=retry)

    async def wait_loaded(self) -> T:
        """Wait, without bound, until a first version is loaded (background work, not requests)."""
        self.start()
        await self._loaded.wait()
        assert self.current is not None
        return self.current

    async def refresh_now(self) -> bool:
        """Check the source once and load a new version if there is one. True when swapped."""
        return await self._check_and_load()

    # --------------------------------------------------------------- internals
    async def _check_and_load(self) -> bool:
        pointer = await self.source.latest()
        self.last_check = time.monotonic()
        if self.pointer is not None and pointer.get("version") == self.pointer.get("version") \
                and pointer.get("manifest_sha256") == self.pointer.get("manifest_sha256"):
            return False
        t0 = time.perf_counter()
        path = await self.source.fetch(pointer)
        obj = await asyncio.to_thread(self._loader, path)
        previous = self.version
        self.current, self.pointer = obj, pointer  # the swap: requests in flight keep their reference
        self.loaded_at = time.monotonic()
        self.load_count += 1
        self.last_error = None
        self._loaded.set()
        log.info("%s: now serving version %s (was %s), loaded in %.2fs from %s", self.name, self.version,
                 previous, time.perf_counter() - t0, self.source.describe())
        return True

    async def _supervise(self) -> None:
        delay = self.retry_initial_s
        while True:
            try:
                await self._check_and_load()
                delay = self.retry_initial_s
                wait = self.refresh_interval_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reported in health; the previous version keeps serving
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                if self.current is None:
                    wait, delay = delay, min(delay * 2, self.retry_max_s)
                    log.warning("%s: load failed, retrying in %.0fs: %s", self.name, wait, self.last_error)
                else:
                    wait = self.refresh_interval_s
                    log.error("%s: new version not loaded, still serving %s: %s", self.name, self.version,
                              self.last_error)
                if isinstance(exc, ArtifactError) and self.current is None:
                    wait = max(wait, self.retry_initial_s)
            self._next_retry_at = time.monotonic() + wait
            self._attempt_done.set()
            if self.current is not None and self.refresh_interval_s <= 0:
                return
            await asyncio.sleep(wait)
            if self.current is None:
                self._attempt_done = asyncio.Event()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._task = None
        await self.source.close()
