// pocketguide run report, part 3 of 3. reports/html.py joins dom.js, sections.js and browser.js inside one
// function scope (one script, allowed by its hash). Every value from a record is written with textContent
// or setAttribute, never innerHTML, so model output stays text whatever it contains.
// The record browser, then the page assembled.
  // --- record browser --------------------------------------------------------------------------
  const PAGE = 50; // rows per page of the list
  const byId = new Map(), children = new Map();
  ROWS.forEach((r, i) => {
    (byId.get(r[1]) || byId.set(r[1], []).get(r[1])).push(i);
    for (const p of r[5]) (children.get(p) || children.set(p, []).get(p)).push(i);
  });
  const state = { stage: "", status: "", reason: "", q: "", facets: {}, page: 0, open: null };
  let matches = [];
  let listBox, detailBox, countLine, filterBox;

  function parseHash() {
    if (!location.hash.startsWith("#browse:")) return false;
    const p = new URLSearchParams(location.hash.slice(8));
    for (const k of ["stage", "status", "reason", "q"]) state[k] = p.get(k) || "";
    state.facets = {};
    for (const [k, v] of p) if (k.startsWith("f.")) state.facets[k.slice(2)] = v;
    state.open = p.get("open");
    return true;
  }
  let interactive = false; // the address changes only when the reader changes the view
  function writeHash() {
    if (!interactive) return;
    const p = new URLSearchParams();
    for (const k of ["stage", "status", "reason", "q"]) if (state[k]) p.set(k, state[k]);
    for (const [k, v] of Object.entries(state.facets)) if (v) p.set("f." + k, v);
    if (state.open) p.set("open", state.open);
    try { history.replaceState(null, "", "#browse:" + p.toString()); } catch (e) { /* file:// in some browsers */ }
  }

  function select(label, value, options, onchange) {
    const sel = h("select", { "aria-label": label, onchange: (e) => onchange(e.target.value) }, h("option", { value: "", text: "all" }),
      options.map((o) => h("option", { value: o, text: o, selected: o === value ? "" : null })));
    return h("label", {}, label, sel);
  }

  function buildFilters() {
    filterBox.textContent = "";
    const stageIdx = state.stage ? STAGES.findIndex((st) => st.name === state.stage) : -1;
    const inScope = ROWS.filter((r) => stageIdx < 0 || r[0] === stageIdx);
    const reasons = [...new Set(inScope.flatMap((r) => r[3]))].sort();
    const facetNames = [...new Set((stageIdx < 0 ? STAGES : [STAGES[stageIdx]]).flatMap((st) => st.facets))];
    const refilter = () => { state.page = 0; buildFilters(); apply(); };
    filterBox.append(select("stage", state.stage, STAGES.map((st) => st.name), (v) => { state.stage = v; state.reason = ""; state.facets = {}; refilter(); }),
      select("status", state.status, ["accepted", "rejected", "superseded"], (v) => { state.status = v; refilter(); }),
      select("reason", state.reason, reasons, (v) => { state.reason = v; refilter(); }));
    for (const f of facetNames) {
      const values = [...new Set(inScope.map((r) => r[4][f]).filter((v) => v !== undefined && v !== null))].sort();
      if (values.length) filterBox.append(select(f, state.facets[f] || "", values, (v) => { state.facets[f] = v; refilter(); }));
    }
    let timer = null;
    const box = h("input", { type: "search", placeholder: "id, prompt, output, error…", value: state.q, "aria-label": "search",
      oninput: (e) => { clearTimeout(timer); timer = setTimeout(() => { state.q = e.target.value; state.page = 0; apply(); }, 200); } });
    filterBox.append(h("label", {}, "free text", box));
  }

  function apply() {
    const stageIdx = state.stage ? STAGES.findIndex((st) => st.name === state.stage) : -1;
    let re = null;
    if (state.q) re = new RegExp(state.q.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "i");
    const facetPairs = Object.entries(state.facets).filter(([, v]) => v);
    matches = [];
    for (let i = 0; i < ROWS.length; i++) {
      const r = ROWS[i];
      if (stageIdx >= 0 && r[0] !== stageIdx) continue;
      if (state.status && r[2] !== state.status) continue;
      if (state.reason && !r[3].includes(state.reason)) continue;
      if (facetPairs.some(([f, v]) => r[4][f] !== v)) continue;
      if (re && !(re.test(r[1]) || re.test(r[8]))) continue;
      matches.push(i);
    }
    const rank = { rejected: 0, accepted: 1, superseded: 2 };
    matches.sort((a, b) => rank[ROWS[a][2]] - rank[ROWS[b][2]] || a - b); // rejections first, then stage order
    writeHash();
    renderList();
  }

  function renderList() {
    const from = state.page * PAGE, to = Math.min(matches.length, from + PAGE);
    countLine.textContent = matches.length ? `showing ${from + 1}–${to} of ${matches.length.toLocaleString("en")} matching records` : "no record matches these filters";
    const body = h("tbody");
    for (const i of matches.slice(from, to)) {
      const r = ROWS[i];
      const key = STAGES[r[0]].name + "/" + r[1];
      const facets = Object.entries(r[4]).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${v}`).join(" ");
      body.append(h("tr", { class: state.open === key ? "open" : null, "data-key": key, onclick: () => openRecord(key) },
        h("td", { text: STAGES[r[0]].name }), h("td", { title: r[1], text: r[1] }), h("td", {}, h("span", { class: "badge " + r[2], text: r[2] })),
        h("td", { class: "reason", title: r[3].join(", "), text: r[3].join(", ") }), h("td", { title: facets, text: facets }), h("td", { title: r[7], text: r[7] })));
    }
    listBox.textContent = "";
    const cols = h("colgroup", {}, [10, 16, 8, 20, 18, 28].map((w) => { const c = h("col"); c.style.width = w + "%"; return c; }));
    listBox.append(h("table", { class: "records" }, cols, h("thead", {}, h("tr", {}, ["stage", "id", "status", "reasons", "facets", "output"].map((c) => h("th", { text: c })))), body));
    const pages = Math.ceil(matches.length / PAGE);
    if (pages > 1) {
      listBox.append(h("div", { class: "pager" }, h("button", { text: "← previous", disabled: state.page === 0 ? "" : null, onclick: () => { state.page--; renderList(); } }),
        h("button", { text: "next →", disabled: state.page >= pages - 1 ? "" : null, onclick: () => { state.page++; renderList(); } }), `page ${state.page + 1} of ${pages}`));
    }
  }

  function findKey(key) {
    const cut = key.indexOf("/");
    const stage = key.slice(0, cut), id = key.slice(cut + 1);
    const idx = STAGES.findIndex((st) => st.name === stage);
    return (byId.get(id) || []).filter((i) => ROWS[i][0] === idx).sort((a, b) => (ROWS[a][2] === "superseded") - (ROWS[b][2] === "superseded"))[0];
  }

  function trace(i) {
    const r = ROWS[i], seen = new Set();
    for (const id of [r[1], ...r[6]]) for (const j of byId.get(id) || []) seen.add(j);
    const queue = [r[1]], visited = new Set(queue);
    while (queue.length && seen.size < 80) {
      for (const j of children.get(queue.shift()) || []) {
        seen.add(j);
        if (!visited.has(ROWS[j][1])) { visited.add(ROWS[j][1]); queue.push(ROWS[j][1]); }
      }
    }
    const order = { accepted: 0, rejected: 0, superseded: 1 };
    return [...seen].sort((a, b) => ROWS[a][0] - ROWS[b][0] || order[ROWS[a][2]] - order[ROWS[b][2]] || (ROWS[a][1] < ROWS[b][1] ? -1 : 1));
  }

  function openRecord(key) {
    state.open = key;
    writeHash();
    renderList();
    renderDetail();
    detailBox.scrollIntoView({ block: "start" });
  }

  function renderDetail() {
    detailBox.textContent = "";
    if (!state.open) return;
    const i = findKey(state.open);
    if (i === undefined) { detailBox.append(h("p", { class: "note", text: `record ${state.open} is not in this report's browser (sampled out, or not in the store)` })); return; }
    const items = trace(i);
    detailBox.append(h("h3", { text: `trace of ${state.open}: ${items.length} record${items.length === 1 ? "" : "s"} across stages` }),
      h("div", { class: "trace" }, items.map((j) => recordCard(j, j === i))));
  }

  function recordCard(j, selected) {
    const r = ROWS[j], rec = JSON.parse(r[8]), t = rec.teacher;
    const card = h("div", { class: "card" + (selected ? " selected" : ""), "data-key": STAGES[r[0]].name + "/" + r[1] },
      h("strong", { text: `${STAGES[r[0]].name} · ${r[1]} ` }), h("span", { class: "badge " + r[2], text: r[2] }), " ",
      h("span", { class: "reason", text: r[3].join(", ") }));
    card.append(kv({ mode: rec.mode, variant: rec.variant, parents: (rec.parent_ids || []).join(", "), created: rec.created_at, superseded: rec.superseded_at }));
    if (rec.error) card.append(h("div", { class: "note", text: "error: " + rec.error }));
    const open = selected;
    if (rec.prompt !== null && rec.prompt !== undefined) card.append(fold("prompt", pre(rec.prompt), false));
    if (rec.raw !== null && rec.raw !== undefined) card.append(fold("raw output", pre(rec.raw), open));
    if (rec.parsed !== null && rec.parsed !== undefined) card.append(fold("parsed", pre(typeof rec.parsed === "string" ? rec.parsed : json(rec.parsed)), open));
    if (rec.validation) card.append(fold("validation", pre(json(rec.validation)), open));
    if ((rec.gates || []).length) {
      card.append(h("div", { class: "muted", text: "gates" }), table(["gate", "result", "reason", "details"], rec.gates.map((g) => [g.name,
        h("span", { class: g.passed ? "pass" : "fail", text: g.passed ? "pass" : "fail" }), g.reason || "", JSON.stringify(g.details || {})])));
    }
    if (t) {
      const rest = Object.fromEntries(Object.entries(t).filter(([k]) => !["errors", "notes"].includes(k)));
      card.append(h("div", { class: "muted", text: "teacher provenance" }), kv(rest));
      if ((t.errors || []).length) card.append(fold(`failed attempts (${t.errors.length})`, pre(json(t.errors))));
      if ((t.notes || []).length) card.append(kv({ notes: t.notes.join("; ") }));
    }
    const skip = new Set(["id", "stage", "status", "reasons", "mode", "variant", "parent_ids", "created_at", "superseded_at", "error", "prompt", "raw", "parsed", "validation", "gates", "teacher"]);
    const other = Object.fromEntries(Object.entries(rec).filter(([k]) => !skip.has(k)));
    card.append(fold("data, ancestors and other fields", pre(json(other))));
    return card;
  }

  function browserSection() {
    filterBox = h("div", { class: "filters" });
    countLine = h("div", { class: "muted", id: "record-count" });
    listBox = h("div", { id: "record-list" });
    detailBox = h("div", { id: "record-detail" });
    const sampled = B.sampled
      ? h("div", { class: "note", id: "sample-note", text: `This run has ${B.total.toLocaleString("en")} records; the browser carries a sample of ${B.shown.toLocaleString("en")} (whole lineages, picked by a hash of each record's first ancestor). The funnel, reasons, facets and teacher figures count every record.` })
      : h("div", { class: "muted", text: `all ${B.total.toLocaleString("en")} records of the run (text fields cut at ${B.max_chars.toLocaleString("en")} characters; \`pocketguide inspect STAGE ID\` shows a whole record)` });
    return h("section", { id: "records" }, h("h2", { text: "Records" }), sampled, filterBox, countLine, listBox, detailBox);
  }

  // --- assemble ----------------------------------------------------------------------------------
  const app = document.getElementById("app");
  const nav = h("nav", {}, [["funnel", "Funnel"], ["rejections", "Rejections"], ["records", "Records"], ["teacher", "Teacher"]].map(([id, t]) => h("a", { href: "#" + id, text: t })),
    DATA.sections.map((sec, n) => h("a", { href: "#sec-" + n, text: sec.title })), h("a", { href: "#manifest", text: "Manifests" }));
  app.append(header(), nav, h("main", {}, funnelSection(), rejectionsSection(), browserSection(), teacherSection(), opSections(), manifestSection()));
  const fromHash = parseHash();
  buildFilters();
  apply();
  renderDetail();
  if (fromHash) document.getElementById(state.open ? "record-detail" : "records").scrollIntoView();
  interactive = true;
  window.addEventListener("hashchange", () => { // a chart's link, or the reader's back button
    if (!parseHash()) return;
    buildFilters();
    apply();
    renderDetail();
    document.getElementById(state.open ? "record-detail" : "records").scrollIntoView();
  });
  void document.body.offsetHeight; // style and layout done: the page is ready to read
  document.body.setAttribute("data-ready-ms", String(Math.round(performance.now())));
