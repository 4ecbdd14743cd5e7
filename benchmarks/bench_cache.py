"""What a conversation really costs through elision: long agent sessions replayed request by
request, billed under OpenAI's and Anthropic's published prompt-caching rules (issue 23).

    python benchmarks/bench_cache.py                     # 8 sessions, every policy, rate 0.4
    python benchmarks/bench_cache.py --sessions 2 --rates 0.25 --policies "uncompressed,stable (default)"

The sessions (benchmarks/sessions.py: multi-turn tool-use sessions built from the bfcl-eval and
agentdojo wheels, >= 30 turns, long tool outputs, memory probes) are replayed as an agent loop
sends them: per turn, one request with the history and the user's question (the model answers
with a tool call) and one with the tool's output added (the model answers); the answer joins the
history. Each policy compresses each request as the proxy would, and the request is billed by
elision.billing's simulators: OpenAI (prefixes of 1,024+ tokens cached in 128-token steps, read
at 0.1x) on the request's tokens, and Anthropic (the caller marks the last block with
cache_control, as Anthropic's guide says; breakpoints, 20-block lookback, 1,024-token minimum,
writes 1.25x, reads 0.1x) on its blocks. TTL assumed warm, multipliers as parameters. Tokens are
o200k_base counts for both (Claude's tokenizer is not public).

Per policy: billed input per session as a ratio to the uncompressed session with caching (the
bill a user would get without elision), the share of input tokens read from the cache, fact
survival (a memory probe's answer, from an earlier turn's tool output, still present in the
request that asks it; relative to the uncompressed request, which holds all of them), the
current turn's answer surviving in the request that answers it (every value of the turn's final
answer that its own tool output holds: numbers, dates, names; see current_answers), and compression seconds per
turn early and late in the sessions with the new tokens per turn (flat = time follows new text,
not the history).

Not modelled: output tokens (the same for every policy), cache expiry (a session paused past
the TTL pays a write again), OpenAI's per-prefix overflow past ~15 requests/min.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine, table, today  # noqa: E402

# policy name -> compress_messages keywords (None: sent uncompressed)
POLICIES = {
    "uncompressed": None,
    "age": {"policy": "age"},  # elision before issue 23: the whole history refitted at every request
    # the stable policy's choices; "stable (default)" is what the library and the proxies do:
    # no question, recall 256, whole values, digits and names kept
    "stable-q": {"policy": "stable", "condition": "question", "recall_tokens": 0, "whole_values": False,
                 "force_digits": False, "force_names": False},
    "stable-noq": {"policy": "stable", "condition": "none", "recall_tokens": 0, "whole_values": False,
                   "force_digits": False, "force_names": False},
    "stable-q-recall": {"policy": "stable", "condition": "question", "recall_tokens": 256, "whole_values": False,
                        "force_digits": False, "force_names": False},
    "stable-noq-recall": {"policy": "stable", "condition": "none", "recall_tokens": 256, "whole_values": False,
                          "force_digits": False, "force_names": False},
    "stable-values": {"policy": "stable", "condition": "none", "recall_tokens": 256, "force_digits": False,
                      "force_names": False},
    "stable-values-digits-norecall": {"policy": "stable", "condition": "none", "recall_tokens": 0,
                                      "force_names": False},
    "stable-values-digits-names-norecall": {"policy": "stable", "condition": "none", "recall_tokens": 0},
    "stable-no-names": {"policy": "stable", "force_names": False},  # the default before force_names
    "stable (default)": {"policy": "stable"},
    "stable-recall128": {"policy": "stable", "recall_tokens": 128},
    "stable-no-ids": {"policy": "stable", "force_ids": False},  # the default before force_ids (e-mail addresses, URLs, file names)
    "stable-no-repeats": {"policy": "stable", "repeats": False},  # the default before repeated records lost the keep rules
    "stable-min32": {"policy": "stable", "min_tokens": 32},  # shorter messages compressed too (default 64)
    "stable-min16": {"policy": "stable", "min_tokens": 16},
    "stable-hot2k": {"policy": "stable", "hot_tokens": 2048},
    # not a policy, a bound: every tool output and assistant text removed (tool calls, user turns,
    # system and tools kept, cache perfect): no policy that keeps those can bill less
    "floor": "floor",
}


def to_anthropic(messages: list[dict], tools: list[dict], model: str, recall: str = "") -> dict:
    """An OpenAI-format request as the same request in Anthropic's Messages format, with the
    caller's usual cache_control on the last block. Tool results join the next user turn's
    content (Anthropic's roles alternate). `recall` (the stable policy's excerpts, the last
    message of `messages`) goes after the caller's marked block, as the proxy puts it."""
    if recall:
        messages = messages[:-1]
    body = {"model": model, "max_tokens": 1024, "messages": []}
    if tools:
        body["tools"] = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                          "input_schema": t["function"].get("parameters", {"type": "object"})} for t in tools]
    out = body["messages"]

    def add(role: str, blocks: list[dict]) -> None:
        if out and out[-1]["role"] == role:
            out[-1]["content"] += blocks
        else:
            out.append({"role": role, "content": blocks})

    for m in messages:
        text = m.get("content")
        if isinstance(text, list):
            text = "\n".join(p.get("text", "") for p in text if isinstance(p, dict))
        if m["role"] in ("system", "developer"):
            body["system"] = text
        elif m["role"] == "user":
            add("user", [{"type": "text", "text": text}])
        elif m["role"] == "assistant":
            blocks = [{"type": "text", "text": text}] if text else []
            for call in m.get("tool_calls") or ():
                try:
                    args = json.loads(call["function"].get("arguments") or "{}")
                except ValueError:
                    args = {"raw": call["function"].get("arguments")}
                blocks.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": args})
            add("assistant", blocks or [{"type": "text", "text": "(no text)"}])
        elif m["role"] in ("tool", "function"):
            add("user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id", "t"), "content": text or ""}])
    last = out[-1]["content"][-1]
    last["cache_control"] = {"type": "ephemeral"}
    if recall and out[-1]["role"] == "user":
        out[-1]["content"].append({"type": "text", "text": recall})
    return body


