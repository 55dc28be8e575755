"""Publishing to and fetching from Blob Storage, against a real Azurite."""

import json

import pytest

from core.adapters.blob import POINTER, BlobArtifactSource, BlobUnavailable, publish_artifact, sync_service_client
from core.artifacts import ArtifactError, write_manifest
from core.settings import Settings

KIND = "test-artifact"


def _artifact(root, text="hello", version=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.txt").write_text(text)
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "more.bin").write_bytes(bytes(range(256)) * 40)
    return write_manifest(root, kind=KIND, format_version=1, version=version)


@pytest.fixture
def blob_settings(azurite, tmp_path, request):
    container = "t" + str(abs(hash(request.node.name)))[:12]
    return Settings.from_env({"BLOB_CONNECTION_STRING": azurite.connection_string,
                              "LOCAL_CACHE_DIR": str(tmp_path / "cache"), "BLOB_TIMEOUT_S": "5"}), container


async def test_publish_then_fetch_round_trip(blob_settings, tmp_path):
    settings, container = blob_settings
    manifest = _artifact(tmp_path / "a", version="v1")
    assert publish_artifact(settings, tmp_path / "a", container, progress=False) == "v1"
    src = BlobArtifactSource(settings, container, kind=KIND, format_version=1)
    pointer = await src.latest()
    assert pointer["version"] == "v1"
    local = await src.fetch(pointer)
    assert (local / "data.txt").read_text() == "hello"
    assert json.loads((local / "manifest.json").read_text())["files"] == manifest["files"]
    # A second fetch of the same version is served from the verified local copy.
    svc = sync_service_client(settings)
    svc.get_container_client(container).delete_blob("v1/data.txt")
    assert (await src.fetch(pointer)) == local
    await src.close()


async def test_tampered_blob_is_refused_and_nothing_is_left(blob_settings, tmp_path):
    settings, container = blob_settings
    _artifact(tmp_path / "a", version="v1")
    publish_artifact(settings, tmp_path / "a", container, progress=False)
    cc = sync_service_client(settings).get_container_client(container)
    cc.upload_blob("v1/data.txt", b"HELLO", overwrite=True)  # same size, other bytes
    src = BlobArtifactSource(settings, container, kind=KIND, format_version=1)
    with pytest.raises(ArtifactError, match="sha256"):
        await src.fetch(await src.latest())
    assert not (settings.cache_path / container / "v1").exists()
    cc.upload_blob("v1/data.txt", b"hel", overwrite=True)  # truncated
    with pytest.raises(ArtifactError, match="bytes"):
        await src.fetch(await src.latest())
    await src.close()


async def test_manifest_not_matching_the_pointer_is_refused(blob_settings, tmp_path):
    settings, container = blob_settings
    _artifact(tmp_path / "a", version="v1")
    publish_artifact(settings, tmp_path / "a", container, progress=False)
    cc = sync_service_client(settings).get_container_client(container)
    manifest = json.loads(cc.download_blob("v1/manifest.json").readall())
    manifest["files"]["data.txt"]["sha256"] = "0" * 64
    cc.upload_blob("v1/manifest.json", json.dumps(manifest).encode(), overwrite=True)
    src = BlobArtifactSource(settings, container, kind=KIND, format_version=1)
    with pytest.raises(ArtifactError, match="checksum"):
        await src.fetch(await src.latest())
    await src.close()


async def test_pointer_moves_last_and_names_the_new_version(blob_settings, tmp_path):
    settings, container = blob_settings
    _artifact(tmp_path / "a", version="v1")
    _artifact(tmp_path / "b", text="second", version="v2")
    publish_artifact(settings, tmp_path / "a", container, progress=False)
    publish_artifact(settings, tmp_path / "b", container, progress=False)
    cc = sync_service_client(settings).get_container_client(container)
    names = {b.name for b in cc.list_blobs()}
    assert {"v1/data.txt", "v2/data.txt", "v2/manifest.json", POINTER} <= names
    src = BlobArtifactSource(settings, container, kind=KIND, format_version=1)
    local = await src.fetch(await src.latest())
    assert (local / "data.txt").read_text() == "second"
    await src.close()


