"""The /api/ads request: parsed and checked once, with a specific 400 code per problem."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from core.contract import check_scalar_text, has_visible
from core.errors import ApiError

MAX_TURNS = 50
MAX_TOTAL_CHARS = 20_000
MAX_THREAD_NAME = 128
ROLES = ("user", "assistant")

_REQUEST_FIELDS = {"thread_name", "conversation"}
_TURN_FIELDS = {"role", "content"}


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class AdsRequest:
    thread_name: str
    conversation: tuple[Turn, ...]

    def last_turns(self, n: int) -> tuple[Turn, ...]:
        return self.conversation[-n:]

    def user_texts(self, last: int | None = None) -> list[str]:
        texts = [t.content for t in self.conversation if t.role == "user"]
        return texts[-last:] if last else texts

    def as_dicts(self, turns: tuple[Turn, ...] | None = None) -> list[dict[str, str]]:
        return [{"role": t.role, "content": t.content} for t in (self.conversation if turns is None else turns)]


def _bad(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def parse_ads_request(body: Any) -> AdsRequest:
    """Check a decoded JSON body; raise ``ApiError(400, code, ...)`` naming the first problem.

    Codes: invalid_body, unknown_field, missing_field, invalid_type, invalid_thread_name,
    empty_conversation, too_many_turns, unknown_role, empty_content, conversation_too_long, invalid_text.
    """
    if not isinstance(body, dict):
        raise _bad("invalid_body", "the request body must be a JSON object")
    unknown = sorted(set(body) - _REQUEST_FIELDS)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise _bad("unknown_field", f"unknown field(s): {shown}; the fields are thread_name, conversation")
    for name in ("thread_name", "conversation"):
        if name not in body:
            raise _bad("missing_field", f"'{name}' is required")

    thread = body["thread_name"]
    if not isinstance(thread, str):
        raise _bad("invalid_type", "'thread_name' must be a string")
    if not 1 <= len(thread) <= MAX_THREAD_NAME or not has_visible(thread):
        raise _bad("invalid_thread_name", f"'thread_name' must have 1 to {MAX_THREAD_NAME} characters, "
                                          "not all white space")
    check_scalar_text(thread, "'thread_name'")

    conversation = body["conversation"]
    if not isinstance(conversation, list):
        raise _bad("invalid_type", "'conversation' must be a list of turns")
    if not conversation:
        raise _bad("empty_conversation", "'conversation' must have at least one turn")
    if len(conversation) > MAX_TURNS:
        raise _bad("too_many_turns", f"'conversation' has {len(conversation)} turns; at most {MAX_TURNS}")

    turns: list[Turn] = []
    total = 0
    for i, turn in enumerate(conversation):
        where = f"conversation[{i}]"
        if not isinstance(turn, dict):
            raise _bad("invalid_type", f"{where} must be an object with 'role' and 'content'")
        extra = sorted(set(turn) - _TURN_FIELDS)
        if extra:
            shown = ", ".join(repr(k[:40]) for k in extra[:5])
            raise _bad("unknown_field", f"{where}: unknown field(s): {shown}; a turn has role and content")
        for name in ("role", "content"):
            if name not in turn:
                raise _bad("missing_field", f"{where}: '{name}' is required")
        role, content = turn["role"], turn["content"]
        if not isinstance(role, str):
            raise _bad("invalid_type", f"{where}.role must be a string")
        if role not in ROLES:
            raise _bad("unknown_role", f"{where}.role {role[:40]!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise _bad("invalid_type", f"{where}.content must be a string")
        if not has_visible(content):
            raise _bad("empty_content", f"{where}.content is empty or only white space")
        check_scalar_text(content, f"{where}.content")
        total += len(content)
        if total > MAX_TOTAL_CHARS:
            raise _bad("conversation_too_long",
                       f"the conversation has more than {MAX_TOTAL_CHARS} characters in all")
        turns.append(Turn(role, content))  # type: ignore[arg-type]
    return AdsRequest(thread_name=thread, conversation=tuple(turns))
