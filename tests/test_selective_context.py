import pytest

from elision import Compressor, InvalidInput
from elision.methods.selective_context import sentence_spans

from .conftest import is_subsequence


@pytest.fixture(scope="module")
def sc(llmlingua):
    c = Compressor("selective_context", target="cl100k_base")
    assert c.method.lm is llmlingua.method.lm  # the same SmolLM2 weights, loaded once per process
    return c


def test_sentence_spans():
    s, e = sentence_spans("One. Two? Three")
    assert s.tolist() == [0, 5, 10] and e.tolist() == [5, 10, 15]


def test_phrase_spans_merge_noun_chunks():
    from elision.methods.selective_context import phrase_spans

    text = "The Tay Bridge opened in 1878 near Dundee."
    s, e = phrase_spans(text)
    units = [text[a:b] for a, b in zip(s, e)]
    assert "The Tay Bridge" in units and "".join(units) == text


@pytest.mark.parametrize("unit", ["token", "word", "phrase", "sentence"])
def test_rate_subsequence_and_question(sc, docs, unit):
    r = sc.compress(context=docs["docs"], question=docs["question"], rate=0.4, unit=unit)
    assert r.compressed_tokens <= r.budget_tokens
    assert abs(r.rate - 0.4) / 0.4 <= 0.10 or unit == "sentence"  # whole sentences land coarser
    assert r.rate > 0.3
    assert is_subsequence(r.compressed_prompt, r.original_prompt)
    assert r.compressed_prompt.endswith(docs["question"])


def test_keeps_high_information_units(sc, docs):
    """Self-information favours rare content: names and numbers survive more than function words."""
    stop = {"the", "of", "a", "and", "in", "was", "to", "is", "it", "that", "by", "for", "with", "its"}

    def share(words, pred):
        return sum(1 for w in words if pred(w))

    text = "\n\n".join(docs["docs"])
    r = sc.compress(text, rate=0.5)
    orig, comp = text.split(), r.compressed_prompt.split()
    is_stop = lambda w: w.lower().strip(".,;") in stop  # noqa: E731
    is_name = lambda w: w[:1].isupper() or any(ch.isdigit() for ch in w)  # noqa: E731
    assert share(comp, is_name) / share(orig, is_name) > share(comp, is_stop) / share(orig, is_stop)


def test_bad_unit(sc):
    with pytest.raises(InvalidInput, match="unit"):
        sc.compress("some text here", unit="paragraph")
