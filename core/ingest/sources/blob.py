"""A Blob Storage container, optionally under a prefix, with the app's connection settings."""

from __future__ import annotations

from functools import partial

from core.ingest.models import IngestError
from core.ingest.sources import SourceFile
from core.ingest.sources.folder import join_url


def parse_spec(spec: str) -> tuple[str, str]:
    """``CONTAINER[/PREFIX]`` -> (container, prefix ending in "/" or "")."""
    container, _, prefix = spec.strip().strip("/").partition("/")
    if not container:
        raise IngestError(spec, "--from-blob needs CONTAINER[/PREFIX]")
    prefix = prefix.strip("/")
    return container, (prefix + "/" if prefix else "")


def _download(cc, name: str, timeout: float) -> bytes:
    return cc.download_blob(name, timeout=timeout).readall()


def list_blob(spec: str, settings=None, base_url: str = "") -> list[SourceFile]:
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    from core.adapters.blob import BlobUnavailable, sync_service_client
    from core.settings import Settings

    settings = settings or Settings.from_env()
    container, prefix = parse_spec(spec)
    try:
        cc = sync_service_client(settings).get_container_client(container)
        blobs = list(cc.list_blobs(name_starts_with=prefix or None, timeout=settings.blob_timeout_s))
    except BlobUnavailable as exc:
        raise IngestError(spec, str(exc)) from None
    except ResourceNotFoundError:
        raise IngestError(spec, f"no container {container!r}") from None
    except AzureError as exc:
        raise IngestError(spec, f"cannot list blobs ({type(exc).__name__}: {exc})") from None
    files: list[SourceFile] = []
    for b in blobs:
        rel = b.name[len(prefix):]
        if not rel or rel.endswith("/") or any(part.startswith(".") for part in rel.split("/")):
            continue
        modified = b.last_modified.isoformat(timespec="seconds") if b.last_modified else ""
        url = join_url(base_url, rel) if base_url else cc.get_blob_client(b.name).url
        files.append(SourceFile(id=rel, size=int(b.size or 0), modified=modified, url=url,
                                read=partial(_download, cc, b.name, settings.blob_timeout_s)))
    files.sort(key=lambda f: f.id)
    return files
