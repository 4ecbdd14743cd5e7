"""Command line: a thin layer over the library.

    elision compress prompt.txt --rate 0.33 [--question ...] [--instruction ...] [--json] [--show]
    elision models [--prepare NAME]
    elision methods

Input is a file or '-' (stdin): a JSON list of strings (contexts), a JSON object with
context/instruction/question keys, or plain text whose blank-line-separated blocks become the
contexts. The compressed prompt goes to stdout, the figures to stderr (so it pipes cleanly).
User mistakes print 'error: ...' and exit with status 2; no traceback.
"""

from __future__ import annotations

import json
import re
import sys

import click

from ._errors import ElisionError, InvalidInput
from .budget import parse_rate
from .compressor import DEFAULT_METHOD
from .models.hf import quiet_transformers
from .process import steady_malloc

# The CLI owns the terminal: commands that load models call quiet_transformers() first (no
# 'Loading weights' bars from transformers on stderr).

PROGRESS_MIN_CHARS = 6000  # show a progress bar from about 1,500 tokens of input on (no count needed)


MAX_INPUT_BYTES = 16 * 2**20  # default cap on FILE / stdin (/dev/zero must not read until memory runs out)


def _set_input_cap(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter("must be at least 1 byte")
    ctx.meta["elision.max_input_bytes"] = value or MAX_INPUT_BYTES


# on every command that reads FILE|-; stored in the context, not passed to the command
input_cap_option = click.option(
    "--max-input-bytes", type=int, expose_value=False, callback=_set_input_cap, metavar="N",
    help=f"refuse input over N bytes [default {MAX_INPUT_BYTES} (16 MiB)]")


def _read_input(src: str) -> str:
    """FILE or stdin, at most --max-input-bytes (read in bounded pieces, so a device or an endless
    pipe fails with a message instead of filling memory)."""
    from ._io import decode_text

    ctx = click.get_current_context(silent=True)
    limit = (ctx.meta.get("elision.max_input_bytes") if ctx else None) or MAX_INPUT_BYTES
    try:
        if src == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(src, "rb") as f:
                data = f.read(limit + 1)
    except OSError as e:
        raise InvalidInput(f"cannot read {src}: {e.strerror or e}") from None
    if len(data) > limit:
        raise InvalidInput(f"{'stdin' if src == '-' else src} is over the limit of {limit} bytes; "
                           "raise it with --max-input-bytes")
    return decode_text(data, src)


def parse_prompt(text: str) -> dict:
    """JSON list -> contexts (or chat messages, if its items have a role); JSON object -> its
    context/instruction/question or its messages; else blocks. 'a\\n\\nb' -> {'context': ['a', 'b']}."""
    stripped = text.strip()
    if stripped[:1] in "[{":
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, list):
            if obj and all(isinstance(m, dict) and "role" in m for m in obj):
                return {"messages": obj}
            return {"context": obj}
        if isinstance(obj, dict):
            if "messages" in obj:
                return {"messages": obj["messages"]}
            allowed = {"context", "instruction", "question"}
            fields = {k: v for k, v in obj.items() if k in allowed}
            if not fields:
                raise InvalidInput("a JSON object input needs at least one of: context, instruction, question")
            return fields
    blocks = [b for b in re.split(r"\n[ \t]*\n", text) if b.strip()]
    return {"context": blocks}


