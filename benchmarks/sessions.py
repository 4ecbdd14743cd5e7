"""Long multi-turn agent sessions (OpenAI chat format) for the prompt-caching benchmarks.

    python benchmarks/sessions.py --fetch      # once, ~2.5 s: two wheels from PyPI into the cache
    python benchmarks/sessions.py --show 2     # a readable summary of the first two sessions

    >>> from sessions import load_sessions
    >>> s = load_sessions(n=8, seed=0)[0]
    >>> s["id"], len(s["turns"]), len(s["turns"][0]["messages"])
    ('agentdojo-emma-s0-0', 33, 4)

Every session is built from the data files of two PyPI wheels, read straight out of the zip
(never imported: their pinned dependencies clash with ours), each file checked against a pinned
sha256:

- `agentdojo==0.1.35` (MIT): the benign environment of Emma Johnson (Blue Sparrow Tech) in the
  workspace, travel and banking suites: 31 emails, 26 calendar events, 26 cloud-drive files,
  10 hotels, 13 restaurants, 10 car-rental companies, 7 bank transactions. Injection
  placeholders get the suites' own benign defaults. Tools are AgentDojo's functions (schemas
  from their signatures and docstrings) and tool outputs are what they return, formatted as
  AgentDojo formats them (YAML for models, str() for dicts).
- `bfcl-eval==2026.3.23` (Apache-2.0): the memory category of the Berkeley Function-Calling
  Leaderboard: earlier conversations of a student (10 sessions) and of a shop customer (10),
  stored as archival-memory entries, with the leaderboard's own questions and ground truths
  ("What is my first name?" -> "Michael"). Tools and system prompt are BFCL's (memory_vector).

A session is a dict:

    {"id", "source", "system": str, "tools": [{"type": "function", "function": {...}}],
     "turns": [{"messages": [user, assistant with tool_calls, tool..., assistant answer],
                "probes": [{"question", "answers": [str], "from_turn": k}]}]}

A probe is asked (inside that turn's user message, after the turn's own request) about a fact
that only the tool output of turn `from_turn` < this turn holds: its answer string (exact, case
aside) appears nowhere else before the probe turn's final answer, not in the system prompt or
tool definitions, not in any other user, assistant or tool message, not in the probe turn's own
tool output. A benchmark checks whether it survives in what it sends.

Glue text (user requests, questions, short answers) is written from templates over the source
records; every answer is read from the source. Not handled: the sessions are replays, not
rollouts (no model chose these calls); memory retrieval returns a window of consecutive entries
around the answer, ranked by a bag-of-words cosine, not BFCL's embedding search; AgentDojo's
slack suite is left out (other users, very short messages); nothing is written but the wheels.
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime as dt
import hashlib
import io
import json
import math
import random
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from elision.models.registry import cache_dir

PACKAGES = {  # pip requirement -> (wheel, its sha256)
    "agentdojo==0.1.35": ("agentdojo-0.1.35-py3-none-any.whl",
                          "364bea4219716b716bf639f504d195943f7f6a5535d312ca41d7098704a2affd"),
    "bfcl-eval==2026.3.23": ("bfcl_eval-2026.3.23-py3-none-any.whl",
                             "3bb6dfa5f0c68ad403c9ec50b00db2bb3b4cc9b38ab1ff33f48fe30d853d3a0a"),
}
_AD = "agentdojo/data/suites/"
_ADT = "agentdojo/default_suites/v1/"
_BF = "bfcl_eval/data/"
FILES = {  # path inside a wheel -> sha256 of its bytes, checked on every read
    "agentdojo/data/system_messages.yaml":
        "b65b4fa81ee473447ae6314b1c41e08f0d53a2e07f2a766901f1f4f1a53c51a4",
    _AD + "workspace/include/inbox.yaml":
        "e6fac364bfb0e89d3d0251ef8079ffa2791504673a426029034356b8228f2082",
    _AD + "workspace/include/calendar.yaml":
        "69b0ae96804e986b5a0dba694ad6ca34cf01c8c6b57bb8ceb618d9ed8640b803",
    _AD + "workspace/include/cloud_drive.yaml":
        "a9731cd49fe7eb726e43c1727c40eff0d6ca2d85d53728aa744860a8c4214130",
    _AD + "workspace/injection_vectors.yaml":
        "3390ac3da090ea0fde5f50ef0a74bf260786b35ab6ff14d47a199ecb41a15489",
    _AD + "travel/environment.yaml":
        "ca8ef591bde5a8d8b9e2efe6830b8e4646c43f633c86f14cb878f588bb4b8a3c",
    _AD + "travel/injection_vectors.yaml":
        "a6ab848b39d862439e7b4844a617e578294de93cd0176c1851184dd901edb51c",
    _AD + "banking/environment.yaml":
        "3f539da1d97779b244cd122afc683dc69d602f338e1b3c42d126cbde33611c8b",
    _AD + "banking/injection_vectors.yaml":
        "4eb98a601c108d9b4d88f5d3f2dbf455f775a718975a0ae2624b4cf0d0f6f819",
    _ADT + "tools/email_client.py":
        "782adb70c81ec765919ae835494fac163dbb46f21ef46f6dcf18eab390b5e294",
    _ADT + "tools/calendar_client.py":
        "5d551339fb87237dd1414a003b26f4f851dbdd2b0826225025e44f16420add22",
    _ADT + "tools/cloud_drive_client.py":
        "19376d95731c46477037986319bc8522b4bc96f4924e730b11906df23fc00b93",
    _ADT + "tools/travel_booking_client.py":
        "ad6b3441a38a1ff4bdc7227a15fb9ed764a7906baf2f75902bdb70f2100f69ba",
    _ADT + "tools/banking_client.py":
        "0e4273f521db7ff6d5e7f7f552e917b11940102abd932aea8a2998b517441b42",
    _ADT + "tools/file_reader.py":
        "09438864a1e1ac6564df3e4f7eb60a9a224de2ef8a92c4eb4899f7768ce49d6d",
    _ADT + "tools/user_account.py":
        "f097c4b2b6cd6784272987d8d37dd7cc5d599620d64b371f7c2af8e65d7ad673",
    _ADT + "workspace/task_suite.py":
        "96fa51ab20f03c30cd2d7bc754b76d717ddbd68bdf39adc85f0e92fc4d2c7ec4",
    _ADT + "travel/task_suite.py":
        "a2b58f094bd61a79e245ca74c94d9a3d62cc6bc744e5ee21bdadabb43960ba60",
    _ADT + "banking/task_suite.py":
        "c58ec73db16f713a16aaec787dac45856e546f4d95be84ab6a4bed9bc12613b6",
    "agentdojo-0.1.35.dist-info/licenses/LICENSE":
        "4285a071f2d382338e52b4fb0a186d952984a34d43a33d8872e1a1d8cb43401e",
    _BF + "memory_prereq_conversation/memory_student.json":
        "e2d6c32e9e2671c61f682e845dcdafd9eee7c9f3e2d5da1615d3afd2aeecf2f0",
    _BF + "memory_prereq_conversation/memory_customer.json":
        "806ac91e558e3d933e526ecc0c286e417657f76a3c9b9073eef830a532eb4eb2",
    _BF + "BFCL_v4_memory.json":
        "40fc21d4528af53c6b44204def89e81515d0101654229e2c2e82bbf5f047b14f",
    _BF + "possible_answer/BFCL_v4_memory.json":
        "2355cf8d842f94af6bcb7bfa6ad2f9e472bc6d825d6ecd45702cfc41e27d7e5d",
    _BF + "multi_turn_func_doc/memory_vector.json":
        "917908ca99fdd01e203274b7ec6eb2347fa91d57f3c6341e20945cc9c9d746cf",
    "bfcl_eval/constants/default_prompts.py":
        "4cc033be99ae2b10bbde30e7751ddcac5468cb45841b6dc7b3a97b92adf38205",
    "bfcl_eval-2026.3.23.dist-info/METADATA":
        "5c832092618fcff8d6425f892902828164391d61e6f223f7d5cb886755fded5a",
}
KINDS = ("agentdojo-emma", "bfcl-memory-student", "bfcl-memory-customer")
EMMA = "emma.johnson@bluesparrowtech.com"
LO, HI = 1800, 3800  # characters of tool output per turn (~450-950 tokens)


def sessions_dir() -> Path:
    return cache_dir() / "data" / "sessions"


# --- fetching and reading the wheels ---------------------------------------------------------

def fetch(verbose: bool = True) -> Path:
    """pip download both wheels (no dependencies) into the cache, check them, write manifest.json."""
    out = sessions_dir()
    out.mkdir(parents=True, exist_ok=True)
    for req, (wheel, want) in PACKAGES.items():
        if (out / wheel).exists() and _sha256(out / wheel) == want:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            if verbose:
                print(f"downloading {req} ...", file=sys.stderr)
            r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary",
                                ":all:", req, "-d", tmp], capture_output=True, text=True, check=False)
            got = Path(tmp) / wheel
            if r.returncode or not got.exists():
                last = (r.stderr.strip().splitlines() or ["no wheel came back"])[-1]
                raise RuntimeError(f"could not download {req} with pip ({last}); check that PyPI is "
                                   f"reachable (or pip's index settings) and run "
                                   f"`python benchmarks/sessions.py --fetch` again")
            if _sha256(got) != want:
                raise RuntimeError(f"{req}: the downloaded wheel's sha256 differs from the pinned one")
            (out / wheel).write_bytes(got.read_bytes())
    manifest = {}
    with _Wheels(out) as w:
        for req, (wheel, _) in PACKAGES.items():
            manifest[req] = {"wheel": wheel, "sha256": _sha256(out / wheel),
                             "files": {p: _sha256_bytes(w.read(p)) for p in FILES
                                       if p.startswith(wheel.split("-")[0])}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if verbose:
        print(f"ok  {out}  ({len(FILES)} files checked)", file=sys.stderr)
    return out


class _Wheels:
    """Reads files out of the cached wheels, each checked against FILES (opened once per load)."""

    def __init__(self, root: Path):
        self.zips = {}
        for wheel, _ in PACKAGES.values():
            p = root / wheel
            if not p.exists():
                raise FileNotFoundError(f"{p} is missing; fetch the session data first: "
                                        f"python benchmarks/sessions.py --fetch")
            self.zips[wheel.split("-")[0]] = zipfile.ZipFile(p)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for z in self.zips.values():
            z.close()

    def read(self, path: str) -> bytes:
        data = self.zips[path.split("/")[0].split("-")[0]].read(path)
        want = FILES[path]
        if want and _sha256_bytes(data) != want:
            raise RuntimeError(f"{path}: sha256 differs from the pinned one; delete {sessions_dir()} and "
                               f"run `python benchmarks/sessions.py --fetch` again")
        return data

    def text(self, path: str) -> str:
        return self.read(path).decode("utf-8")

    def yaml(self, path: str):
        return _yaml().safe_load(self.text(path))

    def jsonl(self, path: str) -> list[dict]:
        return [json.loads(line) for line in self.text(path).splitlines() if line.strip()]


def _yaml():
    try:
        import yaml  # pyyaml: in the test and eval extras
    except ModuleNotFoundError:
        raise ModuleNotFoundError("AgentDojo's data is YAML: pip install pyyaml (or elision's [eval] extra)") from None
    return yaml


def _sha256(p: Path) -> str:
    return _sha256_bytes(p.read_bytes())


def _sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# --- one turn before assembly ----------------------------------------------------------------

@dataclass(frozen=True)
class Fact:
    """A question about one record and its exact answer in the record's tool output, e.g.
    ("Where is the event 'Team Sync'?", ("Conference Room B",), "It is in Conference Room B.")."""
    question: str
    answers: tuple[str, ...]
    statement: str


@dataclass
class Turn:
    user: str
    calls: list[tuple[str, dict, str]]  # (tool name, arguments, output text)
    answer: str
    facts: list[Fact] = field(default_factory=list)  # probe candidates, read in this turn's outputs
    probes: list[tuple[Fact, int]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # tool_call ids (they are sent too, so probes check them)


def _ask(rng, request: str, question: str) -> str:
    opener = rng.choice(["Can you {}?", "Please {}.", "Could you {}?", "I need you to {}."])
    return opener.format(request) + " " + question


# --- AgentDojo: Emma Johnson's workspace, travel and banking ----------------------------------

def _fill(obj, defaults: dict):
    """Replace the suites' {injection_x} placeholders by their benign defaults, recursively."""
    if isinstance(obj, str):
        return re.sub(r"\{(\w+)\}", lambda m: str(defaults.get(m.group(1), {}).get("default", m.group(0))), obj)
    if isinstance(obj, list):
        return [_fill(x, defaults) for x in obj]
    if isinstance(obj, dict):
        return {k: _fill(v, defaults) for k, v in obj.items()}
    return obj


