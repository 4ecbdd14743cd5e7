// elision playground: calls POST /v1/compress and shows the original prompt with the dropped
// text struck through. Text from the user or the service is only ever set as textContent
// (never as HTML), and the service token stays in this page's memory (no storage).
"use strict";

const $ = (id) => document.getElementById(id);

// the same split as the CLI: documents are blocks separated by a blank line
function blocks(text) {
  return text.replace(/\r\n?/g, "\n").split(/\n[ \t]*\n/).filter((b) => b.trim());
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) h["X-Elision-Key"] = token;
  return h;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

// Spans index the original in code points (Python's str); JS strings are UTF-16, so slice an
// array of code points, or an emoji before a span would shift every span after it.
function renderMarked(original, spans) {
  const chars = Array.from(original);
  const out = $("marked");
  out.replaceChildren();
  let pos = 0;
  const piece = (tag, s, e) => {
    const el = document.createElement(tag);
    el.textContent = chars.slice(s, e).join("");
    out.appendChild(el);
  };
  for (const [s, e] of spans) {
    if (s > pos) piece("del", pos, s);
    piece("span", s, e);
    pos = e;
  }
  if (pos < chars.length) piece("del", pos, chars.length);
}

function fmt(n) {
  return Number(n).toLocaleString("en-US");
}

function render(r) {
  const target = r.target;
  $("origin-tokens").textContent = `${fmt(r.origin_tokens)} ${target} tokens`;
  $("compressed-tokens").textContent = `${fmt(r.compressed_tokens)} ${target} tokens`;
  $("ratio").textContent = r.ratio ? `${r.ratio.toFixed(1)}x (rate ${r.rate.toFixed(2)})` : "-";
  const money = r.saving_usd === null || r.saving_usd === undefined ? "" : `, $${r.saving_usd.toFixed(4)}`;
  $("saving").textContent = `${fmt(r.saved_tokens)} tokens${money}`;
  $("seconds").textContent = `${r.seconds.toFixed(2)} s, ${r.method}`;
  renderMarked(r.original_prompt, r.kept_spans);
  $("compressed").textContent = r.compressed_prompt;
  $("result").hidden = false;
}

async function compress(event) {
  event.preventDefault();
  $("error").hidden = true;
  const context = blocks($("context").value);
  if (!context.length) {
    showError("Paste some context to compress.");
    return;
  }
  const body = {
    context,
    instruction: $("instruction").value.trim(),
    question: $("question").value.trim(),
    rate: Number($("rate").value),
    method: $("method").value || null,
    target: $("target").value.trim() || null,
    return_original: true,
  };
  $("go").disabled = true;
  try {
    const resp = await fetch("/v1/compress", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const msg = (data.error && data.error.message) || `HTTP ${resp.status}`;
      showError(resp.status === 401 ? `This service needs its token: enter it under "Service token". (${msg})` : msg);
      return;
    }
    render(data);
  } catch (e) {
    showError(`Cannot reach the service: ${e.message}`);
  } finally {
    $("go").disabled = false;
  }
}

async function init() {
  $("rate").addEventListener("input", () => { $("rate-out").textContent = Number($("rate").value).toFixed(2); });
  $("form").addEventListener("submit", compress);
  $("copy").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText($("compressed").textContent));
  try {
    const cfg = await (await fetch("/playground/config")).json();
    for (const m of cfg.methods) {
      const opt = document.createElement("option");
      opt.value = opt.textContent = m;
      opt.selected = m === cfg.default_method;
      $("method").appendChild(opt);
    }
    for (const t of cfg.targets) {
      const opt = document.createElement("option");
      opt.value = t;
      $("targets").appendChild(opt);
    }
    $("target").value = cfg.target;
    $("rate").value = cfg.rate;
    $("rate-out").textContent = Number(cfg.rate).toFixed(2);
    document.body.dataset.ready = "1";
  } catch (e) {
    showError(`Cannot load the service's settings: ${e.message}`);
  }
}

init();
