"""Typing and text rules shared by every request model, stated once so the OpenAPI document can quote them.

- POST JSON is typed strictly: an integer field takes a JSON integer literal (``5``; not ``"5"``, ``5.0`` or
  ``true``), a boolean a JSON boolean, and ``null`` is refused for every field (omit an optional field to get
  its default). Non-standard JSON (``NaN``, ``Infinity``, numbers beyond the float range such as ``1e400``)
  is invalid JSON.
- GET query strings are strings by nature: integers are ASCII decimal digits only (``[0-9]+``), booleans
  ``true`` or ``false``.
- A text field that must say something has at least one character outside Unicode's ``White_Space`` set
  (the exact set of :data:`WHITE_SPACE`); other invisible characters (zero-width space, control characters)
  count as characters, as the schema's ``minLength`` counts them.
- Text is Unicode scalar values only: a lone surrogate (``"\\ud800"``) is refused with a 400, never stored,
  hashed or echoed.
"""

from __future__ import annotations

import re

from core.errors import bad_request

# Unicode's White_Space property (PropList.txt), written as \\uXXXX so that the same class means the same in
# ECMAScript, Python's re and Rust's regex (Python's str.isspace also counts U+001C..U+001F, which are not
# White_Space; ECMAScript's \\s also counts U+FEFF, which is not either).
WHITE_SPACE = ("\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f"
               "\\u3000")
# JSON Schema ``pattern`` (unanchored: "contains one such character") of a text that says something.
VISIBLE_PATTERN = f"[^{WHITE_SPACE}]"
_VISIBLE = re.compile(VISIBLE_PATTERN)
_ASCII_DIGITS = re.compile(r"[0-9]+")
MAX_GET_INT_DIGITS = 9


def has_visible(text: str) -> bool:
    return _VISIBLE.search(text) is not None


def check_scalar_text(text: str, name: str) -> None:
    """400 ``invalid_text`` when ``text`` holds a lone surrogate (only reachable via escapes or a raw URL)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise bad_request(f"{name} holds a lone surrogate (U+{ord(text[exc.start]):04X} at character "
                              f"{exc.start}): text must be Unicode characters", "invalid_text") from None


def get_int(raw: str, name: str) -> int:
    """A GET parameter as an integer: ASCII decimal digits only (no sign, space or other digit forms)."""
    if not _ASCII_DIGITS.fullmatch(raw):
        raise bad_request(f"'{name}' must be written with the ASCII digits 0-9", "invalid_type")
    digits = raw.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_GET_INT_DIGITS else 10 ** MAX_GET_INT_DIGITS


def get_bool(raw: str, name: str) -> bool:
    if raw not in ("true", "false"):
        raise bad_request(f"'{name}' must be true or false", "invalid_type")
    return raw == "true"