def requests_of(session: dict):
    """(turn index, kind, messages) of every request the agent loop sends; kind 'ask' (history +
    question) or 'answer' (+ the tool call and its output)."""
    history = [{"role": "system", "content": session["system"]}]
    for t, turn in enumerate(session["turns"]):
        msgs = turn["messages"]
        user, rest = msgs[0], msgs[1:]
        final = rest[-1] if rest and rest[-1]["role"] == "assistant" and not rest[-1].get("tool_calls") else None
        middle = rest[:-1] if final is not None else rest
        yield t, "ask", history + [user]
        if middle:
            yield t, "answer", history + [user, *middle]
        history = history + msgs


_VALUE = re.compile(r"[\w.@:/-]*\d[\w.@:/-]*")


def current_answers(turn: dict) -> list[str]:
    """The values the turn's final answer takes from the turn's own tool outputs (numbers, dates,
    addresses, names; not words of the question): what the request that answers needs of its
    newest tool output: words holding a digit and names inside sentences (elision's force_names
    rule). 'It starts at 2024-05-27 14:00:00.' over a calendar output holding that time ->
    ['2024-05-27', '14:00:00']."""
    msgs = turn["messages"]
    final = msgs[-1].get("content") if msgs and msgs[-1]["role"] == "assistant" else None
    tools = "\n".join(m.get("content") or "" for m in msgs if m["role"] in ("tool", "function"))
    if not final or not tools:
        return []
    from elision.selection import name_spans

    question = (msgs[0].get("content") or "").lower()
    values = [v.strip(".:,-/") for v in _VALUE.findall(final)] + [final[a:b] for a, b in name_spans(final)]
    return [v for v in values if len(v) >= 3 and v in tools and v.lower() not in question]


def text_of(messages: list[dict]) -> str:
    parts = []
    for m in messages:
        if m["role"] in ("system", "developer"):
            continue
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts += [p.get("text", "") for p in c if isinstance(p, dict)]
    return "\n".join(parts).lower()


