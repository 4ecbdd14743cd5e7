import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from elision.cli import cli, parse_prompt

from .conftest import EXAMPLES, is_subsequence


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def test_parse_prompt_forms():
    assert parse_prompt("a\n\nb\n \nc") == {"context": ["a", "b", "c"]}
    assert parse_prompt('["x", "y"]') == {"context": ["x", "y"]}
    assert parse_prompt('{"context": ["x"], "question": "q?", "other": 1}') == {"context": ["x"], "question": "q?"}
    assert parse_prompt("[not json") == {"context": ["[not json"]}
    chat = [{"role": "user", "content": "hi"}]
    assert parse_prompt(json.dumps(chat)) == {"messages": chat}
    assert parse_prompt(json.dumps({"messages": chat})) == {"messages": chat}


def test_compress_chat_messages(runner, docs):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": docs["docs"][0]},
            {"role": "assistant", "content": docs["docs"][1]}, {"role": "user", "content": docs["question"]}]
    res = runner.invoke(cli, ["compress", "-", "-m", "random", "--rate", "0.5", "--chat-policy", "age"],
                        input=json.dumps(chat))
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [m["role"] for m in out] == [m["role"] for m in chat] and out[0] == chat[0] and out[-1] == chat[-1]
    assert len(out[1]["content"]) < len(chat[1]["content"]) and "in 2 of 4 messages" in res.stderr
    # the default, stable policy: user turns stay whole, the long assistant message is compressed
    res = runner.invoke(cli, ["compress", "-", "-m", "random", "--rate", "0.5", "--json"], input=json.dumps(chat))
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["policy"] == "stable" and r["compressed_messages"] == [2] and r["messages"][1] == chat[1]
    res = runner.invoke(cli, ["compress", "-", "-m", "random", "--rate", "0.5", "--hot-tokens", "100000"],
                        input=json.dumps(chat))
    assert res.exit_code == 0 and json.loads(res.stdout) == chat  # the open block stays whole
    res = runner.invoke(cli, ["compress", "-", "-m", "random", "--rate", "0.5", "--json", "--recall-tokens", "0",
                              "--no-repeats"], input=json.dumps(chat))
    assert res.exit_code == 0 and json.loads(res.stdout)["recall"] == ""
    res = runner.invoke(cli, ["compress", "-", "-m", "random", "--chat-policy", "age", "--rate", "0.5", "--no-repeats"],
                        input=json.dumps(chat))
    assert res.exit_code == 2 and "repeats belongs to policy='stable'" in res.stderr
    res = runner.invoke(cli, ["compress", "-", "-m", "random", "--target-tokens", "50"], input=json.dumps(chat))
    assert res.exit_code == 2 and "policy='age'" in res.stderr
    res = runner.invoke(cli, ["compress", "-", "-m", "random"], input='{"messages": []}')
    assert res.exit_code == 2 and "empty" in res.stderr


def test_compress_bundled_example(runner, llmlingua):
    res = runner.invoke(cli, ["compress", str(EXAMPLES / "gsm8k_cot.json"), "--rate", "0.33"])
    assert res.exit_code == 0, res.output
    original = json.loads((EXAMPLES / "gsm8k_cot.json").read_text())
    assert "tokens (rate 0.3" in res.stderr
    assert is_subsequence(res.stdout.strip(), "\n\n".join([original["instruction"], *original["context"],
                                                           original["question"]]))


def test_stdin_json_output_and_flags(runner, docs):
    text = "\n\n".join(docs["docs"])
    res = runner.invoke(cli, ["compress", "-", "--rate", "0.4", "--question", docs["question"], "--json",
                              "--target", "cl100k_base", "--protect", "Thomas Bouch"], input=text)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["target"] == "cl100k_base" and out["compressed_tokens"] <= out["budget_tokens"]
    assert "Thomas Bouch" in out["compressed_prompt"]
    assert out["compressed_prompt"].endswith(docs["question"])  # the question is kept whole by default


def test_show_marks_dropped_text(runner, docs):
    res = runner.invoke(cli, ["compress", "-", "--rate", "0.5", "--show", "-m", "random", "--quiet"],
                        input=docs["docs"][0])
    assert res.exit_code == 0
    assert "[-" in res.stdout and res.stdout.replace("[-", "").replace("-]", "").strip() == docs["docs"][0]
    assert res.stderr == ""


