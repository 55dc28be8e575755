#!/usr/bin/env python3
"""Download throughput of an index bundle from Blob Storage (a private Azurite on loopback).

    .venv/bin/python bench/bench_blob.py [--mb 700] [--rounds 3] [--workdir DIR] [--json OUT]
        [--variants sequential sdk-parallel:8 ranged:4:8 ...]

What it does:

1. Writes a synthetic bundle of ``--mb`` MB of random (incompressible) bytes, split
   like a large bundle (one file of ~55%, one of ~20%, a few of 5-10%, a few tiny
   ones), with its manifest, and publishes it to a private Azurite with
   ``publish_artifact``.
2. Every round runs every variant once, interleaved, each in a fresh subprocess
   with an empty cache folder, and times ``latest()`` + ``fetch()`` until the
   verified folder is in place:

   - ``sequential``: the code path before this change: each file one
     ``download_blob`` + ``readall()`` (whole file in memory, the SDK's default
     ``max_concurrency=1``), 4 files at a time, written, then every file hashed
     again by ``verify(deep=True)``.
   - ``sdk-parallel:C``: the SDK's own parallel download, ``download_blob(
     max_concurrency=C).readinto(sink)``, where the sink writes at offsets and
     hashes in order while the chunks arrive (its ``write`` runs on the event loop).
   - ``ranged:M:C``: ``BlobArtifactSource.fetch`` as shipped: our own ranged GETs
     of M MB, C in flight across files, sha256 in order in a thread while streaming
     (``ranged`` alone: the shipped defaults, ``CHUNK_BYTES`` and ``MAX_CONCURRENCY``).
   - ``raw:M:C``: the same windowing and hashing, each range a bare aiohttp GET with
     a container SAS instead of the SDK's pipeline (measures the SDK's own cost).
3. Prints per variant the median MB/s over the rounds, the child's peak RSS, and the
   CPU seconds the client and Azurite spent. On loopback there is no network:
   the figure is how fast Azurite (Node, one event loop) can serve and this
   process can take, hash and write the bytes on a shared 2-core machine, i.e. a
   CPU-bound floor for the client side, not a prediction of Azure's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.adapters.blob import BlobArtifactSource, publish_artifact  # noqa: E402
from core.artifacts import MANIFEST, read_manifest, staging_dir, verify, write_manifest  # noqa: E402
from core.settings import Settings  # noqa: E402

KIND = "bench-bundle"
MB = 1 << 20
SHARES = [0.55, 0.20, 0.10, 0.05, 0.05, 0.05]  # the rest goes to a few tiny files


def make_bundle(root: Path, total_mb: int) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    total = total_mb * MB
    sizes = [int(total * s) for s in SHARES]
    for i, size in enumerate(sizes):
        with open(root / f"part{i}.bin", "wb") as fh:
            left = size
            while left:
                n = min(left, 8 * MB)
                fh.write(os.urandom(n))
                left -= n
    for i in range(4):
        (root / f"meta{i}.json").write_text(json.dumps({"i": i, "pad": "x" * (1000 * (i + 1))}))
    return write_manifest(root, kind=KIND, format_version=1, version="bench1")


# ------------------------------------------------------------------ the variants (child side)
async def sequential(settings: Settings, container: str) -> Path:
    """The fetch before parallel ranged reads, as it was (whole blobs in memory, then a deep verify)."""
    src = BlobArtifactSource(settings, container, kind=KIND, format_version=1)
    cc = src._container()
    pointer = await src.latest()
    version = pointer["version"]
    final = src.cache_root / version

    async def download(name: str) -> bytes:
        async with asyncio.timeout(settings.blob_timeout_s * 20):
            stream = await cc.download_blob(name, timeout=int(settings.blob_timeout_s))
            return await stream.readall()

    try:
        manifest_bytes = await download(f"{version}/{MANIFEST}")
        with staging_dir(final) as tmp:
            (tmp / MANIFEST).write_bytes(manifest_bytes)
            manifest = read_manifest(tmp)
            sem = asyncio.Semaphore(4)

            async def one(rel: str) -> None:
                async with sem:
                    data = await download(f"{version}/{rel}")
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(dest.write_bytes, data)

            await asyncio.gather(*(one(rel) for rel in manifest["files"]))
            await asyncio.to_thread(verify, tmp, kind=KIND, format_version=1, deep=True)
    finally:
        await src.close()
    return final


class _HashingSink:
    """A seekable sink for the SDK's parallel ``readinto``: write at offsets, hash in order."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pos, self.hashed = fd, 0, 0
        self.hash = hashlib.sha256()
        self.pending: dict[int, bytes] = {}
        self.peak_pending = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos
        return pos

    def write(self, data: bytes) -> int:
        data = bytes(data)
        os.pwrite(self.fd, data, self.pos)
        self.pending[self.pos] = data
        self.pos += len(data)
        while self.hashed in self.pending:
            chunk = self.pending.pop(self.hashed)
            self.hash.update(chunk)
            self.hashed += len(chunk)
        self.peak_pending = max(self.peak_pending, sum(map(len, self.pending.values())))
        return len(data)


