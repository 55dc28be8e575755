"""Publish an ads catalog: ``python -m core.ads.publish CATALOG.jsonl [--container NAME]``.

Validates the catalog (a bad entry fails here, naming its line and id), builds the
versioned artifact in a temporary folder and hands it to Blob publishing, which
uploads it and moves the ``latest`` pointer. Running instances pick it up on their
next refresh.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import sys
import tempfile
from pathlib import Path

from core.ads.catalog import CatalogError, build_catalog_artifact
from core.artifacts import ArtifactError


def main(argv: list[str] | None = None) -> int:
    from core.settings import Settings

    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m core.ads.publish", description=__doc__.splitlines()[0])
    parser.add_argument("catalog", type=Path, help="JSONL file, one ad per line")
    parser.add_argument("--container", default=settings.ads_container,
                        help=f"Blob container (default {settings.ads_container!r})")
    parser.add_argument("--version", default=None, help="artifact version (default: UTC time + random)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="ads-catalog-") as tmp:
        artifact_dir = Path(tmp) / "artifact"
        try:
            manifest = build_catalog_artifact(args.catalog, artifact_dir, version=args.version)
        except (CatalogError, ArtifactError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        from core.adapters.blob import BlobUnavailable, publish_artifact  # lazily: needs the Blob SDK

        try:
            result = publish_artifact(settings, artifact_dir, args.container)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
        except BlobUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
    print(json.dumps({"version": manifest["version"], "ads": manifest["ads"], "container": args.container,
                      "published": result}, default=str, indent=2))
    return 0


async def _await(aw):  # noqa: ANN001 - any awaitable
    return await aw


if __name__ == "__main__":
    raise SystemExit(main())
