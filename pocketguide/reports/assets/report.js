// pocketguide run report: draws the embedded JSON with DOM calls only. Every value from a record is
// written with textContent (never innerHTML), so model output stays text whatever it contains.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const STAGES = DATA.stages;
  const B = DATA.browser;
  const ROWS = B.rows; // [stage, id, status, reasons, facets, parent_ids, ancestors, preview, detail]
  const PAGE = 50;
  const SVGNS = "http://www.w3.org/2000/svg";

  // --- tiny DOM helpers ------------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, kids);
    return el;
  }
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    append(el, kids);
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") el.textContent = String(v);
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, String(v));
    }
  }
  function append(el, kids) {
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
  }
  const fmt = (x) => (x === null || x === undefined ? "–" : typeof x === "number" ? (Number.isInteger(x) ? x.toLocaleString("en") : String(+x.toFixed(4))) : String(x));
  const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%");
  const json = (x) => JSON.stringify(x, null, 2);
  const short = (x) => (typeof x === "string" && /^[0-9a-f]{40,}$/.test(x) ? x.slice(0, 12) + "…" : x);
  function table(columns, rows, numeric) {
    const num = numeric || (() => false);
    return h("table", {}, h("thead", {}, h("tr", {}, columns.map((c, i) => h("th", { class: num(i) ? "n" : null, text: c })))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => (c instanceof Node ? h("td", {}, c) : h("td", { class: typeof c === "number" || num(i) ? "n" : null, text: fmt(c) })))))));
  }
  function kv(obj) {
    const dl = h("dl", { class: "kv" });
    for (const [k, v] of Object.entries(obj || {})) {
      if (v === null || v === undefined || v === "") continue;
      dl.append(h("dt", { text: k }), h("dd", { title: typeof v === "string" ? v : null, text: typeof v === "object" ? JSON.stringify(v) : fmt(short(v)) }));
    }
    return dl;
  }
  const pre = (text) => h("pre", { text: text });
  const fold = (title, body, open) => h("details", { open: open ? "" : null }, h("summary", { text: title }), body);

  // --- charts (inline SVG) ---------------------------------------------------------------------
  // items: {label, value, lo?, hi?, text?, cls?}; value on a 0..max scale, whiskers from lo to hi
  function barChart(items, max, opts) {
    const o = Object.assign({ width: 760, label: 190, row: 22 }, opts || {});
    const top = Math.max(max || 0, ...items.map((i) => Math.max(i.value || 0, i.hi || 0)), 1e-9);
    const plot = o.width - o.label - 150;
    const svg = s("svg", { viewBox: `0 0 ${o.width} ${items.length * o.row + 6}`, width: o.width, role: "img" });
    items.forEach((it, n) => {
      const y = n * o.row + 3;
      const g = s("g", {}, s("title", { text: `${it.label}: ${it.text || fmt(it.value)}` }));
      const room = Math.floor((o.label - 10) / 6.6); // characters that fit left of the bars; the tooltip has all
      g.append(s("text", { x: o.label - 6, y: y + 14, "text-anchor": "end", text: it.label.length > room ? it.label.slice(0, room - 1) + "…" : it.label }));
      const w = Math.max(0, (plot * (it.value || 0)) / top);
      g.append(s("rect", { x: o.label, y: y + 2, width: w, height: o.row - 6, class: it.cls || "bar" }));
      if (it.lo !== undefined && it.hi !== undefined && it.lo !== null) {
        const a = o.label + (plot * it.lo) / top, b = o.label + (plot * it.hi) / top, m = y + o.row / 2 - 1;
        g.append(s("line", { x1: a, x2: b, y1: m, y2: m, class: "whisker" }), s("line", { x1: a, x2: a, y1: m - 5, y2: m + 5, class: "whisker" }),
          s("line", { x1: b, x2: b, y1: m - 5, y2: m + 5, class: "whisker" }));
      }
      g.append(s("text", { x: o.label + Math.max(w, it.hi !== undefined && it.hi !== null ? (plot * it.hi) / top : 0) + 6, y: y + 14, text: it.text || fmt(it.value) }));
      svg.append(it.link ? s("a", { href: it.link }, g) : g);
    });
    return svg;
  }
  const browseLink = (params) => "#browse:" + new URLSearchParams(params).toString();

  function funnelChart() {
    const W = 880, L = 130, R = 230, row = 30, plot = W - L - R;
    const top = Math.max(1, ...STAGES.map((st) => Math.max(st.accepted + st.rejected, st.in || 0)));
    const svg = s("svg", { viewBox: `0 0 ${W} ${STAGES.length * row + 8}`, width: W, role: "img", "aria-label": "records in and out of each stage" });
    STAGES.forEach((st, n) => {
      const y = n * row + 4, x = (v) => (plot * v) / top;
      const g = s("g", {}, s("title", { text: `${st.name}: in ${fmt(st.in)}, accepted ${st.accepted}, rejected ${st.rejected}` }));
      g.append(s("text", { x: L - 8, y: y + 17, "text-anchor": "end", text: st.name }));
      if (st.in !== null && st.in !== undefined) g.append(s("rect", { x: L, y: y + 2, width: x(st.in), height: row - 8, class: "inflow" }));
      g.append(s("rect", { x: L, y: y + 5, width: x(st.accepted), height: row - 14, class: "ok" }));
      g.append(s("rect", { x: L + x(st.accepted), y: y + 5, width: x(st.rejected), height: row - 14, class: "bad" }));
      const inText = st.in === null || st.in === undefined ? "" : `in ${fmt(st.in)} → `;
      g.append(s("text", { x: L + plot + 8, y: y + 17, text: `${inText}✓ ${fmt(st.accepted)}  ✗ ${fmt(st.rejected)}  (${pct(st.acceptance_rate)})` }));
      svg.append(g);
    });
    return svg;
  }

  function lineChart(block) {
    const W = 760, H = 260, L = 52, Bm = 36, T = 10, Rm = 20;
    const pts = block.series.flatMap((x) => x.points);
    if (!pts.length) return h("p", { class: "muted", text: "no points" });
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = Math.min(0, ...ys), y1 = Math.max(...ys, y0 + 1e-9);
    const X = (v) => L + ((W - L - Rm) * (v - x0)) / (x1 - x0), Y = (v) => T + ((H - T - Bm) * (y1 - v)) / (y1 - y0);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, role: "img", "aria-label": block.title });
    svg.append(s("line", { x1: L, x2: W - Rm, y1: H - Bm, y2: H - Bm, class: "axis" }), s("line", { x1: L, x2: L, y1: T, y2: H - Bm, class: "axis" }));
    for (let i = 0; i <= 4; i++) {
      const v = y0 + ((y1 - y0) * i) / 4;
      svg.append(s("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end", text: fmt(+v.toPrecision(3)) }));
      const xv = x0 + ((x1 - x0) * i) / 4;
      svg.append(s("text", { x: X(xv), y: H - Bm + 16, "text-anchor": "middle", text: fmt(Math.round(xv)) }));
    }
    svg.append(s("text", { x: (W + L) / 2, y: H - 4, "text-anchor": "middle", text: block.x_label }));
    block.series.forEach((ser, i) => {
      if (!ser.points.length) return;
      const d = ser.points.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" ");
      svg.append(s("path", { d: d, class: "s" + (i % 3) }));
      if (ser.points.length < 40) ser.points.forEach((p) => svg.append(s("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.5, class: "p" + (i % 3) }, s("title", { text: `${ser.name} step ${p[0]}: ${p[1]}` }))));
      svg.append(s("text", { x: W - Rm - 4, y: T + 14 + 16 * i, "text-anchor": "end", class: "p" + (i % 3), text: `— ${ser.name}` }));
    });
    return svg;
  }

  // --- page sections ---------------------------------------------------------------------------
  function header() {
    const m = DATA.meta;
    return h("header", {}, h("h1", { text: `pocketguide report: ${m.pipeline}` }),
      h("div", { class: "sub", text: `${m.stages_yaml} · data ${m.data_dir} · generated ${m.generated_at} · pocketguide ${m.pocketguide_version}` }));
  }

  function funnelSection() {
    const rows = STAGES.map((st) => {
      const tr = h("tr", { "data-stage": st.name });
      const cells = [[st.name], [st.kind], [st.state + (st.stale_inputs.length ? ` (${st.stale_inputs.join(", ")} changed)` : "")],
        [fmt(st.in), "n in"], [fmt(st.accepted), "n accepted"], [fmt(st.rejected), "n rejected"], [pct(st.acceptance_rate), "n rate"],
        [fmt(st.superseded), "n"], [fmt(st.pending), "n"]];
      cells.forEach(([text, cls]) => tr.append(h("td", { class: cls || null, text: text })));
      return tr;
    });
    const t = h("table", { id: "funnel-table" }, h("thead", {}, h("tr", {}, ["stage", "kind", "state", "in", "accepted", "rejected", "pass rate", "superseded", "pending"].map((c) => h("th", { text: c })))), h("tbody", {}, rows));
    const notes = STAGES.filter((st) => st.note).map((st) => h("div", { class: "note", text: `${st.name}: ${st.note}` }));
    return h("section", { id: "funnel" }, h("h2", { text: "Funnel: records in and out of every stage" }),
      h("p", { class: "muted", text: "grey: what flowed in (the driving input's accepted records, or the source file's lines); green: accepted; red: rejected." }),
      h("div", { class: "card" }, funnelChart()), t, notes);
  }

  function rejectionsSection() {
    const out = h("section", { id: "rejections" }, h("h2", { text: "Why records were rejected" }),
      h("p", { class: "muted", text: "Per stage: reason codes, then pass rates by every facet the stage declares (and the axes it fans out on or routes by), then its gates. Click a bar to list its records. Stages that rejected nothing are folded." }));
    for (const st of STAGES) {
      const reasons = Object.entries(st.reasons || {});
      const facets = Object.entries(st.facet_rates || {});
      const gates = Object.entries(st.gates || {});
      if (!reasons.length && !facets.length && !gates.length) continue;
      const charts = h("div", { class: "grid" });
      if (reasons.length) {
        charts.append(h("div", {}, h("div", { class: "muted", text: "reason codes (a record can have several)" }),
          barChart(reasons.map(([k, v]) => ({ label: k, value: v, cls: "bad", link: browseLink({ stage: st.name, reason: k }) })), null, { label: Math.min(420, 16 + 6.6 * Math.max(...reasons.map(([k]) => k.length))), width: 640 })));
      }
      for (const [facet, values] of facets) {
        const items = Object.entries(values).sort((a, b) => b[1].accepted + b[1].rejected - (a[1].accepted + a[1].rejected));
        const shown = items.slice(0, 30).map(([v, c]) => ({ label: v, value: c.pass_rate, cls: "ok", text: `${pct(c.pass_rate)} (✓${c.accepted} ✗${c.rejected})`, link: browseLink({ stage: st.name, ["f." + facet]: v }) }));
        charts.append(h("div", {}, h("div", { class: "muted", text: `pass rate by ${facet}` + (items.length > 30 ? ` (30 largest of ${items.length} values)` : "") }),
          barChart(shown, 1, { label: 150, width: 460 })));
      }
      if (gates.length) {
        charts.append(h("div", {}, h("div", { class: "muted", text: "gates" }), table(["gate", "passed", "failed", "pass rate"], gates.map(([g, c]) => [g, c.passed, c.failed, pct(c.pass_rate)]), (i) => i > 0)));
      }
      const title = `${st.name}: ${fmt(st.rejected)} rejected of ${fmt(st.accepted + st.rejected)}`;
      out.append(h("div", { class: "card", "data-stage": st.name }, st.rejected ? [h("h3", { text: title }), charts] : fold(title + " (facets and gates)", charts)));
    }
    if (out.childNodes.length === 2) out.append(h("p", { class: "muted", text: "No stage rejected anything and no facets or gates were declared." }));
    return out;
  }

  function teacherSection() {
    const withT = STAGES.filter((st) => st.teacher);
    const out = h("section", { id: "teacher" }, h("h2", { text: "Teacher" }));
    if (!withT.length) {
      out.append(h("p", { class: "muted", text: "No stage called a teacher." }));
      return out;
    }
    const cols = ["stage", "records", "requests", "cache hits", "retries", "429s", "pauses", "paused s", "failed attempts", "fallbacks", "prompt tokens", "completion tokens", "cost USD", "latency p50 s", "p95 s"];
    out.append(h("p", { class: "muted", text: "Records, requests, cache hits, tokens, cost and latency come from each record's provenance; failed attempts count the tries of models that gave up (after their retries), fallbacks the records answered by a later model of the chain. Retries, 429s and pauses are summed from every counter the stage's stats.json and manifest carry under such a name (the manifest's counters cover the whole command that finished the stage). Every counter is listed below." }),
      table(cols, withT.map((st) => {
        const t = st.teacher, k = st.teacher_headline || {};
        return [st.name, t.records, t.requests, t.cache_hits, k.retries, k.rate_limited, k.pauses, k.paused_s, t.failed_attempts, t.fallbacks, t.prompt_tokens, t.completion_tokens, t.cost_usd, t.latency_p50_s, t.latency_p95_s];
      }), (i) => i > 0));
    for (const st of withT) {
      const t = st.teacher;
      const more = Object.assign({}, t.other, st.counters);
      const body = h("div", {}, kv({ models: t.models, "finish reasons": t.finish_reasons, "error kinds": t.error_kinds }),
        table(["counter", "value"], Object.entries(more).sort().map(([k, v]) => [k, v]), (i) => i > 0));
      out.append(fold(`${st.name}: models, finish reasons and every counter (${Object.keys(more).length})`, body));
    }
    return out;
  }

  function blockView(b) {
    const title = h("h3", { text: b.title });
    if (b.kind === "table") return [title, table(b.columns, b.rows)];
    if (b.kind === "bars") return [title, barChart(b.items.map((i) => Object.assign({ text: `${fmt(i.value)}${i.n !== undefined ? "  (n " + i.n + ")" : ""}` }, i)), b.max_value, { label: 260 })];
    if (b.kind === "lines") return [title, lineChart(b)];
    if (b.kind === "pairs") {
      return [title, b.items.map((it) => h("div", { class: "card" }, h("strong", { text: it.head }), it.sub ? fold("prompt", pre(it.sub)) : null,
        h("div", { class: "pair" }, it.texts.map((t, i) => h("div", {}, h("div", { class: "muted", text: `${b.labels[i]}${it.marks ? " · " + it.marks[i] : ""}` }), pre(t))))))];
    }
    return [title, pre(json(b))];
  }

  function opSections() {
    return DATA.sections.map((sec, n) => h("section", { id: "sec-" + n }, h("h2", { text: sec.title }), kv(sec.facts),
      sec.notes.map((t) => h("div", { class: "note", text: t })), sec.blocks.length ? h("div", { class: "card" }, sec.blocks.map(blockView)) : null));
  }

  function manifestSection() {
    const out = h("section", { id: "manifest" }, h("h2", { text: "Manifests: what made each stage" }),
      table(["stage", "kind", "finished", "run id", "spec sha256", "complete", "limit", "pocketguide"], STAGES.map((st) => {
        const m = st.manifest || {};
        return [st.name, st.kind, m.finished_at, m.run_id, h("code", { title: m.spec_sha256 || "", text: short(m.spec_sha256) || "–" }), m.complete === undefined ? "not run" : String(m.complete), m.limit, m.pocketguide_version];
      })));
    for (const st of STAGES) {
      const m = st.manifest;
      const body = h("div", {}, st.description ? h("div", { class: "muted", text: st.description }) : null);
      if (!m) body.append(h("p", { class: "muted", text: "no manifest: the stage has not finished a run" }));
      else {
        body.append(kv({ stopped: m.stopped, "dry run": m.dry_run ? "yes" : null, "teacher settings": m.teacher_settings, counts: m.counts }));
        const hashes = [];
        for (const group of ["templates", "schema", "inputs", "outputs"]) for (const [k, v] of Object.entries(m[group] || {})) hashes.push([group, k, h("code", { title: v || "", text: v ? short(v) : "–" })]);
        if (hashes.length) body.append(table(["what", "file", "sha256"], hashes));
      }
      if (Object.keys(st.stats_extra || {}).length) body.append(fold("more stats (stats.json)", pre(json(st.stats_extra))));
      out.append(fold(`${st.name}: template, schema, input and output hashes, teacher settings`, body));
    }
    return out;
  }

  // --- record browser --------------------------------------------------------------------------
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
})();