async def sdk_parallel(settings: Settings, container: str, concurrency: int) -> Path:
    src = BlobArtifactSource(settings, container, kind=KIND, format_version=1)
    cc = src._container()
    pointer = await src.latest()
    version = pointer["version"]
    final = src.cache_root / version
    try:
        manifest_bytes = await src._download(f"{version}/{MANIFEST}")
        with staging_dir(final) as tmp:
            (tmp / MANIFEST).write_bytes(manifest_bytes)
            manifest = read_manifest(tmp)
            sem = asyncio.Semaphore(4)

            async def one(rel: str, meta: dict[str, Any]) -> None:
                async with sem:
                    part = tmp / (rel + ".part")
                    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    try:
                        sink = _HashingSink(fd)
                        async with asyncio.timeout(settings.blob_timeout_s * 20):
                            stream = await cc.download_blob(f"{version}/{rel}", max_concurrency=concurrency,
                                                            timeout=int(settings.blob_timeout_s))
                            await stream.readinto(sink)
                    finally:
                        os.close(fd)
                    if sink.hashed != meta["size"] or sink.hash.hexdigest() != meta["sha256"]:
                        raise RuntimeError(f"{rel} does not match")
                    os.replace(part, tmp / rel)

            await asyncio.gather(*(one(rel, meta) for rel, meta in manifest["files"].items()))
            await asyncio.to_thread(verify, tmp, kind=KIND, format_version=1, deep=False)
    finally:
        await src.close()
    return final


async def ranged(settings: Settings, container: str, chunk_mb: float, concurrency: int) -> Path:
    kw = {"chunk_bytes": int(chunk_mb * MB), "max_concurrency": concurrency} if chunk_mb else {}
    src = BlobArtifactSource(settings, container, kind=KIND, format_version=1, **kw)
    try:
        return await src.fetch(await src.latest())
    finally:
        await src.close()


class _RawRangedSource(BlobArtifactSource):
    """Same windowing and hashing as ``ranged``, but each range a bare aiohttp GET with a SAS (no SDK pipeline)."""

    def __init__(self, *args: Any, conn: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        from datetime import datetime, timedelta, timezone

        import aiohttp
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        parts = dict(p.split("=", 1) for p in conn.strip(";").split(";"))
        sas = generate_container_sas(parts["AccountName"], self.container, account_key=parts["AccountKey"],
                                     permission=ContainerSasPermissions(read=True),
                                     expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        self._base, self._sas = f"{parts['BlobEndpoint'].rstrip('/')}/{self.container}", sas
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.blob_timeout_s))

    async def _range(self, blob: Any, name: str, offset: int, length: int, size: int) -> bytes:
        headers = {"x-ms-range": f"bytes={offset}-{offset + length - 1}", "x-ms-version": "2025-01-05"}
        async with asyncio.timeout(self.settings.blob_timeout_s):
            async with self._session.get(f"{self._base}/{name}?{self._sas}", headers=headers) as resp:
                resp.raise_for_status()
                data = await resp.read()
                total = int(resp.headers["Content-Range"].rpartition("/")[2])
        if total != size or len(data) != length:
            raise RuntimeError(f"{name}: {total} bytes in Blob, {len(data)} read")
        return data

    async def close(self) -> None:
        await self._session.close()
        await super().close()


async def raw_ranged(settings: Settings, container: str, chunk_mb: float, concurrency: int) -> Path:
    src = _RawRangedSource(settings, container, kind=KIND, format_version=1, conn=settings.blob_connection_string,
                           chunk_bytes=int(chunk_mb * MB), max_concurrency=concurrency)
    try:
        return await src.fetch(await src.latest())
    finally:
        await src.close()


