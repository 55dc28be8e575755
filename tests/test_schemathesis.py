"""Schemathesis against the local host: the OpenAPI document and the API agree (issue 11).

Starts ``python -m core.devhost`` on a free port over the sample bundle and a private Redis, and runs
``schemathesis run /api/openapi.json --checks all --mode all`` with the function key. Bounded for CI by
``SCHEMATHESIS_MAX_EXAMPLES`` (default 25 per operation, ~1 minute on 2 busy cores); the hand run that the
README quotes uses 500 per operation and mode:

    SCHEMATHESIS_MAX_EXAMPLES=500 SCHEMATHESIS_MODES=positive,negative \\
        .venv/bin/python -m pytest tests/test_schemathesis.py -q -s

``SCHEMATHESIS_SEED`` picks another seed (the default is fixed so that CI runs are reproducible).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT
from tests.fixtures.services import free_port

KEY = "schemathesis-key"
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
MODES = os.environ.get("SCHEMATHESIS_MODES", "all").split(",")
SEED = os.environ.get("SCHEMATHESIS_SEED", "20261201")
# Checks left out until the local host's own errors follow the contract (issue 11, items 10 and 12, on the
# HOST branch). Empty: every check runs.
EXCLUDED_CHECKS: tuple[str, ...] = ()
OPERATIONS = {"POST /search", "GET /search", "POST /ads", "GET /health"}
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Time allowed for one run: ~1 s per example and operation on 2 busy cores, plus the coverage phase.
RUN_TIMEOUT_S = 240 + 3 * MAX_EXAMPLES


def _wait_warm(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the local host exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if json.loads(r.read()).get("warm"):
                    return
        except (OSError, urllib.error.HTTPError, ValueError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not warm after {timeout}s")


@pytest.fixture
def local_host(sample_bundle, redis_url, tmp_path):
    port = free_port()
    env = {**os.environ, "INDEX_LOCAL_PATH": str(sample_bundle), "REDIS_URL": redis_url, "FUNCTION_KEYS": KEY,
           "REFRESH_INTERVAL_S": "0", "LOCAL_CACHE_DIR": str(tmp_path / "cache"), "LOG_LEVEL": "WARNING",
           "HF_HUB_OFFLINE": "1", "ANTHROPIC_API_KEY": "", "AZURE_MAPS_KEY": ""}
    log = open(tmp_path / "host.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "core.devhost", "--port", str(port)], cwd=PROJECT_ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_warm(f"{base}/api/health", proc, 180)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _run(base: str, mode: str, report_dir: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    cmd = [str(SCHEMATHESIS), "run", f"{base}/api/openapi.json", "--checks", "all", "--mode", mode,
           "-H", f"x-functions-key: {KEY}", "--max-examples", str(MAX_EXAMPLES), "--seed", SEED,
           "--request-timeout", "20", "--generation-database", "none", "--no-color",
           "--report", "ndjson", "--report-dir", str(report_dir)]
    if EXCLUDED_CHECKS:
        cmd += ["--exclude-checks", ",".join(EXCLUDED_CHECKS)]
    out = subprocess.run(cmd, cwd=report_dir, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    events = [json.loads(line) for f in report_dir.glob("*.ndjson") for line in f.read_text().splitlines()]
    return out, events


def _tally(events: list[dict]) -> dict[str, collections.Counter]:
    """Per operation: responses by status and cases by generation mode."""
    tally: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for event in events:
        rec = event.get("ScenarioFinished", {}).get("recorder")
        if not rec:
            continue
        for interaction in rec.get("interactions", {}).values():
            response = interaction.get("response")
            tally[rec["label"]][f"status {response['status_code'] if response else 'none'}"] += 1
        for case in rec.get("cases", {}).values():
            meta = (case.get("value") or {}).get("meta") or {}
            tally[rec["label"]][f"mode {(meta.get('generation') or {}).get('mode')}"] += 1
    return tally


@pytest.mark.timeout(RUN_TIMEOUT_S + 300)  # the local host's start (index, catalog, city table) included
@pytest.mark.parametrize("mode", MODES)
def test_schemathesis_finds_no_failure(local_host, tmp_path, mode):
    report_dir = tmp_path / f"report-{mode}"
    report_dir.mkdir()
    t0 = time.monotonic()
    out, events = _run(local_host, mode, report_dir)
    tally = _tally(events)
    print(f"\nschemathesis --mode {mode} --max-examples {MAX_EXAMPLES} --seed {SEED}: "
          f"{time.monotonic() - t0:.0f}s")
    for op, counts in sorted(tally.items()):
        print(f"  {op}: {dict(sorted(counts.items()))}")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "No issues found" in out.stdout, out.stdout[-3000:]
    # It really ran: every operation tested, the key accepted (200s), and in "all" mode both kinds of data.
    assert set(tally) == OPERATIONS, tally
    for op, counts in tally.items():
        assert counts["status 200"] >= 1, (op, counts)
        if mode == "all" and op != "GET /health":
            assert counts["mode positive"] and counts["mode negative"] and counts["status 400"], (op, counts)
