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
