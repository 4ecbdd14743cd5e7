import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elision import Compressor, InvalidInput
from elision.chunking import chunk_bounds
from elision.methods.llmlingua2 import word_units

from .conftest import is_subsequence

MODEL = None  # the classifier shipped with elision (llmlingua2-minilm)


@pytest.fixture(scope="module")
def ll2():
    return Compressor("llmlingua2", model=MODEL, target="cl100k_base")


@pytest.fixture(scope="module")
def clf(ll2):
    return ll2.method.clf


def test_word_units_tile_the_text_and_split_line_breaks(clf):
    text = "The Tay Bridge, opened in 1878.\n\n- Dundee's   station"
    t = clf.tokenize(text)
    starts, ends, word_unit = word_units(text, t.offsets, t.word_of)
    units = [text[a:b] for a, b in zip(starts, ends)]
    assert "".join(units) == text
    assert "\n\n" in units  # a line-break gap is its own unit
    assert units[:4] == ["The", " Tay", " Bridge", ","]
    assert len(word_unit) == t.word_of[-1] + 1 and (np.diff(word_unit) > 0).all()


def test_chunks_respect_limit_and_prefer_sentence_ends(clf):
    text = " ".join(f"Sentence number {i} talks about the bridge at Dundee." for i in range(60))
    t = clf.tokenize(text)
    bounds = chunk_bounds(text, t.offsets, t.word_of, 100)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(t.ids)
    assert all(b - a <= 100 for a, b in bounds)
    assert all(b == a2 for (_, b), (a2, _) in zip(bounds, bounds[1:]))
    for a, _ in bounds[1:]:  # each cut falls right after a full stop
        assert text[:t.offsets[a, 0]].rstrip().endswith(".")


