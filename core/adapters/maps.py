"""Azure Maps Search geocoding (``GET {base}/geocode?api-version=2025-01-01``).

Uses the process's one ``aiohttp.ClientSession`` (passed in), a timeout of
``deadline.cap(maps_timeout_s)`` per call, and either a subscription key or
Entra ID (the managed identity through ``DefaultAzureCredential``, with the
Maps account's client id in ``x-ms-client-id``). Coordinates come back in
GeoJSON order, **[lon, lat]**.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from core.deadline import Deadline

log = logging.getLogger("core.maps")

API_VERSION = "2025-01-01"
SCOPE = "https://atlas.microsoft.com/.default"
_REGION_SHORT = re.compile(r"^[A-Z0-9]{1,3}$")


class MapsError(Exception):
    """Azure Maps gave no usable answer; ``reason``: timeout, http_<status>, connection_error, bad_response, auth."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class MapsPlace:
    name: str
    lat: float
    lon: float
    country: str  # ISO 3166-1 alpha-2, "" when unknown
    region: str  # ISO 3166-2 style ("US-TX"), "" when unknown
    confidence: str
    formatted: str


def parse_feature(feature: dict[str, Any], query: str) -> MapsPlace:
    """One GeoJSON feature of the geocode response -> MapsPlace (coordinates are [lon, lat])."""
    coords = feature["geometry"]["coordinates"]
    lon, lat = float(coords[0]), float(coords[1])
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"coordinates out of range: {coords}")
    props = feature.get("properties") or {}
    address = props.get("address") or {}
    country = str((address.get("countryRegion") or {}).get("ISO") or "").upper()
    region = ""
    districts = address.get("adminDistricts") or []
    if districts and country:
        short = str(districts[0].get("shortName") or "").upper()
        if _REGION_SHORT.match(short):
            region = f"{country}-{short}"
    name = address.get("locality") or address.get("formattedAddress") or query
    return MapsPlace(name=str(name), lat=lat, lon=lon, country=country, region=region,
                     confidence=str(props.get("confidence") or ""),
                     formatted=str(address.get("formattedAddress") or name))


class AzureMapsGeocoder:
    def __init__(self, settings: Any, session: aiohttp.ClientSession, *, credential: Any | None = None) -> None:
        self.settings = settings
        self.session = session
        self.base_url = settings.azure_maps_base_url.rstrip("/")
        self._credential = credential
        self._owns_credential = False
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()

    @property
    def auth_mode(self) -> str:
        return "key" if self.settings.azure_maps_key else "entra"

    async def _headers(self, deadline: Deadline) -> dict[str, str]:
        if self.settings.azure_maps_key:
            return {"subscription-key": self.settings.azure_maps_key}
        return {"Authorization": f"Bearer {await self._bearer(deadline)}",
                "x-ms-client-id": self.settings.azure_maps_client_id}

    async def _bearer(self, deadline: Deadline) -> str:
        if self._token and self._token[1] - time.time() > 300:
            return self._token[0]
        async with self._token_lock:
            if self._token and self._token[1] - time.time() > 300:
                return self._token[0]
            if self._credential is None:
                from azure.identity.aio import DefaultAzureCredential

                self._credential = DefaultAzureCredential(
                    managed_identity_client_id=self.settings.azure_client_id or None)
                self._owns_credential = True
            try:
                token = await deadline.run(self._credential.get_token(SCOPE),
                                           timeout_s=self.settings.maps_timeout_s)
            except asyncio.TimeoutError as exc:
                raise MapsError("timeout", "getting an Entra token") from exc
            except Exception as exc:  # azure.identity raises several types; all mean "no token"
                raise MapsError("auth", f"{type(exc).__name__}: {exc}"[:200]) from exc
            self._token = (token.token, float(token.expires_on))
            return token.token

    async def geocode(self, query: str, deadline: Deadline, country_hint: str | None = None) -> MapsPlace | None:
        """The best match for ``query`` or None when Azure Maps finds nothing; MapsError on failure."""
        params = {"api-version": API_VERSION, "query": query, "top": "1"}
        if country_hint:
            params["countryRegion"] = country_hint
        headers = await self._headers(deadline)
        limit = deadline.cap(self.settings.maps_timeout_s)
        if limit <= 0:
            raise MapsError("timeout", "no time left in the request deadline")
        started = time.monotonic()
        try:
            async with self.session.get(f"{self.base_url}/geocode", params=params, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=limit)) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:200]
                    raise MapsError(f"http_{resp.status}", text)
                payload = await resp.json(content_type=None)
        except asyncio.TimeoutError as exc:
            raise MapsError("timeout", f"no answer within {limit:.2f}s") from exc
        except aiohttp.ClientError as exc:
            raise MapsError("connection_error", f"{type(exc).__name__}: {exc}"[:200]) from exc
        except ValueError as exc:  # body is not JSON
            raise MapsError("bad_response", str(exc)[:200]) from exc
        try:
            features = payload.get("features") or []
            place = parse_feature(features[0], query) if features else None
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise MapsError("bad_response", f"{type(exc).__name__}: {exc}"[:200]) from exc
        log.info("Azure Maps geocoded %r in %.0f ms: %s", query, (time.monotonic() - started) * 1000,
                 place.formatted if place else "no match")
        return place

    async def close(self) -> None:
        if self._credential is not None and self._owns_credential:
            await self._credential.close()
            self._credential = None