def _when(v) -> dt.datetime:
    return v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(str(v))


def _dump(records: list[dict]) -> str:
    return _yaml().safe_dump(records).strip()  # AgentDojo's tool_result_to_str for a list of models


def _agentdojo_tools(w: _Wheels) -> list[dict]:
    """OpenAI tool definitions of the workspace, travel and banking suites, from AgentDojo's source."""
    names = []
    for s in ("workspace", "travel", "banking"):
        src = w.text(_ADT + f"{s}/task_suite.py")
        body = re.search(r"^TOOLS = \[(.*?)^\]", src, re.DOTALL | re.MULTILINE).group(1)
        names += [n for n in re.findall(r"^\s*(\w+),", re.sub(r"#.*", "", body), re.MULTILINE) if n not in names]
    defs = {}
    for m in ("email_client", "calendar_client", "cloud_drive_client", "travel_booking_client",
              "banking_client", "file_reader", "user_account"):
        for node in ast.parse(w.text(_ADT + f"tools/{m}.py")).body:
            if isinstance(node, ast.FunctionDef):
                defs[node.name] = node
    return [_tool_schema(defs[n]) for n in names]


def _tool_schema(fn: ast.FunctionDef) -> dict:
    doc = ast.get_docstring(fn) or ""
    head, *params = re.split(r"^\s*:param ", doc, flags=re.MULTILINE)
    pdoc = {p.split(":", 1)[0].strip(): " ".join(p.split(":", 1)[1].split()) for p in params}
    props, required = {}, []
    args = fn.args.args
    defaults = [None] * (len(args) - len(fn.args.defaults)) + list(fn.args.defaults)
    for a, d in zip(args, defaults):
        ann = ast.unparse(a.annotation) if a.annotation else "str"
        if ann.startswith("Annotated["):
            continue  # an environment the runtime injects (Depends), not a model-facing argument
        optional = d is not None or "None" in ann
        ann = ann.replace(" | None", "")
        kind = {"int": "integer", "float": "number", "bool": "boolean"}.get(ann, "string")
        schema = {"type": kind}
        if ann.startswith("list"):
            schema = {"type": "array", "items": {"type": "string"}}
        elif ann.startswith("dict"):
            schema = {"type": "object"}
        props[a.arg] = {**schema, "description": pdoc.get(a.arg, a.arg)}
        if not optional:
            required.append(a.arg)
    return {"type": "function", "function": {"name": fn.name, "description": " ".join(head.split()),
                                             "parameters": {"type": "object", "properties": props,
                                                            "required": required}}}


