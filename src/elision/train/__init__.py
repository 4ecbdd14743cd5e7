"""LLMLingua-2 training: data distillation from a teacher compressor (`distill`) and fine-tuning
of a small encoder as a keep/drop word classifier (`classifier`).

    elision train distill --teacher selective_context --out ~/.cache/elision/distill/run1
    elision train classifier --data ~/.cache/elision/distill/run1 --out ./llmlingua2-minilm

Nothing here runs at import time or at inference: the shipped classifier is loaded by
elision.models (LoRA merged into the base encoder once, without peft).
"""