@settings(max_examples=30, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab Z.,\n1é-")), min_size=0, max_size=300), st.integers(16, 64))
def test_chunks_cover_and_cut_between_words(clf, text, limit):
    t = clf.tokenize(text)
    bounds = chunk_bounds(text, t.offsets, t.word_of, limit)
    covered = [i for a, b in bounds for i in range(a, b)]
    assert covered == list(range(len(t.ids)))
    assert all(b - a <= limit for a, b in bounds)
    starts, ends, _ = word_units(text, t.offsets, t.word_of)
    assert "".join(text[a:b] for a, b in zip(starts, ends)) == text


LONG = "".join(
    f"Paragraph {i}: the Tay Bridge's girders (built 1871-1878, e.g. span no. {i}) didn't hold; "
    f"Sir Thomas Bouch's design was re-examined by the court of inquiry in {1880 + i % 9}. "
    f"Why? Wind-loading of {i * 3.5} lb/ft² was ignored!{chr(10) * (1 + i % 2)}"
    f"- anti-establishment-arianism, pneumonoultramicroscopicsilicovolcanoconiosis, 橋梁。 "
    for i in range(40))


@pytest.mark.parametrize("chunk_tokens", [128, 64, 24])
def test_training_windows_are_cut_like_inference_windows(ll2, clf, monkeypatch, chunk_tokens):
    """encode_passage (training) and the method's own chunking (inference) cut a long text into
    the same token windows, even where the distilled words differ from the tokenizer's."""
    from elision.models.encoder import TokenClassifier
    from elision.train.align import WORD
    from elision.train.classifier import encode_passage

    seen = []
    keep_probs = TokenClassifier.keep_probs

    def spy(self, chunks, *args, **kwargs):
        seen.extend(c.tolist() for c in chunks)
        return keep_probs(self, chunks, *args, **kwargs)

    monkeypatch.setattr(TokenClassifier, "keep_probs", spy)
    ll2.compress(context=[LONG], rate=0.5, chunk_tokens=chunk_tokens)
    words = [[m.start(), m.end()] for m in WORD.finditer(LONG)]
    train = encode_passage(clf.tokenizer, LONG, words, [i % 2 for i in range(len(words))], max_length=chunk_tokens)
    assert len(seen) > 10 and all(len(w) <= chunk_tokens - 2 for w in seen)
    assert [c.input_ids[1:-1].tolist() for c in train] == seen
    t = clf.tokenize(LONG)  # and both are chunk_bounds over the tokenizer's words
    assert [t.ids[a:b].tolist() for a, b in chunk_bounds(LONG, t.offsets, t.word_of, chunk_tokens - 2)] == seen


def test_packed_rows_give_the_same_probabilities_as_one_row_per_chunk(ll2, docs):
    """Chunks packed side by side (block-diagonal mask, positions from 0) == one row each."""
    from elision.models.encoder import TokenClassifier

    clf32 = TokenClassifier.shared("llmlingua2-minilm", dtype="float32")
    chunks = [clf32.tokenize(d).ids[:40 + 9 * i] for i, d in enumerate(docs["docs"])]
    question = clf32.tokenize(docs["question"]).ids
    for prefix in (None, question):
        packed = clf32.keep_probs(chunks, prefix, row_tokens=256)
        alone = [clf32.keep_probs([c], prefix)[0] for c in chunks]
        assert [len(p) for p in packed] == [len(c) for c in chunks]
        assert max(float(np.abs(a - b).max()) for a, b in zip(packed, alone)) < 1e-4


@pytest.mark.parametrize("rate", [0.5, 0.33, 0.2])
def test_rate_budget_and_original_text(ll2, docs, rate):
    r = ll2.compress(context=docs["docs"], question=docs["question"], rate=rate)
    assert r.compressed_tokens <= r.budget_tokens
    assert abs(r.rate - rate) / rate <= 0.05
    assert is_subsequence(r.compressed_prompt, r.original_prompt)
    assert r.compressed_prompt.endswith(docs["question"])  # the question is kept whole
    # an uncased encoder never lowercases the output: it is cut from the original characters
    assert any(ch.isupper() for ch in r.compressed_prompt[:-len(docs["question"])])


def test_trained_classifier_keeps_content_words(ll2, docs):
    """The shipped classifier ranks content above function words (not a random head)."""
    text = docs["docs"][0]
    (starts, ends, p, _), = ll2.method.word_probs(_prompt(text), ll2.options)
    words = {text[a:b].strip(): q for a, b, q in zip(starts, ends, p)}
    function = np.mean([words[w] for w in ("the", "in", "of", "was", "a", "it") if w in words])
    content = np.mean([words[w] for w in ("Tay", "Bridge", "1878", "Dundee", "Bouch", "collapsed") if w in words])
    assert content > function + 0.2


def _prompt(text, question=""):
    from elision.prompt import Prompt

    return Prompt.build([text], "", question, ())


def test_force_tokens_digits_and_protect(ll2, docs):
    r = ll2.compress(context=docs["docs"], rate=0.2, force_tokens=(".", "?"), force_digits=True,
                     protect=["Thomas Bouch"])
    n_dots = sum(d.count(".") for d in docs["docs"])
    assert r.compressed_prompt.count(".") == n_dots
    assert "1878" in r.compressed_prompt and "Thomas Bouch" in r.compressed_prompt
    dots = ll2.compress(context=["Wait.... what?!! Really...."], rate=0.5, force_tokens=("."),
                        drop_consecutive=True)
    assert "...." not in dots.compressed_prompt


def test_keep_newlines(ll2):
    text = "".join(f"- item {i}: the bridge at Dundee was long\n" for i in range(30))
    kept = ll2.compress(context=[text], rate=0.4, keep_newlines=True)
    assert kept.compressed_prompt.count("\n") == text.rstrip().count("\n")
    plain = ll2.compress(context=[text], rate=0.2)
    assert is_subsequence(plain.compressed_prompt, text) and plain.compressed_tokens <= plain.budget_tokens


def test_threshold_never_keeps_low_probability_words(ll2, docs):
    text = docs["docs"][1]
    (starts, ends, p, _), = ll2.method.word_probs(_prompt(text), ll2.options)
    r = ll2.compress(context=[text], rate=1.0, threshold=0.5, keep_newlines=False)
    expected = "".join(text[a:b] for a, b, q in zip(starts, ends, p) if q >= 0.5).strip()
    assert 0 < r.compressed_tokens < r.origin_tokens
    assert r.compressed_prompt == expected  # exactly the words at or above the threshold


def test_context_filter_drops_whole_contexts(ll2, docs):
    r = ll2.compress(context=docs["docs"][:4], rate=0.4, context_rate=0.5)
    nonempty = [s for s in r.spans[:4] if s]
    assert len(nonempty) == 2
    assert r.compressed_tokens <= r.budget_tokens and r.rate > 0.3  # the kept two fill the budget


def test_question_aware_conditions_the_scores(ll2, docs):
    p = _prompt(docs["docs"][0], docs["question"])
    # with a question the default is the task-aware model, question-aware by its own config
    assert ll2.method.qa_clf.question_aware and not ll2.method.clf.question_aware
    plain = ll2.method.word_probs(p, ll2.options.build({"question_aware": False}, base=ll2.options))[0][2]
    aware = ll2.method.word_probs(p, ll2.options)[0][2]
    assert plain.shape == aware.shape and not np.allclose(plain, aware)
    r = ll2.compress(context=docs["docs"], question=docs["question"], rate=0.3, keep_question=False)
    assert r.compressed_tokens <= r.budget_tokens
    rows = ll2.importance(context=docs["docs"], question=docs["question"], keep_question=False).to_rows()
    q_start = r.original_prompt.rindex(docs["question"])
    assert not any(x["must_keep"] for x in rows if x["start"] >= q_start)  # the question is scored, not forced


@pytest.mark.parametrize("how", ["sort", "two_ends"])
def test_reorder_moves_whole_documents_only(ll2, docs, how):
    """reorder= with a question changes only the order of whole documents: the same kept text of
    each, each a subsequence of its document, the answering one first (issue 26)."""
    gold = next(d for d in docs["docs"] if "Tay" in d)
    contexts = [d for d in docs["docs"] if d != gold] + [gold]  # the answer last
    plain = ll2.compress(context=contexts, question=docs["question"], rate=0.3, reorder="none")
    moved = ll2.compress(context=contexts, question=docs["question"], rate=0.3, reorder=how)
    a = [x for x in plain.compressed_prompt.split("\n\n")]
    b = [x for x in moved.compressed_prompt.split("\n\n")]
    assert sorted(a) == sorted(b) and a != b
    assert plain.compressed_tokens == moved.compressed_tokens
    assert "Tay" in b[0] and "Tay" in a[-2]  # first after reordering; last context before it
    for x in b[:-1]:
        assert any(is_subsequence(x, d) for d in contexts)
    assert b[-1] == docs["question"]  # the question stays where it was
    no_q = ll2.compress(context=contexts, rate=0.3, reorder=how)  # nothing to rank by: order kept
    assert no_q.compressed_prompt == ll2.compress(context=contexts, rate=0.3, reorder="none").compressed_prompt
    # the default keeps the prompt's order (the compressed prompt a subsequence of the original)
    assert ll2.compress(context=contexts, question=docs["question"], rate=0.3).compressed_prompt == \
        plain.compressed_prompt
    with pytest.raises(InvalidInput, match="reorder must be sort, two_ends, none"):
        ll2.compress(context=contexts, question=docs["question"], rate=0.3, reorder="random")


def test_long_input_past_the_encoder_window(ll2, docs):
    text = " ".join(docs["docs"] * 12)  # ~3,000 words in one context: many chunks
    r = ll2.compress(context=[text], rate=0.25)
    assert r.origin_tokens > 3000 and abs(r.rate - 0.25) / 0.25 <= 0.05
    assert is_subsequence(r.compressed_prompt, text)


def test_scores_are_reused_across_rates(ll2, docs):
    a = ll2.compress(context=docs["docs"], rate=0.5)
    b = ll2.compress(context=docs["docs"], rate=0.25)
    assert is_subsequence(b.compressed_prompt, a.compressed_prompt)  # one ranking, two thresholds


def test_any_token_classifier_with_any_fast_tokenizer(tmp_path, llmlingua):
    """No name checks: a BERT-shaped classifier over SmolLM2's byte-level BPE tokenizer works,
    and its keep label comes from id2label."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from elision.models.registry import prepare

    tok = AutoTokenizer.from_pretrained(str(prepare("smollm2-135m")))
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=2,
                     id2label={0: "preserve", 1: "discard"}, label2id={"preserve": 0, "discard": 1})
    torch.manual_seed(0)
    BertForTokenClassification(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    c = Compressor("llmlingua2", model=str(tmp_path), target="cl100k_base", dtype="float32")
    assert c.method.clf.keep_label == 0 and c.method.clf.max_length == 128
    r = c.compress(context=["Grüße aus Köln! The Tay Bridge opened in 1878. " * 20], rate=0.4)
    assert is_subsequence(r.compressed_prompt, r.original_prompt) and r.compressed_tokens <= r.budget_tokens


def test_bad_input(ll2, tmp_path):
    with pytest.raises(InvalidInput, match="valid:"):
        ll2.compress(context=["a b c"], rate=0.5, segment_size=3)
    with pytest.raises(InvalidInput, match="word_score"):
        ll2.compress(context=["a b c"], rate=0.5, word_score="median")
    with pytest.raises(InvalidInput, match="threshold"):
        ll2.compress(context=["a b c"], rate=0.5, threshold=1.5)
    with pytest.raises(InvalidInput, match="context_rate"):
        ll2.compress(context=["a b c"], rate=0.5, context_rate=0)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "nonsense"}))
    with pytest.raises(InvalidInput, match="cannot load"):
        Compressor("llmlingua2", model=str(tmp_path))


@pytest.mark.parametrize("arch", ["roberta", "distilbert"])
def test_other_encoder_families_pack_or_fall_back_correctly(tmp_path, arch, docs):
    """RoBERTa numbers positions from padding_idx + 1, DistilBERT has no token types: packed rows
    must still give each chunk exactly its own probabilities."""
    import torch
    import transformers as tf

    from elision.models.encoder import TokenClassifier
    from elision.models.registry import prepare

    tok = tf.AutoTokenizer.from_pretrained(str(prepare("minilm-l6")))
    small = dict(vocab_size=len(tok), max_position_embeddings=130, num_labels=2, pad_token_id=tok.pad_token_id)
    if arch == "roberta":
        cfg = tf.RobertaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                               type_vocab_size=1, **small)
        model = tf.RobertaForTokenClassification
    else:
        cfg = tf.DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, **small)
        model = tf.DistilBertForTokenClassification
    torch.manual_seed(0)
    model(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    clf = TokenClassifier.load(str(tmp_path), dtype="float32")
    assert clf.max_length == (129 if arch == "roberta" else 130)
    chunks = [clf.tokenize(d).ids[:20 + 7 * i] for i, d in enumerate(docs["docs"])]
    packed = clf.keep_probs(chunks, row_tokens=128)
    alone = [clf.keep_probs([c])[0] for c in chunks]
    assert max(float(np.abs(a - b).max()) for a, b in zip(packed, alone)) < 1e-4
