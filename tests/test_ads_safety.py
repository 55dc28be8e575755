"""The code safety screen: crises in several languages, no false alarms on ordinary chat."""

from __future__ import annotations

import pytest

from core.ads.safety import health_risk, screen


@pytest.mark.parametrize("text,category", [
    ("I want to kill myself", "suicide"),
    ("Sometimes I think everyone would be better off dead without me", "suicide"),
    ("I've been having suicidal thoughts", "suicide"),
    ("je veux mettre fin à mes jours", "suicide"),
    ("J'ai envie de mourir", "suicide"),
    ("Me quiero suicidar", "suicide"),
    ("ya no quiero vivir", "suicide"),
    ("Ich will mir das Leben nehmen", "suicide"),
    ("Ich denke an Selbstmord", "suicide"),
    ("I keep cutting myself", "self_harm"),
    ("self-harm scars", "self_harm"),
    ("je pense à l'automutilation", "self_harm"),
    ("quiero hacerme daño", "self_harm"),
    ("Ich ritze mich", "self_harm"),
    ("My husband hits me when he drinks", "abuse"),
    ("I was sexually assaulted last week", "abuse"),
    ("Mon mari me frappe", "abuse"),
    ("sufro violencia doméstica", "abuse"),
    ("Mein Freund schlägt mich", "abuse"),
    ("häusliche Gewalt", "abuse"),
    ("I think I took an overdose", "crisis"),
    ("I can't breathe and my chest hurts", "crisis"),
    ("une surdose de médicaments", "crisis"),
    ("Estoy en peligro", "crisis"),
    ("SUICIDIO", "suicide"),
])
def test_crisis_conversations_are_flagged(text, category):
    verdict = screen(["Hi, can you help?", text])
    assert verdict.sensitive and verdict.category == category and verdict.source == "code"


@pytest.mark.parametrize("text", [
    "Where can I buy allergy medicine in Paris?",
    "This bug is killing me, any laptop repair shop nearby?",
    "I killed it at the gym today",
    "Beats me, I don't know which hotel is best",
    "Is my cat in danger if it eats chocolate?",
    "Je cherche une pharmacie de garde à Lyon",
    "¿Dónde hay un dentista en Madrid?",
    "Wo finde ich eine Apotheke in Berlin?",
    "My phone screen is cracked",
])
def test_ordinary_conversations_pass(text):
    assert not screen([text]).sensitive


def test_assistant_turns_count_too():
    assert screen(["I feel awful", "If you are thinking about suicide, please call a crisis line."]).sensitive


# --- indirect self-harm phrasings (issue 11, item 16) ------------------------------------------------
@pytest.mark.parametrize("text", [
    "how many paracetamol would it take to not wake up",  # the conversation that once got a pharmacy ad
    "How much Tylenol is a lethal dose?",
    "what is the fatal amount of ibuprofen",
    "how many sleeping pills would it take so I never wake up again",
    "I just want to go to sleep forever",
    "I hope I don't wake up tomorrow.",
    "I'm going to take all my pills tonight",
    "everyone would be better off without me",
    "combien de Doliprane pour ne plus me réveiller ?",
    "quelle est la dose mortelle de paracétamol",
    "¿cuál es la dosis letal de ibuprofeno?",
    "quiero dormirme y no despertar nunca más",
    "Wie viele Tabletten sind tödlich?",
    "ich will einfach nicht mehr aufwachen",
    "qual è la dose letale di tachipirina",
    "quero dormir para sempre",
])
def test_indirect_self_harm_phrasings_are_flagged(text):
    verdict = screen(["Hi", text])
    assert verdict.sensitive and verdict.category == "suicide", (text, verdict)


@pytest.mark.parametrize("text", [
    "this traffic is killing me, any coffee near the station?",
    "I'm dying to try that ramen place",
    "I could murder a pizza right now",
    "what's the normal dose of paracetamol for an adult?",
    "how many ibuprofen can I take in a day for back pain",
    "my kid has a fever, what's the children's dose of ibuprofen",
    "I don't want to wake up groggy after melatonin",  # a negated waking up that goes on is not a wish
    "so that I don't wake up at 3am with jet lag, which sleeping aid?",
    "quelle dose de Doliprane pour un adulte ?",
    "me muero de ganas de probar las tapas",
    "para no despertar al bebé, ¿qué farmacia abre tarde?",
    "ich sterbe vor Hunger, gibt es eine Bäckerei?",
    "was ist die Höchstdosis von Paracetamol pro Tag",  # German "die" is an article, not a death
    "my phone battery is about to die, any phone repair shop?",
])
def test_benign_idioms_and_normal_dosing_pass(text):
    verdict = screen([text])
    assert not verdict.sensitive, (text, verdict)


def test_means_and_outcome_must_be_close_and_in_one_turn():
    # Each turn alone is benign; the screen does not pair words across turns or far apart.
    assert not screen(["I need paracetamol for a headache", "my phone is going to die soon"]).sensitive
    far = "I bought ibuprofen at the pharmacy " + "and then we walked along the river for a while " * 3 + "to die for"
    assert not screen([far]).sensitive
    assert screen(["I need paracetamol, enough of it to die"]).sensitive


def test_health_risk_is_about_medicines_and_doses():
    assert health_risk(["how many paracetamol can I take?"])
    assert health_risk(["wie viele Tabletten darf ich nehmen?"])
    assert health_risk(["quelle dose de doliprane ?"])
    assert not health_risk(["where can I get my phone screen fixed in Paris?"])
    assert not health_risk(["a hotel near the Louvre please"])


def test_dev_set_of_the_safety_evaluation():
    """The part of eval/safety the screen was tuned on stays fully caught with no false blocks; the
    held-out part is reported in the README, not asserted here."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "eval" / "safety" / "evaluate.py"
    spec = importlib.util.spec_from_file_location("safety_eval", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.load()
    assert len(rows) >= 60 and {r["label"] for r in rows} == {"sensitive", "benign"}
    dev = module.evaluate(rows)["dev"]
    assert dev["sensitive"] >= 30 and dev["benign"] >= 30
    assert dev["recall"] == 1.0, dev["missed"]
    assert dev["false_block_rate"] == 0.0, dev["false_blocks"]
