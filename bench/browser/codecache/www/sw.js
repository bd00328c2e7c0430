// The experiment's service worker. Scope "/", so it controls the test page.
//   /lc/cs/KEY   answered from Cache Storage (cache "lc"), entries the page wrote itself
//                with cache.put(url, new Response(bytes, {headers})): a synthetic response
//                stored in Cache Storage (what linkcache-web could do with IndexedDB bytes)
//   /lc/mem/KEY  answered with new Response(bytes) built here from IndexedDB (synthetic,
//                never in Cache Storage)
//   /cnet/KEY    answered from Cache Storage (cache "lcnet") whose entries came from the
//                network (cache.add of the same URL): the control for Cache Storage side data
//   anything else: not answered (falls through to the network)
const mem = new Map();

self.addEventListener("install", (e) => e.waitUntil(self.skipWaiting()));
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));

function idbGet(name) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open("exp", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("bytes");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const req = db.transaction("bytes").objectStore("bytes").get(name);
      req.onsuccess = () => { db.close(); resolve(req.result); };
      req.onerror = () => { db.close(); reject(req.error); };
    };
  });
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (url.pathname.startsWith("/lc/cs/")) {
    event.respondWith(
      caches.open("lc").then((c) => c.match(event.request))
        .then((r) => r ?? new Response("miss", { status: 404 })),
    );
  } else if (url.pathname.startsWith("/lc/mem/")) {
    const key = url.pathname.slice(8);
    const name = key.split("-")[0];
    event.respondWith((async () => {
      let bytes = mem.get(name);
      if (!bytes) { bytes = await idbGet(name); mem.set(name, bytes); }
      if (!bytes) return new Response("miss", { status: 404 });
      return new Response(bytes, { headers: { "content-type": "application/wasm" } });
    })());
  } else if (url.pathname.startsWith("/cnet/")) {
    event.respondWith(
      caches.open("lcnet").then((c) => c.match(event.request)).then((r) => r ?? fetch(event.request)),
    );
  }
});
