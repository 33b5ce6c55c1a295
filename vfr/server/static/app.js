// The search page: calls /v1/search and /v1/collections with the key from session storage, and draws
// result cards. Text from the server is only ever set through textContent (no HTML from data).
"use strict";

const PAGE = 10;
const $ = (id) => document.getElementById(id);
const state = { offset: 0, query: "" };

function key() { return sessionStorage.getItem("vfr-key") || ""; }

async function api(path) {
  const headers = { Accept: "application/json" };
  if (key()) headers.Authorization = "Bearer " + key();
  const res = await fetch(path, { headers });
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    const msg = body && body.message ? body.message : res.status + " " + res.statusText;
    throw new Error(msg);
  }
  return body;
}

function status(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

// Words of `text` whose lower case is in `words` become <mark>; the rest stays plain text.
function highlighted(text, words) {
  const frag = document.createDocumentFragment();
  const re = /[\p{L}\p{N}_]+(?:['’-][\p{L}\p{N}_]+)*/gu;
  let last = 0, m;
  while ((m = re.exec(text)) !== null) {
    if (words.has(m[0].toLowerCase())) {
      frag.append(text.slice(last, m.index));
      const mark = document.createElement("mark");
      mark.textContent = m[0];
      frag.append(mark);
      last = m.index + m[0].length;
    }
  }
  frag.append(text.slice(last));
  return frag;
}

function setText(el, label, text, words) {
  el.textContent = "";
  if (!text) { el.hidden = true; return; }
  if (label) {
    const b = document.createElement("span");
    b.className = "label";
    b.textContent = label + ": ";
    el.append(b);
  }
  el.append(highlighted(text, words));
}

function objectsOf(desc) {
  return (desc && Array.isArray(desc.objects)) ? desc.objects : [];
}

function settingOf(desc) {
  const s = desc && desc.setting;
  if (!s) return "";
  const parts = [s.scene];
  if (s.indoor === true) parts.push("indoors");
  if (s.indoor === false) parts.push("outdoors");
  if (s.time_of_day && s.time_of_day !== "unknown") parts.push(s.time_of_day);
  if (s.weather) parts.push(s.weather);
  return parts.filter(Boolean).join(", ");
}

function whyLine(why) {
  if (!why) return "";
  const terms = why.terms.slice(0, 6).map((t) => t.term + " " + t.score.toFixed(2)).join(", ");
  const bm25 = terms ? "BM25 " + why.bm25.toFixed(2) + " (" + terms + ")" : "no query word in the text";
  return "Why: " + bm25 + " · dense similarity " + why.dense.toFixed(2);
}

function card(hit) {
  const node = $("card").content.firstElementChild.cloneNode(true);
  const doc = hit.document || { text: "" };
  const desc = doc.description || null;
  const words = new Set(hit.why ? hit.why.words : []);
  node.querySelector(".rank").textContent = "#" + hit.rank;
  node.querySelector(".score").textContent = "score " + hit.score.toFixed(3);
  node.querySelector(".id").textContent = hit.id;
  node.querySelector(".collection").textContent = doc.collection || "";
  setText(node.querySelector(".caption"), "", (desc && desc.caption) || doc.caption || "", words);
  const list = node.querySelector(".objects");
  for (const o of objectsOf(desc)) {
    const li = document.createElement("li");
    const colours = (o.colors || []).join(" ");
    li.append(highlighted((o.count > 1 ? o.count + " × " : "") + (colours ? colours + " " : "") + o.name, words));
    list.append(li);
  }
  list.hidden = list.children.length === 0;
  const visible = desc && Array.isArray(desc.visible_text) ? desc.visible_text.map((t) => "“" + t + "”").join(" ") : "";
  setText(node.querySelector(".visible-text"), "Visible text", visible, words);
  setText(node.querySelector(".setting"), "Setting", settingOf(desc), words);
  node.querySelector(".why").textContent = whyLine(hit.why);
  setText(node.querySelector(".text"), "", doc.text, words);
  return node;
}

async function search(offset) {
  const q = $("q").value.trim();
  if (!q) { status("Type some words to search for.", true); $("q").focus(); return; }
  state.query = q; state.offset = offset;
  const params = new URLSearchParams({ q, k: String(PAGE), offset: String(offset), retriever: $("retriever").value });
  params.append("include", "description");
  params.append("include", "explain");
  if ($("collection").value) params.append("collection", $("collection").value);
  status("Searching…", false);
  $("go").disabled = true;
  try {
    const data = await api("/v1/search?" + params);
    // the hybrid ranks within a window (its fusion depth): its pages end there (docs/server.md)
    const atWindow = data.window != null && offset + 2 * PAGE > data.window;
    const windowNote = "The hybrid ranks its first " + data.window + "; choose BM25 or dense to page further.";
    const list = $("results");
    list.textContent = "";
    for (const hit of data.hits) list.append(card(hit));
    if (!data.hits.length) {
      status(offset ? "No more results." : "No results for “" + q + "”. Try other words, or another retriever.", false);
    } else {
      status("Results " + (offset + 1) + "–" + (offset + data.hits.length) + " for “" + q + "” (" +
             data.retriever + ")." + (atWindow ? " " + windowNote : ""), false);
    }
    $("pager").hidden = !(offset > 0 || data.hits.length === PAGE);
    $("prev").disabled = offset === 0;
    $("next").disabled = data.hits.length < PAGE || atWindow;
    $("next").title = atWindow ? windowNote : "";
    $("page").textContent = "page " + (offset / PAGE + 1);
  } catch (e) {
    $("results").textContent = "";
    $("pager").hidden = true;
    status("Error: " + e.message, true);
  } finally {
    $("go").disabled = false;
  }
}

async function loadCollections() {
  const sel = $("collection");
  const keep = sel.value;
  sel.length = 1;
  try {
    const data = await api("/v1/collections");
    for (const c of data.collections) {
      const opt = document.createElement("option");
      opt.value = c.name;
      opt.textContent = c.name + " (" + c.documents + ")";
      sel.append(opt);
    }
    sel.value = keep && [...sel.options].some((o) => o.value === keep) ? keep : "";
    return true;
  } catch (e) {
    status("Error: " + e.message, true);
    return false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key").value = key();
  $("search").addEventListener("submit", (ev) => { ev.preventDefault(); search(0); });
  $("retriever").addEventListener("change", () => { if (state.query) search(0); });
  $("collection").addEventListener("change", () => { if (state.query) search(0); });
  $("prev").addEventListener("click", () => search(Math.max(0, state.offset - PAGE)));
  $("next").addEventListener("click", () => search(state.offset + PAGE));
  $("savekey").addEventListener("click", async () => {
    const v = $("key").value.trim();
    if (v) sessionStorage.setItem("vfr-key", v); else sessionStorage.removeItem("vfr-key");
    if (await loadCollections()) status(v ? "Key in use for this tab." : "No key: the open server only.", false);
  });
  $("key").addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); $("savekey").click(); } });
  if (!key()) $("keybox").open = false;
  loadCollections().then((ok) => { if (!ok) $("keybox").open = true; });
  $("q").focus();
});