def test_long_input_shows_progress(runner, docs):
    text = "\n\n".join(docs["docs"] * 3)  # ~2,000 tokens, over the progress threshold
    res = runner.invoke(cli, ["compress", "-", "--rate", "0.5"], input=text)
    assert res.exit_code == 0, res.output
    assert "compressing" in res.stderr


def test_options_pass_through_and_are_checked(runner, docs):
    ok = runner.invoke(cli, ["compress", "-", "-m", "llmlingua", "--rate", "0.5", "-o", "segment_size", "50", "-o",
                             "unit", "token", "--quiet"], input=docs["docs"][1])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(cli, ["compress", "-", "-m", "llmlingua", "-o", "segment_sise", "50"], input=docs["docs"][1])
    assert bad.exit_code == 2 and "unknown option(s) segment_sise" in bad.stderr and "segment_size" in bad.stderr


@pytest.mark.parametrize("args, stdin, msg", [
    (["compress", "/nonexistent/file.txt"], None, "cannot read /nonexistent/file.txt"),
    (["compress", "-"], "", "empty prompt"),
    (["compress", "-", "--rate", "0"], "some text", "rate must be in (0, 1]"),
    (["compress", "-", "--rate", "2"], "some text", "rate must be in (0, 1]"),
    (["compress", "-", "--target-tokens", "0"], "some text", "target_tokens must be a positive integer"),
    (["compress", "-", "-m", "nope"], "some text", "unknown method 'nope'; known: llmlingua, llmlingua2, longllmlingua"),
    (["compress", "-", "--model", "nope"], "some text", "unknown model 'nope'"),
    (["compress", "-", "--target", "nope"], "some text", "unknown target 'nope'"),
    (["compress", "-", "--protect-regex", "("], "some text", "--protect-regex '(': missing )"),
])
def test_user_errors_exit_2_without_traceback(runner, args, stdin, msg):
    res = runner.invoke(cli, args, input=stdin)
    assert res.exit_code == 2, res.output
    assert msg in res.stderr
    assert "Traceback" not in res.output


def test_binary_input(runner, tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    res = runner.invoke(cli, ["compress", str(f)])
    assert res.exit_code == 2 and "binary" in res.stderr
    g = tmp_path / "latin1.txt"
    g.write_bytes("caf\xe9".encode("latin-1"))
    res = runner.invoke(cli, ["compress", str(g)])
    assert res.exit_code == 2 and "not UTF-8" in res.stderr


def test_models_and_methods_listing(runner, llmlingua):
    res = runner.invoke(cli, ["models"])
    assert res.exit_code == 0
    assert "smollm2-135m" in res.stdout and "gemma3-270m" in res.stdout and "installed" in res.stdout
    res = runner.invoke(cli, ["models", "--prepare", "smollm2-135m"])
    assert res.exit_code == 0 and "ready at" in res.stdout
    res = runner.invoke(cli, ["methods"])
    assert "llmlingua" in res.stdout and "segment_size" in res.stdout


def test_console_script_end_to_end(tmp_path, docs, llmlingua):
    f = tmp_path / "p.txt"
    f.write_text("\n\n".join(docs["docs"][:3]))
    exe = Path(sys.executable).parent / "elision"
    out = subprocess.run([str(exe), "compress", str(f), "--rate", "0.5", "-m", "truncate"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and docs["docs"][0].startswith(out.stdout.strip()[:30])
    bad = subprocess.run([str(exe), "compress", str(tmp_path / "missing.txt")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: cannot read")


def test_dtype_int8_on_the_command_line(runner, docs):
    """--dtype int8 is offered (the docs tell users to pass it for llmlingua2); a causal method
    refuses it with the reason, exit 2, nothing lost."""
    text = "\n\n".join(docs["docs"][:3])
    res = runner.invoke(cli, ["compress", "-", "-m", "llmlingua2", "--dtype", "int8", "--rate", "0.5", "--json"],
                        input=text)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["compressed_tokens"] < out["origin_tokens"]
    res = runner.invoke(cli, ["compress", "-", "-m", "llmlingua", "--dtype", "int8", "--rate", "0.5"], input=text)
    assert res.exit_code == 2 and "causal LMs run in bfloat16 or float32" in res.output