async def test_wrong_kind_is_refused(blob_settings, tmp_path):
    settings, container = blob_settings
    _artifact(tmp_path / "a", version="v1")
    publish_artifact(settings, tmp_path / "a", container, progress=False)
    src = BlobArtifactSource(settings, container, kind="search-index", format_version=1)
    with pytest.raises(ArtifactError, match="kind"):
        await src.fetch(await src.latest())
    await src.close()


async def test_unreachable_storage_is_reported_quickly(tmp_path):
    from tests.fixtures.services import free_port

    conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;")
    settings = Settings.from_env({"BLOB_CONNECTION_STRING": conn, "BLOB_TIMEOUT_S": "3",
                                  "LOCAL_CACHE_DIR": str(tmp_path)})
    src = BlobArtifactSource(settings, "x", kind=KIND, format_version=1)
    with pytest.raises(BlobUnavailable):
        await src.latest()
    await src.close()


# ------------------------------------------------------------------ ranged, parallel downloads
# A recording proxy between the source and Azurite: it sees every ranged GET, counts how many are
# in flight at once, and can delay, fail or cut the answer to chosen ranges.
import asyncio  # noqa: E402
import os  # noqa: E402
import tracemalloc  # noqa: E402

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from tests.fakes.loopback import serve  # noqa: E402

MB = 1 << 20
_HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


class RangeProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[tuple[str, str | None]] = []   # (path, x-ms-range) of every GET
        self.inflight = 0
        self.max_inflight = 0
        self.delay_s = 0.0                              # every ranged GET waits this long
        # (path suffix, range start) -> "503" | "503-once" | "cut" | "hang"
        self.faults: dict[tuple[str, int], str] = {}
        self._arrived = asyncio.Condition()
        self._runner = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    async def start(self) -> "RangeProxy":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self._runner, self.port = await serve(app)
        return self

    def connection_string(self) -> str:
        from tests.fixtures.services import AZURITE_KEY

        return ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{self.port}/devstoreaccount1;")

    async def wait_ranges(self, suffix: str, n: int) -> None:
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.ranges(suffix)) >= n)

    def ranges(self, suffix: str) -> list[int]:
        return [int(r.split("=")[1].split("-")[0]) for p, r in self.seen if p.endswith(suffix) and r]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rng = request.headers.get("x-ms-range")
        if request.method == "GET":
            self.seen.append((request.path, rng))
            async with self._arrived:
                self._arrived.notify_all()
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            fault = None
            if rng:
                start = int(rng.split("=")[1].split("-")[0])
                for (suffix, at), kind in list(self.faults.items()):
                    if request.path.endswith(suffix) and at == start:
                        fault = kind
                        if kind == "503-once":
                            del self.faults[(suffix, at)]
                await asyncio.sleep(self.delay_s)
            if fault in ("503", "503-once"):
                return web.Response(status=503, text="busy")
            if fault == "hang":
                await asyncio.sleep(3600)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
            body = await request.read()
            async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                             data=body or None) as up:
                payload = await up.read()
                out_headers = {k: v for k, v in up.headers.items() if k.lower() not in _HOP}
                status = up.status
            if fault == "cut":
                resp = web.StreamResponse(status=status, headers={**out_headers,
                                                                  "Content-Length": str(len(payload))})
                await resp.prepare(request)
                await resp.write(payload[: len(payload) // 2])
                request.transport.close()
                return resp
            if request.method == "HEAD":  # the size of a blob is its Content-Length here
                return web.Response(status=status, headers={**out_headers, "Content-Length": up.headers.get(
                    "Content-Length", "0")})
            return web.Response(status=status, headers=out_headers, body=payload)
        finally:
            self.inflight -= 1

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


@pytest.fixture
async def proxy(azurite):
    p = await RangeProxy(f"http://127.0.0.1:{azurite.port}").start()
    yield p
    await p.stop()


def _big_artifact(root, size=24 * MB, version="v1", seed=b""):
    root.mkdir(parents=True, exist_ok=True)
    (root / "big.bin").write_bytes(seed + os.urandom(size - len(seed)))
    (root / "small.txt").write_text("small")
    (root / "empty.txt").write_bytes(b"")
    return write_manifest(root, kind=KIND, format_version=1, version=version)


def _via(proxy, settings, container, **kw):
    through = Settings.from_env({"BLOB_CONNECTION_STRING": proxy.connection_string(),
                                 "LOCAL_CACHE_DIR": str(settings.cache_path), "BLOB_TIMEOUT_S":
                                 str(settings.blob_timeout_s)})
    return BlobArtifactSource(through, container, kind=KIND, format_version=1, **kw)


def _leftovers(root, allowed=()):
    """Every file under the cache root that is not part of an allowed version folder."""
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] not in allowed]


