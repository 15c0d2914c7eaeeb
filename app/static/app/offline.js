// Offline codes made in the browser (SPEC.md §6.1, §6.4), in the format of
// codecs/offline.py — the same bytes the SDK's wallet makes (keys/offline.py make_code):
//
//   SC1:<base45 of COSE_Sign1>  =  d2 84 bstr(protected) a0 bstr(payload) 58 40 <sig>
//   protected = {1: -7 (ES256), 13 (kcwt): <the service-signed credential, as issued>}
//   payload   = {6: iat (uint32, the device clock), -3: counter (codes in this second)}
//   sig       = ECDSA P-256 SHA-256 over ["Signature1", protected, h'', payload], raw r||s
//               (64 bytes) -- exactly WebCrypto's ECDSA output.
//
// The device keys are WebCrypto P-256 keys created NON-EXTRACTABLE: the private half
// never leaves the browser's key store, not even to this script. They live in IndexedDB
// (structured clone keeps a CryptoKey usable, not readable) with one service-signed
// credential each (one per time slot), from POST /v1/devices and, later, refills from
// POST /v1/devices/{id}/credentials.
"use strict";
const SuishenOffline = (() => {
  const DB_NAME = "suishen-offline";
  const BATCH = 24; // keys per registration or refill: a day of hourly slots
  const REFILL_BELOW = 12 * 3600; // refill when less than this is covered ahead
  const B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

  // --- IndexedDB -------------------------------------------------------------------
  function openDb() {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = () => {
        request.result.createObjectStore("meta");
        request.result.createObjectStore("credentials", { keyPath: "start" });
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  async function run(store, mode, fn) {
    const db = await openDb();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction(store, mode);
        const result = fn(tx.objectStore(store));
        tx.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  }

  const getMeta = () => run("meta", "readonly", (s) => s.get("meta")).then((m) => m || {});
  const putMeta = (meta) => run("meta", "readwrite", (s) => s.put(meta, "meta"));
  const allCredentials = () => run("credentials", "readonly", (s) => s.getAll());

  async function wipe() {
    await run("meta", "readwrite", (s) => s.clear());
    await run("credentials", "readwrite", (s) => s.clear());
  }

  // --- bytes -----------------------------------------------------------------------
  function b64urlToBytes(text) {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  function bstrHead(length) { // CBOR major type 2 (byte string) head
    if (length < 24) return Uint8Array.of(0x40 + length);
    if (length < 256) return Uint8Array.of(0x58, length);
    return Uint8Array.of(0x59, length >> 8, length & 0xff);
  }
  const bstr = (bytes) => concat(bstrHead(bytes.length), bytes);

  function uintItem(value) { // CBOR unsigned integer, shortest form (0..2^32-1)
    if (value < 24) return Uint8Array.of(value);
    if (value < 256) return Uint8Array.of(0x18, value);
    if (value < 65536) return Uint8Array.of(0x19, value >> 8, value & 0xff);
    return Uint8Array.of(0x1a, (value >>> 24) & 0xff, (value >>> 16) & 0xff,
      (value >>> 8) & 0xff, value & 0xff);
  }

  function base45(bytes) { // RFC 9285
    let out = "";
    for (let i = 0; i + 1 < bytes.length; i += 2) {
      let n = bytes[i] * 256 + bytes[i + 1];
      const c = n % 45; n = (n - c) / 45;
      const d = n % 45; const e = (n - d) / 45;
      out += B45[c] + B45[d] + B45[e];
    }
    if (bytes.length % 2) {
      const n = bytes[bytes.length - 1];
      out += B45[n % 45] + B45[Math.floor(n / 45)];
    }
    return out;
  }

  function indexOf(haystack, needle) {
    outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
      for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
      return i;
    }
    return -1;
  }

  // --- the code --------------------------------------------------------------------
  const SIG1 = new TextEncoder().encode("Signature1");

  async function makeCode(privateKey, credential, iat, counter) {
    const protectedRaw = concat(Uint8Array.of(0xa2, 0x01, 0x26, 0x0d), credential);
    const payload = concat(Uint8Array.of(0xa2, 0x06), uintItem(iat), Uint8Array.of(0x22),
      uintItem(counter));
    // ["Signature1", protected, h'', payload]: the context is a text string (0x6a).
    const toBeSigned = concat(Uint8Array.of(0x84, 0x6a), SIG1, bstr(protectedRaw),
      Uint8Array.of(0x40), bstr(payload));
    const signature = new Uint8Array(await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" }, privateKey, toBeSigned));
    const message = concat(Uint8Array.of(0xd2, 0x84), bstr(protectedRaw), Uint8Array.of(0xa0),
      bstr(payload), Uint8Array.of(0x58, 0x40), signature);
    return "SC1:" + base45(message);
  }

  // --- registration and refills ----------------------------------------------------
  async function newKeys(count) {
    const out = [];
    for (let i = 0; i < count; i++) {
      const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" },
        false, ["sign"]); // false: the private key cannot be exported
      const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
      out.push({ privateKey: pair.privateKey,
        jwk: { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y } });
    }
    return out;
  }

  async function store(keys, answer) {
    const rows = [];
    for (const entry of answer.credentials || []) {
      const raw = b64urlToBytes(entry.credential);
      // The credential confirms one of our keys (cnf: ... -2: x): find which.
      const key = keys.find((k) => indexOf(raw, concat(Uint8Array.of(0x21, 0x58, 0x20),
        b64urlToBytes(k.jwk.x))) >= 0);
      if (!key) continue;
      rows.push({ start: Date.parse(entry.slot_start) / 1000,
        end: Date.parse(entry.slot_end) / 1000, credential: raw, key: key.privateKey });
    }
    await run("credentials", "readwrite", (s) => { for (const r of rows) s.put(r); });
    return rows.length;
  }

  function coveredUntil(credentials, now) {
    let until = now;
    for (const c of [...credentials].sort((a, b) => a.start - b.start)) {
      if (c.start <= until && until < c.end) until = c.end;
    }
    return until;
  }

  async function prune(now) { // slots that ended: their keys and credentials go
    const ended = (await allCredentials()).filter((c) => c.end <= now);
    await run("credentials", "readwrite", (s) => { for (const c of ended) s.delete(c.start); });
  }

  /** Make sure this browser is a registered device with credentials ahead; `api` is the
   * page's fetch helper (same origin, with the token), `sub` the signed-in citizen. */
  async function ensure(api, sub, deviceName) {
    let meta = await getMeta();
    if (meta.sub && meta.sub !== sub) { await wipe(); meta = {}; }
    const now = Math.floor(Date.now() / 1000);
    const credentials = (await allCredentials()).filter((c) => c.end > now);
    if (meta.device_id && coveredUntil(credentials, now) - now >= REFILL_BELOW) return;
    const keys = await newKeys(BATCH);
    const body = JSON.stringify(meta.device_id ? { keys: keys.map((k) => k.jwk) }
      : { name: deviceName, keys: keys.map((k) => k.jwk) });
    const path = meta.device_id
      ? "/v1/devices/" + encodeURIComponent(meta.device_id) + "/credentials" : "/v1/devices";
    const response = await api(path, { method: "POST", body,
      headers: { "Content-Type": "application/json" } });
    if (!response.ok) {
      // A device the service no longer knows or has revoked: start again as a new one
      // next time (the citizen is signed in, so the service decides).
      if (meta.device_id && response.status >= 400 && response.status < 500) await wipe();
      throw new Error("device registration failed: HTTP " + response.status);
    }
    const answer = await response.json();
    await prune(now);
    await store(keys, answer);
    await putMeta(Object.assign({}, meta, { sub, device_id: answer.device_id || meta.device_id }));
  }

  /** A fresh offline code for the device clock's now, or null when no credential
   * covers it. Never repeats an (iat, counter) pair. */
  async function code() {
    const now = Math.floor(Date.now() / 1000);
    const credentials = await allCredentials();
    const current = credentials.find((c) => c.start <= now && now < c.end);
    if (!current) return null;
    const meta = await getMeta();
    const last = meta.last || { iat: 0, counter: -1 };
    if (now < last.iat) throw new Error("clock went back");
    const counter = now === last.iat ? last.counter + 1 : 0;
    if (counter > 255) throw new Error("too many codes in one second");
    meta.last = { iat: now, counter };
    await putMeta(meta);
    const text = await makeCode(current.key, current.credential, now, counter);
    return { text, slotEnd: current.end };
  }

  async function hasCredentials() {
    const now = Math.floor(Date.now() / 1000);
    return (await allCredentials()).some((c) => c.start <= now && now < c.end);
  }

  /** This browser's device id at the service, or null when it is not registered. */
  async function deviceId() {
    return (await getMeta()).device_id || null;
  }

  return { ensure, code, wipe, hasCredentials, deviceId, makeCode, base45 };
})();
