"""Small text helpers for the non-LLM path: normalising, tokens, stop-words, language guess."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W\d_](?:[^\W_]|['\-](?=[^\W\d_]))*", re.UNICODE)

STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("""a about above after again against all am an and any are aren't as at be because been before
        being below between both but by can can't cannot could did didn't do does doesn't doing don't down during each
        few for from further get got had has have having he her here hers herself him himself his how i i'd i'll i'm
        i've if in into is isn't it it's its itself just let's like me more most my myself need near no nor not now of
        off on once only or other ought our ours ourselves out over own please same she should so some such than that
        that's the their theirs them themselves then there there's these they this those through to too under until up
        very want was we were what when where which while who whom why will with would you your yours yourself
        yourselves hi hello thanks thank yes ok okay also any anything something really much many one good best
        know think looking look find recommend recommendation suggest help tell show anywhere around today
        tomorrow""".split()),
    "fr": frozenset("""a au aux avec ce ces dans de des du elle en et eux il je la le les leur lui ma mais me meme mes
        moi mon ne nos notre nous on ou par pas pour qu que qui sa se ses son sur ta te tes toi ton tu un une vos votre
        vous c d j l m n s t y ete est suis es sont avoir ai as avons avez ont etre cette cet ici bonjour merci oui non
        peux peut pouvez veux voudrais cherche trouver ou quel quelle quels quelles comment bien tres plus aussi
        quelque chose pres""".split()),
    "es": frozenset("""a al algo algunas algunos ante antes como con contra cual cuando de del desde donde durante e el
        ella ellas ellos en entre era es esa esas ese eso esos esta estas este esto estos estoy fue ha hay la las le
        les lo los me mi mis mucho muy nada ni no nos nosotros o otra otro para pero poco por porque que quien se ser si
        sin sobre son su sus tambien te tengo tiene todo tu tus un una uno unos y ya yo hola gracias busco buscar
        puedo puedes quiero necesito cerca donde""".split()),
    "de": frozenset("""aber alle als also am an auch auf aus bei bin bis bitte da damit dann das dass dein deine dem den
        der des dich die dir doch dort du durch ein eine einem einen einer es etwas fur gibt hab habe haben hat ich
        ihr im in ist ja jetzt kann kannst kein keine mein meine mich mir mit muss nach nicht noch nur oder sehr sein
        sich sie sind so uber um und uns unter von vor war was weil welche wenn wer wie wir wo zu zum zur hallo danke
        suche brauche mochte gibt es wo""".split()),
    "it": frozenset("""il lo la i gli le un una di da in con su per tra fra e o ma che non sono sei ho hai abbiamo
        mi ti ci si del della dei delle nel nella questo questa come dove cerco grazie ciao vorrei""".split()),
    "pt": frozenset("""o a os as um uma de do da dos das em no na nos nas com por para e ou mas que nao sou sim eu
        voce ele ela isso este esta onde como obrigado ola quero preciso procuro perto""".split()),
}
ALL_STOPWORDS: frozenset[str] = frozenset().union(*STOPWORDS.values())


_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold(text: str) -> str:
    """Case-folded, accents removed (for matching)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.replace("\u2019", "'").casefold())
    return _COMBINING.sub("", decomposed)


def words(text: str) -> list[str]:
    """Word tokens in their original spelling."""
    return _WORD.findall(text)


def content_tokens(text: str) -> list[str]:
    """Folded tokens without stop-words, numbers or very short words."""
    return [w for w in (fold(t) for t in words(text)) if len(w) > 2 and w not in ALL_STOPWORDS]


def guess_language(text: str) -> str | None:
    """The language whose stop-words cover the most tokens (en, fr, es, de, it, pt), or None."""
    tokens = [fold(t) for t in words(text)]
    if not tokens:
        return None
    scores = {lang: sum(1 for t in tokens if t in sw) for lang, sw in STOPWORDS.items()}
    best = max(scores, key=lambda k: (scores[k], k == "en"))
    if scores[best] == 0:
        return None
    return best