_STOP = frozenset({  # words too common to search for
    "about", "after", "again", "also", "among", "been", "before", "being", "below", "could", "does",
    "doing", "down", "during", "each", "from", "have", "having", "here", "into", "just", "more", "most",
    "need", "next", "only", "other", "over", "same", "should", "some", "such", "than", "that", "their",
    "them", "then", "there", "these", "they", "this", "those", "through", "under", "until", "very", "were",
    "what", "when", "where", "which", "while", "will", "with", "would", "your", "yours", "please", "thanks",
    "thank", "best", "regards", "hope", "know", "like", "look", "looking", "forward", "let"
})


@dataclass(frozen=True)
class _Query:
    tool: str
    args: dict
    hits: tuple[int, ...]
    output: str
    phrase: str  # what the user asks for, e.g. "search my emails for 'budget'"


def _searches(records, texts, keys, tool, arg, phrase, render, extra=()) -> list[_Query]:
    """Every keyword query whose hits (AgentDojo's substring match) number 1 to 7."""
    words = sorted({w.lower() for k in keys for w in re.findall(r"[A-Za-z][A-Za-z-]{3,}", k)} - _STOP)
    out = []
    for q in [*words, *extra]:
        hits = tuple(i for i, t in enumerate(texts) if q.lower() in t.lower())
        if 0 < len(hits) <= 7:
            out.append(_Query(tool, {arg: q}, hits, render([records[i] for i in hits]), phrase.format(q)))
    return out


