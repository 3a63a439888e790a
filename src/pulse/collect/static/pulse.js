/* pulse.js: send interaction events to a Pulse collector. No build step, no dependency.
 *
 *   <script src="https://collector.example/pulse.js"></script>
 *   <script>
 *     Pulse.init({ key: "WRITE_KEY" });            // the collector this script came from, by default
 *     Pulse.track("click", { item_id: "sku-9" });  // any schema field beside the ones Pulse fills in
 *     Pulse.identify("customer-42");               // the app's own user id from now on
 *   </script>
 *
 * Every event gets its event_id (a UUIDv7) once, and keeps it on every retry: the collector and the aggregator
 * count it once however often it is sent. Unsent events live in localStorage, so a reload or a closed tab loses
 * nothing; when the page is hidden, what is left goes out with sendBeacon as well. Requests are text/plain, so a
 * page on another origin needs no CORS preflight.
 */
(function (global) {
  "use strict";
  var QUEUE = "pulse_queue", USER = "pulse_user", SESSION = "pulse_session";
  var SESSION_IDLE_MS = 30 * 60 * 1000, MAX_QUEUE = 10000, BATCH = 100, MAX_BACKOFF_MS = 30000;
  var script = document.currentScript;
  var cfg = { url: script ? new URL("/v1/batch", script.src).href : "/v1/batch", key: null, flushMs: 1000 };
  var backoff = 0, timer = null, sending = false;

  function store(name, value) {
    try {
      if (value === undefined) return JSON.parse(localStorage.getItem(name));
      localStorage.setItem(name, JSON.stringify(value));
    } catch (e) { /* storage full or blocked: events stay in memory only */ }
    return null;
  }
  var memory = store(QUEUE) || [];
  function queue() { return memory; }
  function save() { store(QUEUE, memory); }

  function hex(bytes) {
    var s = "";
    for (var i = 0; i < bytes.length; i++) s += (bytes[i] + 256).toString(16).slice(1);
    return s;
  }
  // UUIDv7: 48 bits of milliseconds, then random bits, with the version and variant set
  function uuid7() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    var ms = Date.now();
    for (var i = 5; i >= 0; i--) { b[i] = ms % 256; ms = Math.floor(ms / 256); }
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = hex(b);
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function user() {
    var u = store(USER);
    if (!u) { u = "anon-" + uuid7(); store(USER, u); }
    return u;
  }
  function session() {
    var s = store(SESSION), now = Date.now();
    if (!s || now - s.last > SESSION_IDLE_MS) s = { id: uuid7(), last: now };
    s.last = now;
    store(SESSION, s);
    return s.id;
  }

  function body(events) {
    return JSON.stringify({ key: cfg.key, sent_at: Date.now(), events: events });
  }

  function schedule(ms) {
    if (timer) clearTimeout(timer);
    timer = setTimeout(flush, ms);
  }

  function settle(sent, results) {
    // accepted, duplicate and rejected are final; retry stays queued, in order
    var done = {};
    for (var i = 0; i < results.length; i++) {
      if (results[i].result !== "retry") done[sent[i].event_id] = true;
    }
    memory = memory.filter(function (e) { return !done[e.event_id]; });
    save();
  }

  function flush() {
    timer = null;
    if (sending || memory.length === 0) return;
    var sent = memory.slice(0, BATCH);
    sending = true;
    fetch(cfg.url, { method: "POST", body: body(sent), headers: { "Content-Type": "text/plain" },
                     keepalive: true, credentials: "omit" })
      .then(function (r) {
        if (r.status === 200 || r.status === 207) {
          return r.json().then(function (j) { settle(sent, j.results); backoff = 0; });
        }
        if (r.status >= 400 && r.status < 500 && r.status !== 429 && r.status !== 408) {
          // refused as a whole (bad key, too large): retrying the same request cannot help
          console.warn("pulse.js: the collector refused a batch (" + r.status + "); dropping it");
          settle(sent, sent.map(function () { return { result: "rejected" }; }));
          return;
        }
        throw new Error("status " + r.status);
      })
      .catch(function () {
        backoff = Math.min(MAX_BACKOFF_MS, backoff ? backoff * 2 : 500);
      })
      .then(function () {
        sending = false;
        if (memory.length) schedule(backoff ? backoff * (0.5 + Math.random() / 2) : 0);
      });
  }

  var Pulse = {
    init: function (options) {
      for (var k in options || {}) cfg[k] = options[k];
      if (memory.length) schedule(0); // what a previous page left unsent
      return Pulse;
    },
    track: function (eventType, fields) {
      var e = { event_id: uuid7(), event_type: eventType, ts: Date.now(), user_id: user(), session_id: session() };
      for (var k in fields || {}) e[k] = fields[k];
      memory.push(e);
      if (memory.length > MAX_QUEUE) memory.splice(0, memory.length - MAX_QUEUE); // bounded: oldest go first
      save();
      if (!timer && !sending) schedule(backoff || cfg.flushMs);
      return e.event_id;
    },
    identify: function (userId) {
      store(USER, String(userId));
    },
    pending: function () { return memory.length; },
  };

  function beacon() {
    if (memory.length && navigator.sendBeacon) {
      // no answer comes back: the events stay queued, and a later page resends them under the same ids
      navigator.sendBeacon(cfg.url, new Blob([body(memory.slice(0, BATCH))], { type: "text/plain" }));
    }
  }
  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") beacon(); });
  global.addEventListener("pagehide", beacon);
  global.Pulse = Pulse;
})(window);
