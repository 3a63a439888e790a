"use strict";
// The overview page: filters live in the URL; the first render uses /api/overview, then /api/stream pushes.
(() => {
  const { fmt, chart, text, showError, getJSON } = Pulse;
  const form = document.getElementById("filters");
  const FIELDS = ["event_type", "item", "user"]; // and one per dimension, once /api/dimensions names them
  const KPI = {
    events_per_s: fmt.count, revenue_per_min: fmt.money, active_users: fmt.count,
    conversion_rate: fmt.pct, error_rate: fmt.pct,
  };
  let source = null;
  let updates = 0;

  const toLocal = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 19);
  const fromLocal = (v) => (v ? String(new Date(v).getTime()) : "");

  function params() { return new URLSearchParams(location.search); }

  function fillForm() {
    const p = params();
    for (const f of FIELDS) form.elements[f].value = p.get(f) || "";
    form.elements.from.value = p.get("from") ? toLocal(Number(p.get("from"))) : "";
    form.elements.to.value = p.get("to") ? toLocal(Number(p.get("to"))) : "";
    const range = p.get("range") || "15m";
    for (const b of form.querySelectorAll("[data-range]")) {
      b.classList.toggle("active", !p.get("from") && b.dataset.range === range);
    }
  }

  function navigate(p) {
    for (const [k, v] of [...p.entries()]) if (!v) p.delete(k);
    history.pushState(null, "", p.toString() ? "?" + p : location.pathname);
    start();
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = params();
    for (const f of FIELDS) p.set(f, form.elements[f].value.trim());
    p.set("from", fromLocal(form.elements.from.value));
    p.set("to", fromLocal(form.elements.to.value));
    if (p.get("from")) p.delete("range");
    navigate(p);
  });
  document.getElementById("clear").addEventListener("click", () => navigate(new URLSearchParams()));
  for (const b of form.querySelectorAll("[data-range]")) {
    b.addEventListener("click", () => {
      const p = params();
      p.delete("from"); p.delete("to"); p.set("range", b.dataset.range);
      navigate(p);
    });
  }
  window.addEventListener("popstate", start);

  function setKpi(name, value, format) {
    const el = document.getElementById("kpi-" + name);
    el.dataset.value = value == null ? "" : String(value);
    el.querySelector(".value").textContent = format(value);
  }

  // a table row saying why the table is empty
  function note(message, columns) {
    const tr = document.createElement("tr");
    const td = text("td", message);
    td.colSpan = columns;
    tr.append(td);
    return tr;
  }

  // how far `pulse verify --follow` got, or the first difference it found (hidden when it does not run)
  function renderVerified(h) {
    const el = document.getElementById("kpi-verified");
    el.hidden = h.verify_at == null;
    const bad = (h.verify_differences || 0) > 0;
    el.classList.toggle("bad", bad);
    el.dataset.value = bad ? "mismatch" : h.verified_up_to == null ? "" : String(h.verified_up_to);
    el.querySelector(".value").textContent =
      bad ? "MISMATCH" : h.verified_up_to == null ? "starting" : "up to " + fmt.time(h.verified_up_to).slice(11);
    document.getElementById("verify-detail").textContent = bad
      ? fmt.count(h.verify_differences) + " differences; first: " + h.verify_first_difference
      : h.verified_up_to == null ? "" : fmt.time(h.verified_up_to) + " UTC";
  }

  function render(o) {
    for (const [name, format] of Object.entries(KPI)) setKpi(name, o.kpis[name], format);
    setKpi("freshness_s", o.health.freshness_s, fmt.secs);
    setKpi("aggregator_lag_s", o.health.aggregator_lag_s, fmt.secs);
    document.getElementById("lag-records").textContent =
      o.health.aggregator_lag == null ? "" : fmt.count(o.health.aggregator_lag) + " records";
    renderVerified(o.health);
    const s = o.series;
    chart(document.getElementById("chart-types"), s.t, s.types, s.partial);
    chart(document.getElementById("chart-revenue"), s.t, { revenue: s.revenue }, s.partial);
    const errEl = document.getElementById("chart-errors");
    errEl.parentElement.hidden = s.errors == null;
    if (s.errors != null) chart(errEl, s.t, { errors: s.errors }, s.partial);

    const tbody = document.querySelector("#top-items tbody");
    if (o.top_items == null) {
      tbody.replaceChildren(note("Items are not broken down by this filter's dimension (or for one user).", 4));
    } else tbody.replaceChildren(...o.top_items.map((it) => {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      const a = text("a", it.item_id);
      a.href = "/items/" + encodeURIComponent(it.item_id);
      td.append(a);
      tr.append(td, text("td", it.category || "–"), text("td", fmt.count(it.count), "n"),
        text("td", it.revenue_cents == null ? "–" : fmt.money(it.revenue_cents / 100), "n"));
      return tr;
    }));

    const funnel = document.getElementById("funnel");
    if (o.funnel) {
      const top = Math.max(1, o.funnel.view);
      funnel.replaceChildren(...Object.entries(o.funnel).map(([step, n]) => {
        const row = text("div", "", "step");
        const bar = text("div", "", "bar");
        bar.style.width = (100 * n / top).toFixed(1) + "%";
        const wrap = document.createElement("div");
        wrap.append(bar);
        row.append(text("span", step), wrap, text("span", fmt.count(n), "n"));
        row.dataset.step = step; row.dataset.value = String(n);
        return row;
      }));
    } else {
      funnel.replaceChildren(text("p", "The ordered funnel is per session; it is not available under this filter."));
    }

    const qBody = document.querySelector("#quantiles tbody");
    if (o.quantiles == null) {
      qBody.replaceChildren(note("Quantiles come from the window summaries: not available under this filter.", 5));
    } else qBody.replaceChildren(...Object.entries(o.quantiles).map(([name, qs]) => {
      const tr = document.createElement("tr");
      tr.dataset.key = name;
      tr.append(text("th", name === "amount" ? "order amount" : "unit price"));
      for (const [q, cents] of Object.entries(qs)) {
        const td = text("td", cents == null ? "–" : fmt.money(cents / 100), "n");
        td.dataset.q = q; td.dataset.value = cents == null ? "" : String(cents);
        tr.append(td);
      }
      return tr;
    }));

    renderRevised(o.revised, o.window);

    const h = o.health;
    const rows = [["accepted", h.accepted], ["corrected (late, within the horizon)", h.corrected],
      ["dead-lettered", h.dead_lettered], ["too late", h.late],
      ["duplicates", h.duplicates], ["repartitioned (not keyed by user)", h.forwarded],
      ["writer lag (documents)", h.store_lag],
      ["store dead letters", h.store_dead_lettered], ["partitions", h.partitions],
      ...collectorRows(h.collector)];
    document.querySelector("#health tbody").replaceChildren(...rows.map(([k, v]) => {
      const tr = document.createElement("tr");
      tr.append(text("th", k), text("td", fmt.count(v), "n"));
      tr.dataset.key = k; tr.dataset.value = v == null ? "" : String(v);
      return tr;
    }));
    document.getElementById("source").textContent = o.source;
    document.getElementById("window").textContent = o.window;
    for (const el of document.querySelectorAll(".window")) el.textContent = o.window;
    document.getElementById("updated").textContent = fmt.time(Date.now());
    if (!document.body.dataset.firstRenderMs) document.body.dataset.firstRenderMs = String(performance.now());
    document.body.dataset.rendered = "1";
  }

  // the HTTP collectors' own counts (events answered, requests refused), when the dashboard knows of any
  function collectorRows(c) {
    if (!c) return [];
    const e = c.events;
    const rows = [["collector: accepted", e.accepted || 0], ["collector: duplicates", e.duplicate || 0],
      ["collector: rejected (dead-lettered)", e.rejected || 0], ["collector: answered retry", e.retry || 0],
      ["collector: refused requests", c.refused_requests]];
    if (c.unreachable.length) rows.push(["collectors not answering", c.unreachable.length]);
    return rows;
  }

  // windows late events revised ("+N late events"); picking one lists its revisions: when, where, how many
  function renderRevised(revised, window) {
    document.querySelector("#revised tbody").replaceChildren(...(revised.length ? revised.map((r) => {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      const a = text("a", fmt.time(r.start));
      a.href = "#revisions";
      a.addEventListener("click", (ev) => {
        ev.preventDefault();
        showRevisions(window, r.start).catch((err) => showError(String(err.message || err)));
      });
      td.append(a);
      tr.append(td, text("td", "+" + fmt.count(r.corrected) + " late events", "n"));
      tr.dataset.start = String(r.start); tr.dataset.value = String(r.corrected);
      return tr;
    }) : [note("No window in this range was revised by late events.", 2)]));
  }

  async function showRevisions(window, start) {
    const box = document.getElementById("revisions");
    const list = await getJSON("/api/revisions?" + new URLSearchParams({ window, start: String(start) }));
    document.getElementById("revisions-of").textContent = window + " window " + fmt.time(start);
    box.querySelector("tbody").replaceChildren(...list.map((r) => {
      const tr = document.createElement("tr");
      tr.append(text("td", r.revised_at == null ? "–" : fmt.time(r.revised_at)), text("td", String(r.partition)),
        text("td", "+" + fmt.count(r.events), "n"), text("td", fmt.money(r.revenue_cents / 100), "n"));
      tr.dataset.value = String(r.events);
      return tr;
    }));
    box.hidden = false;
  }

  async function start() {
    document.body.dataset.rendered = "0";
    fillForm();
    if (source) source.close();
    const qs = params().toString();
    try {
      render(await getJSON("/api/overview?" + qs));
      showError("");
    } catch (err) {
      showError(String(err.message || err));
      return;
    }
    const live = document.getElementById("live");
    source = new EventSource("/api/stream?" + qs);
    source.addEventListener("overview", (ev) => {
      render(JSON.parse(ev.data));
      updates += 1;
      live.dataset.updates = String(updates);
      live.textContent = "live";
      live.classList.add("on");
    });
    source.addEventListener("failure", (ev) => showError(JSON.parse(ev.data).detail));
    source.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("on"); };
  }

  // a select per dimension, listing the values its breakdowns hold (a value in the URL stays selectable)
  function dimensionFilters(values) {
    const box = document.getElementById("dimensions");
    for (const [dim, known] of Object.entries(values)) {
      const sel = document.createElement("select");
      sel.name = dim;
      const chosen = params().get(dim) || "";
      sel.append(new Option("any", ""));
      for (const v of chosen && !known.includes(chosen) ? [...known, chosen] : known) sel.append(new Option(v, v));
      const label = text("label", dim + " ");
      label.append(sel);
      box.append(label, " ");
      FIELDS.push(dim);
    }
  }

  getJSON("/api/dimensions").then(dimensionFilters, (err) => showError(String(err.message || err))).then(start);
})();