async def test_multi_chunk_file_streams_in_parallel_ranges_and_verifies(blob_settings, tmp_path, proxy):
    settings, container = blob_settings
    _big_artifact(tmp_path / "a")
    publish_artifact(settings, tmp_path / "a", container, progress=False)
    src = _via(proxy, settings, container, chunk_bytes=1 * MB, max_concurrency=4)
    proxy.delay_s = 0.05  # every range takes a while, so ranges that overlap in time are observable
    pointer = await src.latest()
    tracemalloc.start()
    try:
        local = await src.fetch(pointer)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (local / "big.bin").read_bytes() == (tmp_path / "a" / "big.bin").read_bytes()
    assert (local / "empty.txt").read_bytes() == b"" and (local / "small.txt").read_text() == "small"
    # One ranged GET per 1 MB chunk, each offset once, covering the file.
    assert sorted(proxy.ranges("/v1/big.bin")) == [i * MB for i in range(24)]
    # Ranges overlapped in time (a sequential download has 1 in flight), and never more than the bound.
    assert 3 <= proxy.max_inflight <= 4
    # The file was never held whole in memory: the window is 4 chunks of 1 MB.
    assert peak < 12 * MB, f"peak Python allocation {peak / MB:.1f} MB for a 24 MB file"
    assert not list(local.rglob("*.part"))
    await src.close()


async def test_tampered_multi_chunk_blob_is_refused_without_leaving_a_file(blob_settings, tmp_path, proxy):
    settings, container = blob_settings
    _big_artifact(tmp_path / "a", size=6 * MB)
    publish_artifact(settings, tmp_path / "a", container, progress=False)
    data = bytearray((tmp_path / "a" / "big.bin").read_bytes())
    data[3 * MB + 17] ^= 0xFF  # one bit pattern in the fourth chunk, same size
    sync_service_client(settings).get_container_client(container).upload_blob("v1/big.bin", bytes(data),
                                                                              overwrite=True)
    src = _via(proxy, settings, container, chunk_bytes=1 * MB, max_concurrency=4)
    with pytest.raises(ArtifactError, match="sha256"):
        await src.fetch(await src.latest())
    assert _leftovers(settings.cache_path / container) == []
    await src.close()


