"""The ads catalog: validation that names the bad entry, the artifact, loading and publishing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.ads.catalog import (ARTIFACT_KIND, CatalogError, LoadedCatalog, build_catalog_artifact, parse_ads,
                              read_ads)
from core.artifacts import ArtifactError, read_manifest
from core.settings import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "data" / "ads_catalog.jsonl"


def good(**over):
    ad = {"id": "a-1", "advertiser": "Acme", "title": "Acme pharmacy", "body": "Open late.",
          "url": "https://www.acme.example/", "keywords": ["pharmacy"], "bid_cpm": 2.0}
    ad.update(over)
    return json.dumps(ad)


def test_sample_catalog_is_valid_and_varied():
    ads = read_ads(SAMPLE)
    assert 55 <= len(ads) <= 70
    statuses = {a.status for a in ads}
    assert {"active", "paused", "archived"} <= statuses
    assert any(a.geo is None for a in ads)
    assert any(a.geo and a.geo.countries for a in ads) and any(a.geo and a.geo.regions for a in ads)
    labels = {p.label for a in ads if a.geo for p in a.geo.points}
    assert {"Paris", "Paris, TX", "London", "Berlin", "Madrid", "New York", "Toronto", "Sydney", "Tokyo"} <= labels
    assert len({lang for a in ads for lang in a.languages}) >= 5
    assert len({a.priority for a in ads}) >= 2


@pytest.mark.parametrize("line,needle", [
    (good(url="javascript:alert(1)"), "url"),
    (good(url="http://insecure.example/"), "url"),
    (good(bid_cpm=-1), "bid_cpm"),
    (good(status="live"), "status"),
    (good(languages=["english"]), "language"),
    (good(geo={"countries": ["France"]}), "country"),
    (good(geo={"regions": ["Texas"]}), "region"),
    (good(geo={}), "geo"),
    (good(geo={"points": [{"lat": 95, "lon": 0, "radius_km": 5}]}), "lat"),
    (good(start_date="2026-05-01", end_date="2026-04-01"), "end_date"),
    (good(start_date="yesterday"), "start_date"),
    (good(keywords=[]), "keywords"),
    (good(colour="red"), "colour"),
    (good(id="bad id!"), "id"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
])
def test_invalid_entry_is_named_by_line_and_id(line, needle):
    lines = [good(id="ok-1"), "", "# a comment", line]
    with pytest.raises(CatalogError) as err:
        parse_ads(lines, source="cat.jsonl")
    msg = str(err.value)
    assert msg.startswith("cat.jsonl:4")
    assert needle in msg
    if line.startswith("{\"id\""):
        assert repr(json.loads(line)["id"]) in msg


def test_duplicate_ids_and_empty_catalog():
    with pytest.raises(CatalogError, match=r"cat:2 .*duplicate id \(first on line 1\)"):
        parse_ads([good(), good()], source="cat")
    with pytest.raises(CatalogError, match="no ads"):
        parse_ads(["", "# nothing"], source="cat")


def test_artifact_round_trip_and_tamper_detection(tmp_path, ads_encoder):
    out = tmp_path / "artifact"
    manifest = build_catalog_artifact(SAMPLE, out, version="v-test")
    assert manifest["kind"] == ARTIFACT_KIND and manifest["version"] == "v-test"
    assert manifest["ads"] == len(read_ads(SAMPLE)) and "ads.jsonl" in manifest["files"]
    assert read_manifest(out)["version"] == "v-test"

    catalog = LoadedCatalog.from_dir(out, ads_encoder)
    assert catalog.version == "v-test" and len(catalog.ads) == manifest["ads"]
    hits = catalog.index.search("pharmacy allergy", top_k=3, method="dense")
    assert all(h.id in catalog.ads for h in hits)

    bad = tmp_path / "tampered"
    shutil.copytree(out, bad)
    with open(bad / "ads.jsonl", "a", encoding="utf-8") as fh:
        fh.write(good(id="injected") + "\n")
    with pytest.raises(ArtifactError):
        LoadedCatalog.from_dir(bad, ads_encoder)


def test_build_refuses_invalid_catalog_and_leaves_nothing(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(good(id="x-1") + "\n" + good(id="x-2", bid_cpm="lots") + "\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"bad.jsonl:2 \(id 'x-2'\)"):
        build_catalog_artifact(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_from_jsonl_versions_by_content(sample_catalog):
    import hashlib

    assert sample_catalog.version == "file-" + hashlib.sha256(SAMPLE.read_bytes()).hexdigest()[:12]
    assert list(sample_catalog.ads) == [a.id for a in read_ads(SAMPLE)]


def test_publish_cli_rejects_a_bad_catalog(tmp_path, capsys):
    from core.ads.publish import main

    src = tmp_path / "bad.jsonl"
    src.write_text(good(id="x-1", url="ftp://nope") + "\n", encoding="utf-8")
    assert main([str(src)]) == 2
    assert "bad.jsonl:1 (id 'x-1')" in capsys.readouterr().err


async def test_publish_cli_to_blob_and_load_back(azurite, monkeypatch, tmp_path, ads_encoder, capsys):
    import asyncio

    from core.adapters.blob import BlobArtifactSource
    from core.ads.catalog import CATALOG_FORMAT
    from core.ads.publish import main
    from core.settings import Settings

    monkeypatch.setenv("BLOB_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("LOCAL_CACHE_DIR", str(tmp_path / "cache"))
    rc = await asyncio.to_thread(main, [str(SAMPLE), "--container", "ads-test", "--version", "cli-v1"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["version"] == "cli-v1"

    source = BlobArtifactSource(Settings.from_env(), "ads-test", kind=ARTIFACT_KIND, format_version=CATALOG_FORMAT)
    try:
        pointer = await source.latest()
        folder = await source.fetch(pointer)
    finally:
        await source.close()
    catalog = LoadedCatalog.from_dir(Path(folder), ads_encoder)
    assert catalog.version == "cli-v1" and len(catalog.ads) == len(read_ads(SAMPLE))
