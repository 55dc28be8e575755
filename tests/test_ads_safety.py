"""The code safety screen: crises in several languages, no false alarms on ordinary chat."""

from __future__ import annotations

import pytest

from core.ads.safety import screen


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
