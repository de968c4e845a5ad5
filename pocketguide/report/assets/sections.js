// pocketguide run report, part 2 of 3. reports/html.py joins dom.js, sections.js and browser.js inside one
// function scope (one script, allowed by its hash). Every value from a record is written with textContent
// or setAttribute, never innerHTML, so model output stays text whatever it contains.
// The data, and the sections drawn from it.
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const STAGES = DATA.stages;
  const B = DATA.browser;
  const ROWS = B.rows; // [stage, id, status, reasons, facets, parent_ids, ancestors, preview, detail]

  // --- page sections ---------------------------------------------------------------------------
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