async def test_interrupted_download_leaves_nothing_and_the_previous_version_stays(blob_settings, tmp_path, proxy):
    settings, container = blob_settings
    _big_artifact(tmp_path / "a", size=4 * MB, version="v1")
    _big_artifact(tmp_path / "b", size=6 * MB, version="v2")
    publish_artifact(settings, tmp_path / "a", container, progress=False)
    src = _via(proxy, settings, container, chunk_bytes=1 * MB, max_concurrency=4)
    v1 = await src.fetch(await src.latest())
    publish_artifact(settings, tmp_path / "b", container, progress=False)
    proxy.faults[("/v2/big.bin", 2 * MB)] = "cut"  # the connection drops halfway through this range, every time
    with pytest.raises(BlobUnavailable):
        await src.fetch(await src.latest())
    assert 1 <= proxy.ranges("/v2/big.bin").count(2 * MB) <= 3  # retried a few times, not forever
    assert _leftovers(settings.cache_path / container, allowed=("v1",)) == []
    assert (v1 / "big.bin").read_bytes() == (tmp_path / "a" / "big.bin").read_bytes()
    # The verified copy of v1 is still what a fetch of v1 returns, without downloading it again.
    before = len(proxy.seen)
    assert await src.fetch({"version": "v1", "manifest_sha256": (v1 / ".verified").read_text()}) == v1
    assert len(proxy.seen) == before
    await src.close()


async def test_cancelled_download_leaves_nothing(blob_settings, tmp_path, proxy):
    settings, container = blob_settings
    _big_artifact(tmp_path / "a", size=8 * MB)
    publish_artifact(settings, tmp_path / "a", container, progress=False)
    src = _via(proxy, settings, container, chunk_bytes=1 * MB, max_concurrency=2)
    pointer = await src.latest()
    proxy.delay_s = 0.1
    task = asyncio.create_task(src.fetch(pointer))
    await asyncio.wait_for(proxy.wait_ranges("/v1/big.bin", 3), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _leftovers(settings.cache_path / container) == []
    await src.close()


async def test_retryable_errors_are_retried_and_others_are_not(blob_settings, tmp_path, proxy):
    settings, container = blob_settings
    _big_artifact(tmp_path / "a", size=3 * MB)
    publish_artifact(settings, tmp_path / "a", container, progress=False)
    src = _via(proxy, settings, container, chunk_bytes=1 * MB, max_concurrency=4)
    proxy.faults[("/v1/big.bin", 1 * MB)] = "503-once"
    local = await src.fetch(await src.latest())
    assert (local / "big.bin").read_bytes() == (tmp_path / "a" / "big.bin").read_bytes()
    assert sorted(proxy.ranges("/v1/big.bin")) == [0, MB, MB, 2 * MB]  # the 503 was retried, once
    # A missing blob (404) is not retryable: one request, then a refusal.
    publish_artifact(settings, _big_artifact(tmp_path / "b", size=3 * MB, version="v2") and tmp_path / "b",
                     container, progress=False)
    sync_service_client(settings).get_container_client(container).delete_blob("v2/small.txt")
    with pytest.raises(ArtifactError, match="not found"):
        await src.fetch(await src.latest())
    assert len([p for p, _ in proxy.seen if p.endswith("/v2/small.txt")]) == 1
    await src.close()


async def test_every_range_has_a_timeout_and_bounded_retries(azurite, tmp_path, proxy):
    container = "timeouts"
    settings = Settings.from_env({"BLOB_CONNECTION_STRING": azurite.connection_string,
                                  "LOCAL_CACHE_DIR": str(tmp_path / "cache"), "BLOB_TIMEOUT_S": "1"})
    _big_artifact(tmp_path / "a", size=2 * MB)
    publish_artifact(settings, tmp_path / "a", container, progress=False)
    src = _via(proxy, settings, container, chunk_bytes=1 * MB)
    proxy.faults[("/v1/big.bin", 1 * MB)] = "hang"
    t0 = asyncio.get_running_loop().time()
    with pytest.raises(BlobUnavailable, match="TimeoutError"):
        await src.fetch(await src.latest())
    elapsed = asyncio.get_running_loop().time() - t0
    assert proxy.ranges("/v1/big.bin").count(1 * MB) == 3  # three attempts, each cut at BLOB_TIMEOUT_S
    assert elapsed < 10
    assert _leftovers(settings.cache_path / container) == []
    await src.close()
