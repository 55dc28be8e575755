"""A fake Azure Maps Search geocode API (``GET /geocode?api-version=2025-01-01``) on 127.0.0.1.

Answers with GeoJSON like the real service (coordinates in [lon, lat] order),
from a small table of places; ``fake.push(step)`` scripts the next answers:
  {"hang": True}           never answer (the client's timeout must fire)
  {"delay": 0.3}           answer late
  {"status": 500}          an error body
  {"features": []}         no match
Every request is recorded with its query parameters and headers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.loopback import ScriptedServer, serve

# name -> (lon, lat, locality, country ISO, country name, admin shortName, admin name)
PLACES: dict[str, tuple[float, float, str, str, str, str, str]] = {
    "paris": (2.3514, 48.8567, "Paris", "FR", "France", "IDF", "Île-de-France"),
    "paris, tx": (-95.5555, 33.6609, "Paris", "US", "United States", "TX", "Texas"),
    "paris, texas": (-95.5555, 33.6609, "Paris", "US", "United States", "TX", "Texas"),
    "london": (-0.1278, 51.5074, "London", "GB", "United Kingdom", "ENG", "England"),
    "berlin": (13.4050, 52.5200, "Berlin", "DE", "Germany", "BE", "Berlin"),
    "toronto": (-79.3832, 43.6532, "Toronto", "CA", "Canada", "ON", "Ontario"),
}


def feature(query: str) -> dict[str, Any] | None:
    place = PLACES.get(query.strip().lower())
    if place is None:
        return None
    lon, lat, locality, iso, country, admin, admin_name = place
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "bbox": [lon - 0.1, lat - 0.1, lon + 0.1, lat + 0.1],
        "properties": {
            "type": "PopulatedPlace",
            "confidence": "High",
            "matchCodes": ["Good"],
            "address": {
                "locality": locality,
                "adminDistricts": [{"name": admin_name, "shortName": admin}],
                "countryRegion": {"name": country, "ISO": iso},
                "formattedAddress": f"{locality}, {admin}" if iso == "US" else f"{locality}, {country}",
            },
            "geocodePoints": [{"geometry": {"type": "Point", "coordinates": [lon, lat]},
                               "calculationMethod": "Rooftop", "usageTypes": ["Display"]}],
        },
    }


@dataclass
class Recorded:
    query: dict[str, str]
    headers: dict[str, str]
    at: float


@dataclass
class FakeMaps(ScriptedServer):
    async def start(self) -> "FakeMaps":
        app = web.Application()
        app.router.add_get("/geocode", self._geocode)
        self._runner, self.port = await serve(app, self.host, self.port)
        return self

    async def _geocode(self, request: web.Request) -> web.Response:
        self.requests.append(Recorded(dict(request.query), {k.lower(): v for k, v in request.headers.items()},
                                      time.monotonic()))
        step = self.next_step() or {}
        if step.get("hang"):
            await asyncio.sleep(3600)
        if step.get("delay"):
            await asyncio.sleep(step["delay"])
        if request.query.get("api-version") != "2025-01-01":
            return web.json_response({"error": {"code": "InvalidApiVersion", "message": "bad api-version"}},
                                     status=400)
        if not (request.headers.get("subscription-key") or request.query.get("subscription-key")
                or request.headers.get("Authorization", "").startswith("Bearer ")):
            return web.json_response({"error": {"code": "Unauthorized", "message": "no credentials"}}, status=401)
        status = step.get("status", 200)
        if status != 200:
            return web.json_response({"error": {"code": "InternalServerError", "message": "fake failure"}},
                                     status=status)
        if "features" in step:
            features = step["features"]
        else:
            f = feature(request.query.get("query", ""))
            features = [f] if f else []
        return web.json_response({"type": "FeatureCollection", "features": features})