def _plan(queries: list[_Query], n: int, rng: random.Random) -> list[list[_Query]]:
    """Greedy cover of records 0..n-1 by turns of 1-3 queries with LO..HI characters of output."""
    qs = list(queries)
    rng.shuffle(qs)
    todo, turns, target = set(range(n)), [], rng.randint(2400, 3200)
    while todo:
        fits = [q for q in qs if todo.intersection(q.hits) and len(q.output) <= HI]
        if not fits:  # a record too long for HI: its own single query, however long
            fits = [min((q for q in qs if todo.intersection(q.hits)), key=lambda q: len(q.output))]
        # one of the best two (most new records, size nearest the target): sessions differ in grouping too
        best = sorted(fits, key=lambda q: (len(todo.intersection(q.hits)), -abs(len(q.output) - target)))[-2:]
        turn = [rng.choice(best)]
        todo -= set(turn[0].hits)
        while sum(len(q.output) for q in turn) < LO and len(turn) < 3:
            room = HI - sum(len(q.output) for q in turn)
            more = [q for q in qs if q not in turn and len(q.output) <= room]
            if not more:
                break
            # new records first; else re-read the longest that fits (the last turns would be short)
            turn.append(max(more, key=lambda q: (len(todo.intersection(q.hits)), len(q.output))))
            todo -= set(turn[-1].hits)
        turns.append(turn)
    return turns


def _email_facts(e, key):
    subj = f"the email '{e['subject']}'" + (f" from {e['sender']}" if key == "subject+sender" else "")
    out = [Fact(f"When was {subj} sent?", (str(e["timestamp"]),), f"It was sent on {e['timestamp']}.")]
    if key == "subject" and e["sender"] != EMMA:
        out.append(Fact(f"Who sent me {subj}?", (e["sender"],), f"It came from {e['sender']}."))
    if e["sender"] == EMMA and len(e["recipients"]) == 1:
        out.append(Fact(f"Who did I send {subj} to?", (e["recipients"][0],), f"You sent it to {e['recipients'][0]}."))
    return out


def _event_facts(e):
    t = e["title"]
    out = [Fact(f"When does the event '{t}' start?", (str(e["start_time"]),), f"It starts at {e['start_time']}.")]
    if e["location"]:
        out.append(Fact(f"Where is the event '{t}'?", (e["location"],), f"It is at {e['location']}."))
    others = [p for p in e["participants"] if p != EMMA]
    if len(others) == 1:
        out.append(Fact(f"Who else attends '{t}'?", (others[0],), f"{others[0]} attends it with you."))
    return out


def _file_facts(f):
    n = f["filename"]
    out = [Fact(f"When was {n} last modified?", (str(f["last_modified"]),), f"On {f['last_modified']}."),
           Fact(f"How large is {n}, in bytes?", (str(f["size"]),), f"It is {f['size']} bytes.")]
    if f["owner"] != EMMA:
        out.append(Fact(f"Who owns {n}?", (f["owner"],), f"It belongs to {f['owner']}."))
    if len(f["shared_with"]) == 1 and EMMA not in f["shared_with"]:
        who = next(iter(f["shared_with"]))
        out.append(Fact(f"Who is {n} shared with?", (who,), f"It is shared with {who}."))
    rows = list(csv.reader(io.StringIO(f["content"].strip()))) if n.endswith(".xlsx") else []
    if len(rows) > 2:
        head, firsts = rows[0], Counter(r[0] for r in rows[1:] if r)
        for r in rows[1:]:
            if len(r) == len(head) and firsts[r[0]] == 1:
                row = r[0].strip() if re.search("[A-Za-z]", r[0]) else f"{head[0].strip()} {r[0].strip()}"
                for col, cell in list(zip(head, r))[1:]:
                    if 2 <= len(cell.strip()) <= 60:
                        out.append(Fact(f"In {n}, what is the {col.strip()} for {row}?", (cell.strip(),),
                                        f"The {col.strip()} for {row} is {cell.strip()}."))
    return out


def _reviews(r: dict) -> str:
    """A travel place's rating and reviews, as AgentDojo's review tools return them."""
    return f"Rating: {r['rating']}\nReviews: " + "\n".join(r["reviews"])


def _address_fact(r: dict) -> Fact:
    return Fact(f"What is the address of {r['name']}?", (r["address"],), f"It is at {r['address']}.")


def _per_name_calls(arg: str, getters: list) -> Callable:
    """(names, records) -> one call per tool, each taking all the names under `arg` and
    answering {name: getter(record)}: AgentDojo's restaurant and car tools."""
    return lambda ns, rs: [(fn, {arg: ns}, {r["name"]: get(r) for r in rs}) for fn, get in getters]


