"""Fidelity of LLMLingua with the question compressed (0.9, the paper) or kept whole (1.0).

    python benchmarks/question_rate_fidelity.py      # needs `make data` and gemma3-270m

Prints the mean retained share (target LM gemma3-270m) over the first 8 SQuAD MDQA prompts at
rate 0.33, and the per-prompt values. See docs/benchmarks.md.
"""
from elision import Compressor
from elision.eval.datasets import squad_mdqa
from elision.eval.data import path
from elision.eval.metrics import TargetLM, retained
cases = squad_mdqa(path('squad/squaddev_v1.1.json'), n=60, seed=0)[:8]
t = TargetLM()
c = Compressor("llmlingua", target="cl100k_base")
for qr in [0.9, 1.0]:
    vals = []
    for cs in cases:
        full = t.score("\n\n".join([cs.instruction, *cs.context, cs.question]), cs.answers[0])
        none = t.score("\n\n".join([cs.instruction, cs.question]), cs.answers[0])
        r = c.compress(context=cs.context, instruction=cs.instruction, question=cs.question, rate=0.33, question_rate=qr)
        comp = t.score(r.compressed_prompt, cs.answers[0])
        vals.append(retained(none.nll, full.nll, comp.nll))
    v = [x for x in vals if x is not None]
    print(qr, round(sum(v)/len(v), 3), [round(x,2) if x is not None else None for x in vals])