class UserError(click.ClickException):
    """A user mistake: 'error: ...' on stderr, exit status 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ElisionError as e:
            raise UserError(str(e)) from None
        except RecursionError:  # JSON input nested thousands deep (json.loads, copying messages)
            raise UserError("the input nests too deeply (JSON lists or objects inside each other); "
                            "flatten it") from None
        except MemoryError:
            raise UserError("not enough memory for this input; give a smaller one (--max-input-bytes)") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="elision")
def cli():
    """elision: compress LLM prompts with small language models."""
    steady_malloc()


@cli.command()
@click.argument("source", metavar="FILE|-")
@click.option("--rate", type=parse_rate, help="share of target tokens to keep, in (0, 1], or auto: the method "
                                            "chooses from its scores (llmlingua2; -o auto_threshold) (default 0.5)")
@click.option("--target-tokens", type=int, help="keep at most this many target tokens instead of a rate (with "
                                                "--rate auto: its ceiling)")
@click.option("--method", "-m", default=DEFAULT_METHOD, show_default=True)
@click.option("--model", help="small model: a known name (see `elision models`), a path or a HF id")
@click.option("--target", "-t", default="gpt-4o", show_default=True, help="target model or encoding (counts, price)")
@click.option("--question", "-q", help="question (kept at a high rate; appended after the contexts)")
@click.option("--instruction", "-i", help="instruction (kept at a high rate; put before the contexts)")
@click.option("--protect", multiple=True, help="text that must survive (repeatable)")
@click.option("--protect-regex", multiple=True,
              help="regular expression whose matches must survive (run on RE2: linear time; no lookaround "
                   "or backreferences)")
@click.option("-o", "--option", "options", type=(str, str), multiple=True, metavar="KEY VALUE",
              help="method option, e.g. -o segment_size 100 (repeatable)")
@click.option("--device", help="cpu | cuda | cuda:N | auto")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16", "int8"]),
              help="int8: the LLMLingua-2 encoder in ONNX Runtime (what auto picks on a CPU); causal methods refuse it")
@click.option("--json", "as_json", is_flag=True, help="print the whole result as JSON")
@click.option("--show", is_flag=True, help="print the original with dropped text marked")
@click.option("--quiet", is_flag=True, help="no figures or progress on stderr")
@input_cap_option
@click.option("--format", "fmt", type=click.Choice(["text", "tagged", "json", "markdown"]), default="text",
              show_default=True, help="read FILE as tagged text (<elision rate=0.5>...</elision>), a JSON document "
              "(string values compressed) or Markdown (structure kept); see docs/structured.md")
@click.option("--policy", "policies", multiple=True, metavar="KEY=POLICY",
              help="--format json: keep | drop | compress | a rate, for a key or dotted path (repeatable)")
@click.option("--plain-markdown", is_flag=True, help="--format markdown: compress the structure too")
@click.option("--chat-policy", type=click.Choice(["stable", "age"]), default="stable", show_default=True,
              help="chat messages: stable (each message compressed once, the same at every later turn: the "
              "provider's prompt cache keeps hitting) or age (one request: the whole history fitted, older harder)")
@click.option("--hot-tokens", type=click.IntRange(min=0), show_default="0",
              help="chat messages, stable policy: keep the newest messages whole until they add up to this many "
              "tokens, then compress them as one block")
@click.option("--recall-tokens", type=click.IntRange(min=0), show_default="256",
              help="chat messages, stable policy: at most this many tokens of removed text the latest question "
              "needs, appended verbatim as a last user message (0: none)")
@click.option("--no-repeats", is_flag=True,
              help="chat messages, stable policy: keep numbers, names and addresses in records an earlier message "
              "already holds verbatim too (default: those records lose the keep rules)")
def compress(source, rate, target_tokens, method, model, target, question, instruction, protect, protect_regex,
             options, device, dtype, as_json, show, quiet, fmt, policies, plain_markdown, chat_policy, hot_tokens,
             recall_tokens, no_repeats):
    """Compress the prompt in FILE (or stdin with -)."""
    from .budget import make_budget
    from .compressor import Compressor
    from .prompt import Prompt
    from .prompt import protect_regex as user_regex
    from .structured import as_format, build_prompt, format_options_from_flags

    # on RE2: linear in the text whatever the pattern ('(a+)+$' never finished on Python's re)
    pats = [user_regex(p, "--protect-regex") for p in protect_regex]
    make_budget(1, rate, target_tokens)  # a bad rate or budget fails before any model loads
    structure = as_format(fmt, format_options_from_flags(fmt, policies, plain_markdown))
    raw = _read_input(source)
    fields = parse_prompt(raw) if structure is None else {}  # a structured FILE is one text
    say = (lambda m: click.echo(m, err=True)) if not quiet else None
    if "messages" in fields:  # a chat: compressed as one, printed back as JSON messages
        if question is not None or instruction is not None:
            raise InvalidInput("--question / --instruction do not apply to chat messages: the latest user "
                               "message is the question")
        quiet_transformers()
        comp = Compressor(method, model=model, target=target, device=device, dtype=dtype, progress=say,
                          **dict(options))
        # the stable policy's settings the user gave (the library's defaults else; with policy age it
        # says they do not apply)
        extra = {k: v for k, v in (("hot_tokens", hot_tokens), ("recall_tokens", recall_tokens),
                                   ("repeats", False if no_repeats else None)) if v is not None}
        r = comp.compress_messages(fields["messages"], policy=chat_policy, rate=rate, target_tokens=target_tokens,
                                   protect=[*protect, *pats], **extra)
        click.echo(json.dumps(r.to_dict() if as_json else r.messages, ensure_ascii=False, indent=1))
        if not quiet:
            click.echo(f"{r.origin_tokens:,} -> {r.compressed_tokens:,} {r.target} tokens (rate {r.rate:.3f}) in "
                       f"{len(r.compressed)} of {len(r.messages)} messages; {r.method} in {r.seconds:.2f} s", err=True)
        return
    if question is not None:
        fields["question"] = question
    if instruction is not None:
        fields["instruction"] = instruction
    # built once, before the model loads (bad input fails fast), and handed to the compressor as is
    prompt = Prompt.build(fields.get("context"), fields.get("instruction"), fields.get("question"),
                          [*protect, *pats]) if structure is None else build_prompt(
        structure, raw, instruction=fields.get("instruction") or "", question=fields.get("question") or "",
        protect=[*protect, *pats])
    quiet_transformers()
    comp = Compressor(method, model=model, target=target, device=device, dtype=dtype, progress=say,
                      **dict(options))
    bar = None

    def progress(done, total):  # in the method's own units (e.g. model tokens)
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label="compressing", file=sys.stderr)
            bar.__enter__()
        bar.length = total
        bar.update(done - bar.pos)

    try:
        long = len(prompt.text) >= PROGRESS_MIN_CHARS
        r = comp.compress(prompt, rate=rate, target_tokens=target_tokens, progress=progress if long and not quiet else None)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if as_json:
        click.echo(json.dumps(r.to_dict(), ensure_ascii=False, indent=1))
    elif show:
        color = sys.stdout.isatty()
        click.echo(r.marked("\x1b[9;2m", "\x1b[0m") if color else r.marked())
    else:
        click.echo(r.compressed_prompt)
    if not quiet and not as_json:
        money = f", saving ${r.saving_usd:.4f} on {r.target}" if r.saving_usd is not None else ""
        auto = ", chosen by --rate auto" if r.auto_rate is not None else ""
        click.echo(f"{r.origin_tokens:,} -> {r.compressed_tokens:,} {r.target} tokens (rate {r.rate:.3f}{auto}, "
                   f"{r.ratio:.1f}x){money}; {r.method} on {r.model or '-'} in {r.seconds:.2f} s", err=True)
    if r.shortfall is not None and not as_json:  # --json carries it as "shortfall"
        click.echo(f"warning: {r.shortfall.message()}", err=True)


@cli.command()
@click.option("--prepare", "name", help="convert and cache this model now (GGUF -> float checkpoint)")
def models(name):
    """List the known small models, or prepare one."""
    from .models.registry import KNOWN_MODELS, cache_dir, package_dir, prepare

    if name:
        quiet_transformers()
        path = prepare(name, progress=lambda m: click.echo(m, err=True))
        click.echo(f"{name}: ready at {path}")
        return
    for spec in KNOWN_MODELS.values():
        try:
            found = spec.assemble or (package_dir(spec) / spec.file).exists()  # assembled: chunks
            state = "installed" if found else f"missing ({spec.install})"
        except ElisionError:
            state = f"missing ({spec.install})"
        click.echo(f"{spec.name:18} {spec.kind:10} {spec.about}\n{'':30}{state}")
    click.echo(f"cache: {cache_dir()}\nany local path, .gguf file or Hugging Face id (org/name) also works")


@cli.command("eval")
@click.option("--dataset", "-d", required=True,
              help="squad-mdqa, squad-shifts-mdqa, coqa, gsm8k-cot, bbh-cot, cnn-dm, xsum, or a .jsonl file")
@click.option("--methods", default="llmlingua,selective_context,random,truncate", show_default=True,
              help="comma-separated; a variant with options: longllmlingua[ranker=bm25,reorder=none]; "
                   "the reference: ref:llmlingua, ref:longllmlingua, ref:llmlingua2")
@click.option("--rates", default="0.5,0.33,0.2,0.1", show_default=True)
@click.option("--out", "out_dir", required=True, help="folder for results.jsonl, report.md and plots")
@click.option("--n", default=60, show_default=True, help="number of cases")
@click.option("--seed", default=0, show_default=True)
@click.option("--target", "-t", default="cl100k_base", show_default=True)
@click.option("--target-lm", default="gemma3-270m", show_default=True,
              help="local causal LM for fidelity (NLL, KL); 'none' to skip")
@click.option("--endpoint", help="OpenAI-compatible base URL (e.g. https://api.openai.com/v1) for EM/F1/ROUGE-L")
@click.option("--api-key", envvar="OPENAI_API_KEY", help="key for --endpoint (default: $OPENAI_API_KEY)")
@click.option("--gen-model", default="gpt-4o-mini", show_default=True, help="model asked at --endpoint")
def eval_cmd(dataset, methods, rates, out_dir, n, seed, target, target_lm, endpoint, api_key, gen_model):
    """Evaluate methods x rates on a dataset; reruns reuse cached results."""
    from .budget import check_rate
    from .eval.report import summarize, table
    from .eval.runner import run, split_methods

    quiet_transformers()
    try:
        rate_list = [check_rate(float(x)) for x in rates.split(",") if x.strip()]
    except ValueError:
        raise InvalidInput(f"--rates must be comma-separated numbers in (0, 1], got {rates!r}") from None
    generator = None
    if endpoint:
        from .eval.generation import Generator

        generator = Generator(endpoint, api_key=api_key, model=gen_model)
    else:
        click.echo("generation metrics (EM/F1/ROUGE-L) skipped: no --endpoint given", err=True)
    try:
        rows = run(dataset, split_methods(methods), rate_list, out_dir, n=n,
                   seed=seed, target=target, target_lm=None if target_lm == "none" else target_lm,
                   generator=generator)
    except FileNotFoundError as e:
        raise InvalidInput(str(e)) from None
    click.echo(table(summarize(rows)))
    click.echo(f"wrote {out_dir}/results.jsonl, report.md and plots", err=True)


@cli.command()
@click.argument("source", metavar="FILE|-")
@click.option("--method", "-m", default="llmlingua2", show_default=True)
@click.option("--model", help="small model: a known name, a path or a HF id")
@click.option("--question", "-q", help="question (for question-aware methods)")
@click.option("--top", type=float, default=0.3, show_default=True, help="share of words marked important")
@click.option("-o", "--option", "options", type=(str, str), multiple=True, metavar="KEY VALUE")
@input_cap_option
def importance(source, method, model, question, top, options):
    """Per-word importance of FILE as JSON lines (start, end, text, score, rank, important):
    the scores compression ranks by, e.g. for token grouping in SFT-GO-style fine-tuning."""
    from .compressor import Compressor
    from .prompt import Prompt

    fields = parse_prompt(_read_input(source))
    if "messages" in fields:
        raise InvalidInput("importance takes a prompt, not chat messages")
    if not 0 < top <= 1:
        raise InvalidInput(f"--top must be in (0, 1], got {top}")
    prompt = Prompt.build(fields.get("context"), fields.get("instruction"),
                          question if question is not None else fields.get("question"))
    quiet_transformers()
    imp = Compressor(method, model=model, **dict(options)).importance(prompt)
    for row in imp.to_rows(top=top):
        click.echo(json.dumps(row, ensure_ascii=False))


@cli.command()
def methods():
    """List the compression methods and their options."""
    import dataclasses

    from .methods import METHODS

    for name, cls in sorted(METHODS.items()):
        ranges = cls.Options.RANGES  # the documented range of each numeric option
        opts = ", ".join(f"{f.name}={f.default!r}" + (" [{:g}..{:g}]".format(*ranges[f.name]) if f.name in ranges else "")
                         for f in dataclasses.fields(cls.Options))
        click.echo(f"{name:12} {(cls.__doc__ or '').strip().splitlines()[0] if cls.__doc__ else ''}")
        if opts:
            click.echo(f"{'':12} options: {opts}")


from .train.cli import train as _train  # noqa: E402  (after cli exists; the group only wires commands)

cli.add_command(_train)
from .serve.cli import serve as _serve  # noqa: E402

cli.add_command(_serve)
from .batch.cli import batch as _batch  # noqa: E402

cli.add_command(_batch)
main = cli


if __name__ == "__main__":
    cli()