def _travel_turns(env: dict, rng: random.Random) -> list[Turn]:
    """Hotels, restaurants and car-rental companies, a few per turn, through the suite's getters."""
    turns = []
    kinds = [
        ("hotels", env["hotels"]["hotel_list"], "compare the hotels {} ({}): ratings, reviews, prices and addresses",
         lambda ns, rs: [("get_rating_reviews_for_hotels", {"hotel_names": ns}, {r["name"]: _reviews(r) for r in rs}),
                         ("get_hotels_prices", {"hotel_names": ns},
                          {r["name"]: f"Price range: {float(r['price_min'])} - {float(r['price_max'])}" for r in rs}),
                         *[("get_hotels_address", {"hotel_name": r["name"]}, {r["name"]: r["address"]}) for r in rs]],
         lambda r: [_address_fact(r),
                    Fact(f"What is the price range at {r['name']}?", (f"{float(r['price_min'])} - {float(r['price_max'])}",),
                         f"Between {float(r['price_min'])} and {float(r['price_max'])} per night.")]),
        ("restaurants", env["restaurants"]["restaurant_list"],
         "look up the restaurants {} ({}): reviews, prices, hours, contacts, addresses, cuisine and diets",
         _per_name_calls("restaurant_names", [
             ("get_rating_reviews_for_restaurants", _reviews),
             ("get_price_for_restaurants", lambda r: float(r["price_per_person"])),
             ("check_restaurant_opening_hours", lambda r: r["operating_hours"]),
             ("get_contact_information_for_restaurants", lambda r: r["contact_information"]),
             ("get_restaurants_address", lambda r: r["address"]),
             ("get_cuisine_type_for_restaurants", lambda r: r["cuisine_type"]),
             ("get_dietary_restrictions_for_all_restaurants", lambda r: r["dietary_restrictions"])]),
         lambda r: [_address_fact(r),
                    Fact(f"What is the contact information of {r['name']}?", (r["contact_information"],),
                         f"{r['contact_information']}."),
                    Fact(f"What are the opening hours of {r['name']}?", (r["operating_hours"],), f"{r['operating_hours']}.")]),
        ("cars", env["car_rental"]["company_list"],
         "compare the car rental companies {} ({}): reviews, daily prices, addresses, cars and fuel",
         _per_name_calls("company_name", [
             ("get_rating_reviews_for_car_rental", _reviews),
             ("get_car_price_per_day", lambda r: float(r["price_per_day"])),
             ("get_car_rental_address", lambda r: r["address"]),
             ("get_car_types_available", lambda r: r["car_types_available"]),
             ("get_car_fuel_options", lambda r: r["fuel_options"])]),
         lambda r: [_address_fact(r),
                    Fact(f"How much does {r['name']} charge per day?", (str(float(r["price_per_day"])),),
                         f"{float(r['price_per_day'])} per day.")]),
    ]
    for _, records, phrase, calls_of, facts_of in kinds:
        def calls(group, calls_of=calls_of):
            return [(fn, args, str(res)) for fn, args, res in calls_of([g["name"] for g in group], group)]

        def size(group):
            return sum(len(out) for _, _, out in calls(group))

        groups = [[]]
        for r in sorted(records, key=lambda r: (r["city"], rng.random())):
            if size(groups[-1]) >= LO:
                groups.append([])
            groups[-1].append(r)
        if len(groups) > 1 and size(groups[-1]) < LO // 2:
            groups[-2] += groups.pop()  # a short tail joins the group before it
        for group in groups:
            cities = ", ".join(dict.fromkeys(g["city"] for g in group))
            turns.append(_turn(rng, [phrase.format(", ".join(g["name"] for g in group), cities)], calls(group),
                               [f for g in group for f in facts_of(g)]))
    return turns


def _turn(rng, phrases: list[str], calls, facts: list[Fact], fresh: list[Fact] | None = None) -> Turn:
    """A turn asking one question (from the fresh records' facts) that its outputs answer."""
    facts = [f for f in facts if any(a in out for _, _, out in calls for a in f.answers)]
    pool = [f for f in (fresh if fresh is not None else facts) if f in facts] or facts
    q = rng.choice(pool)
    return Turn(_ask(rng, ", then ".join(phrases), q.question), calls, q.statement, [f for f in facts if f != q])


def _agentdojo_session(w: _Wheels, rng: random.Random, min_turns: int) -> tuple[str, list[dict], list[Turn]]:
    ws_inj = w.yaml(_AD + "workspace/injection_vectors.yaml")
    emails = _fill(w.yaml(_AD + "workspace/include/inbox.yaml")["initial_emails"], ws_inj)
    events = _fill(w.yaml(_AD + "workspace/include/calendar.yaml")["initial_events"], ws_inj)
    files = _fill(w.yaml(_AD + "workspace/include/cloud_drive.yaml")["initial_files"], ws_inj)
    travel = _fill(w.yaml(_AD + "travel/environment.yaml"), w.yaml(_AD + "travel/injection_vectors.yaml"))
    bank = _fill(w.yaml(_AD + "banking/environment.yaml"), w.yaml(_AD + "banking/injection_vectors.yaml"))
    # the pydantic models' fields, as AgentDojo dumps them
    emails = [{"id_": e["id_"], "sender": e["sender"], "recipients": e["recipients"], "cc": e.get("cc", []),
               "bcc": e.get("bcc", []), "subject": e["subject"], "body": e["body"], "status": e["status"],
               "read": e["read"], "timestamp": _when(e["timestamp"]), "attachments": e.get("attachments", [])}
              for e in emails]
    events = [{"id_": e["id_"], "title": e["title"], "description": e["description"],
               "start_time": _when(e["start_time"]), "end_time": _when(e["end_time"]), "location": e.get("location"),
               "participants": e["participants"], "all_day": e["all_day"], "status": e["status"]} for e in events]
    files = [{"id_": f["id_"], "filename": f["filename"], "content": f["content"], "owner": f["owner"],
              "last_modified": _when(f["last_modified"]), "shared_with": f.get("shared_with", {}),
              "size": len(f["content"])} for f in files]

    subj = Counter(e["subject"] for e in emails)
    pair = Counter((e["subject"], e["sender"]) for e in emails)
    keys = ["subject" if subj[e["subject"]] == 1 else "subject+sender" if pair[(e["subject"], e["sender"])] == 1
            else None for e in emails]  # how a question names the email unambiguously (None: it cannot)
    email_facts = [_email_facts(e, k) if k else [] for e, k in zip(emails, keys)]
    titles = Counter(e["title"] for e in events)
    event_facts = [_event_facts(e) if titles[e["title"]] == 1 else [] for e in events]
    file_facts = [_file_facts(f) for f in files]

    days = sorted({str(e["start_time"].date()) for e in events})
    domains = {
        "emails": (emails, email_facts, _searches(
            emails, [e["subject"] + "\n" + e["body"] for e in emails], [e["subject"] for e in emails],
            "search_emails", "query", "search my emails for '{}'", _dump)),
        "events": (events, event_facts, _searches(
            events, [e["title"] + "\n" + e["description"] for e in events], [e["title"] for e in events],
            "search_calendar_events", "query", "look up my calendar events about '{}'", _dump) + [
            _Query("get_day_calendar_events", {"day": d}, hits, _dump([events[i] for i in hits]),
                   f"check my calendar for {d}")
            for d in days for hits in [tuple(i for i, e in enumerate(events) if str(e["start_time"].date()) == d)]]),
        "files": (files, file_facts, _searches(
            files, [f["content"] for f in files], [f["filename"].replace("-", " ") for f in files],
            "search_files", "query", "search my cloud drive for files mentioning '{}'", _dump) + _searches(
            files, [f["filename"] for f in files], [f["filename"].replace("-", " ") for f in files],
            "search_files_by_filename", "filename", "find the files named like '{}' in my drive", _dump,
            extra=[f["filename"] for f in files])),
    }
    queues: dict[str, list[Turn]] = {}
    used = set()
    for name, (records, facts, queries) in domains.items():
        seen: set[int] = set()
        queues[name] = []
        for qs in _plan(queries, len(records), rng):
            used.update(id(q) for q in qs)
            hits = [i for q in qs for i in q.hits]
            fresh = [f for i in hits if i not in seen for f in facts[i]]
            seen.update(hits)
            calls = [(q.tool, q.args, q.output) for q in qs]
            queues[name].append(_turn(rng, [q.phrase for q in qs], calls, [f for i in dict.fromkeys(hits)
                                                                          for f in facts[i]], fresh))
    queues["travel"] = _travel_turns(travel, rng)
    txs = [dict(t, amount=float(t["amount"])) for t in bank["bank_account"]["transactions"]]
    sched = [dict(t, amount=float(t["amount"])) for t in bank["bank_account"]["scheduled_transactions"]]
    subjects = Counter(t["subject"] for t in txs + sched)
    queues["banking"] = [_turn(rng, ["show me my recent transactions, my scheduled transactions and my balance"],
                               [("get_most_recent_transactions", {"n": 100}, _dump(txs)),
                                ("get_scheduled_transactions", {}, _dump(sched)),
                                ("get_balance", {}, str(float(bank["bank_account"]["balance"])))],
                               [Fact(f"How much was the transaction '{t['subject']}'?", (str(t["amount"]),),
                                     f"It was {t['amount']}.") for t in txs + sched if subjects[t["subject"]] == 1])]
    # until min_turns: extra searches of the calendar and the inbox that re-read records, as real sessions do
    spare = [q for q in domains["events"][2] + domains["emails"][2] if LO <= len(q.output) <= HI]
    rng.shuffle(spare)
    spare.sort(key=lambda q: id(q) not in used)  # pop() takes searches not made yet first
    while sum(map(len, queues.values())) < min_turns and spare:
        q = spare.pop()
        facts = domains["events" if "calendar" in q.tool else "emails"][1]
        queues.setdefault("again", []).append(_turn(rng, [q.phrase], [(q.tool, q.args, q.output)],
                                                    [f for i in q.hits for f in facts[i]]))
    system = w.yaml("agentdojo/data/system_messages.yaml")["default"].strip()
    return system, _agentdojo_tools(w), _interleave(queues, rng)


