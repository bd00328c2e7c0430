// Page helpers for the code-cache experiment (classic script; glue loaded by the page).
window.E = (() => {
  const urlOf = (route, key) =>
    ({ cs: `/lc/cs/${key}`, mem: `/lc/mem/${key}`, cnet: `/cnet/${key}`, net: `/net/${key}` })[route];

  async function ready({ needController = true } = {}) {
    while (!window.glueReady) await new Promise((r) => setTimeout(r, 5));
    if (needController && !navigator.serviceWorker.controller) {
      throw new Error("page not controlled by the service worker");
    }
  }

  async function register() {
    const reg = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
    await navigator.serviceWorker.ready;
    if (!navigator.serviceWorker.controller) {
      await new Promise((r) => navigator.serviceWorker.addEventListener("controllerchange", r, { once: true }));
    }
    return !!reg.active;
  }

  const bytes = async (name) => (await fetch(`/bytes/${name}`)).arrayBuffer();

  async function putIDB(name, buf) {
    const db = await new Promise((resolve, reject) => {
      const open = indexedDB.open("exp", 1);
      open.onupgradeneeded = () => open.result.createObjectStore("bytes");
      open.onerror = () => reject(open.error);
      open.onsuccess = () => resolve(open.result);
    });
    await new Promise((resolve, reject) => {
      const tx = db.transaction("bytes", "readwrite");
      tx.objectStore("bytes").put(buf, name);
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
    });
    db.close();
  }

  async function putCS(key, buf, headers = { "content-type": "application/wasm" }) {
    const c = await caches.open("lc");
    await c.put(`/lc/cs/${key}`, new Response(buf, { headers }));
  }

  async function addNet(key) {
    const c = await caches.open("lcnet");
    await c.add(`/cnet/${key}`);
  }

  // The tab's first wasm compilation, before any clock (as bench.mjs's warm-up does).
  async function tiny() {
    const m = await WebAssembly.compile(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0,
      1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0, 10, 6, 1, 4, 0, 65, 1, 11]));
    return new WebAssembly.Instance(m).exports.f();
  }

  async function compile(route, key, buf) {
    if (route === "memory") return WebAssembly.compile(buf);
    return WebAssembly.compileStreaming(fetch(urlOf(route, key)));
  }

  // Instantiates through the package's own glue (real imports).
  async function instantiate(name, module) {
    if (name === "brotli") {
      await window.brotliInit(module);
      return window.brotli;
    }
    return initSqlJs({
      instantiateWasm(imports, done) {
        WebAssembly.instantiate(module, imports).then((inst) => done(inst, module));
        return {};
      },
    });
  }

  function firstCall(name, api) {
    if (name === "brotli") return api.compress(new Uint8Array(1024)).length;
    const db = new api.Database();
    const r = db.exec("select 1")[0].values[0][0];
    db.close();
    return r;
  }

  const text = (() => {
    let s = "";
    for (let i = 0; s.length < 200_000; i++) s += `line ${i} of the ${i % 7} text, value ${(i * 2654435761) % 100003}\n`;
    return new TextEncoder().encode(s);
  })();

  // A fixed amount of work after the first call (timed separately).
  function work(name, api) {
    if (name === "brotli") {
      const c = api.compress(text.subarray(0, 100_000), { quality: 6 });
      return api.decompress(c).length;
    }
    const db = new api.Database();
    db.run("create table t(a integer, b text)");
    db.run("begin");
    const st = db.prepare("insert into t values (?, ?)");
    for (let i = 0; i < 2000; i++) st.run([i, `row ${i}`]);
    st.free();
    db.run("commit");
    const r = db.exec("select count(*), sum(a), max(length(b)) from t where a % 3 = 1")[0].values[0][0];
    db.close();
    return r;
  }

  // Runs work() in a loop for `ms` milliseconds (tier-up), returns the iterations.
  async function heat(name, api, ms) {
    const end = performance.now() + ms;
    let n = 0;
    while (performance.now() < end) {
      work(name, api);
      n++;
      if (n % 5 === 0) await new Promise((r) => setTimeout(r, 0));
    }
    return n;
  }

  return { urlOf, ready, register, bytes, putIDB, putCS, addNet, tiny, compile, instantiate, firstCall, work, heat };
})();
