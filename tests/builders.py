"""Small builders of request bodies shared by several test modules."""

from __future__ import annotations

from core.ads.models import AdsRequest, parse_ads_request


def ads_request(*user_turns: str, thread: str = "thread-1", reply: str = "Sure, tell me more.") -> AdsRequest:
    """A parsed /api/ads request whose user turns are ``user_turns``, with an assistant reply between them."""
    conv = []
    for i, text in enumerate(user_turns):
        if i:
            conv.append({"role": "assistant", "content": reply})
        conv.append({"role": "user", "content": text})
    return parse_ads_request({"thread_name": thread, "conversation": conv})