def _interleave(queues: dict[str, list[Turn]], rng: random.Random) -> list[Turn]:
    """One list, each domain's turns in order, domains mixed in proportion to what is left."""
    out, left = [], {k: list(v) for k, v in queues.items() if v}
    while left:
        k = rng.choices(list(left), weights=[len(v) for v in left.values()])[0]
        out.append(left[k].pop(0))
        if not left[k]:
            del left[k]
    return out


# --- BFCL memory: a student's and a customer's earlier conversations --------------------------

def _words(s: str) -> Counter:
    return Counter(re.findall(r"[a-z0-9]+", s.lower()))


def _cosine(a: Counter, b: Counter) -> float:
    num = sum(a[k] * b[k] for k in a.keys() & b.keys())
    return num / (math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values())) or 1.0)


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("\u2019", "'").replace("\u2014", "-").lower()).strip()


def _verbatim(variants, text: str) -> tuple[str, ...]:
    """The ground-truth variants found as whole words in text, spelled as the text spells them."""
    out = []
    for v in variants:
        m = re.search(r"(?<!\w)" + re.escape(str(v)) + r"(?!\w)", text, re.IGNORECASE)
        if m and m.group(0) not in out:
            out.append(m.group(0))
    return tuple(out)


def _memory_session(w: _Wheels, scenario: str, rng: random.Random, min_turns: int):
    convs = w.jsonl(_BF + f"memory_prereq_conversation/memory_{scenario}.json")
    entries = [(c["topic"], m["content"]) for c in convs for turn in c["question"] for m in turn
               if m["role"] == "user"]
    conv_of = [ci for ci, c in enumerate(convs) for turn in c["question"] for m in turn if m["role"] == "user"]
    truth = {a["id"]: a for a in w.jsonl(_BF + "possible_answer/BFCL_v4_memory.json")}
    asked: dict[int, list[tuple[str, tuple[str, ...], str]]] = {}  # entry -> (question, verbatim, ground truth)
    for q in w.jsonl(_BF + "BFCL_v4_memory.json"):
        if q["scenario"] != scenario:
            continue
        a = truth[q["id"]]
        i = _locate(a.get("source", ""), a["ground_truth"], [t for _, t in entries])
        if i is not None:
            asked.setdefault(i, []).append((q["question"][0][0]["content"], _verbatim(a["ground_truth"], entries[i][1]),
                                            str(a["ground_truth"][0])))
    # windows of consecutive entries of one conversation, at least min_chars long (shrunk to reach min_turns)
    min_chars = rng.randint(2000, 2600)
    while True:
        windows, cur = [], []
        for i in range(len(entries)):
            cur.append(i)
            end = i + 1 == len(entries) or conv_of[i + 1] != conv_of[i]
            if sum(len(entries[j][1]) for j in cur) >= min_chars or end:
                if end and windows and conv_of[windows[-1][0]] == conv_of[i] and \
                        sum(len(entries[j][1]) for j in cur) < min_chars // 2:
                    windows[-1] += cur  # a short tail joins the window before it
                else:
                    windows.append(cur)
                cur = []
        if len(windows) >= min_turns or min_chars < 300:
            break
        min_chars = int(min_chars * 0.9)
    rng.shuffle(windows)
    turns = []
    for win in windows:
        qs = [q for i in win for q in asked.get(i, [])]
        rng.shuffle(qs)
        probeable = [q for q in qs if q[1]]
        # the turn's question: one no probe could use (its answer is not verbatim in the entries), else a
        # topic question; the leaderboard's questions with verbatim answers are kept for probes
        own = next((q for q in qs if not q[1]), None)
        if own is not None:
            query, user = own[0], own[0]
            answer = rng.choice(["{}.", "From what you told me before: {}.", "{} - that is what you told me."]).format(
                own[1][0] if own[1] else own[2])
        else:
            topic = entries[win[0]][0]
            query = topic
            user = rng.choice(["What did I tell you in our '{}' conversation?",
                               "Can you pull up what I said in our '{}' conversation?",
                               "Remind me what we discussed in the '{}' conversation."]).format(topic)
        qv = _words(query)
        ranked = sorted(win, key=lambda i: -_cosine(qv, _words(entries[i][1])))
        out = json.dumps({"result": [{"id": i, "similarity_score": round(_cosine(qv, _words(entries[i][1])), 4),
                                      "text": entries[i][1]} for i in ranked]}, ensure_ascii=False)
        if own is None:
            first = ""
            for sentence in re.split(r"(?<=[.!?])\s+", entries[ranked[0]][1]):
                first = f"{first} {sentence}".strip()
                if len(first) >= 60:
                    break
            answer = f"Here is what I have: you told me \"{first[:240]}\""
        facts = [Fact(q[0], q[1], f"{q[1][0]}.") for q in probeable if q is not own]
        turns.append(Turn(user, [("archival_memory_retrieve", {"query": query, "top_k": len(win)}, out)], answer, facts))
    prompts = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(
        w.text("bfcl_eval/constants/default_prompts.py")).body
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
        and n.targets[0].id in ("MEMORY_AGENT_SETTINGS", "MEMORY_BACKEND_INSTRUCTION_CORE_ARCHIVAL")}
    system = prompts["MEMORY_BACKEND_INSTRUCTION_CORE_ARCHIVAL"].format(
        scenario_setting=prompts["MEMORY_AGENT_SETTINGS"][scenario],
        memory_content="There is no content in the core memory at this point.").strip()
    tools = [{"type": "function", "function": {"name": d["name"], "description": d["description"],
                                               "parameters": _json_schema(d["parameters"])}}
             for d in w.jsonl(_BF + "multi_turn_func_doc/memory_vector.json")]
    return system, tools, turns


