"use strict";
// Shared by the overview and detail pages: formatting and uPlot charts.
const Pulse = (() => {
  const COLORS = ["#2f6fed", "#27ae60", "#f39c12", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d35400"];
  const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const money = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD" });
  const fmt = {
    count: (v) => (v == null ? "–" : nf.format(v)),
    money: (v) => (v == null ? "–" : money.format(v)),
    pct: (v) => (v == null ? "–" : (100 * v).toFixed(2) + " %"),
    secs: (v) => (v == null ? "–" : v.toFixed(1) + " s"),
    time: (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19),
  };
  const charts = new Map();
  function chart(el, t, series, partial) {
    // t: window starts (ms); series: {name: values}; one uPlot per element, data replaced on update. partial: the
    // last window is still open, so its point is drawn dashed ("so far"), apart from the complete windows
    const names = Object.keys(series);
    const open = partial && t.length > 0;
    const last = t.length - 1;
    const complete = (v) => (open ? v.map((x, i) => (i === last ? null : x)) : v);
    const sofar = (v) => v.map((x, i) => (i >= last - 1 ? x : null));
    const data = [t.map((ms) => ms / 1000), ...names.map((n) => complete(series[n])),
      ...(open ? names.map((n) => sofar(series[n])) : [])];
    const key = el.id + "|" + names.join(",") + (open ? "|open" : "");
    el.dataset.points = String(t.length);
    el.dataset.partial = String(open);
    el.dataset.total = String(names.reduce((sum, n) => sum + series[n].reduce((a, b) => a + (b || 0), 0), 0));
    const existing = charts.get(el.id);
    if (existing && existing.key === key) { existing.plot.setData(data); return existing.plot; }
    if (existing) existing.plot.destroy();
    const opts = {
      width: Math.max(300, el.clientWidth || 420), height: 200,
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length], width: 1.5 })),
        ...(open ? names.map((n, i) => ({ label: n + " (open window, so far)", stroke: COLORS[i % COLORS.length],
          width: 1.5, dash: [4, 4] })) : [])],
      axes: [{}, { size: 60 }], legend: { live: false },
    };
    const plot = new uPlot(opts, data, el);
    charts.set(el.id, { key, plot });
    return plot;
  }
  function text(tag, value, cls) {
    const el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  }
  function showError(message) {
    const el = document.getElementById("error");
    el.hidden = !message;
    el.textContent = message || "";
  }
  async function getJSON(url) {
    const resp = await fetch(url);
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
    return body;
  }
  return { fmt, chart, text, showError, getJSON };
})();
