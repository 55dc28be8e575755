import threading

import pytest

from core.search.text import DEFAULT_TOKENIZER, TextTokenizer, snippet, split_passages


def test_tokenizer_lowercases_splits_and_drops_stopwords():
    tok = TextTokenizer(stopwords="en", stemmer=None)
    assert tok("The Quick-Brown fox_jumps, INTO the river!") == ["quick", "brown", "fox", "jumps", "river"]


def test_tokenizer_stems_with_snowball_english():
    assert DEFAULT_TOKENIZER("Running runners ran") == ["run", "runner", "ran"]
    assert DEFAULT_TOKENIZER("connection connected connecting") == ["connect"] * 3


def test_tokenizer_keeps_unicode_words_and_digits():
    tok = TextTokenizer(stopwords="none", stemmer=None)
    assert tok("Café crème à 3€, Tokyo 東京 2024") == ["café", "crème", "à", "3", "tokyo", "東京", "2024"]


def test_tokenizer_settings_round_trip_and_reject_unknown():
    tok = TextTokenizer(stopwords="none", stemmer="english")
    again = TextTokenizer.from_settings(tok.settings())
    assert again == tok and again("Databases indexing") == tok("Databases indexing")
    with pytest.raises(ValueError):
        TextTokenizer.from_settings({**tok.settings(), "pattern": r"\S+"})
    with pytest.raises(ValueError):
        TextTokenizer(stopwords="klingon")


def test_tokenizer_is_thread_safe():
    text = "connections connecting runners " * 50
    expected = DEFAULT_TOKENIZER(text)
    errors = []

    def work():
        for _ in range(200):
            if DEFAULT_TOKENIZER(text) != expected:
                errors.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_short_text_is_one_passage_with_its_whitespace():
    assert split_passages("  one two\nthree  ") == ["one two\nthree"]
    assert split_passages("   ") == []


def test_long_text_windows_and_overlap():
    words = [f"w{i}" for i in range(500)]
    parts = [p.split() for p in split_passages(" ".join(words), max_words=200, overlap=40)]
    # windows start every 160 words: [0,200) [160,360) [320,500)
    assert [p[0] for p in parts] == ["w0", "w160", "w320"]
    assert [len(p) for p in parts] == [200, 200, 180]
    assert parts[0][-40:] == parts[1][:40]
    assert parts[-1][-1] == "w499"


def test_sliver_tail_is_merged_into_previous_window():
    words = [f"w{i}" for i in range(210)]  # a 2nd window would add only 10 new words
    parts = split_passages(" ".join(words), max_words=200, overlap=40)
    assert len(parts) == 1 and parts[0].split() == words
    words = [f"w{i}" for i in range(260)]  # 2nd window adds 60 new words: kept
    assert len(split_passages(" ".join(words), max_words=200, overlap=40)) == 2


def test_bad_chunking_parameters():
    with pytest.raises(ValueError):
        split_passages("a b c", max_words=10, overlap=10)


def test_snippet_cuts_at_word_boundary():
    text = ("alpha beta gamma delta " * 40).strip()
    s = snippet(text, 300)
    assert len(s) <= 301 and s.endswith("…")
    assert text.startswith(s[:-1])
    assert s[:-1].split()[-1] in {"alpha", "beta", "gamma", "delta"}
    assert snippet("short\n\ntext", 300) == "short text"