def _json_schema(p):
    """BFCL's Python-flavoured schema types ("dict", "float") as JSON Schema ones."""
    if isinstance(p, dict):
        return {k: ({"dict": "object", "float": "number", "tuple": "array", "any": "string"}.get(v, v)
                    if k == "type" else _json_schema(v)) for k, v in p.items()}
    return [_json_schema(x) for x in p] if isinstance(p, list) else p


def _locate(source: str, answers, texts: list[str]) -> int | None:
    """The entry a ground truth's quoted source comes from ("...the outer box had seven crushed corners...")."""
    frags = sorted((_norm(f).strip(" \"'.,") for f in re.split(r"\.\.\.|\u2026", source)), key=len, reverse=True)
    norm = [_norm(t) for t in texts]
    for f in frags:
        hits = [i for i, t in enumerate(norm) if len(f) >= 12 and f in t]
        if len(hits) == 1:
            return hits[0]
    hits = [i for i, t in enumerate(texts) if _verbatim(answers, t)]
    return hits[0] if len(hits) == 1 else None


# --- probes ----------------------------------------------------------------------------------

def _turn_texts(t: Turn) -> tuple[list[str], list[str], str]:
    """(what the turn sends before its answer except tool outputs, tool outputs, final answer), lowercased."""
    return ([t.user.lower(), *(json.dumps(a).lower() for _, a, _ in t.calls), " ".join(t.ids)],
            [o.lower() for _, _, o in t.calls], t.answer.lower())


def _valid(turns: list[Turn], fixed: str, p: int, t: int, answer: str) -> bool:
    """answer is in turn t's tool output and nowhere else in what is sent up to turn p's answer."""
    a = answer.lower()
    if a in fixed or t >= p:
        return False
    for u in range(p + 1):
        sent, outs, final = _turn_texts(turns[u])
        if any(a in s for s in sent) or (u < p and a in final):
            return False
        if (u == t) != any(a in o for o in outs):
            return False
    return True


