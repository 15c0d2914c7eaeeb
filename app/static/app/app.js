// The citizen page (SPEC.md §6.4): sign in, the live code with its countdown, who read my
// code, my journeys, my check-ins, my devices. Plain JavaScript, no build step; everything same-origin. The token is
// kept in sessionStorage only and sent in the Authorization header, never in a URL.
"use strict";
(() => {
  const TOKEN_KEY = "suishen.citizen.token";
  const OIDC_KEY = "suishen.citizen.oidc";
  // The rest of the sign-in (sessionStorage, JSON): expires_at (ms, this device's clock
  // when the token came + expires_in), lifetime_ms, and with OIDC token_endpoint,
  // end_session_endpoint, refresh_token, id_token.
  const SESSION_KEY = "suishen.citizen.session";
  // A notice to show once after the provider's logout sends the browser back here.
  const AFTER_KEY = "suishen.citizen.after";
  const RETRY_MS = 5000;
  const LANG_KEY = "suishen.lang";
  // A device clock further than this from the service's is "obviously wrong": codes are
  // judged on the service's time (skew 30 s), so the page says so. The countdown itself
  // never depends on the device clock (it counts on performance.now()).
  const CLOCK_WARN_MS = 120000;

  const T = {
    zh: {
      "title": "随申码",
      "signin.title": "登录",
      "signin.dev_hint": "开发环境：输入市民编号登录（开发身份提供方）。",
      "signin.sub": "市民编号",
      "signin.button": "登录",
      "signin.oidc": "用城市统一身份认证登录",
      "signin.none": "此服务未配置登录方式。",
      "tab.code": "我的码",
      "tab.reads": "谁读了我的码",
      "tab.devices": "我的设备",
      "tab.journeys": "我的行程",
      "journeys.empty": "还没有乘车记录。",
      "journeys.fare": "票价",
      "journeys.yuan": "元",
      "journeys.offline": "离线闸机",
      "journeys.online": "在线",
      "journey.open": "行程中", "journey.complete": "已完成",
      "journey.incomplete": "未出站（按最高票价）",
      "journey.exit_without_entry": "无进站记录（按最高票价）",
      "journey.single_tap": "单次乘车",
      "tab.checkins": "我的签到",
      "checkins.empty": "还没有签到记录。",
      "checkins.gone": "已注销的场所",
      "venue.venue": "场所", "venue.shop": "商户",
      "code.refresh_in": "刷新倒计时",
      "code.seconds": "秒",
      "code.brightness": "出示时请调高屏幕亮度。",
      "code.refresh": "立即刷新",
      "code.alt": "随申码二维码",
      "code.offline": "离线码 · 当前无网络",
      "err.no_credentials": "当前无网络，本设备也没有可用的离线凭证。请联网后再试。",
      "reads.empty": "还没有人读过您的码。",
      "reads.more": "更多",
      "devices.empty": "没有登记的设备。",
      "devices.valid_until": "凭证有效期至",
      "devices.this": "本机",
      "devices.remove": "移除",
      "devices.confirm": "移除设备“{name}”？它的离线码将立即失效，无法恢复。",
      "devices.confirm_this": "移除本机（“{name}”）？本机的离线码将立即失效，离线密钥也将从本浏览器删除。",
      "devices.removed": "设备已移除。",
      "err.remove_device": "无法移除设备，请稍后再试。",
      "device.active": "使用中", "device.revoked": "已移除",
      "confirm.cancel": "取消",
      "confirm.ok": "确定",
      "signout": "退出登录",
      "err.suspended": "您的码已被暂停使用，请联系服务窗口。",
      "err.signed_out": "您已退出登录或登录已过期，请重新登录。",
      "err.offline": "网络不可用，正在重试……",
      "err.service": "服务暂时不可用，正在重试……",
      "err.clock": "您设备的时间明显不准确，请在系统设置中校准时间。",
      "err.expired": "码已过期，恢复网络后将自动刷新。",
      "err.signin": "登录失败，请重试。",
      "err.oidc_state": "登录请求已失效，请重新登录。",
      "err.session_ended": "登录已到期，您已退出。请重新登录。",
      "signout.done": "您已退出登录。",
      "result.ok": "通过",
      "reason.expired": "已过期", "reason.revoked": "已停用", "reason.replayed": "重复使用",
      "reason.scene_not_allowed": "场景不允许", "reason.passback": "重复进站",
      "reason.no_entry": "无进站记录", "reason.bad_signature": "签名无效",
      "reason.unknown_key": "密钥未知", "reason.malformed": "格式错误",
      "reason.not_yet_valid": "尚未生效", "reason.unsupported_version": "版本不支持",
      "scene.metro": "地铁", "scene.bus": "公交", "scene.ferry": "轮渡", "scene.hospital": "医院",
      "scene.pharmacy": "药店", "scene.library": "图书馆", "scene.venue": "场所",
      "scene.government": "政务窗口",
    },
    en: {
      "title": "Suishen code",
      "signin.title": "Sign in",
      "signin.dev_hint": "Development: sign in with a citizen id (development identity provider).",
      "signin.sub": "Citizen id",
      "signin.button": "Sign in",
      "signin.oidc": "Sign in with the city identity service",
      "signin.none": "No sign-in is configured for this service.",
      "tab.code": "My code",
      "tab.reads": "Who read my code",
      "tab.devices": "My devices",
      "tab.journeys": "My journeys",
      "journeys.empty": "No journeys yet.",
      "journeys.fare": "fare",
      "journeys.yuan": "yuan",
      "journeys.offline": "offline gate",
      "journeys.online": "online",
      "journey.open": "in progress", "journey.complete": "complete",
      "journey.incomplete": "no exit (maximum fare)",
      "journey.exit_without_entry": "no entry recorded (maximum fare)",
      "journey.single_tap": "single ride",
      "tab.checkins": "My check-ins",
      "checkins.empty": "No check-ins yet.",
      "checkins.gone": "a venue no longer registered",
      "venue.venue": "venue", "venue.shop": "shop",
      "code.refresh_in": "New code in",
      "code.seconds": "s",
      "code.brightness": "Turn your screen brightness up when you show the code.",
      "code.refresh": "Refresh now",
      "code.alt": "Suishen QR code",
      "code.offline": "Offline code · no network",
      "err.no_credentials": "No network, and this device has no offline credentials left. Please go online.",
      "reads.empty": "Nobody has read your code yet.",
      "reads.more": "More",
      "devices.empty": "No registered devices.",
      "devices.valid_until": "credentials valid until",
      "devices.this": "this browser",
      "devices.remove": "Remove",
      "devices.confirm": "Remove the device “{name}”? Its offline codes stop working at once; this cannot be undone.",
      "devices.confirm_this": "Remove this browser (“{name}”)? Its offline codes stop working at once and its offline keys are deleted from this browser.",
      "devices.removed": "The device has been removed.",
      "err.remove_device": "The device could not be removed. Please try again later.",
      "device.active": "active", "device.revoked": "removed",
      "confirm.cancel": "Cancel",
      "confirm.ok": "Confirm",
      "signout": "Sign out",
      "err.suspended": "Your code is suspended. Please contact a service counter.",
      "err.signed_out": "You are signed out or your sign-in has expired. Please sign in again.",
      "err.offline": "No network. Retrying…",
      "err.service": "The service is busy. Retrying…",
      "err.clock": "Your device's clock is clearly wrong. Please correct it in the system settings.",
      "err.expired": "The code has expired; it refreshes when the network is back.",
      "err.signin": "Sign-in failed. Please try again.",
      "err.oidc_state": "That sign-in request is no longer valid. Please sign in again.",
      "err.session_ended": "Your sign-in has ended and you are signed out. Please sign in again.",
      "signout.done": "You have signed out.",
      "result.ok": "accepted",
      "reason.expired": "expired", "reason.revoked": "suspended or revoked",
      "reason.replayed": "used twice", "reason.scene_not_allowed": "not allowed here",
      "reason.passback": "entry already open", "reason.no_entry": "no entry recorded",
      "reason.bad_signature": "bad signature", "reason.unknown_key": "unknown key",
      "reason.malformed": "malformed", "reason.not_yet_valid": "not yet valid",
      "reason.unsupported_version": "unsupported version",
      "scene.metro": "metro", "scene.bus": "bus", "scene.ferry": "ferry",
      "scene.hospital": "hospital", "scene.pharmacy": "pharmacy", "scene.library": "library",
      "scene.venue": "venue", "scene.government": "government service",
    },
  };

  const $ = (id) => document.getElementById(id);
  let lang = localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh";
  let config = { dev_sign_in: false, oidc: null, sections: {} };
  let refreshTimer = null;
  let tickTimer = null;
  let refreshAt = 0; // performance.now() time of the next refresh
  let expireAt = 0; // performance.now() time the shown code expires
  let qrUrl = null;
  let serial = 0;
  let noticeKey = null;
  let clockWrong = false;
  let devices = null;
  let offlineMode = false;
  // An offline code's lifetime at a gate is 30 s (SUISHEN_OFFLINE_CODE_LIFETIME_SECONDS);
  // the page makes a new one every OFFLINE_EVERY_MS, and retries the network as often.
  const OFFLINE_EVERY_MS = 5000;

  const t = (key) => T[lang][key] || T.zh[key] || key;

  class PageError extends Error {
    constructor(kind) { super(kind); this.kind = kind; }
  }

  // --- language --------------------------------------------------------------------
  function applyLang() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    $("lang").textContent = lang === "zh" ? "English" : "中文";
    $("qr").alt = t("code.alt");
    renderNotice();
    for (const pager of Object.values(pagers)) pager.render();
    renderDevices();
  }

  // --- notices ---------------------------------------------------------------------
  function showNotice(key) { noticeKey = key; renderNotice(); }
  function clearNotice(keys) {
    if (!keys || keys.includes(noticeKey)) { noticeKey = null; renderNotice(); }
  }
  function renderNotice() {
    const el = $("notice");
    const key = noticeKey || (clockWrong ? "err.clock" : null);
    el.hidden = !key;
    el.textContent = key ? t(key) : "";
    el.className = "notice" + (key && key.startsWith("err.") && key !== "err.clock" ? " error" : "");
    el.dataset.key = key || "";
  }

  // --- API -------------------------------------------------------------------------
  function checkClock(response) {
    const date = Date.parse(response.headers.get("Date") || "");
    if (Number.isNaN(date)) return;
    const wrong = Math.abs(date - Date.now()) > CLOCK_WARN_MS;
    if (wrong !== clockWrong) { clockWrong = wrong; renderNotice(); }
  }

  async function api(path, options = {}, retried = false) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = Object.assign({}, options.headers || {});
    if (token) headers.Authorization = "Bearer " + token;
    let response;
    try {
      response = await fetch(path, Object.assign({}, options, {
        headers, credentials: "omit", cache: "no-store", redirect: "error",
      }));
    } catch (e) {
      throw new PageError("offline");
    }
    checkClock(response);
    if (response.status === 401) {
      // Refused before the page expected (a clock, a revocation): one refresh, one retry.
      if (!retried && session().refresh_token && (await refreshSession())) {
        return api(path, options, true);
      }
      if (sessionStorage.getItem(TOKEN_KEY)) signOut("err.signed_out");
      throw new PageError("signed_out");
    }
    return response;
  }

  // --- the sign-in's lifetime: refresh before expiry, or a clear "signed out" ---------
  let sessionTimer = null;
  let refreshing = null;
  const session = () => JSON.parse(sessionStorage.getItem(SESSION_KEY) || "{}");

  /** Keep a token response (RFC 6749 §5.1) and plan what happens before it expires. */
  function saveTokens(body, extra) {
    const s = Object.assign(session(), extra || {});
    const life = Number(body.expires_in);
    s.lifetime_ms = life > 0 ? life * 1000 : null;
    s.expires_at = life > 0 ? Date.now() + life * 1000 : null;
    if (body.refresh_token) s.refresh_token = body.refresh_token; // rotated, or kept
    if (body.id_token) s.id_token = body.id_token;
    sessionStorage.setItem(TOKEN_KEY, body.access_token);
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
    planSession();
  }

  function planSession() {
    clearTimeout(sessionTimer);
    const s = session();
    if (!s.expires_at || !sessionStorage.getItem(TOKEN_KEY)) return;
    const left = s.expires_at - Date.now();
    if (s.refresh_token && s.token_endpoint) {
      // A minute early, or a quarter of a short lifetime.
      const lead = Math.min(60000, (s.lifetime_ms || 0) / 4);
      sessionTimer = setTimeout(refreshSession, Math.max(0, left - lead));
    } else {
      sessionTimer = setTimeout(sessionEnded, Math.max(0, left - 1000));
    }
  }

  function sessionEnded() {
    // Offline, the offline code needs no token: it stays until the network is back
    // (the first refused call then signs out).
    if (offlineMode || !navigator.onLine) { sessionTimer = setTimeout(sessionEnded, RETRY_MS); return; }
    signOut("err.session_ended");
  }

  /** The refresh_token grant (RFC 6749 §6) at the provider; true when a new access
   * token is in. One at a time: a timer and a refused call may both ask. */
  function refreshSession() {
    if (!refreshing) refreshing = doRefresh().finally(() => { refreshing = null; });
    return refreshing;
  }

  async function doRefresh() {
    clearTimeout(sessionTimer);
    const s = session();
    if (!s.refresh_token || !s.token_endpoint || !config.oidc) return false;
    let response;
    try {
      response = await fetch(s.token_endpoint, {
        method: "POST", credentials: "omit", cache: "no-store", redirect: "error",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: "refresh_token", refresh_token: s.refresh_token,
          client_id: config.oidc.client_id,
        }).toString(),
      });
    } catch (e) {
      sessionTimer = setTimeout(refreshSession, RETRY_MS); // no network: try again
      return false;
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (response.ok && body && body.access_token) {
      saveTokens(body);
      return true;
    }
    if (response.status >= 500 && Date.now() < s.expires_at) {
      sessionTimer = setTimeout(refreshSession, RETRY_MS); // the provider is busy
      return false;
    }
    signOut("err.session_ended"); // invalid_grant: the provider ended the sign-in
    return false;
  }

  async function problemType(response) {
    try { return String((await response.json()).type || ""); } catch (e) { return ""; }
  }

  // --- the code --------------------------------------------------------------------
  function blankCode() {
    setOffline(false);
    $("code-box").classList.add("blank");
    $("countdown").textContent = "--";
    if (qrUrl) { URL.revokeObjectURL(qrUrl); qrUrl = null; }
    $("qr").removeAttribute("src");
    $("qr").dataset.expiresAt = "";
  }

  function schedule(ms) {
    clearTimeout(refreshTimer);
    refreshAt = performance.now() + ms;
    refreshTimer = setTimeout(loadCode, ms);
  }

  function tick() {
    const now = performance.now();
    if (qrUrl && now >= expireAt) { blankCode(); showNotice("err.expired"); }
    if (qrUrl || offlineMode) {
      const left = Math.max(0, Math.ceil((Math.min(refreshAt, expireAt) - now) / 1000));
      $("countdown").textContent = String(left);
    }
  }

  async function loadCode() {
    clearTimeout(refreshTimer);
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
    let response;
    try {
      response = await api("/v1/codes?format=svg", { method: "POST" });
    } catch (e) {
      if (e.kind === "offline") {
        // Still valid: keep the online code until it is due for refresh; then offline.
        if (!qrUrl || performance.now() >= refreshAt) await showOfflineCode();
        else showNotice("err.offline");
        schedule(OFFLINE_EVERY_MS);
      }
      return;
    }
    if (response.status === 403 && (await problemType(response)).endsWith("/suspended")) {
      blankCode();
      $("suspended").hidden = false;
      clearNotice(["err.offline", "err.service", "err.expired"]);
      schedule(10000); // a reactivation shows without a reload
      return;
    }
    if (!response.ok) { showNotice("err.service"); schedule(5000); return; }
    const blob = await response.blob();
    const expiresHeader = response.headers.get("X-Code-Expires-At") || "";
    const expires = Date.parse(expiresHeader);
    const serverNow = Date.parse(response.headers.get("Date") || "");
    const refresh = Date.parse(response.headers.get("X-Code-Refresh-After") || "");
    // Durations from the service's own clock, counted on this device's monotonic clock:
    // a wrong device clock neither stops nor hurries the refresh. (Date has whole
    // seconds, so the refresh may come up to a second late: still well before expiry.)
    const base = Number.isNaN(serverNow) ? Date.now() : serverNow;
    const lifeMs = Math.max(2000, expires - base);
    const refreshMs = Number.isNaN(refresh) ? lifeMs / 2 : Math.max(1000, refresh - base);
    const now = performance.now();
    expireAt = now + lifeMs;
    if (qrUrl) URL.revokeObjectURL(qrUrl);
    qrUrl = URL.createObjectURL(blob);
    const img = $("qr");
    img.src = qrUrl;
    serial += 1;
    img.dataset.serial = String(serial);
    img.dataset.expiresAt = expiresHeader;
    setOffline(false);
    $("code-box").classList.remove("blank");
    $("suspended").hidden = true;
    clearNotice(["err.offline", "err.service", "err.expired", "err.no_credentials"]);
    schedule(Math.min(refreshMs, lifeMs - 1000));
    tick();
  }

  // --- offline: a code made in the browser (offline.js) ------------------------------
  function setOffline(on) {
    offlineMode = on;
    $("qr").hidden = on;
    $("qr-offline").hidden = !on;
    $("offline-badge").hidden = !on;
    document.body.dataset.mode = on ? "offline" : "online";
  }

  function drawQr(canvas, text) {
    // Alphanumeric mode at level M, as the service's own QR images (codecs/qr.py).
    const qr = qrcode(0, "M");
    qr.addData(text, "Alphanumeric");
    qr.make();
    const modules = qr.getModuleCount(), quiet = 4, scale = 6;
    const size = (modules + 2 * quiet) * scale;
    canvas.width = size;
    canvas.height = size;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, size, size);
    ctx.fillStyle = "#000";
    for (let r = 0; r < modules; r++) {
      for (let c = 0; c < modules; c++) {
        if (qr.isDark(r, c)) ctx.fillRect((c + quiet) * scale, (r + quiet) * scale, scale, scale);
      }
    }
  }

  const offlineAvailable = () => !!(config.sections.offline && window.isSecureContext &&
    window.crypto && crypto.subtle && window.indexedDB && typeof SuishenOffline === "object");

  async function showOfflineCode() {
    let made = null;
    try { made = offlineAvailable() ? await SuishenOffline.code() : null; } catch (e) { made = null; }
    if (!made) {
      blankCode();
      showNotice(offlineAvailable() ? "err.no_credentials" : "err.offline");
      return;
    }
    if (qrUrl) { URL.revokeObjectURL(qrUrl); qrUrl = null; }
    $("qr").removeAttribute("src");
    drawQr($("qr-offline"), made.text);
    setOffline(true);
    serial += 1;
    $("qr-offline").dataset.serial = String(serial);
    $("code-box").classList.remove("blank");
    clearNotice(["err.offline", "err.service", "err.expired", "err.no_credentials"]);
    expireAt = performance.now() + 30000;
  }

  function tokenSub(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return String(JSON.parse(atob(part + "===".slice((part.length + 3) % 4))).sub || "");
    } catch (e) {
      return "";
    }
  }

  async function prepareOffline() {
    if (!offlineAvailable()) return;
    try {
      if (navigator.serviceWorker) await navigator.serviceWorker.register("sw.js");
      const token = sessionStorage.getItem(TOKEN_KEY) || "";
      await SuishenOffline.ensure(api, tokenSub(token), "browser " + (navigator.platform || ""));
      document.body.dataset.offline = "ready";
    } catch (e) {
      // No network, or the service refused: the page keeps whatever credentials it has.
      document.body.dataset.offline = (await SuishenOffline.hasCredentials()) ? "ready" : "none";
    }
  }

  // --- paginated lists: who read my code, my journeys ---------------------------------
  const when = (iso) => (iso ? new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "");

  // A list the service pages newest first with ?limit=&before=, answering
  // {"items": [...], "next_before": ...}; `row(item)` makes one <li>.
  function pager(path, listId, emptyId, moreId, row) {
    const state = { items: [], next: null };
    state.load = async (more) => {
      const query = more && state.next ? "&before=" + encodeURIComponent(state.next) : "";
      let response;
      try { response = await api(path + "?limit=20" + query); } catch (e) { return; }
      if (!response.ok) return;
      const page = await response.json();
      state.items = more ? state.items.concat(page.items || []) : (page.items || []);
      state.next = page.next_before || null;
      state.render();
    };
    state.render = () => {
      $(listId).replaceChildren(...state.items.map(row));
      $(emptyId).hidden = state.items.length > 0;
      $(moreId).hidden = !state.next;
    };
    state.clear = () => { state.items = []; state.next = null; state.render(); };
    return state;
  }

  function readRow(item) {
    const li = document.createElement("li");
    const scene = t("scene." + item.scene);
    const result = item.valid ? t("result.ok") : t("reason." + item.result);
    const parts = [when(item.verified_at), item.partner, scene, item.checkpoint, item.direction,
      result];
    li.textContent = parts.filter((p) => p).join(" · ");
    if (!item.valid) li.className = "bad";
    return li;
  }

  // Money is integer fen (SPEC.md §6.2): shown as yuan with two decimals, no float.
  const yuan = (fen) => Math.floor(fen / 100) + "." + String(fen % 100).padStart(2, "0");

  function span(className, text) {
    const el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    return el;
  }

  function journeyRow(item) {
    const li = document.createElement("li");
    li.className = "journey";
    li.dataset.status = item.status;
    li.dataset.fare = String(item.fare);
    const head = document.createElement("div");
    head.append(span("network", t("scene." + item.network)),
      span("status", t("journey." + item.status)),
      span("fare", t("journeys.fare") + " " + yuan(item.fare) + " " + t("journeys.yuan")),
      span("badge " + (item.offline ? "offline" : "online"),
        t(item.offline ? "journeys.offline" : "journeys.online")));
    const stops = document.createElement("div");
    stops.className = "stops";
    const entry = [item.entry_station, when(item.entered_at)].filter((p) => p).join(" ");
    const exit = [item.exit_station, when(item.exited_at)].filter((p) => p).join(" ");
    stops.textContent = [entry, exit].filter((p) => p).join(" → ");
    li.append(head, stops);
    return li;
  }

  function checkinRow(item) {
    const li = document.createElement("li");
    li.className = "checkin";
    const v = item.venue;
    if (v) li.dataset.venueId = v.venue_id;
    const head = document.createElement("div");
    head.append(span("venue-name", v ? v.name : t("checkins.gone")));
    if (v) head.append(span("badge", t("venue." + v.kind)));
    const rest = document.createElement("div");
    rest.className = "stops";
    rest.textContent = [v ? v.address : "", when(item.checked_in_at)].filter((p) => p).join(" · ");
    li.append(head, rest);
    return li;
  }

  const pagers = {
    reads: pager("/v1/me/verifications", "reads", "reads-empty", "reads-more", readRow),
    journeys: pager("/v1/me/journeys", "journeys", "journeys-empty", "journeys-more",
      journeyRow),
    checkins: pager("/v1/me/checkins", "checkins", "checkins-empty", "checkins-more",
      checkinRow),
  };

  // --- my devices (only when the service has GET /v1/devices) -----------------------
  let thisDevice = null; // this browser's device id, from offline.js's IndexedDB

  async function loadDevices() {
    let response;
    try { response = await api("/v1/devices"); } catch (e) { return; }
    if (!response.ok) return;
    const body = await response.json();
    try {
      thisDevice = typeof SuishenOffline === "object" ? await SuishenOffline.deviceId() : null;
    } catch (e) {
      thisDevice = null;
    }
    devices = body.devices || [];
    renderDevices();
  }

  function renderDevices() {
    const list = $("devices");
    list.replaceChildren();
    if (!devices) return;
    for (const d of devices) {
      const li = document.createElement("li");
      li.className = "device";
      li.dataset.deviceId = d.device_id;
      li.dataset.status = d.status;
      const mine = d.device_id === thisDevice;
      const until = d.status === "active" ? d.credentials_valid_until : "";
      const parts = [d.name, mine ? t("devices.this") : "", t("device." + d.status),
        until ? t("devices.valid_until") + " " + when(until) : ""];
      li.append(span("what", parts.filter((p) => p).join(" · ")));
      if (d.status === "active") {
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "remove";
        remove.textContent = t("devices.remove");
        remove.addEventListener("click", () => removeDevice(d, mine));
        li.append(remove);
      }
      list.append(li);
    }
    $("devices-empty").hidden = devices.length > 0;
  }


  async function removeDevice(device, mine) {
    const text = t(mine ? "devices.confirm_this" : "devices.confirm").replace("{name}", device.name);
    if (!(await SuishenConfirm(text))) return;
    let response;
    try {
      response = await api("/v1/devices/" + encodeURIComponent(device.device_id),
        { method: "DELETE" });
    } catch (e) {
      if (e.kind === "offline") showNotice("err.remove_device");
      return;
    }
    // 404: already gone. Either way this browser's keys for it are of no more use.
    if (!response.ok && response.status !== 404) { showNotice("err.remove_device"); return; }
    if (mine) {
      await SuishenOffline.wipe();
      document.body.dataset.offline = "none";
    }
    showNotice("devices.removed");
    await loadDevices();
  }

  // --- tabs --------------------------------------------------------------------------
  function selectTab(name) {
    for (const tab of document.querySelectorAll(".tab")) {
      const on = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      $("tab-" + tab.dataset.tab).hidden = !on;
    }
    clearNotice(["devices.removed"]);
    if (pagers[name]) pagers[name].load(false);
    if (name === "devices") loadDevices();
  }

  // --- sign-in -----------------------------------------------------------------------
  function b64url(bytes) {
    let s = "";
    for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  const randomText = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
  const redirectUri = () => location.origin + location.pathname;

  async function discovery() {
    const response = await fetch(config.oidc.issuer + "/.well-known/openid-configuration",
      { credentials: "omit", cache: "no-store" });
    if (!response.ok) throw new PageError("signin");
    return response.json();
  }

  // OIDC authorisation code flow with PKCE (RFC 7636, S256) as a public client.
  async function startOidc() {
    try {
      const meta = await discovery();
      const verifier = randomText(32);
      const challenge = b64url(await crypto.subtle.digest("SHA-256",
        new TextEncoder().encode(verifier)));
      const state = randomText(16);
      sessionStorage.setItem(OIDC_KEY, JSON.stringify({
        state, verifier, token_endpoint: meta.token_endpoint,
        end_session_endpoint: meta.end_session_endpoint || null,
      }));
      const url = new URL(meta.authorization_endpoint);
      url.search = new URLSearchParams({
        response_type: "code", client_id: config.oidc.client_id,
        redirect_uri: redirectUri(), scope: config.oidc.scope, state,
        code_challenge: challenge, code_challenge_method: "S256",
      }).toString();
      location.assign(url.toString());
    } catch (e) {
      showNotice("err.signin");
    }
  }

  async function finishOidc(params) {
    // The code leaves the address bar (and the history) before anything else happens.
    history.replaceState(null, "", location.pathname);
    const saved = JSON.parse(sessionStorage.getItem(OIDC_KEY) || "null");
    sessionStorage.removeItem(OIDC_KEY);
    if (!saved || !params.get("state") || saved.state !== params.get("state")) {
      showNotice("err.oidc_state");
      return false;
    }
    try {
      const response = await fetch(saved.token_endpoint, {
        method: "POST", credentials: "omit", cache: "no-store", redirect: "error",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: "authorization_code", code: params.get("code"),
          redirect_uri: redirectUri(), client_id: config.oidc.client_id,
          code_verifier: saved.verifier,
        }).toString(),
      });
      const body = await response.json();
      if (!response.ok || !body.access_token) throw new PageError("signin");
      sessionStorage.removeItem(SESSION_KEY);
      saveTokens(body, { token_endpoint: saved.token_endpoint,
        end_session_endpoint: saved.end_session_endpoint });
      return true;
    } catch (e) {
      showNotice("err.signin");
      return false;
    }
  }

  async function devSignIn(event) {
    event.preventDefault();
    const sub = $("dev-sub").value.trim();
    if (!sub) return;
    $("dev-submit").disabled = true;
    try {
      const response = await fetch("/v1/dev/citizen-token", {
        method: "POST", credentials: "omit", cache: "no-store",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ sub }),
      });
      if (!response.ok) throw new PageError("signin");
      sessionStorage.removeItem(SESSION_KEY);
      saveTokens(await response.json());
      clearNotice();
      showSignedIn();
    } catch (e) {
      showNotice("err.signin");
    } finally {
      $("dev-submit").disabled = false;
    }
  }

  function showSignIn() {
    $("signed-in").hidden = true;
    $("signin").hidden = false;
    $("dev-form").hidden = !config.dev_sign_in;
    $("oidc-box").hidden = !config.oidc;
    $("no-signin").hidden = config.dev_sign_in || !!config.oidc;
  }

  function showSignedIn() {
    $("signin").hidden = true;
    $("signed-in").hidden = false;
    document.querySelector('[data-tab="devices"]').hidden = !config.sections.devices;
    document.querySelector('[data-tab="reads"]').hidden = !config.sections.verifications;
    document.querySelector('[data-tab="journeys"]').hidden = !config.sections.journeys;
    document.querySelector('[data-tab="checkins"]').hidden = !config.sections.checkins;
    selectTab("code");
    loadCode();
    prepareOffline();
  }

  function signOut(key, forget) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(SESSION_KEY);
    clearTimeout(sessionTimer);
    // Signing out on purpose forgets this device's offline keys and credentials (the
    // next citizen on this browser must not show them); an expired sign-in keeps them.
    const wiped = forget && typeof SuishenOffline === "object"
      ? SuishenOffline.wipe().catch(() => {}) : Promise.resolve();
    clearTimeout(refreshTimer);
    blankCode();
    for (const p of Object.values(pagers)) p.clear();
    devices = null;
    renderDevices();
    $("suspended").hidden = true;
    showNotice(key || null);
    showSignIn();
    return wiped;
  }

  /** Sign out on purpose: the tokens and this browser's offline keys go; with OIDC, the
   * provider's session too (RP-Initiated Logout: end_session_endpoint, when the
   * discovery document names one), which sends the browser back to /app/. */
  async function logout() {
    const s = session();
    await signOut(null, true);
    if (!config.oidc || !s.end_session_endpoint) { showNotice("signout.done"); return; }
    sessionStorage.setItem(AFTER_KEY, "signout.done");
    const target = new URL(s.end_session_endpoint);
    const fields = { client_id: config.oidc.client_id, post_logout_redirect_uri: redirectUri() };
    if (target.origin === new URL(config.oidc.issuer).origin && s.id_token) {
      // POST (allowed by the page's form-action): the id_token_hint stays out of every
      // URL, history and log.
      const form = document.createElement("form");
      form.method = "post";
      form.action = target.toString();
      fields.id_token_hint = s.id_token;
      for (const [name, value] of Object.entries(fields)) {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        form.append(input);
      }
      document.body.append(form);
      form.submit();
    } else {
      for (const [name, value] of Object.entries(fields)) target.searchParams.set(name, value);
      location.assign(target.toString());
    }
  }

  // --- start -------------------------------------------------------------------------
  async function start() {
    applyLang();
    $("lang").addEventListener("click", () => {
      lang = lang === "zh" ? "en" : "zh";
      localStorage.setItem(LANG_KEY, lang);
      applyLang();
    });
    $("dev-form").addEventListener("submit", devSignIn);
    $("oidc-submit").addEventListener("click", startOidc);
    $("signout").addEventListener("click", logout);
    $("refresh").addEventListener("click", loadCode);
    for (const [name, p] of Object.entries(pagers)) {
      $(name + "-more").addEventListener("click", () => p.load(true));
    }
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => selectTab(tab.dataset.tab));
    }
    // Timers are throttled in a hidden tab: catch up as soon as the page is seen again.
    document.addEventListener("visibilitychange", () => {
      if (document.hidden || !sessionStorage.getItem(TOKEN_KEY)) return;
      planSession(); // a timer that was due while hidden runs now
      if (performance.now() >= refreshAt) loadCode();
    });
    tickTimer = setInterval(tick, 250);
    try {
      const response = await fetch("config.json", { credentials: "omit", cache: "no-store" });
      if (response.ok) config = await response.json();
    } catch (e) {
      showNotice("err.offline");
    }
    const params = new URLSearchParams(location.search);
    if (config.oidc && params.has("code")) await finishOidc(params);
    else if (params.has("code") || params.has("error")) history.replaceState(null, "", location.pathname);
    const after = sessionStorage.getItem(AFTER_KEY);
    sessionStorage.removeItem(AFTER_KEY);
    if (after === "signout.done") showNotice(after);
    document.body.dataset.ready = "true";
    if (sessionStorage.getItem(TOKEN_KEY)) {
      planSession();
      showSignedIn();
    } else {
      showSignIn();
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
