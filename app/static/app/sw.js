// The citizen page's service worker: keeps the page itself (HTML, scripts, styles, the
// QR library, its configuration) so that it opens with no network, where it shows an
// offline code made in the browser. Network first, so a deployment is picked up at once
// while online; the cache is the fallback only. API calls (/v1/...) are never touched:
// nothing with a token, and no code, is ever cached here.
"use strict";
const CACHE = "suishen-app-2";
const SHELL = ["./", "app.css", "app.js", "offline.js", "confirm.js", "vendor/qrcode-generator.js",
  "icon.svg", "config.json"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin ||
      !url.pathname.startsWith("/app/")) {
    return; // the API and anything else: straight to the network
  }
  event.respondWith(fetch(request).then((response) => {
    if (response.ok) {
      const copy = response.clone();
      // Keyed without the query: an OIDC redirect's ?code=... is never stored.
      caches.open(CACHE).then((cache) => cache.put(url.origin + url.pathname, copy));
    }
    return response;
  }).catch(() => caches.match(url.origin + url.pathname).then((hit) => hit || Response.error())));
});
