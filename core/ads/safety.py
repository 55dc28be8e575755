"""Safety screen in code, before any model call: no ads next to a crisis.

Conversations about suicide, self-harm, abuse or another crisis (overdose,
immediate danger, medical emergency) get no ads. This screen is deliberately
conservative (a false positive costs one ad slot; a false negative puts an ad
next to someone in distress) and covers English, French, Spanish and German,
plus a few Italian and Portuguese basics. Text is case-folded and stripped of
accents first, so "suicidé", "Suizid" and "SUICIDIO" all match. The model's own
``sensitive`` flag is a second, independent check (see ``context``).

Indirect phrasings are caught two ways:

* wishes not to wake up or to sleep forever ("so I never wake up", "m'endormir pour
  toujours", "nicht mehr aufwachen"), when the clause ends there (so "I don't want to
  wake up groggy" is not one);
* a means (pills, a dose, a named medicine) and a deadly outcome ("lethal", "to die",
  "not wake up", "too much to survive", "the whole bottle") within one sentence-sized
  window of one turn: "how many paracetamol would it take to not wake up", "dose
  mortelle", "tödliche Dosis". A dose question without such an outcome ("the normal
  dose of paracetamol") is not flagged.

``health_risk`` says whether a conversation is about medicines or doses at all; the
service then shows only ads whose own terms the context names (no generic filler).
Measured on ``eval/safety`` (see the README).
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
        r"don'?t want to (live|be alive)", r"not worth living",
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

# --- indirect phrasings ----------------------------------------------------------------
# A negated waking up that ends its clause (optionally "again", "tomorrow"...): "to not wake up",
# "so I never wake up", "won't wake up ever again"; not "don't want to wake up groggy".
_CLAUSE_END = r"(?=\s*(?:[.,;:!?)\n]|$|and\b|or\b|but\b|so\b|et\b|y\b|und\b|e\b))"
_NO_WAKE = [
    # en
    r"(?:not|never|[a-z]*n't|no longer) (?:to )?(?:ever )?wake up(?: (?:again|ever again|anymore|any more|"
    r"tomorrow|in the morning|this time|at all))?" + _CLAUSE_END,
    r"(?:go|went|going|fall|falling|put myself) (?:to sleep|asleep) (?:forever|for good|permanently)",
    r"sleep forever", r"(?:disappear|vanish) (?:forever|for good)",
    # fr
    r"ne (?:plus|jamais|pas|plus jamais) (?:me |se |te )?(?:re)?reveiller" + _CLAUSE_END,
    r"(?:m'|s')?endormir (?:pour toujours|a jamais|pour de bon|definitivement)",
    r"dormir (?:pour toujours|a jamais|pour l'eternite)",
    # es
    r"(?:no|nunca|jamas) (?:volver a )?despertar(?:me|se)?(?: nunca| jamas)?(?: mas)?" + _CLAUSE_END,
    r"dormir(?:me|se)? (?:para siempre|eternamente)",
    # de
    r"(?:nicht|nie) (?:mehr |wieder |wieder mehr |mehr wieder )?(?:aufwachen|aufzuwachen)" + _CLAUSE_END,
    r"(?:fur immer|ewig) (?:ein)?schlafen", r"einschlafen und nie",
    # it
    r"non (?:mi |si )?(?:ri)?svegliar(?:mi|si|ti)? (?:piu|mai piu)", r"(?:addormentar(?:mi|si)|dormire) per sempre",
    # pt
    r"(?:nao|nunca) (?:mais )?acordar(?: mais| nunca mais)?" + _CLAUSE_END, r"dormir para sempre",
]
_PATTERNS["suicide"] += _NO_WAKE + [
    r"better off without me", r"(?:happier|better) (?:off )?(?:if|when) i (?:was|were|am|'?m)(?:n't| not| gone)"
    r"(?: around| here| alive)?", r"(?:don'?t|do not|no longer|can'?t) see (?:the|any) point (?:anymore|any more|"
    r"in (?:living|life|going on)|of (?:living|life))", r"(?:high|tall) enough to jump",
    r"jump (?:off|from) (?:a|the) (?:bridge|roof|building|cliff)", r"bleed(?:ing)? (?:out|to death)",
    r"stockpil\w* (?:my |the )?(?:pills|tablets|meds|medication)",
    # taking every pill one has
    r"(?:take|taking|swallow\w*|took) all (?:of )?(?:my |the )?(?:pills|tablets|meds|medication)",
    r"(?:avaler|prendre) (?:toute la boite|tous (?:mes|les) (?:comprimes|cachets|medicaments))",
    r"(?:tomar|tomarme|tragar|tragarme) todas (?:las |mis )?(?:pastillas|pildoras|medicinas)",
    r"(?:nehme|nehmen|schlucke|schlucken) (?:\w+ ){0,3}alle (?:meine |die )?"
    r"(?:tabletten|pillen|schlaftabletten|medikamente)",
    r"prendere tutte (?:le )?(?:mie )?(?:pillole|compresse)", r"tomar todos (?:os |meus )?(?:comprimidos|remedios)",
    # fr / es / de / it / pt
    r"mieux sans moi", r"mejor sin mi", r"besser ohne mich", r"meglio senza di me", r"melhor sem mim",
]

# A means of self-poisoning and a deadly outcome close together (one turn, < ~60 characters apart).
_MEANS = (
    r"pills?|tablets?|capsules?|meds|medications?|medicines?|drugs?|doses?|dosage|mg|milligrams?|grams?|"
    r"paracetamol|acetaminophen|tylenol|panadol|ibuprofen\w*|advil|aspirin|codeine|tramadol|oxycodone|opioids?|"
    r"fentanyl|morphine|insulin|antidepressants?|amitriptyline|sertraline|benzos?|xanax|diazepam|valium|"
    r"sleeping (?:pills|tablets|aids?)|"
    r"comprimes?|cachets?|pilules?|medicaments?|doliprane|somniferes?|grammes?|"
    r"pastillas?|pildoras?|comprimidos?|medicamentos?|somniferos?|dosis|gramos?|"
    r"tabletten?|pillen?|medikamente?|schlaftabletten?|gramm|"
    r"pillole?|compresse?|farmaci|tachipirin[ae]|sonniferi|"
    r"pilulas?|remedios?|dipirona|gramas?"
)
_OUTCOME = (
    # en
    r"lethal|fatal|deadly|overdos\w*|kill (?:me|myself)|(?:to|will|would|could|gonna|i|me|i'd|i'll) die|"
    r"too much to survive|(?:not|never|[a-z]*n't) survive|end it|end my life|"
    r"(?:whole|entire) (?:bottle|box|pack|packet|strip)|(?:take|taking|swallow\w*|took) (?:them|it) all|"
    r"all (?:of )?(?:my |the |them )?(?:\w+ )?at once|"
    # fr
    r"mortel(?:le)?s?|letale?s?|mourir|me tuer|en finir|ne plus (?:me |se )?reveiller|toute la boite|d'un coup|"
    # es
    r"letal(?:es)?|mortal(?:es)?|morir(?:me)?|matarme|todas (?:las |mis )?(?:pastillas|pildoras)|"
    r"toda la caja|de golpe|"
    # de
    r"todlich\w*|sterben|umbringen|nicht mehr aufwachen|alle (?:\w+ ){0,2}auf einmal|"
    r"(?:ganze|komplette) (?:packung|schachtel|flasche)|"
    # it
    r"letal[ei]|mortal[ei]|morire|uccidermi|tutte (?:le (?:mie )?)?(?:pillole|compresse)|tutta la scatola|"
    # pt
    r"morrer|me matar|todos (?:os |meus )?(?:comprimidos|remedios)|a caixa toda"
)
_WINDOW = 60  # characters between a means and an outcome (about one sentence)

_COMPILED = {cat: re.compile(r"(?<![a-z])(?:" + "|".join(pats) + r")(?![a-z])") for cat, pats in _PATTERNS.items()}
_ORDER = ("suicide", "self_harm", "abuse", "crisis")
_MEANS_RX = re.compile(rf"(?<![a-z])(?:{_MEANS})(?![a-z])")
_OUTCOME_RX = re.compile(rf"(?<![a-z'])(?:{_OUTCOME})(?![a-z])")


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


_HEALTH = re.compile(rf"(?<![a-z])(?:{_MEANS}|prescriptions?|ordonnance|receta|rezept|ricetta|receita|"
                     r"poison\w*|vergift\w*|envenen\w*|avvelen\w*)(?![a-z])")


def health_risk(texts: Iterable[str]) -> bool:
    """Whether the conversation is about medicines, doses or poisons (a health-risk topic)."""
    return _HEALTH.search(normalise("\n".join(texts))) is not None


def screen(texts: Iterable[str]) -> SafetyVerdict:
    """Screen every turn (user and assistant): the first category that matches wins."""
    joined = "\n".join(normalise(t) for t in texts)  # one line per turn
    for category in _ORDER:
        m = _COMPILED[category].search(joined)
        if m:
            return SafetyVerdict(True, category, "code", m.group(0))
    found = _means_and_outcome(joined)
    if found:
        return SafetyVerdict(True, "suicide", "code", found)
    return SAFE


def _means_and_outcome(text: str) -> str:
    """A deadly outcome with a means within ``_WINDOW`` characters of it, in the same turn: outcomes
    are rare in ordinary chat, so they are looked for first and the means only around them."""
    for out in _OUTCOME_RX.finditer(text):
        lo = text.rfind("\n", max(0, out.start() - _WINDOW), out.start()) + 1 or max(0, out.start() - _WINDOW)
        hi = text.find("\n", out.end(), out.end() + _WINDOW)
        hi = hi if hi >= 0 else min(len(text), out.end() + _WINDOW)
        means = _MEANS_RX.search(text, lo, hi)
        if means is not None and not (out.start() <= means.start() and means.end() <= out.end()):
            return text[min(lo, means.start()):hi].strip()[:120]
    return ""
