"""The task-aware LLMLingua-2 classifier: question-conditioned data, training with the question
before each window (and MOOSComp's loss), and the method's question-aware scoring."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from elision import Compressor, InvalidInput
from elision.methods.llmlingua2 import sentence_blend, sentence_ids

from .conftest import is_subsequence

BRIDGE = ("The Tay Bridge crossed the Firth of Tay between Wormit and Dundee. It was designed by the engineer "
          "Thomas Bouch, who was knighted after it opened in 1878. On the night of 28 December 1879 its high "
          "girders fell during a violent storm, taking a train and about 75 people with them.")
OTHERS = [
    "Honey bees live in colonies with a single queen, many workers and a few drones. Workers gather nectar and "
    "pollen, build wax comb and look after the young; the queen lays the eggs that keep the colony alive.",
    "The violin has four strings tuned in fifths and is played with a bow strung with horsehair. Makers in "
    "Cremona such as Stradivari and Guarneri built instruments that players still prize for their tone.",
    "Sourdough bread rises with wild yeast and lactic acid bacteria kept alive in a starter of flour and water. "
    "Bakers feed the starter every day and use part of it to leaven each new batch of dough.",
]


@pytest.fixture(scope="module", params=["llmlingua2-qa-minilm", "llmlingua2-qa-minilm-l3"])
def qa(request):
    """Both shipped task-aware classifiers: the default, and its 3-layer twin (issue 14)."""
    return Compressor("llmlingua2", model=request.param, target="cl100k_base")


def _gold_share(r, gold: str) -> float:
    """Share of the kept words that come from the gold passage."""
    kept = r.compressed_prompt.split()
    return sum(w in gold.split() for w in kept) / max(len(kept), 1)


def test_shipped_task_aware_model_is_question_aware(qa):
    assert qa.method.clf.question_aware  # read from the artifact: the prefix is on by default
    from elision.models.registry import prepare

    layers = 3 if qa.method.model_name.endswith("-l3") else 6  # the artifact's "layers" cut the base
    assert json.loads((prepare(qa.method.model_name) / "config.json").read_text())["num_hidden_layers"] == layers


def test_question_moves_the_kept_words_to_the_answering_passage(qa):
    docs = [OTHERS[0], OTHERS[1], BRIDGE, OTHERS[2]]
    q = "Who designed the Tay Bridge?"
    with_q = qa.compress(context=docs, question=q, rate=0.2)
    without = qa.compress(context=docs, rate=0.2)
    assert "Bouch" in with_q.compressed_prompt
    assert _gold_share(with_q, BRIDGE) > _gold_share(without, BRIDGE) + 0.2
    assert is_subsequence(with_q.compressed_prompt, with_q.original_prompt)


def test_a_different_question_moves_them_elsewhere(qa):
    docs = [OTHERS[0], OTHERS[1], BRIDGE, OTHERS[2]]
    r = qa.compress(context=docs, question="Which town in Italy did violin makers such as Stradivari work in?",
                    rate=0.15)
    assert "Cremona" in r.compressed_prompt and _gold_share(r, OTHERS[1]) > 0.5


def test_same_model_without_a_question_is_task_agnostic_and_meets_the_rate(qa):
    r = qa.compress(context=[BRIDGE, *OTHERS], rate=0.33)
    assert r.compressed_tokens <= r.budget_tokens and r.compressed_tokens >= r.budget_tokens - 3
    # no question: no sentence-level coarse stage, every passage keeps some words
    assert all(any(w in r.compressed_prompt for w in d.split()[:40]) for d in [BRIDGE, *OTHERS])


def test_sentence_coarse_selection_keeps_the_answer_sentence_whole_at_high_compression(qa):
    docs = [OTHERS[0], OTHERS[1], BRIDGE, OTHERS[2]]
    answer = "On the night of 28 December 1879 its high girders fell during a violent storm"
    r = qa.compress(context=docs, question="When did the girders of the Tay Bridge fall?", rate=0.3)
    assert answer in r.compressed_prompt  # the sentence that answers survives whole
    off = qa.compress(context=docs, question="When did the girders of the Tay Bridge fall?", rate=0.3,
                      coarse="none")  # words alone: the same budget, the sentence in pieces
    assert answer not in off.compressed_prompt
    assert off.compressed_tokens == pytest.approx(r.compressed_tokens, abs=3)


def test_sentence_blend_ranks_whole_sentences():
    text = "A b. C d."
    starts, ends = np.array([0, 1, 3, 4, 6, 8]), np.array([1, 3, 4, 6, 8, 9])
    assert sentence_ids(text, starts, ends).tolist() == [0, 0, 0, 1, 1, 1]
    out = sentence_blend(text, starts, ends, np.array([0.9, 0.7, 0.5, 0.1, 0.1, 0.1]), 0.5)
    assert np.allclose(out, [0.8, 0.7, 0.6, 0.1, 0.1, 0.1])
    assert out[:3].min() > out[3:].max()  # the better sentence wins as a whole


def test_bad_input_is_a_clear_error(qa):
    with pytest.raises(InvalidInput, match="no context"):
        qa.compress(question="Who designed the Tay Bridge?", rate=0.5)
    with pytest.raises(InvalidInput, match="blank"):
        qa.compress(context=[BRIDGE], question="   ", rate=0.5)
    with pytest.raises(InvalidInput, match="coarse"):
        qa.compress(context=[BRIDGE], question="Who?", rate=0.5, coarse="paragraph")


def test_outlier_scores_raise_rare_words(qa):
    from elision.methods.llmlingua2 import _rarity_z, _word_counts
    from elision.prompt import Prompt
    from elision.selection import word_spans

    text = "the cat and the dog and the Zyxwv and the cat"
    p = Prompt.build([text])
    s, e = word_spans(text)
    z = _rarity_z(text, s, e, _word_counts(p))
    words = [text[a:b].strip() for a, b in zip(s, e)]
    assert words[int(np.argmax(z))] in ("Zyxwv", "dog")
    assert z[words.index("the")] < 0


def test_question_data_and_training_end_to_end(tmp_path):
    """elision train questions -> elision train classifier (tiny) -> model= loads it, question-aware."""
    from click.testing import CliRunner

    from elision.cli import cli

    corpus = tmp_path / "corpus.jsonl"
    rng = random.Random(0)
    with corpus.open("w") as f:
        for i in range(12):
            base = [BRIDGE, *OTHERS][i % 4]
            words = base.split()
            rng.shuffle(words)
            f.write(json.dumps({"id": f"doc{i}", "text": base + " " + " ".join(words[:30]) + "."}) + "\n")
    data, out = tmp_path / "data", tmp_path / "clf"
    run = CliRunner().invoke(cli, ["train", "questions", "--corpus", str(corpus), "--questions", "6",
                                   "--out", str(data), "--quiet"])
    assert run.exit_code == 0, run.output
    rows = [json.loads(line) for line in (data / "data.jsonl").read_text().splitlines()]
    gold = [r for r in rows if r["kind"] == "gold-tight"]
    assert gold and all(r["question"] and r["answer"] for r in gold)
    for r in gold:  # the answer is in the kept words and never in the question
        kept = " ".join(r["text"][a:b] for (a, b), k in zip(r["words"], r["labels"]) if k)
        assert r["answer"].split()[0] in kept
    assert {r["group"] for r in rows if r["kind"].startswith("distractor")} <= {r["group"] for r in gold}
    run = CliRunner().invoke(cli, ["train", "classifier", "--data", str(data), "--out", str(out), "--max-length",
                                   "64", "--max-steps", "4", "--eval-every", "2", "--moos-weight", "0.5",
                                   "--heldout", "0.3", "--quiet"])
    assert run.exit_code == 0, run.output
    meta = json.loads((out / "elision.json").read_text())
    assert meta["question_aware"] and meta["train"]["moos_weight"] == 0.5
    c = Compressor("llmlingua2", model=str(out), target="cl100k_base")
    assert c.method.clf.question_aware
    r = c.compress(context=[BRIDGE, OTHERS[0]], question="Who designed the Tay Bridge?", rate=0.5)
    assert 0 < r.compressed_tokens <= r.budget_tokens


def test_inter_class_similarity_loss():
    import torch

    from elision.train.classifier import IGNORE, inter_class_similarity

    h = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    lab = torch.tensor([[1, 1, 0, IGNORE]])
    assert inter_class_similarity(torch, h, lab).item() == pytest.approx(0.0)  # orthogonal classes
    lab2 = torch.tensor([[1, 0, 0, IGNORE]])
    assert inter_class_similarity(torch, h, lab2).item() == pytest.approx(0.5)  # (1 + 0) / 2 pairs
    assert inter_class_similarity(torch, h, torch.tensor([[1, 1, 1, 1]])).item() == 0.0  # no drop tokens


def test_harder_question_recipe_picks_overlapping_distractors_lemmas_numbers_and_antecedents():
    """Issue 26's recipe: the distractor is the other document's passage sharing the most of the
    question's words, question words may be lemmas, numbers are asked for, and an answer sentence
    that opens with a pronoun brings the sentence naming its subject."""
    from elision.train.questions import OverlapIndex, make_question, pick_question, spacy_model

    pool = [{"id": "a:0", "text": "The Tay Bridge crossed the Firth of Tay near Dundee."},
            {"id": "a:1", "text": "The Tay Bridge collapsed in a storm in December."},
            {"id": "b:0", "text": "The Firth of Forth is crossed by a railway bridge near Dundee and Tay."},
            {"id": "c:0", "text": "Vines grow grapes in the warm valleys of the south."}]
    index = OverlapIndex(pool, max_df=1.0)
    # the question shares words with a:1 (same document as the gold a:0: never chosen) and b:0
    assert index.best("When did the Tay Bridge near Dundee collapse?", 0, random.Random(0)) == 2
    assert index.best("What do vines grow?", 0, random.Random(0)) == 3
    assert index.best("Nothing shared here?", 0, random.Random(0)) is None

    nlp = spacy_model()
    sent = next(iter(nlp("The engineers designed the bridges carefully in 1871.").sents))
    year = next((a.start_char, a.end_char, "year") for a in sent.ents if a.text == "1871")
    forms = {make_question(sent, year, random.Random(s), paraphrase=1.0) for s in range(20)} - {None}
    assert forms and all("1871" not in q for q in forms)
    assert any("design " in q + " " or "bridge " in q + " " for q in forms)  # lemmas, not 'designed' / 'bridges'
    assert not any("designed" in q or "bridges" in q for q in forms)

    text = ("Thomas Bouch was a railway engineer from Cumbria in England. He designed the first Tay Bridge, "
            "which opened in 1878 and fell in 1879 during a storm.")
    got = {pick_question(text, random.Random(s), nlp, numeric=1.0, antecedent=True) for s in range(10)} - {None}
    assert got
    second = text.index("He designed")
    for q, (a, b), answer in got:
        if text.index(answer) >= second:  # asked from the pronoun sentence: it brings its antecedent
            assert a == 0 and b > second, (q, text[a:b])
    assert any(text.index(answer) >= second for _, _, answer in got)
    assert any(ans in ("1878", "1879") for _, _, ans in got)  # numbers asked for
    # split: asked with the first sentence's words, answered by the next; both in the span
    rec = "The monthly rent for the apartment on Elm Street was due on the first day. The amount was 1100 dollars."
    got = {pick_question(rec, random.Random(s), nlp, split=1.0) for s in range(10)} - {None}
    assert got
    for q, (a, b), answer in got:
        if rec.index(answer) > rec.index("The amount"):
            assert a == 0 and b >= rec.index(answer) + len(answer) and "amount" not in q.lower() and answer not in q
    assert any(rec.index(answer) > rec.index("The amount") for _, _, answer in got)


def test_harder_recipe_rows_count_overlap_distractors(tmp_path):
    from elision.train.questions import build

    class FlatTeacher:  # the recipe's choices are under test, not the teacher's scores
        c = type("C", (), {"method_name": "flat", "model_name": None})()

        def word_scores(self, text, words):
            return np.linspace(1, 0, len(words))

    topics = ["The Tay Bridge over the Firth near Dundee fell in a storm in 1879 while a train crossed it.",
              "The Forth Bridge near Edinburgh opened in 1890 and carried trains across the Firth.",
              "Vineyards in the valley produce grapes that growers harvest in autumn every year.",
              "Glaciers in the northern mountains carved deep valleys over thousands of long years."]
    pool = [{"id": f"d{i}:{k}", "source": "s", "text": f"{topics[i]} {topics[(i + k + 1) % 4]}"}
            for i in range(4) for k in range(3)]
    stats = build(pool, tmp_path, n_questions=8, teacher=FlatTeacher(), hard=1.0, paraphrase=0.3, numeric=0.5,
                  antecedent=True)
    assert stats["recipe"] == {"hard": 1.0, "paraphrase": 0.3, "numeric": 0.5, "antecedent": True, "split": 0.0}
    assert stats["kinds"].get("distractor-tight-overlap", 0) > 0
    with pytest.raises(InvalidInput, match="hard must be in"):
        build(pool, tmp_path, n_questions=2, teacher=FlatTeacher(), hard=1.5)
