// pocketguide run report, part 1 of 3. reports/html.py joins dom.js, sections.js and browser.js inside one
// function scope (one script, allowed by its hash). Every value from a record is written with textContent
// or setAttribute, never innerHTML, so model output stays text whatever it contains.
// DOM helpers and SVG charts.
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

