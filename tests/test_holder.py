"""The artifact holder: one load under concurrent first requests, 503 until ready, atomic swaps."""

import asyncio
import threading
import time

import pytest

from core.artifacts import ArtifactError
from core.errors import NotReady
from core.holder import ArtifactHolder


class FakeSource:
    def __init__(self, version="v1", fail=None, delay=0.0):
        self.version, self.fail, self.delay = version, fail, delay
        self.latest_calls = 0

    def describe(self):
        return "fake"

    async def latest(self):
        self.latest_calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return {"version": self.version, "manifest_sha256": self.version}

    async def fetch(self, pointer):
        return pointer["version"]

    async def close(self):
        pass


class CountingLoader:
    def __init__(self, seconds=0.0, fail_on=()):
        self.calls, self.seconds, self.fail_on = [], seconds, set(fail_on)
        self.lock = threading.Lock()

    def __call__(self, path):
        with self.lock:
            self.calls.append(path)
        time.sleep(self.seconds)
        if path in self.fail_on:
            raise ArtifactError(f"{path} is corrupt")
        return {"version": path}


async def test_concurrent_first_requests_load_exactly_once():
    loader = CountingLoader(seconds=0.3)
    h = ArtifactHolder("idx", FakeSource(), loader, refresh_interval_s=0)
    results = await asyncio.gather(*(h.get(wait_s=5) for _ in range(50)))
    assert len(loader.calls) == 1
    assert all(r is results[0] for r in results)
    assert h.status()["state"] == "ready" and h.version == "v1"
    await h.close()


async def test_not_ready_while_loading_with_retry_after():
    h = ArtifactHolder("idx", FakeSource(), CountingLoader(seconds=0.5), refresh_interval_s=0)
    with pytest.raises(NotReady) as err:
        await h.get(wait_s=0.05)
    assert err.value.status == 503 and "Retry-After" in err.value.headers
    assert h.status()["state"] == "loading"
    assert await h.get(wait_s=5) == {"version": "v1"}
    await h.close()


async def test_unreachable_source_backs_off_then_loads_when_it_answers():
    src = FakeSource(fail=ConnectionError("blob down"))
    h = ArtifactHolder("idx", src, CountingLoader(), refresh_interval_s=0, retry_initial_s=0.1, retry_max_s=0.2)
    with pytest.raises(NotReady) as err:
        await h.get(wait_s=1)
    assert "blob down" in err.value.message
    assert h.status()["state"] == "failed"
    calls_before = src.latest_calls
    await asyncio.sleep(0.5)
    assert src.latest_calls - calls_before <= 4  # backing off, not spinning
    src.fail = None
    for _ in range(30):
        try:
            assert await h.get(wait_s=0.5) == {"version": "v1"}
            break
        except NotReady:
            await asyncio.sleep(0.1)
    assert h.status()["state"] == "ready"
    await h.close()


async def test_new_version_is_swapped_in_and_a_bad_one_never_served():
    src = FakeSource("v1")
    loader = CountingLoader(fail_on={"v2-bad"})
    h = ArtifactHolder("idx", src, loader, refresh_interval_s=0.05)
    first = await h.get()
    src.version = "v2-bad"
    await asyncio.sleep(0.3)
    assert h.current is first and h.version == "v1"  # the previous good version keeps serving
    assert "corrupt" in h.status()["last_error"]
    src.version = "v3"
    for _ in range(40):
        if h.version == "v3":
            break
        await asyncio.sleep(0.05)
    assert h.current == {"version": "v3"}
    assert first == {"version": "v1"}  # a request holding the old object is unaffected
    assert "last_error" not in h.status()
    await h.close()