def _add_probes(turns: list[Turn], fixed: str, rng: random.Random) -> None:
    """8-15 probes spread over the turns, each a fact of an earlier turn at a varied distance."""
    n = len(turns)
    want = min(rng.randint(8, 15), n // 2)
    step = (n - 3) / want
    slots = sorted({3 + int(k * step + rng.random() * step) for k in range(want)} - {n})
    slots += [p for p in rng.sample(range(3, n), n - 3) if p not in slots]  # fallbacks if a slot finds none
    used, accepted = set(), []
    for p in slots:
        if len(accepted) >= want:
            break
        gap = rng.choice([rng.randint(2, 4), rng.randint(5, 12), rng.randint(13, max(13, p))])
        pool = [(t, f) for t in range(p - 1) for f in turns[t].facts if (t, f) not in used]
        rng.shuffle(pool)
        pool.sort(key=lambda tf: abs((p - tf[0]) - gap))
        for t, f in pool[:60]:
            lead = rng.choice(["Also, going back to something you looked up earlier: {}",
                               "And one more thing from before: {}", "One more question about earlier results: {}"])
            old_user, old_answer = turns[p].user, turns[p].answer
            turns[p].user += " " + lead.format(f.question)  # verbatim: the probe's question is in the message
            turns[p].answer += " As for your other question: " + f.statement
            trial = accepted + [(p, t, f)]
            if all(any(_valid(turns, fixed, pp, tt, a) for a in ff.answers) for pp, tt, ff in trial):
                accepted.append((p, t, f))
                used.add((t, f))
                break
            turns[p].user, turns[p].answer = old_user, old_answer
    for p, t, f in accepted:
        turns[p].probes.append((Fact(f.question, tuple(a for a in f.answers if _valid(turns, fixed, p, t, a)),
                                     f.statement), t))


# --- assembly --------------------------------------------------------------------------------

def _call_id(sid: str, k: int, j: int) -> str:
    return "call_" + hashlib.sha1(f"{sid}/{k}/{j}".encode()).hexdigest()[:24]


def _assemble(sid: str, source: str, system: str, tools: list[dict], turns: list[Turn]) -> dict:
    out = []
    for t in turns:
        ids = t.ids
        messages = [{"role": "user", "content": t.user},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": i, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                        for i, (name, args, _) in zip(ids, t.calls)]},
                    *({"role": "tool", "tool_call_id": i, "content": o} for i, (_, _, o) in zip(ids, t.calls)),
                    {"role": "assistant", "content": t.answer}]
        out.append({"messages": messages, "probes": [{"question": f.question, "answers": list(f.answers),
                                                      "from_turn": frm} for f, frm in t.probes]})
    return {"id": sid, "source": source, "system": system, "tools": tools, "turns": out}


SOURCES = {
    "agentdojo-emma": "agentdojo 0.1.35 (MIT): workspace, travel and banking suites, benign environment",
    "bfcl-memory-student": "bfcl-eval 2026.3.23 (Apache-2.0): memory category, student scenario",
    "bfcl-memory-customer": "bfcl-eval 2026.3.23 (Apache-2.0): memory category, customer scenario",
}


def load_sessions(n: int = 8, seed: int = 0, min_turns: int = 30) -> list[dict]:
    """n sessions, the kinds in turn (AgentDojo, BFCL student, BFCL customer), each built with its
    own random.Random(f"{seed}:{i}"): the same arguments give the same sessions. ValueError when a
    source cannot give min_turns turns (AgentDojo runs out of new searches at about 40)."""
    out = []
    with _Wheels(sessions_dir()) as w:
        for i in range(n):
            kind = KINDS[i % len(KINDS)]
            rng = random.Random(f"{seed}:{i}")
            if kind == "agentdojo-emma":
                system, tools, turns = _agentdojo_session(w, rng, min_turns)
            else:
                system, tools, turns = _memory_session(w, kind.rsplit("-", 1)[1], rng, min_turns)
            sid = f"{kind}-s{seed}-{i // len(KINDS)}"
            if len(turns) < min_turns:
                raise ValueError(f"{sid}: the source gives {len(turns)} turns, fewer than min_turns={min_turns}")
            for k, t in enumerate(turns):
                t.ids = [_call_id(sid, k, j) for j in range(len(t.calls))]
            _add_probes(turns, (system + json.dumps(tools)).lower(), rng)
            out.append(_assemble(sid, SOURCES[kind], system, tools, turns))
    return out


# --- CLI -------------------------------------------------------------------------------------

def _tokens(s) -> int:
    return len(s if isinstance(s, str) else json.dumps(s)) // 4  # rough: 4 characters a token


def show(sessions: list[dict], full: bool = True) -> str:
    lines = []
    for s in sessions:
        per_turn = [sum(_tokens(m.get("content") or "") + _tokens(m.get("tool_calls") or "")
                        for m in t["messages"]) for t in s["turns"]]
        probes = [(k, p) for k, t in enumerate(s["turns"]) for p in t["probes"]]
        lines.append(f"== {s['id']}  [{s['source']}]")
        lines.append(f"   system {_tokens(s['system'])} tokens, {len(s['tools'])} tools {_tokens(s['tools'])} tokens, "
                     f"{len(s['turns'])} turns, history {sum(per_turn)} tokens at the end "
                     f"(~len/4), {len(probes)} probes")
        if not full:
            continue
        for k, t in enumerate(s["turns"]):
            tools = [m for m in t["messages"] if m["role"] == "tool"]
            calls = ", ".join(c["function"]["name"] for c in t["messages"][1]["tool_calls"])
            lines.append(f"   {k:>2} {per_turn[k]:>5} tok (tool {sum(_tokens(m['content']) for m in tools):>4}) "
                         f"{calls[:60]}")
            lines.append(f"        user: {t['messages'][0]['content'][:150]}")
            lines.append(f"        answer: {t['messages'][-1]['content'][:110]}")
            for p in t["probes"]:
                lines.append(f"        probe (from turn {p['from_turn']}, {k - p['from_turn']} back): "
                             f"{p['question'][:80]} -> {p['answers']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fetch", action="store_true", help="download the source wheels into the cache")
    ap.add_argument("--show", type=int, metavar="N", help="print a summary of the first N sessions")
    ap.add_argument("--n", type=int, default=8, help="sessions to build for --show (default 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-turns", type=int, default=30)
    args = ap.parse_args(argv)
    try:
        if args.fetch:
            fetch()
        if args.show is not None:
            sessions = load_sessions(max(args.n, args.show), args.seed, args.min_turns)
            print(show(sessions[:args.show]))
            print("\nall sessions:")
            print(show(sessions, full=False))
    except (RuntimeError, ValueError, FileNotFoundError, ModuleNotFoundError) as e:
        print(f"sessions: {e}", file=sys.stderr)
        return 1
    if not (args.fetch or args.show is not None):
        ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
