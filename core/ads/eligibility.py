"""Which ads may run for this conversation: rules in code, never the model's say.

Static rules (status, dates, language, geo) are pure functions of the ad and the
context. The frequency cap (an ad at most N times per thread per UTC day) is
counted in Redis with an atomic INCR, and only for ads actually shown: the
service claims a slot right before showing an ad, and a claim beyond the cap
means the ad is skipped (an ad already at its cap is not counted again).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from core.ads.catalog import Ad
from core.ads.geo import Place, haversine_km


@dataclass(frozen=True)
class Eligibility:
    ok: bool
    reason: str = ""  # why not: paused, not_started, ended, language, geo_unknown, geo
    distance_km: float | None = None


def check(ad: Ad, *, today: date, language: str | None, place: Place | None) -> Eligibility:
    if ad.status != "active":
        return Eligibility(False, ad.status)
    if ad.start_date and today < ad.start_date:
        return Eligibility(False, "not_started")
    if ad.end_date and today > ad.end_date:
        return Eligibility(False, "ended")
    if ad.languages and language and language not in ad.languages:
        return Eligibility(False, "language")
    if ad.geo is None:
        return Eligibility(True)
    if place is None:
        return Eligibility(False, "geo_unknown")
    best: float | None = None
    for point in ad.geo.points:
        d = haversine_km(place.lat, place.lon, point.lat, point.lon)
        if d <= point.radius_km and (best is None or d < best):
            best = d
    if best is not None:
        return Eligibility(True, distance_km=round(best, 1))
    if place.country and place.country in ad.geo.countries:
        return Eligibility(True)
    if place.region and place.region in ad.geo.regions:
        return Eligibility(True)
    return Eligibility(False, "geo")


FREQ_TTL_S = 2 * 86400  # a day's counter outlives its UTC day whatever the time of the first showing


class FrequencyCap:
    """At most ``cap`` showings of one ad per thread per UTC day, counted atomically in Redis."""

    def __init__(self, cache: Any, cap: int, *, key_prefix: str = "ads") -> None:
        self.cache = cache
        self.cap = int(cap)
        self.key_prefix = key_prefix

    def key(self, thread_name: str, ad_id: str, now: datetime | None = None) -> str:
        day = (now or datetime.now(timezone.utc)).strftime("%Y%m%d")
        thread = hashlib.sha256(thread_name.encode()).hexdigest()[:16]
        # {hash tag}: one thread's counters share a Redis Cluster slot, so one script can claim several
        return f"{self.key_prefix}:freq:{day}:{{{thread}}}:{ad_id}"

    async def shown(self, thread_name: str, ad_id: str) -> int:
        return await self.cache.peek_count(self.key(thread_name, ad_id))

    async def claim(self, thread_name: str, ad_id: str) -> bool:
        """Count one showing; False (do not show) when that would exceed the cap.

        One Redis script checks and counts atomically, so the counter is exactly the
        number of showings, also under concurrent requests for the same thread.
        """
        return (await self.claim_first(thread_name, [ad_id], 1))[0]

    async def claim_first(self, thread_name: str, ad_ids: list[str], want: int) -> list[bool]:
        """``claim`` each ad in order until ``want`` were claimed, in one atomic round trip: per ad
        examined, whether it may be shown (ads after the ``want``-th claimed one are not examined,
        nor counted). The same counts as claiming them one by one."""
        if self.cap <= 0:
            return [True] * min(len(ad_ids), max(0, want))
        now = datetime.now(timezone.utc)
        keys = [self.key(thread_name, ad_id, now) for ad_id in ad_ids]
        counts = await self.cache.incr_capped_first(keys, self.cap, want, ttl_s=FREQ_TTL_S)
        return [n is not None for n in counts]