async def child(variant: str, conn: str, container: str, cache: str) -> dict[str, Any]:
    settings = Settings.from_env({"BLOB_CONNECTION_STRING": conn, "LOCAL_CACHE_DIR": cache, "BLOB_TIMEOUT_S": "30"})
    name, *params = variant.split(":")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if name == "sequential":
        final = await sequential(settings, container)
    elif name == "sdk-parallel":
        final = await sdk_parallel(settings, container, int(params[0]))
    elif name == "ranged":  # "ranged" alone: the shipped defaults
        final = await ranged(settings, container, float(params[0]) if params else 0, int(params[1]) if params else 0)
    elif name == "raw":
        final = await raw_ranged(settings, container, float(params[0]), int(params[1]))
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    manifest = verify(final, kind=KIND, format_version=1, deep=False)  # outside the timing
    size = sum(m["size"] for m in manifest["files"].values())
    return {"variant": variant, "seconds": seconds, "bytes": size, "client_cpu_s": cpu,
            "rss_before_mb": rss0, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ---------------------------------------------------------------------------- parent side
def run(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from tests.fakes.processes import AzuriteProcess

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-blob-"))
    work.mkdir(parents=True, exist_ok=True)
    bundle = work / f"bundle-{args.mb}mb"
    if not (bundle / MANIFEST).exists():
        print(f"writing a {args.mb} MB synthetic bundle to {bundle} ...", flush=True)
        shutil.rmtree(bundle, ignore_errors=True)
        make_bundle(bundle, args.mb)
    azurite = AzuriteProcess(work / "azurite").start()
    try:
        settings = Settings.from_env({"BLOB_CONNECTION_STRING": azurite.connection_string,
                                      "LOCAL_CACHE_DIR": str(work / "unused"), "BLOB_TIMEOUT_S": "120"})
        t0 = time.perf_counter()
        publish_artifact(settings, bundle, "bench", progress=False)
        print(f"published in {time.perf_counter() - t0:.1f}s to Azurite on port {azurite.port}", flush=True)
        az = psutil.Process(azurite.proc.pid)
        results: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
        for r in range(args.rounds):
            for variant in args.variants:
                cache = work / "cache"
                shutil.rmtree(cache, ignore_errors=True)
                az0 = sum(az.cpu_times()[:2])
                out = subprocess.run([sys.executable, __file__, "--one", variant, "--conn", azurite.connection_string,
                                      "--container", "bench", "--cache", str(cache)],
                                     check=True, capture_output=True, text=True, timeout=900)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                res["azurite_cpu_s"] = sum(az.cpu_times()[:2]) - az0
                res["mb_s"] = res["bytes"] / MB / res["seconds"]
                results[variant].append(res)
                print(f"round {r + 1} {variant:<16} {res['mb_s']:7.1f} MB/s  {res['seconds']:6.2f}s  "
                      f"client cpu {res['client_cpu_s']:5.2f}s  azurite cpu {res['azurite_cpu_s']:5.2f}s  "
                      f"peak rss {res['peak_rss_mb']:6.0f} MB", flush=True)
                shutil.rmtree(cache, ignore_errors=True)
    finally:
        azurite.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    summary = {}
    for variant, rows in results.items():
        summary[variant] = {
            "mb_s_median": round(statistics.median(x["mb_s"] for x in rows), 1),
            "seconds_median": round(statistics.median(x["seconds"] for x in rows), 2),
            "client_cpu_s_median": round(statistics.median(x["client_cpu_s"] for x in rows), 2),
            "azurite_cpu_s_median": round(statistics.median(x["azurite_cpu_s"] for x in rows), 2),
            # bytes per second of this process's own CPU: the client-side ceiling on one free core
            "mb_per_client_cpu_s_median": round(statistics.median(x["bytes"] / MB / x["client_cpu_s"] for x in rows)),
            "peak_rss_mb_max": round(max(x["peak_rss_mb"] for x in rows)),
            "rss_before_mb": round(statistics.median(x["rss_before_mb"] for x in rows)),
            "rounds": len(rows),
        }
    base = summary.get("sequential", {}).get("mb_s_median")
    print(f"\nbundle {args.mb} MB, {args.rounds} rounds, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores (shared)")
    print(f"{'variant':<16} {'MB/s':>7} {'x seq':>6} {'s':>6} {'client cpu s':>12} {'MB/cpu-s':>8} "
          f"{'azurite cpu s':>13} {'peak rss MB':>11}")
    for variant, s in summary.items():
        ratio = f"{s['mb_s_median'] / base:.2f}" if base else "-"
        print(f"{variant:<16} {s['mb_s_median']:7.1f} {ratio:>6} {s['seconds_median']:6.2f} "
              f"{s['client_cpu_s_median']:12.2f} {s['mb_per_client_cpu_s_median']:8d} "
              f"{s['azurite_cpu_s_median']:13.2f} {s['peak_rss_mb_max']:11d}")
    return {"bundle_mb": args.mb, "rounds": args.rounds, "load_average": os.getloadavg(), "variants": summary,
            "raw": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=700, help="size of the synthetic bundle (MB)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", nargs="+",
                    default=["sequential", "sdk-parallel:8", "ranged", "raw:8:4"])
    ap.add_argument("--workdir", help="keep the bundle and Azurite's data here (default: a temp dir, removed)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--conn", help=argparse.SUPPRESS)
    ap.add_argument("--container", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(child(args.one, args.conn, args.container, args.cache))))
        return
    report = run(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