def replay(session: dict, policy: dict | None, rate: float, comp, enc, prices: dict) -> dict:
    from elision.billing import AnthropicCache, OpenAIPrefixCache, anthropic_request_blocks, openai_request_tokens

    import hashlib

    digest = hashlib.sha256()  # of every request's bytes: compare runs across machines and CPUs
    oa, an = OpenAIPrefixCache(), AnthropicCache(min_tokens=1024)
    tot = {"oa_billed": 0.0, "oa_nocache": 0, "oa_cached": 0, "an_billed": 0.0, "an_read": 0, "an_input": 0,
           "requests": 0, "probes": 0, "probes_kept": 0, "current": 0, "current_kept": 0}
    times: list[tuple[int, float, int]] = []  # (turn, seconds, new tokens)
    seen_tokens = 0
    probes = {t: turn.get("probes", []) for t, turn in enumerate(session["turns"])}
    for t, kind, messages in requests_of(session):
        recall = ""
        if policy is None:
            sent = messages
        elif policy == "floor":
            sent = [{**m, "content": ""} if m["role"] in ("tool", "function", "assistant") else m for m in messages]
        else:
            r = comp.compress_messages(messages, rate=rate, **policy)
            sent, recall = r.messages, r.recall
            times.append((t, r.seconds, max(0, r.origin_tokens - seen_tokens)))
            seen_tokens = r.origin_tokens
        body = {"model": "gpt-5", "tools": session.get("tools", []), "messages": sent}
        digest.update(json.dumps([sent, recall], sort_keys=True).encode())
        u = oa.request(openai_request_tokens(body, enc))
        tot["oa_billed"] += u.billed_input(prices["openai"])
        tot["oa_nocache"] += u.prompt_tokens
        tot["oa_cached"] += u.cache_read_tokens
        ua = an.request(*anthropic_request_blocks(to_anthropic(sent, session.get("tools", []), "claude-sonnet-4-5", recall),
                                                 enc))
        tot["an_billed"] += ua.billed_input(prices["anthropic"])
        tot["an_read"] += ua.cache_read_tokens
        tot["an_input"] += ua.prompt_tokens
        tot["requests"] += 1
        if kind == "answer":
            text = text_of(sent)
            for p in probes.get(t, ()):
                tot["probes"] += 1
                tot["probes_kept"] += any(a.lower() in text for a in p["answers"])
            answers = session["turns"][t].get("answers") or current_answers(session["turns"][t])
            if answers:  # the question of this turn, answered by its own tool output: all of it kept
                tot["current"] += 1
                tot["current_kept"] += all(a.lower() in text for a in answers)
    tot["times"] = times
    tot["digest"] = digest.hexdigest()
    return tot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rates", default="0.4")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--method", default="llmlingua2")
    ap.add_argument("--read", type=float, default=0.1, help="cached input, x the input price (both providers)")
    ap.add_argument("--write", type=float, default=1.25, help="Anthropic cache write, x the input price")
    ap.add_argument("--out", default=str(RESULTS / "cache.json"))
    args = ap.parse_args()

    from sessions import load_sessions

    from elision import Compressor
    from elision.billing import Prices
    from elision.tokenizers import get_target

    prices = {"openai": Prices(cache_read=args.read, cache_write=1.0, cache_write_1h=1.0),
              "anthropic": Prices(cache_read=args.read, cache_write=args.write, cache_write_1h=2.0)}
    sessions = load_sessions(n=args.sessions, seed=args.seed)
    enc = get_target("o200k_base").encode
    comp = Compressor(args.method, target="o200k_base")
    names = [p for p in args.policies.split(",") if p]
    rates = [float(x) for x in args.rates.split(",")]
    rows, raw = [], []
    base: dict[str, dict] = {}
    for name in ["uncompressed"] + [n for n in names if n != "uncompressed"]:
        for rate in ([1.0] if not isinstance(POLICIES[name], dict) else rates):
            comp.pipeline.memo.clear()  # no help from another policy's run
            t0 = time.perf_counter()
            per = [replay(s, POLICIES[name], rate, comp, enc, prices) for s in sessions]
            wall = time.perf_counter() - t0
            agg = {k: sum(p[k] for p in per) for k in per[0] if k not in ("times", "digest")}
            times = [x for p in per for x in p["times"]]
            if name == "uncompressed":
                base = agg
            late_turn = max((x[0] for x in times), default=0) * 2 // 3
            early = [x for x in times if x[0] < 10]
            late = [x for x in times if x[0] >= late_turn]

            def mean(xs, i):
                return sum(x[i] for x in xs) / len(xs) if xs else 0.0

            row = {"policy": name, "rate": "-" if not isinstance(POLICIES[name], dict) else rate,
                   "OpenAI x unc.+cache": round(agg["oa_billed"] / base["oa_billed"], 3),
                   "OpenAI x no cache": round(agg["oa_billed"] / base["oa_nocache"], 3),
                   "OpenAI hit share": round(agg["oa_cached"] / max(agg["oa_nocache"], 1), 3),
                   "Anthropic x unc.+cache": round(agg["an_billed"] / base["an_billed"], 3),
                   "Anthropic hit share": round(agg["an_read"] / max(agg["an_input"], 1), 3),
                   "facts kept": round(agg["probes_kept"] / max(agg["probes"], 1), 3),
                   "facts vs unc.": round((agg["probes_kept"] / max(agg["probes"], 1))
                                          / max(base["probes_kept"] / max(base["probes"], 1), 1e-9), 3),
                   # sessions whose turns name their own answers ("answers"): the current question's answer kept
                   **({"current kept": round(agg["current_kept"] / agg["current"], 3)} if agg["current"] else {}),
                   "s/req early": round(mean(early, 1), 3), "s/req late": round(mean(late, 1), 3),
                   "new tok early": round(mean(early, 2)), "new tok late": round(mean(late, 2)),
                   "wall s": round(wall, 1),
                   # the sent bytes of all sessions: equal digests = byte-identical requests
                   "bytes sha256": hashlib.sha256("".join(p["digest"] for p in per).encode()).hexdigest()[:16]}
            rows.append(row)
            raw.append({**row, "totals": agg, "per_session": [{k: v for k, v in p.items() if k != "times"}
                                                              for p in per]})
            print(table([row], list(row)), flush=True)
    n_tok = base["oa_nocache"] / len(sessions)
    print(f"\n{len(sessions)} sessions, {base['requests'] / len(sessions):.0f} requests and "
          f"{sum(len(s['turns']) for s in sessions) / len(sessions):.0f} turns each, "
          f"{n_tok:,.0f} input tokens per session uncompressed; {args.method}; {machine()}; {today()}\n")
    cols = ["policy", "rate", "OpenAI x unc.+cache", "OpenAI hit share", "Anthropic x unc.+cache",
            "Anthropic hit share", "facts vs unc.", "current kept", "s/req early", "s/req late", "new tok late"]
    print(table(rows, cols))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine(), "date": today(), "method": args.method,
                                          "sessions": len(sessions), "prices": {k: dataclasses.asdict(v) for k, v in prices.items()},
                                          "rows": raw}, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
