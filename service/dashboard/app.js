// The arrowshm dashboard: reads the service's JSON routes and its event stream.
// No framework, and no HTML parsing of data: every string from the API (names are user data)
// reaches the page as a text node or an attribute set through the DOM.
"use strict";

(() => {
  const TOKEN_KEY = "arrowshm.token";
  const POLL_MS = 2000;
  const MAX_EVENTS = 50;
  const MAX_DETAILS = 100; // per-dataset readers look-ups per refresh, at most
  const CONFIRM_MS = 4000;

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY);
  let needsToken = false;
  let refreshTimer = 0;
  let refreshing = false;
  let refreshAgain = false;
  let readersInDetail = true; // false once a detail answered without `readers`
  const confirming = new Map(); // dataset name -> timeout id of its armed delete button
  const lastVersion = new Map(); // row key -> version shown, to flash changes

  // ---------------------------------------------------------------- formatting

  const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    let i = 0;
    let v = Number(n);
    while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i += 1; }
    return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${UNITS[i]}`;
  }
  const int = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  function duration(s) {
    if (!Number.isFinite(s)) return "–";
    s = Math.max(0, s);
    if (s < 60) return `${Math.floor(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${(s / 3600).toFixed(s < 36000 ? 1 : 0)} h`;
    return `${(s / 86400).toFixed(1)} d`;
  }
  const since = (iso) => (iso ? duration((Date.now() - Date.parse(iso)) / 1000) : "–");
  function ttl(item) {
    if (!item.expires_at) return "–";
    const left = (Date.parse(item.expires_at) - Date.now()) / 1000;
    return left > 0 ? duration(left) : "expiring";
  }
  const clock = (d) => d.toLocaleTimeString("en-GB", { hour12: false });
  const pathOf = (name) => name.split("/").map(encodeURIComponent).join("/");

  // ---------------------------------------------------------------- DOM helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }
  function setText(node, text, title) {
    if (node.textContent !== text) node.textContent = text;
    if (title !== undefined && node.title !== title) node.title = title;
  }

  // ---------------------------------------------------------------- HTTP

  class HttpError extends Error {
    constructor(status, code, detail) {
      super(detail || `HTTP ${status}`);
      this.status = status;
      this.code = code;
    }
  }

  function headers() {
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  async function api(path, options = {}) {
    const r = await fetch(path, {
      ...options, cache: "no-store", credentials: "omit",
      headers: { Accept: "application/json", ...headers(), ...(options.headers || {}) },
    });
    if (r.status === 401) {
      askToken(Boolean(token));
      throw new HttpError(401, "Unauthorized", "token needed");
    }
    if (!r.ok) {
      let code = "";
      let detail = "";
      try { const body = await r.json(); code = body.code || ""; detail = body.detail || ""; }
      catch (_) { /* not JSON */ }
      throw new HttpError(r.status, code, detail || `${r.status} ${r.statusText}`);
    }
    return r.status === 204 ? null : r.json();
  }

  // ---------------------------------------------------------------- token

  function askToken(refused) {
    if (refused) { token = null; sessionStorage.removeItem(TOKEN_KEY); }
    needsToken = true;
    setConn("off", "signed out");
    const dialog = $("token-dialog");
    if (refused) $("token-error").hidden = false;
    if (dialog.open) return; // several requests may be refused at once
    if (!refused) $("token-error").hidden = true;
    dialog.showModal();
    $("token-input").focus();
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    $("token-dialog").close();
    needsToken = false;
    $("signout").hidden = false;
    refreshSoon(0);
    connectEvents();
  });
  // the page is useless without the token: Escape does not dismiss the dialog
  $("token-dialog").addEventListener("cancel", (ev) => ev.preventDefault());

  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    $("signout").hidden = true;
    askToken(false);
  });

  // ---------------------------------------------------------------- banner

  function showError(message) {
    const b = $("banner");
    b.textContent = message;
    b.hidden = false;
  }
  const clearError = () => { $("banner").hidden = true; };

  // ---------------------------------------------------------------- memory

  function meter(bar, used, total) {
    const pct = total > 0 ? Math.min(100, (100 * used) / total) : 0;
    bar.style.width = `${pct.toFixed(1)}%`;
    bar.dataset.level = pct >= 90 ? "high" : pct >= 70 ? "mid" : "low";
  }

  function renderUsage(u) {
    setText($("m-live"), bytes(u.live_bytes));
    setText($("m-live-sub"), `${bytes(u.bytes_used)} in all segments`);
    if (u.spares === undefined || u.spare_bytes === undefined) {
      setText($("m-spare"), "–");
      setText($("m-spare-sub"), "not reported by this service");
    } else {
      setText($("m-spare"), bytes(u.spare_bytes));
      const reserve = u.reserve ? ` · ${bytes(u.reserve)} kept ready` : "";
      setText($("m-spare-sub"),
        `${int(u.spares)} spare${u.spares === 1 ? "" : "s"}, reclaimable${reserve}`);
    }
    const used = u.bytes_used;
    if (u.quota === null || u.quota === undefined) {
      setText($("m-quota"), "none");
      setText($("m-quota-sub"), `${bytes(used)} used`);
      meter($("m-quota-bar"), 0, 0);
    } else {
      setText($("m-quota"), bytes(u.quota));
      setText($("m-quota-sub"), `${bytes(used)} used (${((100 * used) / u.quota).toFixed(1)}%)`);
      meter($("m-quota-bar"), used, u.quota);
    }
    if (u.shm_total) {
      setText($("m-shm"), bytes(u.shm_free));
      setText($("m-shm-sub"), `of ${bytes(u.shm_total)}`);
      meter($("m-shm-bar"), u.shm_total - u.shm_free, u.shm_total);
    } else {
      setText($("m-shm"), "–");
      setText($("m-shm-sub"), "not reported by this service");
    }
  }

  // /v1/usage where it exists, else the quota route's fields
  let usageRoute = "/v1/usage";
  async function fetchUsage() {
    if (usageRoute === "/v1/usage") {
      try { return await api(usageRoute); }
      catch (e) { if (e.status !== 404) throw e; usageRoute = "/v1/quota"; }
    }
    const q = await api("/v1/quota");
    return { ...q, quota: q.max_bytes, live_bytes: q.live_bytes ?? q.bytes_used };
  }

  // ---------------------------------------------------------------- readers

  // `readers` may be a count, or a list of {pid, version, command, alive, ...}
  function readersOf(value, overflow) {
    if (typeof value === "number") return { count: value, title: "", more: false };
    if (!Array.isArray(value)) return null;
    const pids = new Set();
    const lines = [];
    for (const r of value) {
      if (r && r.pid !== undefined) pids.add(r.pid);
      if (r) {
        const parts = [`pid ${r.pid}`];
        if (r.command) parts.push(`(${r.command})`);
        if (r.version !== undefined) parts.push(`v${r.version}`);
        if (r.alive === false) parts.push("dead");
        lines.push(parts.join(" "));
      }
    }
    // a version read by more processes than its pin table lists: the count is a floor
    const more = Array.isArray(overflow) && overflow.length > 0;
    return { count: pids.size, title: lines.join("\n"), more };
  }

  async function datasetReaders(items) {
    const out = new Map();
    const missing = [];
    for (const d of items) {
      const r = readersOf(d.readers ?? d.readers_count, d.readers_overflow);
      if (r) out.set(d.name, r);
      else missing.push(d);
    }
    if (!readersInDetail || missing.length === 0) return out;
    const details = await Promise.all(missing.slice(0, MAX_DETAILS).map((d) =>
      api(`/v1/datasets/${pathOf(d.name)}`).catch(() => null)));
    details.forEach((detail, i) => {
      if (!detail) return;
      if (!("readers" in detail) && !("readers_count" in detail)) { readersInDetail = false; return; }
      const r = readersOf(detail.readers ?? detail.readers_count, detail.readers_overflow);
      if (r) out.set(missing[i].name, r);
    });
    return out;
  }

  // ---------------------------------------------------------------- tables

  function syncRows(tbody, items, key, build, update, prefix) {
    const rows = new Map();
    for (const tr of tbody.rows) rows.set(tr.dataset.key, tr);
    let prev = null;
    for (const item of items) {
      const k = key(item);
      let tr = rows.get(k);
      if (tr) rows.delete(k);
      else { tr = build(item); tr.dataset.key = k; }
      update(tr, item);
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== tr) tbody.insertBefore(tr, want);
      prev = tr;
    }
    for (const tr of rows.values()) {
      lastVersion.delete(prefix + tr.dataset.key); // a name put again starts afresh
      clearTimeout(confirming.get(tr.dataset.key));
      confirming.delete(tr.dataset.key);
      tr.remove();
    }
  }

  function flash(tr, k, version) {
    const before = lastVersion.get(k);
    lastVersion.set(k, version);
    if (before !== undefined && before !== version) {
      tr.classList.remove("flash");
      void tr.offsetWidth; // restart the animation
      tr.classList.add("flash");
    }
  }

  function cells(tr, n, numeric) {
    for (let i = 0; i < n; i += 1) tr.append(el("td", numeric.includes(i) ? { class: "num" } : {}));
    return tr.cells;
  }

  function buildDatasetRow(item) {
    const tr = el("tr");
    const c = cells(tr, 7, [1, 2, 3, 4, 5, 6]);
    c[0].className = "name";
    const button = el("button", { type: "button", class: "danger small", text: "Delete",
      "aria-label": `Delete dataset ${item.name}` });
    button.addEventListener("click", () => onDelete(tr.dataset.key, button));
    tr.append(el("td", { class: "act" }, button));
    return tr;
  }

  function updateDatasetRow(readers) {
    return (tr, d) => {
      const c = tr.cells;
      setText(c[0], d.name, d.name);
      setText(c[1], int(d.version), `retained: ${(d.versions || []).join(", ")}`);
      setText(c[2], int(d.num_rows));
      setText(c[3], bytes(d.nbytes), `${int(d.nbytes)} bytes (segment ${bytes(d.segment_bytes)})`);
      const r = readers.get(d.name);
      setText(c[4], r ? `${int(r.count)}${r.more ? "+" : ""}` : "–",
        r ? r.title : "readers not reported by this service");
      setText(c[5], since(d.updated_at), d.updated_at ? `published ${d.updated_at}` : "");
      setText(c[6], ttl(d), d.expires_at ? `expires ${d.expires_at}` : "no TTL");
      flash(tr, `d:${d.name}`, d.version);
    };
  }

  async function onDelete(name, button) {
    if (!confirming.has(name)) {
      button.textContent = "Confirm";
      button.classList.add("armed");
      confirming.set(name, setTimeout(() => {
        confirming.delete(name);
        button.textContent = "Delete";
        button.classList.remove("armed");
      }, CONFIRM_MS));
      return;
    }
    clearTimeout(confirming.get(name));
    confirming.delete(name);
    button.disabled = true;
    button.textContent = "Deleting…";
    try {
      await api(`/v1/datasets/${pathOf(name)}`, { method: "DELETE" });
      clearError();
    } catch (e) {
      if (e.status !== 401) showError(`Could not delete ${name}: ${e.message}`);
    } finally {
      button.disabled = false;
      button.textContent = "Delete";
      button.classList.remove("armed");
      refreshSoon(0);
    }
  }

  function buildStreamRow() {
    const tr = el("tr");
    const c = cells(tr, 8, [2, 3, 4, 5, 6, 7]);
    c[0].className = "name";
    c[1].append(el("span", { class: "pill" }));
    return tr;
  }

  function updateStreamRow(tr, s) {
    const c = tr.cells;
    setText(c[0], s.name, s.name);
    const state = s.state || (s.closed ? "closed" : s.details_available === false ? "–" : "open");
    const pill = c[1].firstChild;
    setText(pill, state, s.mode ? `mode: ${s.mode}` : "");
    pill.dataset.state = state.replace(/[^a-z]/g, "");
    setText(c[2], int(s.cursor ?? s.batches_written), "batches published");
    const readers = Array.isArray(s.readers) ? s.readers : null;
    setText(c[3], readers ? int(readers.length) : "–",
      readers ? readers.map((r) => `#${r.reader_id} pid ${r.pid}${r.alive === false ? " dead" : ""}`).join("\n") : "");
    const lag = readers && readers.length ? Math.max(...readers.map((r) => r.lag || 0)) : null;
    setText(c[4], readers ? int(lag ?? 0) : "–", "batches the slowest reader is behind");
    const missed = readers && readers.some((r) => r.missed !== undefined && r.missed !== null)
      ? readers.reduce((a, r) => a + (r.missed || 0), 0) : null;
    setText(c[5], readers && readers.length === 0 ? "0" : int(missed), "batches lost to overwrite mode");
    c[5].classList.toggle("warn", Boolean(missed));
    setText(c[6], bytes(s.segment_bytes));
    setText(c[7], since(s.updated_at), s.updated_at ? `updated ${s.updated_at}` : "");
  }

  // ---------------------------------------------------------------- refresh

  async function refresh() {
    if (needsToken) return;
    const [datasets, streams, usage] = await Promise.all([
      api("/v1/datasets"), api("/v1/streams"), fetchUsage(),
    ]);
    const [readers, streamDetails] = await Promise.all([
      datasetReaders(datasets.data),
      Promise.all(streams.data.slice(0, MAX_DETAILS).map((s) =>
        api(`/v1/streams/${pathOf(s.name)}`).catch(() => s))),
    ]);
    const streamRows = streams.data.map((s, i) => streamDetails[i] || s);

    syncRows($("datasets").tBodies[0], datasets.data, (d) => d.name, buildDatasetRow,
      updateDatasetRow(readers), "d:");
    $("ds-empty").hidden = datasets.data.length > 0;
    setText($("ds-count"), `${int(datasets.count)}`);
    syncRows($("streams").tBodies[0], streamRows, (s) => s.name, buildStreamRow, updateStreamRow,
      "s:");
    $("st-empty").hidden = streamRows.length > 0;
    setText($("st-count"), `${int(streams.count)}`);
    renderUsage(usage);
    setText($("updated"), `updated ${clock(new Date())}`);
    document.body.dataset.loaded = "1";
  }

  function refreshSoon(delay = 150) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(runRefresh, delay);
  }

  // one refresh at a time; a request for another while one runs makes it run again after
  async function runRefresh() {
    clearTimeout(refreshTimer);
    if (refreshing) { refreshAgain = true; return; }
    refreshing = true;
    try {
      await refresh();
      clearError();
    } catch (e) {
      if (e.status !== 401) showError(`Service unreachable or failing: ${e.message}`);
    } finally {
      refreshing = false;
    }
    if (refreshAgain) { refreshAgain = false; await runRefresh(); return; }
    clearTimeout(refreshTimer);
    if (!needsToken) refreshTimer = setTimeout(runRefresh, POLL_MS);
  }

  // ---------------------------------------------------------------- events (SSE over fetch)

  let eventsGeneration = 0;

  function setConn(state, text) {
    const c = $("conn");
    c.dataset.state = state;
    setText(c, text, state === "live" ? "events stream connected" : "events stream down: polling");
  }

  function addEvent(e) {
    const list = $("events");
    const when = new Date();
    const item = el("li", { class: `ev ${e.kind === "delete" ? "del" : "pub"}` },
      el("time", { datetime: when.toISOString(), text: clock(when) }),
      el("span", { class: "kind", text: String(e.kind) }),
      el("span", { class: "entry", text: String(e.entry_kind) }),
      el("span", { class: "name", text: String(e.name), title: String(e.name) }),
      el("span", { class: "ver", text: `v${int(e.version)}` }));
    list.prepend(item);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
    $("ev-empty").hidden = true;
  }

  function handleChunk(chunk) {
    const data = chunk.split("\n").filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).trimStart()).join("\n");
    if (!data) return;
    try { addEvent(JSON.parse(data)); } catch (_) { return; }
    refreshSoon();
  }

  async function connectEvents() {
    const generation = ++eventsGeneration;
    let backoff = 500;
    while (generation === eventsGeneration && !needsToken) {
      try {
        const r = await fetch("/v1/events", {
          headers: { Accept: "text/event-stream", ...headers() }, cache: "no-store",
          credentials: "omit",
        });
        if (r.status === 401) { askToken(Boolean(token)); break; }
        if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
        setConn("live", "live");
        backoff = 500;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done || generation !== eventsGeneration) break;
          buf += value.replace(/\r\n?/g, "\n");
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            handleChunk(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
        reader.cancel().catch(() => {});
      } catch (_) { /* reconnect below */ }
      if (generation !== eventsGeneration) return;
      setConn("off", "polling");
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  // ---------------------------------------------------------------- start

  async function start() {
    try {
      const h = await api("/healthz");
      setText($("namespace"), h.namespace, `namespace ${h.namespace} · arrowshm ${h.version}`);
      document.title = `arrowshm · ${h.namespace}`;
    } catch (e) { showError(`Service unreachable: ${e.message}`); }
    if (token) $("signout").hidden = false;
    await runRefresh();
    if (!needsToken) connectEvents();
  }

  start();
})();
