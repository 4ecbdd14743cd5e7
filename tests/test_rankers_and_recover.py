import numpy as np
import pytest

from elision import InvalidInput
from elision._errors import UnknownName
from elision.rankers import RANKERS, get_ranker
from elision.recover import recover

from .conftest import is_subsequence


def test_recover_worked_example():
    original = "The Tay Bridge, opened in 1878, carried the North British Railway."
    compressed = "Tay Bridge opened 1878 carried North Railway."
    assert recover(original, compressed, "It carried the North Railway.") == "It carried the North British Railway."
    # a single copied word has nothing dropped inside it; text not from the prompt stays as written
    assert recover(original, compressed, "Dundee, maybe 1878.") == "Dundee, maybe 1878."


def test_recover_round_trips_copied_spans(llmlingua, docs):
    r = llmlingua.compress(context=docs["docs"][:3], rate=0.4)
    words = r.compressed_prompt.split()
    for a, b in ((0, 4), (10, 16), (20, 23)):
        copied = " ".join(words[a:b])
        back = recover(r.original_prompt, r.compressed_prompt, f"Answer: {copied} (done)")
        body = back[len("Answer: "):-len(" (done)")]
        assert back.startswith("Answer: ") and back.endswith(" (done)")
        assert is_subsequence(copied.replace(" ", ""), body.replace(" ", ""))
        assert body in r.original_prompt  # a contiguous piece of the original, dropped words restored
        assert len(body) >= len(copied)


def test_recover_bad_input():
    with pytest.raises(InvalidInput, match="string"):
        recover("a", None, "b")
    with pytest.raises(InvalidInput, match="min_words"):
        recover("a", "a", "a", min_words=0)


@pytest.mark.parametrize("name", ["bm25", "embedding", "lm"])
def test_rankers_put_the_gold_document_first(name, docs, llmlingua):
    ranker = get_ranker(name)
    cases = [("Which bridge over the Tay collapsed in a storm?", 0),
             ("How do honeybees tell each other where food is?", 4),
             ("Who shared the 1903 Nobel Prize in Physics?", 7)]
    for question, gold in cases:
        order = np.argsort(-ranker.scores(question, docs["docs"]))
        assert order[0] == gold, (name, question, order[:3])


def test_ranker_errors(docs):
    with pytest.raises(InvalidInput, match="without contexts"):
        get_ranker("bm25").scores("Why?", [])
    with pytest.raises(InvalidInput, match="non-empty question"):
        get_ranker("bm25").scores("  ", docs["docs"])
    with pytest.raises(UnknownName, match="unknown ranker 'nope'; known: bm25, embedding, lm"):
        get_ranker("nope")
    assert set(RANKERS) == {"bm25", "embedding", "lm"}


def test_rankers_load_on_the_asked_device_and_dtype(llmlingua):
    """A method passes its device and dtype on: LongLLMLingua's lm ranker then shares the
    method's SmolLM2 instead of loading a second copy."""
    from elision.models.causal import CausalLM

    lm = get_ranker("lm", model="smollm2-135m", device="cpu", dtype="float32").lm
    assert lm is CausalLM.shared("smollm2-135m", device="cpu", dtype="float32")
    assert lm.dtype == "float32" and str(lm.device) == "cpu"
    assert get_ranker("lm", device="cpu", dtype="bfloat16").lm.dtype == "bfloat16"
    # the automatic choice shares with the same choice spelled out (keyed on what they resolve to)
    auto = CausalLM.shared("smollm2-135m")
    assert auto is CausalLM.shared("smollm2-135m", device=str(auto.device), dtype=auto.dtype)
    emb = get_ranker("embedding", device="cpu", dtype="float32")
    assert emb.device == "cpu" and str(next(emb.model.parameters()).dtype) == "torch.float32"
    assert get_ranker("bm25", device="cpu", dtype="float32").scores("bridge", ["a bridge", "bread"])[0] > 0
