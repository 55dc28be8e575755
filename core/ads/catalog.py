"""The ads catalog: validated ads, their search index, and the versioned artifact.

Source format: JSONL, one ad per line (blank lines and ``#`` comment lines are
skipped). Every ad is validated when loaded; the first bad entry fails the load
with its line number and id, so a broken catalog is never half-served.

Artifact (kind ``ads-catalog``): a folder with ``ads.jsonl`` (the normalised ads)
and ``manifest.json`` (core.artifacts), published to Blob Storage like the index.
Loading is synchronous CPU work (validation, encoding the ads' texts): run it
with ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.artifacts import staging_dir, verify, write_manifest

log = logging.getLogger("core.ads.catalog")

ARTIFACT_KIND = "ads-catalog"
FORMAT_VERSION = 1
ADS_FILE = "ads.jsonl"
CATALOG_KIND, CATALOG_FORMAT = ARTIFACT_KIND, FORMAT_VERSION  # the names core.runtime uses

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_URL = re.compile(r"^https://[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?::\d+)?(?:/[^\s<>\"']*)?$")
_LANG = re.compile(r"^[a-z]{2}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_REGION = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")


class CatalogError(ValueError):
    """The catalog is invalid; the message names the bad entry (line and id)."""


class GeoPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_km: float = Field(gt=0, le=20000)
    label: str = ""


class GeoTargets(BaseModel):
    """Where an ad runs: within any point's radius, or in any listed country / region.

    Region codes are ISO 3166-2 style: ``US-TX``, ``CA-ON``, ``AU-NSW``, ``GB-ENG``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    points: tuple[GeoPoint, ...] = ()
    countries: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()

    @field_validator("countries")
    @classmethod
    def _countries(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            if not _COUNTRY.match(c):
                raise ValueError(f"country {c!r} is not an ISO 3166-1 alpha-2 code like 'FR'")
        return v

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for r in v:
            if not _REGION.match(r):
                raise ValueError(f"region {r!r} is not an ISO 3166-2 code like 'US-TX'")
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> "GeoTargets":
        if not (self.points or self.countries or self.regions):
            raise ValueError("geo has no points, countries or regions (omit geo to run everywhere)")
        return self


class Ad(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: str
    advertiser: str = Field(min_length=1, max_length=80)
    title: str = Field(min_length=1, max_length=90)
    body: str = Field(min_length=1, max_length=300)
    url: str
    keywords: tuple[str, ...] = Field(min_length=1)
    categories: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()  # empty: any language
    geo: Optional[GeoTargets] = None  # None: everywhere
    start_date: Optional[date] = None
    end_date: Optional[date] = None
    status: Literal["active", "paused", "archived"] = "active"
    bid_cpm: float = Field(ge=0, le=1000)
    priority: int = Field(default=0, ge=0, le=9)  # higher tier first

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("id must be 1-64 of letters, digits, '.', '_', '-'")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not _URL.match(v):
            raise ValueError("url must be an absolute https URL")
        return v

    @field_validator("keywords", "categories")
    @classmethod
    def _terms(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(t.strip().lower() for t in v)
        if any(not t or len(t) > 40 for t in out):
            raise ValueError("keywords and categories must be 1-40 characters")
        return out

    @field_validator("languages")
    @classmethod
    def _languages(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for lang in v:
            if not _LANG.match(lang):
                raise ValueError(f"language {lang!r} is not an ISO 639-1 code like 'en'")
        return v

    @model_validator(mode="after")
    def _dates(self) -> "Ad":
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self

    def search_text(self) -> str:
        """What retrieval matches a conversation against."""
        return " ".join([self.title + ".", self.body, "Keywords:", ", ".join(self.keywords) + ".",
                         "Categories:", ", ".join(self.categories) + ".", self.advertiser])

    def as_document(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "url": self.url, "text": self.search_text(),
                "metadata": {"advertiser": self.advertiser, "categories": list(self.categories)}}


def parse_ads(lines: list[str], source: str = "catalog") -> list[Ad]:
    """Validate every ad; raise CatalogError naming the first bad entry by line and id."""
    ads: list[Ad] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CatalogError(f"{source}:{lineno}: not valid JSON ({exc.msg})") from None
        ad_id = raw.get("id") if isinstance(raw, dict) else None
        where = f"{source}:{lineno} (id {ad_id!r})"
        if not isinstance(raw, dict):
            raise CatalogError(f"{where}: an ad must be a JSON object")
        try:
            ad = Ad.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'ad'}: {e['msg']}"
                                 for e in exc.errors()[:5])
            raise CatalogError(f"{where}: {problems}") from None
        if ad.id in seen:
            raise CatalogError(f"{where}: duplicate id (first on line {seen[ad.id]})")
        seen[ad.id] = lineno
        ads.append(ad)
    if not ads:
        raise CatalogError(f"{source}: the catalog has no ads")
    return ads


def read_ads(path: Path) -> list[Ad]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such catalog file") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 ({exc})") from None
    return parse_ads(lines, source=path.name)


@dataclass(frozen=True)
class LoadedCatalog:
    """A validated catalog and its search index over the ads' texts (immutable once built)."""

    version: str
    ads: dict[str, Ad]
    index: Any  # core.search.engine.SearchIndex

    @classmethod
    def build(cls, ads: list[Ad], encoder: Any, version: str) -> "LoadedCatalog":
        from core.search.engine import SearchIndex

        index = SearchIndex.from_documents([ad.as_document() for ad in ads], encoder, version=version)
        log.info("Ads catalog %s loaded: %d ads", version, len(ads))
        return cls(version=version, ads={ad.id: ad for ad in ads}, index=index)

    @classmethod
    def from_jsonl(cls, path: str | Path, encoder: Any) -> "LoadedCatalog":
        """The embedded default: a local JSONL file; the version is its content hash."""
        path = Path(path)
        ads = read_ads(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return cls.build(ads, encoder, version=f"file-{digest}")

    @classmethod
    def from_dir(cls, artifact_dir: str | Path, encoder: Any, *, deep: bool = True) -> "LoadedCatalog":
        """A published artifact folder, checked against its manifest first."""
        root = Path(artifact_dir)
        manifest = verify(root, kind=ARTIFACT_KIND, format_version=FORMAT_VERSION, deep=deep)
        ads = read_ads(root / ADS_FILE)
        return cls.build(ads, encoder, version=str(manifest["version"]))


def build_catalog_artifact(jsonl_path: str | Path, out_dir: str | Path, *,
                           version: str | None = None) -> dict[str, Any]:
    """Validate a JSONL catalog and write it as a versioned artifact folder; return the manifest."""
    source = Path(jsonl_path)
    ads = read_ads(source)
    with staging_dir(Path(out_dir)) as tmp:
        with open(tmp / ADS_FILE, "w", encoding="utf-8") as fh:
            for ad in ads:
                fh.write(ad.model_dump_json(exclude_none=True) + "\n")
        manifest = write_manifest(tmp, kind=ARTIFACT_KIND, format_version=FORMAT_VERSION, version=version,
                                  ads=len(ads), source=source.name)
    log.info("Built ads catalog artifact %s (%d ads) in %s", manifest["version"], len(ads), out_dir)
    return manifest
