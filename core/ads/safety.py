"""Safety screen in code, before any model call: no ads next to a crisis.

Conversations about suicide, self-harm, abuse or another crisis (overdose,
immediate danger, medical emergency) get no ads. This screen is deliberately
conservative (a false positive costs one ad slot; a false negative puts an ad
next to someone in distress) and covers English, French, Spanish and German,
plus a few Italian and Portuguese basics. Text is case-folded and stripped of
accents first, so "suicidé", "Suizid" and "SUICIDIO" all match. The model's own
``sensitive`` flag is a second, independent check (see ``context``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable

# Patterns run on normalised text: lower case, no accents, apostrophes as "'", single spaces.
_PATTERNS: dict[str, list[str]] = {
    "suicide": [
        # en
        r"suicid\w*", r"kill(ing)? myself", r"end(ing)? (it all|my life|things)", r"take my (own )?life",
        r"want(ed)? to die", r"wish i (was|were) dead", r"better off dead", r"no reason to live",
        r"don'?t want to (live|be alive|wake up)", r"not worth living",
        # fr
        r"me suicider", r"me tuer", r"en finir( avec (la vie|tout))?", r"mettre fin a mes jours",
        r"envie de mourir", r"veux mourir", r"plus envie de vivre",
        # es
        r"suicidarme", r"matarme", r"quitarme la vida", r"quiero morir(me)?", r"ganas de morir",
        r"no quiero vivir",
        # de
        r"selbstmord\w*", r"suizid\w*", r"mich umbringen", r"mir das leben nehmen", r"will sterben",
        r"nicht mehr leben", r"lebensmude\w*",
        # it / pt
        r"uccidermi", r"togliermi la vita", r"voglio morire", r"me matar", r"quero morrer",
    ],
    "self_harm": [
        r"self[- ]?harm\w*", r"hurt(ing)? myself", r"cut(ting)? myself", r"harm(ing)? myself",
        r"burn(ing)? myself", r"starv(e|ing) myself",
        r"automutilation", r"me faire du mal", r"me scarifier", r"scarification",
        r"autolesion\w*", r"hacerme dano", r"cortarme",
        r"selbstverletz\w*", r"mich ritzen", r"ritze mich", r"mir weh tun",
        r"autolesionismo", r"me machucar",
    ],
    "abuse": [
        r"(he|she|they|husband|wife|partner|boyfriend|girlfriend|father|mother|dad|mum|mom|parents?|"
        r"stepfather|stepmother|ex|uncle|teacher|boss) (keeps )?(hits|hitting|beats|beating|hurts|hurting|"
        r"chokes|choking|rapes|abuses|threatens) me", r"(chokes|choked|strangles|strangled) me",
        r"being abused", r"was abused", r"abus(ed|ing) me",
        r"domestic (violence|abuse)", r"sexual(ly)? (abuse|assault)\w*", r"raped", r"\brape\b", r"molest\w*",
        r"child abuse", r"afraid to go home", r"threaten(s|ed) to kill me",
        r"violence(s)? conjugale(s)?", r"me (frappe|viole|tabasse)", r"(il|elle|mari|copain|copine|pere|mere) me bat",
        r"\bviol(ee|e)?\b", r"maltrait\w*",
        r"abus sexuel\w*", r"violencia (domestica|de genero|machista)", r"me (pega|golpea|maltrata)",
        r"\bviolacion\b", r"\bviolada\b", r"abuso sexual", r"maltrato",
        r"hausliche gewalt", r"schlagt mich", r"verpruegelt mich", r"verprugelt mich", r"vergewaltig\w*",
        r"missbrauch\w*", r"misshandel\w*",
        r"violenza domestica", r"violencia domestica",
    ],
    "crisis": [
        r"overdos\w*", r"took too many (pills|tablets)", r"can'?t breathe", r"heart attack",
        r"i'?m in danger", r"i am in danger", r"we are in danger", r"emergency room", r"call (911|999|112)",
        r"crisis (line|hotline|centre|center)", r"suicide hotline",
        r"surdose", r"trop de (medicaments|cachets|comprimes)", r"je suis en danger",
        r"sobredosis", r"estoy en peligro", r"uberdosis", r"ich bin in gefahr",
        r"suicide prevention", r"samaritans",
    ],
}

_COMPILED = {cat: re.compile(r"(?<![a-z])(?:" + "|".join(pats) + r")(?![a-z])") for cat, pats in _PATTERNS.items()}
_ORDER = ("suicide", "self_harm", "abuse", "crisis")


@dataclass(frozen=True)
class SafetyVerdict:
    sensitive: bool
    category: str | None = None
    source: str = "code"  # "code" (this screen) or "model" (Claude's flag)
    matched: str = ""


SAFE = SafetyVerdict(False)


_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    if text.isascii():
        return _SPACE.sub(" ", text.lower())
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u00df", "ss")
    plain = _COMBINING.sub("", unicodedata.normalize("NFKD", text.casefold()))
    return _SPACE.sub(" ", plain)


def screen(texts: Iterable[str]) -> SafetyVerdict:
    """Screen every turn (user and assistant): the first category that matches wins."""
    joined = normalise("\n".join(texts))
    for category in _ORDER:
        m = _COMPILED[category].search(joined)
        if m:
            return SafetyVerdict(True, category, "code", m.group(0))
    return SAFE
