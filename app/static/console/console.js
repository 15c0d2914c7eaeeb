// The operator console (SPEC.md §6.4): citizens, partners, enterprises, venues, keys and
// a live panel (enterprises and venues where the service has them: config.json). Plain
// JavaScript, no build step, same-origin API only. The admin token is kept in this tab's
// sessionStorage and sent in the Authorization header only — never in a URL.
"use strict";
(() => {
  const TOKEN_KEY = "suishen.admin.token";
  const POLL_MS = 2000;
  const HISTORY = 60; // points on the chart (two minutes at POLL_MS)
  const COLOURS = ["#234e8c", "#2e7d32", "#b3261e", "#e0a040", "#6a1b9a", "#00838f",
    "#5d4037", "#c2185b", "#455a64", "#9e9d24"];

  const $ = (id) => document.getElementById(id);
  let config = { scenes: [], attributes: [], enterprise_attributes: [], sections: {} };
  let subject = null;
  let pollTimer = null;
  let previous = null; // last stats reading: {at_ms, counts: Map}
  let history = []; // [{at_ms, rates: Map}]

  // --- notices and API ---------------------------------------------------------------
  function notice(text, ok) {
    const el = $("notice");
    el.hidden = !text;
    el.textContent = text || "";
    el.className = "notice" + (ok ? " ok" : "");
  }

  async function describe(response) {
    try {
      const body = await response.json();
      const text = body.detail || body.title || ("HTTP " + response.status);
      // A 422 lists what is wrong with each field (never the values sent).
      const fields = (body.errors || []).map((e) =>
        (e.loc || []).filter((p) => p !== "body").join(".") + ": " + e.msg);
      return fields.length ? text + " — " + fields.join("; ") : text;
    } catch (e) {
      return "HTTP " + response.status;
    }
  }

  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    headers.Authorization = "Bearer " + (sessionStorage.getItem(TOKEN_KEY) || "");
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      options = Object.assign({}, options, { body: JSON.stringify(options.json) });
    }
    let response;
    try {
      response = await fetch(path, Object.assign({}, options, {
        headers, credentials: "omit", cache: "no-store", redirect: "error",
      }));
    } catch (e) {
      notice("The service cannot be reached (network).");
      throw e;
    }
    if (response.status === 401) {
      signOut("The admin token was refused: sign in again.");
      throw new Error("unauthorised");
    }
    return response;
  }

  const confirmAction = (text) => SuishenConfirm(text); // ../app/confirm.js

  // --- citizens ----------------------------------------------------------------------
  function renderSubject() {
    $("subject").hidden = !subject;
    if (!subject) return;
    $("subject-status").textContent = subject.status + (subject.created_at ? "" : " (new)");
    $("subject-updated").textContent = subject.updated_at ? "updated " + subject.updated_at : "";
    $("suspend").disabled = subject.status === "suspended";
    $("reactivate").disabled = subject.status === "active";
    const box = $("attrs");
    box.replaceChildren();
    for (const name of config.attributes) {
      const row = document.createElement("div");
      row.className = "attr";
      const label = document.createElement("label");
      label.htmlFor = "attr-" + name;
      label.textContent = name;
      const input = document.createElement("input");
      input.id = "attr-" + name;
      input.dataset.attr = name;
      input.value = (subject.attributes || {})[name] || "";
      row.append(label, input);
      box.append(row);
    }
  }

  /** GET ``path``: the resource, or ``fresh`` (to be created by saving) on a 404, or
   * null on another error (shown). */
  async function findOrNew(path, fresh, what) {
    const response = await api(path);
    if (response.status === 404) {
      notice("No " + what + " yet: saving creates it.", true);
      return fresh;
    }
    if (response.ok) { notice(""); return response.json(); }
    notice(await describe(response));
    return null;
  }

  async function findSubject(event) {
    event.preventDefault();
    const sub = $("find-sub").value.trim();
    if (!sub) return;
    subject = await findOrNew("/v1/admin/subjects/" + encodeURIComponent(sub),
      { sub, status: "active", attributes: {} }, "citizen " + sub);
    renderSubject();
  }

  async function saveSubject(status, attributes) {
    const response = await api("/v1/admin/subjects/" + encodeURIComponent(subject.sub), {
      method: "PUT", json: { status, attributes },
    });
    if (!response.ok) { notice(await describe(response)); return; }
    subject = await response.json();
    notice("Saved: " + subject.sub + " is " + subject.status + ".", true);
    renderSubject();
  }

  function currentAttributes() {
    const out = {};
    for (const input of document.querySelectorAll("#attrs input")) {
      if (input.value.trim()) out[input.dataset.attr] = input.value.trim();
    }
    return out;
  }

  // --- partners ----------------------------------------------------------------------
  function checkboxes(container, names, prefix) {
    for (const name of names) {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = name;
      box.id = prefix + name;
      label.append(box, " " + name);
      container.append(label);
    }
  }

  const checked = (container) =>
    Array.from(container.querySelectorAll("input:checked")).map((b) => b.value);

  async function registerPartner(event) {
    event.preventDefault();
    const scenes = checked($("partner-scenes"));
    if (!scenes.length) { notice("Choose at least one scene."); return; }
    const body = { name: $("partner-name").value.trim(), scenes,
      attributes: checked($("partner-attributes")) };
    const rate = $("partner-rate").value;
    if (rate) body.rate_limit_per_second = Number(rate);
    const response = await api("/v1/admin/partners", { method: "POST", json: body });
    if (!response.ok) { notice(await describe(response)); return; }
    const partner = await response.json();
    $("client-id").textContent = partner.client_id;
    $("client-secret").textContent = partner.client_secret;
    $("copied").hidden = true;
    $("secret-box").hidden = false;
    $("partner-form").reset();
    notice("Partner " + partner.name + " registered.", true);
  }

  async function copySecret() {
    try {
      await navigator.clipboard.writeText($("client-secret").textContent);
      $("copied").hidden = false;
    } catch (e) {
      // Clipboard refused (permissions): select the text so that Ctrl+C works.
      const range = document.createRange();
      range.selectNodeContents($("client-secret"));
      const selection = getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
  }

  function forgetSecret() {
    // Once dismissed the secret is gone from the page: it cannot be shown again.
    $("client-secret").textContent = "";
    $("client-id").textContent = "";
    $("secret-box").hidden = true;
  }

  // --- enterprises (PUT/GET /v1/admin/enterprises/{id}) -------------------------------
  let enterprise = null;
  const lines = (text) => text.split("\n").map((l) => l.trim()).filter((l) => l);

  function renderEnterprise() {
    $("ent-form").hidden = !enterprise;
    if (!enterprise) return;
    $("ent-id").textContent = enterprise.enterprise_id + (enterprise.created_at ? "" : " (new)");
    $("ent-updated").textContent = enterprise.updated_at ? "updated " + enterprise.updated_at : "";
    $("ent-name").value = enterprise.name || "";
    $("ent-uscc").value = enterprise.uscc || "";
    $("ent-status").value = enterprise.status || "active";
    for (const name of config.enterprise_attributes) {
      const value = (enterprise.attributes || {})[name];
      $("ent-attr-" + name).value = Array.isArray(value) ? value.join("\n") : (value || "");
    }
    $("ent-agents").value = (enterprise.agents || []).join("\n");
  }

  async function findEnterprise(event) {
    event.preventDefault();
    const id = $("ent-find-id").value.trim();
    if (!id) return;
    enterprise = await findOrNew("/v1/admin/enterprises/" + encodeURIComponent(id),
      { enterprise_id: id, status: "active", attributes: {}, agents: [] }, "enterprise " + id);
    renderEnterprise();
  }

  async function saveEnterprise(event) {
    event.preventDefault();
    const attributes = {};
    for (const name of config.enterprise_attributes) {
      const values = lines($("ent-attr-" + name).value);
      if (values.length) attributes[name] = values.length === 1 ? values[0] : values;
    }
    const body = { name: $("ent-name").value.trim(), uscc: $("ent-uscc").value.trim().toUpperCase(),
      status: $("ent-status").value, attributes, agents: lines($("ent-agents").value) };
    const response = await api("/v1/admin/enterprises/" +
      encodeURIComponent(enterprise.enterprise_id), { method: "PUT", json: body });
    if (!response.ok) { notice(await describe(response)); return; }
    enterprise = await response.json();
    notice("Saved: enterprise " + enterprise.enterprise_id + " is " + enterprise.status +
      " with " + enterprise.agents.length + " agent(s).", true);
    renderEnterprise();
  }

  function enterpriseFields() {
    const box = $("ent-attributes");
    for (const name of config.enterprise_attributes) {
      const label = document.createElement("label");
      label.htmlFor = "ent-attr-" + name;
      label.textContent = name;
      const input = document.createElement("textarea");
      input.id = "ent-attr-" + name;
      input.rows = 2;
      box.append(label, input);
    }
  }

  // --- venues (POST /v1/admin/venues, GET and revoke; the public poster) ---------------
  let venue = null;

  function renderVenue() {
    $("venue").hidden = !venue;
    if (!venue) return;
    const revoked = !!venue.revoked_at;
    $("venue-name").textContent = venue.name;
    $("venue-kind").textContent = venue.kind;
    $("venue-address").textContent = venue.address;
    $("venue-id").textContent = venue.venue_id;
    $("venue-status").textContent = revoked ? "revoked " + venue.revoked_at : "active";
    $("venue-status").className = revoked ? "revoked" : "";
    $("venue-enterprise").textContent = venue.enterprise_id ? "enterprise " + venue.enterprise_id : "";
    $("venue-info").replaceChildren(...Object.entries(venue.info || {}).map(([k, v]) => {
      const li = document.createElement("li");
      li.textContent = k + ": " + v;
      return li;
    }));
    // The poster is public (no token): plain links and an <img> on this origin. A
    // revoked venue has none.
    const base = "/v1/venues/" + encodeURIComponent(venue.venue_id) + "/code?format=";
    $("venue-poster-box").hidden = revoked;
    $("venue-svg").href = revoked ? "" : base + "svg";
    $("venue-png").href = revoked ? "" : base + "png";
    if (revoked) $("venue-poster").removeAttribute("src"); else $("venue-poster").src = base + "svg";
    $("venue-revoke").hidden = revoked;
  }

  async function registerVenue(event) {
    event.preventDefault();
    const info = {};
    for (const line of lines($("venue-info-in").value)) {
      const at = line.indexOf(":");
      if (at <= 0) { notice("Public information: write each line as key: value."); return; }
      info[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    const body = { name: $("venue-name-in").value.trim(), address: $("venue-address-in").value.trim(),
      kind: $("venue-kind-in").value, info };
    const enterpriseId = $("venue-enterprise-in").value.trim();
    if (enterpriseId) body.enterprise_id = enterpriseId;
    const response = await api("/v1/admin/venues", { method: "POST", json: body });
    if (!response.ok) { notice(await describe(response)); return; }
    venue = await response.json();
    $("venue-form").reset();
    notice("Venue " + venue.name + " registered: id " + venue.venue_id + ".", true);
    renderVenue();
  }

  async function findVenue(event) {
    event.preventDefault();
    const id = $("venue-find-id").value.trim();
    if (!id) return;
    const response = await api("/v1/admin/venues/" + encodeURIComponent(id));
    if (response.ok) {
      venue = await response.json();
      notice("");
    } else {
      venue = null;
      notice(response.status === 404 ? "No venue " + id + "." : await describe(response));
    }
    renderVenue();
  }

  async function revokeVenue() {
    if (!(await confirmAction("Revoke venue " + venue.name + " (" + venue.venue_id + ")? Its " +
      "printed code is refused from now on, everywhere. This cannot be undone."))) return;
    const response = await api("/v1/admin/venues/" + encodeURIComponent(venue.venue_id) +
      "/revoke", { method: "POST" });
    if (!response.ok) { notice(await describe(response)); return; }
    venue = await response.json();
    notice("Venue " + venue.venue_id + " revoked.", true);
    renderVenue();
  }

  // --- keys --------------------------------------------------------------------------
  async function loadKeys() {
    const response = await fetch("/v1/keys", { credentials: "omit", cache: "no-store" });
    if (!response.ok) { notice(await describe(response)); return; }
    const body = await response.json();
    const tbody = $("keys");
    tbody.replaceChildren();
    for (const key of body.keys || []) {
      const tr = document.createElement("tr");
      tr.dataset.kid = key.kid;
      for (const value of [key.kid, key.alg, key.status, key.not_before || "", key.not_after || ""]) {
        const td = document.createElement("td");
        td.textContent = value;
        tr.append(td);
      }
      tr.children[2].className = key.status;
      const td = document.createElement("td");
      if (key.status !== "revoked") {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "danger revoke";
        button.textContent = "Revoke…";
        button.addEventListener("click", () => revokeKey(key.kid));
        td.append(button);
      }
      tr.append(td);
      tbody.append(tr);
    }
  }

  async function rotateKeys() {
    if (!(await confirmAction("Rotate the code-signing key? A new key signs from now on; " +
      "the current one keeps verifying until its codes have expired."))) return;
    const response = await api("/v1/admin/keys/rotate", { method: "POST" });
    if (!response.ok) { notice(await describe(response)); return; }
    const body = await response.json();
    notice("Rotated: the active key is now " + body.active + ".", true);
    await loadKeys();
  }

  async function revokeKey(kid) {
    if (!(await confirmAction("Revoke key " + kid + "? Every code signed by it stops " +
      "verifying everywhere, at once. This cannot be undone."))) return;
    const response = await api("/v1/admin/keys/" + encodeURIComponent(kid) + "/revoke",
      { method: "POST" });
    if (!response.ok) { notice(await describe(response)); return; }
    notice("Key " + kid + " revoked.", true);
    await loadKeys();
  }

  // --- live panel --------------------------------------------------------------------
  async function poll() {
    clearTimeout(pollTimer);
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
    try {
      const response = await api("/v1/admin/stats");
      if (response.ok) record(await response.json());
    } catch (e) {
      // shown by api(); keep polling
    }
    pollTimer = setTimeout(poll, POLL_MS);
  }

  function record(stats) {
    const counts = new Map();
    for (const v of stats.verifications || []) counts.set(v.scene + " / " + v.reason, v.count);
    if (previous && stats.at_ms > previous.at_ms) {
      const seconds = (stats.at_ms - previous.at_ms) / 1000;
      const rates = new Map();
      for (const [key, count] of counts) {
        const before = previous.counts.get(key) || 0;
        rates.set(key, count >= before ? (count - before) / seconds : 0); // lower: a restart
      }
      history.push({ at_ms: stats.at_ms, rates });
      if (history.length > HISTORY) history.shift();
    }
    previous = { at_ms: stats.at_ms, counts };
    renderRates(counts);
    drawChart();
  }

  function renderRates(counts) {
    const last = history.length ? history[history.length - 1].rates : new Map();
    const tbody = $("rates");
    tbody.replaceChildren();
    for (const [key, count] of counts) {
      const [scene, reason] = key.split(" / ");
      const tr = document.createElement("tr");
      tr.dataset.series = key;
      for (const value of [scene, reason, (last.get(key) || 0).toFixed(1), String(count)]) {
        const td = document.createElement("td");
        td.textContent = value;
        tr.append(td);
      }
      tbody.append(tr);
    }
  }

  function drawChart() {
    const canvas = $("chart");
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, left = 44, right = 190, top = 12, bottom = 24;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, w, h);
    const keys = new Set();
    let max = 1;
    for (const point of history) {
      for (const [key, rate] of point.rates) { keys.add(key); max = Math.max(max, rate); }
    }
    max *= 1.1;
    const plotW = w - left - right, plotH = h - top - bottom;
    ctx.strokeStyle = "#999";
    ctx.fillStyle = "#333";
    ctx.font = "12px sans-serif";
    ctx.beginPath();
    ctx.moveTo(left, top);
    ctx.lineTo(left, top + plotH);
    ctx.lineTo(left + plotW, top + plotH);
    ctx.stroke();
    ctx.fillText(max.toFixed(1), 4, top + 10);
    ctx.fillText("0", 4, top + plotH);
    ctx.fillText("per second, last " + (HISTORY * POLL_MS / 1000) + " s", left, h - 6);
    let index = 0;
    for (const key of [...keys].sort()) {
      const colour = COLOURS[index % COLOURS.length];
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2;
      ctx.beginPath();
      history.forEach((point, i) => {
        const x = left + (plotW * (i + HISTORY - history.length)) / (HISTORY - 1);
        const y = top + plotH - (plotH * (point.rates.get(key) || 0)) / max;
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
      ctx.fillStyle = colour;
      ctx.fillRect(w - right + 10, top + index * 18, 10, 10);
      ctx.fillStyle = "#333";
      ctx.fillText(key, w - right + 26, top + 10 + index * 18);
      index += 1;
    }
    ctx.lineWidth = 1;
  }

  // --- tabs, sign-in -----------------------------------------------------------------
  function selectTab(name) {
    for (const tab of document.querySelectorAll(".tab")) {
      const on = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      $("tab-" + tab.dataset.tab).hidden = !on;
    }
    if (name === "keys") loadKeys();
  }

  async function signIn(event) {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("admin-token").value.trim());
    $("admin-token").value = "";
    let response;
    try { response = await api("/v1/admin/stats"); } catch (e) { return; }
    if (!response.ok) { signOut(await describe(response)); return; }
    notice("");
    showConsole();
  }

  function showConsole() {
    $("signin").hidden = true;
    $("console").hidden = false;
    $("signout").hidden = false;
    selectTab("citizens");
    previous = null;
    history = [];
    poll();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(pollTimer);
    subject = null;
    enterprise = null;
    venue = null;
    renderEnterprise();
    renderVenue();
    forgetSecret();
    $("console").hidden = true;
    $("signout").hidden = true;
    $("signin").hidden = false;
    notice(message || "");
  }

  async function start() {
    try {
      const response = await fetch("config.json", { credentials: "omit", cache: "no-store" });
      if (response.ok) config = await response.json();
    } catch (e) {
      notice("The service cannot be reached (network).");
    }
    checkboxes($("partner-scenes"), config.scenes, "scene-");
    checkboxes($("partner-attributes"), config.attributes, "attribute-");
    enterpriseFields();
    const sections = config.sections || {};
    document.querySelector('[data-tab="enterprises"]').hidden = !sections.enterprises;
    document.querySelector('[data-tab="venues"]').hidden = !sections.venues;
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", () => signOut(""));
    $("find-form").addEventListener("submit", findSubject);
    $("suspend").addEventListener("click", () => saveSubject("suspended", currentAttributes()));
    $("reactivate").addEventListener("click", () => saveSubject("active", currentAttributes()));
    $("attrs-form").addEventListener("submit", (event) => {
      event.preventDefault();
      saveSubject(subject.status, currentAttributes());
    });
    $("partner-form").addEventListener("submit", registerPartner);
    $("copy-secret").addEventListener("click", copySecret);
    $("secret-done").addEventListener("click", forgetSecret);
    $("rotate").addEventListener("click", rotateKeys);
    $("ent-find-form").addEventListener("submit", findEnterprise);
    $("ent-form").addEventListener("submit", saveEnterprise);
    $("venue-form").addEventListener("submit", registerVenue);
    $("venue-find-form").addEventListener("submit", findVenue);
    $("venue-revoke").addEventListener("click", revokeVenue);
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => selectTab(tab.dataset.tab));
    }
    document.body.dataset.ready = "true";
    if (sessionStorage.getItem(TOKEN_KEY)) showConsole(); else signOut("");
  }

  document.addEventListener("DOMContentLoaded", start);
})();
