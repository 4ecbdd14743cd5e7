"""Memory (issue 14): bf16 loads of elision's own float32 conversions read a bf16 copy made
once beside it (half the mapped bytes), with exactly the weights a cast at load would give."""

from pathlib import Path

from elision.models.registry import bf16_copy, prepare


def test_bf16_copy_of_a_conversion_has_the_same_weights(tmp_path):
    import torch
    import transformers as tf

    src = Path(prepare("smollm2-135m"))
    out = bf16_copy(src)
    assert Path(out).name == src.name + "-bf16" and bf16_copy(out) == out
    assert (Path(out) / "model.safetensors").stat().st_size < 0.6 * (src / "model.safetensors").stat().st_size
    assert bf16_copy(src) == out  # made once, then reused
    a = tf.AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.bfloat16).state_dict()
    b = tf.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.bfloat16).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_user_checkpoints_and_hub_ids_are_left_alone(tmp_path):
    (tmp_path / "config.json").write_text('{"dtype": "float32"}')
    assert bf16_copy(tmp_path) == tmp_path  # not an elision conversion (no mark): untouched
    assert bf16_copy("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    assert not list(tmp_path.parent.glob(tmp_path.name + "-bf16"))
