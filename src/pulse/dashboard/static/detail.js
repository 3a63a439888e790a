"use strict";
// Item and user detail pages: /items/<id> (state + series) and /users/<id> (state + raw-event timeline).
(async () => {
  const { fmt, chart, text, showError, getJSON } = Pulse;
  const [, kind, raw] = location.pathname.split("/");
  const id = decodeURIComponent(raw || "");
  document.getElementById("kind").textContent = kind === "items" ? "item" : "user";
  document.getElementById("name").textContent = id;
  document.title = "Pulse — " + id;

  function stateTable(pairs) {
    document.querySelector("#state tbody").replaceChildren(...pairs.map(([k, v]) => {
      const tr = document.createElement("tr");
      tr.append(text("th", k), text("td", v, "n"));
      tr.dataset.key = k;
      return tr;
    }));
  }
  const counts = (c) => Object.entries(c || {}).map(([k, v]) => [k, fmt.count(v)]);
  try {
    if (kind === "items") {
      const d = await getJSON("/api/items/" + encodeURIComponent(id) + "?range=1h");
      const s = d.state;
      stateTable([["category", s.category || "–"], ...counts(s.counts), ["revenue", fmt.money(s.revenue_cents / 100)],
        ["purchases", fmt.count(s.purchases)], ["conversion (purchases/views)", fmt.pct(s.conversion_rate)]]);
      document.getElementById("item-charts").hidden = false;
      chart(document.getElementById("chart-types"), d.overview.series.t, d.overview.series.types);
    } else {
      const d = await getJSON("/api/users/" + encodeURIComponent(id));
      const s = d.state;
      if (s) {
        stateTable([["first seen", fmt.time(s.first_seen)], ["last seen", fmt.time(s.last_seen)], ...counts(s.counts),
          ["spent", fmt.money(s.spent_cents / 100)], ["purchases", fmt.count(s.purchases)],
          ["last item", s.last_item || "–"]]);
      }
      document.getElementById("user-timeline").hidden = false;
      document.querySelector("#timeline tbody").replaceChildren(...d.timeline.map((e) => {
        const tr = document.createElement("tr");
        const item = document.createElement("td");
        if (e.item_id) {
          const a = text("a", e.item_id);
          a.href = "/items/" + encodeURIComponent(e.item_id);
          item.append(a);
        }
        tr.append(text("td", fmt.time(e.ts)), text("td", e.event_type), item, text("td", e.category || ""),
          text("td", e.status), text("td", e.amount == null ? "" : fmt.money(e.amount), "n"),
          text("td", e.country), text("td", e.session_id));
        tr.dataset.eventId = e.event_id;
        return tr;
      }));
    }
    document.body.dataset.rendered = "1";
  } catch (err) {
    showError(String(err.message || err));
  }
})();
