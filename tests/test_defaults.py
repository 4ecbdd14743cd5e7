"""The method a caller gets without naming one is the same documented one everywhere (issue 25):
library, module-level compress(), CLI, batch, service and proxy, LangChain and LlamaIndex; the
llmlingua drop-in keeps llmlingua's own default."""

import inspect
import json

from click.testing import CliRunner

from elision import Compressor, compress
from elision.compressor import DEFAULT_METHOD


def test_default_method_is_llmlingua2_in_every_surface():
    from elision.batch.cli import batch
    from elision.cli import cli
    from elision.serve.settings import Settings

    assert DEFAULT_METHOD == "llmlingua2"
    assert inspect.signature(Compressor).parameters["method"].default == DEFAULT_METHOD
    assert inspect.signature(compress).parameters["method"].default == DEFAULT_METHOD
    assert Settings().method == DEFAULT_METHOD  # the service and both proxies
    for command in (cli.commands["compress"], batch):
        (opt,) = [p for p in command.params if p.name == "method"]
        assert opt.default == DEFAULT_METHOD, command.name


def test_integrations_default_to_the_same_method():
    import pytest

    lc = pytest.importorskip("elision.integrations.langchain")
    li = pytest.importorskip("elision.integrations.llamaindex")
    assert lc.ElisionCompressor.model_fields["method"].default == DEFAULT_METHOD
    assert li.ElisionPostprocessor.model_fields["method"].default == DEFAULT_METHOD


def test_cli_without_a_method_is_llmlingua2_with_the_question(docs):
    from elision.cli import cli

    text = "\n\n".join(docs["docs"])
    res = CliRunner().invoke(cli, ["compress", "-", "--rate", "0.3", "--question", docs["question"], "--json",
                                   "--quiet"], input=text)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    same = Compressor("llmlingua2").compress(context=docs["docs"], question=docs["question"], rate=0.3)
    assert out["method"] == "llmlingua2" and out["compressed_prompt"] == same.compressed_prompt
    assert "Tay" in out["compressed_prompt"]  # the task-aware classifier keeps the answer


def test_compat_keeps_llmlingua_defaults(llmlingua):
    from elision.compat import PromptCompressor

    pc = PromptCompressor()
    assert pc.compress_prompt(["The bridge opened in 1878 and fell in 1879. " * 8], rate=0.5)["compressed_prompt"]
    assert list(pc._compressors) == ["llmlingua"]  # llmlingua's PromptCompressor() is LLMLingua, as there
