//! [`LinkCache`], the JavaScript API: open a cache, add modules, target functions.
//!
//! This file holds the tab's state and the small entry points; the work is elsewhere:
//! `crate::plan` plans a target against IndexedDB in one transaction,
//! `crate::load` compiles and instantiates (sharing work in flight),
//! `crate::target` drives both and reports, `crate::compile` is `getOrCompile`,
//! `crate::info` describes the cache, `crate::changes` talks to other tabs.
//!
//! Concurrency: every tab and worker of an origin shares the database. Within a tab,
//! targets may run concurrently: each plans against the tab's [`Linkage`], and a plan
//! that another target overtook is planned again ([`Linkage::commit`] says so); a
//! module is compiled and instantiated once however many targets need it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Array, Function, Map, Object, Promise, Uint8Array};
use linkcache_core::{Bundle, BundledModule, ImportBinding, Linkage, Manifest, ModuleId};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::changes::Changes;
use crate::errors::WebError;
use crate::js::{prop, to_plain};
use crate::stats::Stats;
use crate::store::IdbStore;

/// A manifest as this tab decoded it (content-addressed: never stale).
#[derive(Clone)]
pub(crate) struct Decoded {
    /// The manifest, or why it is broken.
    pub manifest: Result<Arc<Manifest>, String>,
    /// Checked against its bytes by this analyzer version (at commit, import, or here).
    pub checked: bool,
    /// The SHA-256 of the module's bytes its commit recorded (with WebCrypto), which a
    /// load of large bytes checks instead of their BLAKE3 (see [`crate::load`]).
    pub sha256: Option<Uint8Array>,
}

/// An instance of a module, made (or being made) with these import bindings.
pub(crate) struct SharedInstance {
    pub imports: Vec<ImportBinding>,
    /// `WebAssembly.instantiate`'s promise of the instance.
    pub instance: Promise,
}

pub(crate) struct Inner {
    pub name: String,
    pub store: Rc<IdbStore>,
    pub linkage: Linkage,
    /// Decoded manifests, by module.
    pub manifests: HashMap<ModuleId, Decoded>,
    /// `WebAssembly.compile` promises (settled or in flight), by module.
    pub compiled: HashMap<ModuleId, Promise>,
    /// Instances of committed modules: their exports.
    pub instances: HashMap<ModuleId, Object>,
    /// Instances made for plans not committed yet (in flight or overtaken), reused by
    /// the next plan that binds the module's imports the same way.
    pub pending: HashMap<ModuleId, SharedInstance>,
    /// Modules `getOrCompile` could not store (the quota was full): manifest and bytes.
    pub memory: HashMap<ModuleId, (Arc<Manifest>, Uint8Array)>,
    /// `getOrCompile` promises in flight, by func_name.
    pub get_or_compile: HashMap<String, Promise>,
    /// func_name -> bound function; a JS Map so that forwarders find it synchronously.
    pub funcs: Map,
    pub shared_globals: HashMap<String, JsValue>,
    pub imports: JsValue,
    pub resolve_global: Option<Function>,
    pub stats: Stats,
    /// Counts `forget`s: a plan made before one is never committed after it.
    pub epoch: u64,
    /// When this tab last recorded a use of each module (`Date.now()`), for gc.
    pub touched: HashMap<ModuleId, f64>,
    /// Uses `touch` queued and not written yet (see [`LinkCache::flush_uses`]); while
    /// there are any, a task that writes them is scheduled.
    pub uses_due: Vec<ModuleId>,
    /// The func_name whose compile callback is running synchronously right now.
    pub compiling: Option<String>,
    pub changes: Changes,
}

/// A linkcache in this tab or worker, over one IndexedDB database shared by the origin.
#[wasm_bindgen]
pub struct LinkCache {
    pub(crate) inner: Rc<RefCell<Inner>>,
}

pub(crate) fn js_err(e: WebError) -> JsValue {
    e.to_js()
}

#[wasm_bindgen]
impl LinkCache {
    /// Opens the cache `name` (an IndexedDB database of this origin).
    ///
    /// `options.imports`: the embedder's import object, for every import outside the
    /// `linkcache:*` namespaces. `options.resolveGlobal(name, definition, type, bytes)`:
    /// the value of a global definition (the text the module was compiled against; a
    /// number, or a BigInt for i64), or throw or return `{stale: reason}` to declare it
    /// stale, or a Promise of either; by default the definition is a literal of the type.
    /// `options.persist`: ask the browser to make the origin's storage persistent
    /// (`navigator.storage.persist()`). Fails with `LinkCacheUpgradeBlocked` when another
    /// tab holds an older version of the database open.
    #[wasm_bindgen(unchecked_return_type = "Promise<LinkCache>")]
    pub fn open(
        name: String,
        #[wasm_bindgen(unchecked_optional_param_type = "LinkCacheOptions")] options: JsValue,
    ) -> Promise {
        future_to_promise(async move {
            let imports = prop(&options, "imports");
            let resolve_global = prop(&options, "resolveGlobal").dyn_into::<Function>().ok();
            if prop(&options, "persist").is_truthy() {
                crate::quota::request_persistence().await;
            }
            let closed = Rc::new(RefCell::new(None::<Box<dyn FnOnce()>>));
            let on_closed = {
                let closed = Rc::clone(&closed);
                Box::new(move || {
                    if let Some(announce) = closed.borrow_mut().take() {
                        announce();
                    }
                })
            };
            let store = IdbStore::open(&name, on_closed).await.map_err(js_err)?;
            crate::js::mark("open: database open");
            let cache = LinkCache {
                inner: Rc::new(RefCell::new(Inner {
                    name: name.clone(),
                    store: Rc::new(store),
                    linkage: Linkage::new(),
                    manifests: HashMap::new(),
                    compiled: HashMap::new(),
                    instances: HashMap::new(),
                    pending: HashMap::new(),
                    memory: HashMap::new(),
                    get_or_compile: HashMap::new(),
                    funcs: Map::new(),
                    shared_globals: HashMap::new(),
                    imports: if imports.is_object() {
                        imports
                    } else {
                        Object::new().into()
                    },
                    resolve_global,
                    stats: Stats::default(),
                    epoch: 0,
                    touched: HashMap::new(),
                    uses_due: Vec::new(),
                    compiling: None,
                    changes: Changes::default(),
                })),
            };
            cache.listen();
            crate::js::mark("open: listening");
            // The first estimate is not waited for: `navigator.storage.estimate()` asks
            // the browser's quota manager, a round trip that would add milliseconds to
            // every fresh tab's first target. `stats()` shows it once it arrives (unless
            // a commit or `refreshStats()` was quicker). Even the call is made a task
            // later, off the path from `open` to a first target, which is then waiting
            // for IndexedDB.
            let first = cache.handle();
            wasm_bindgen_futures::spawn_local(async move {
                let _ = JsFuture::from(crate::js::next_task()).await;
                if let Some((usage, quota)) = crate::quota::estimate().await {
                    let mut inner = first.inner.borrow_mut();
                    if inner.stats.usage.is_none() {
                        inner.stats.usage = Some(usage);
                        inner.stats.quota = Some(quota);
                    }
                }
            });
            let weak = Rc::downgrade(&cache.inner);
            *closed.borrow_mut() = Some(Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    LinkCache { inner }.announce_closed();
                }
            }));
            Ok(cache.into())
        })
    }

    /// The database name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.inner.borrow().name.clone()
    }

    pub(crate) fn handle(&self) -> LinkCache {
        LinkCache {
            inner: Rc::clone(&self.inner),
        }
    }

    /// Analyzes and commits a module; resolves to its ModuleId (hex). `bytes`: an
    /// `ArrayBuffer` or any view of one (`Uint8Array`, `DataView`, ...). Rejects with
    /// `LinkCacheInvalidModule` for bytes linkcache does not accept.
    #[wasm_bindgen(js_name = addModule, unchecked_return_type = "Promise<string>")]
    pub fn add_module(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ArrayBuffer | ArrayBufferView")] bytes: JsValue,
    ) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let bytes = crate::js::bytes_of(&bytes).ok_or_else(|| {
                WebError::new(
                    "LinkCacheInvalidModule",
                    format!(
                        "addModule takes an ArrayBuffer or a view of one, not {}",
                        crate::js::to_text(&bytes)
                    ),
                )
                .to_js()
            })?;
            let id = this.add(&bytes).await.map_err(js_err)?;
            this.broadcast_added(&[id]);
            Ok(JsValue::from_str(&id.to_string()))
        })
    }

    pub(crate) async fn add(&self, wasm: &[u8]) -> Result<ModuleId, WebError> {
        let manifest = crate::analyzer::analyze(wasm).await?;
        let store = Rc::clone(&self.inner.borrow().store);
        store.commit(wasm, &manifest).await?;
        {
            // The commit recorded a use.
            let mut inner = self.inner.borrow_mut();
            inner.stats.modules_added += 1;
            inner.touched.insert(manifest.module, js_sys::Date::now());
        }
        self.refresh_estimate().await;
        Ok(manifest.module)
    }

    /// This tab's statistics (a plain object; see the README for the fields).
    /// `usage` and `quota` are the browser's estimate of the origin's storage
    /// (`navigator.storage.estimate()`), as of the last commit or `refreshStats()`, or
    /// the one `open` started (`null` until it arrives).
    #[wasm_bindgen(unchecked_return_type = "LinkCacheStats")]
    pub fn stats(&self) -> JsValue {
        to_plain(&self.inner.borrow().stats)
    }

    /// Refreshes `usage` and `quota` of `stats()`; resolves to the stats.
    #[wasm_bindgen(js_name = refreshStats, unchecked_return_type = "Promise<LinkCacheStats>")]
    pub fn refresh_stats(&self) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            this.refresh_estimate().await;
            Ok(this.stats())
        })
    }

    pub(crate) async fn refresh_estimate(&self) {
        if let Some((usage, quota)) = crate::quota::estimate().await {
            let mut inner = self.inner.borrow_mut();
            inner.stats.usage = Some(usage);
            inner.stats.quota = Some(quota);
        }
    }

    /// func_name -> ModuleId for every function bound in this tab.
    #[wasm_bindgen(unchecked_return_type = "Record<string, string>")]
    pub fn bindings(&self) -> JsValue {
        let object = Object::new();
        for (func, module) in self.inner.borrow().linkage.bindings() {
            crate::js::set(&object, func, &JsValue::from_str(&module.to_string()));
        }
        object.into()
    }

    /// Imports a bundle (from `linkcache export` or `exportBundle`); resolves to the
    /// ids. Rejects with `LinkCacheCorrupt` when the bundle or a module fails its checks.
    #[wasm_bindgen(js_name = importBundle, unchecked_return_type = "Promise<string[]>")]
    pub fn import_bundle(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ArrayBuffer | ArrayBufferView")] bytes: JsValue,
    ) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let corrupt = |m: String| WebError::new("LinkCacheCorrupt", m).to_js();
            let bytes = crate::js::bytes_of(&bytes).ok_or_else(|| {
                corrupt("importBundle takes an ArrayBuffer or a view of one".into())
            })?;
            let bundle =
                Bundle::decode(&bytes).map_err(|e| corrupt(format!("bundle rejected: {e}")))?;
            // Checked once here; the store records that this analyzer did it.
            for (index, module) in bundle.modules.iter().enumerate() {
                crate::analyzer::check_against(&module.manifest, &module.wasm)
                    .await
                    .map_err(|e| match e.name {
                        "LinkCacheInvalidModule" => {
                            corrupt(format!("bundled module #{index}: {}", e.message))
                        }
                        _ => e.to_js(),
                    })?;
            }
            let store = Rc::clone(&this.inner.borrow().store);
            let mut ids = Vec::new();
            for module in &bundle.modules {
                store
                    .commit(&module.wasm, &module.manifest)
                    .await
                    .map_err(js_err)?;
                ids.push(module.manifest.module);
            }
            this.broadcast_added(&ids);
            Ok(ids
                .iter()
                .map(|id| JsValue::from_str(&id.to_string()))
                .collect::<Array>()
                .into())
        })
    }

    /// Every intact module as a bundle (`Uint8Array`), importable by either host.
    #[wasm_bindgen(js_name = exportBundle, unchecked_return_type = "Promise<Uint8Array>")]
    pub fn export_bundle(&self) -> Promise {
        let store = Rc::clone(&self.inner.borrow().store);
        future_to_promise(async move {
            let mut bundle = Bundle::default();
            for stored in store.all().await.map_err(js_err)? {
                let Ok(manifest) = stored.manifest else {
                    continue;
                };
                let Ok(wasm) = store.module_bytes(&stored.id).await.map_err(js_err)? else {
                    continue;
                };
                bundle.modules.push(BundledModule { wasm, manifest });
            }
            Ok(Uint8Array::from(bundle.encode().as_slice()).into())
        })
    }

    /// Removes every module from the database, and forgets this tab's bindings (functions
    /// already returned keep working). Other tabs get a `cleared` message and forget
    /// theirs.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn clear(&self) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let store = Rc::clone(&this.inner.borrow().store);
            store.clear().await.map_err(js_err)?;
            this.forget();
            this.broadcast_cleared();
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Forgets this tab's link state (bindings, instances, compiled modules), as a reload
    /// would; the database is untouched.
    pub fn forget(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.epoch += 1;
        inner.linkage = Linkage::new();
        inner.compiled.clear();
        inner.instances.clear();
        inner.pending.clear();
        inner.funcs = Map::new();
        inner.shared_globals.clear();
    }

    /// Closes the database connection (once its running transactions finish; the
    /// advisory writes of use records and plan hints are aborted, and the uses queued
    /// for the next task are dropped) and the change channel. Functions already
    /// returned keep working; later calls that need the database reject with
    /// `LinkCacheClosed`. (`free()` alone also releases the change channel.)
    pub fn close(&self) {
        let mut inner = self.inner.borrow_mut();
        // Advisory like the writes aborted below. Left queued, their task would open a
        // transaction on the closed connection: a DOMException made and caught, 1.5–2.7
        // ms of the main thread in whatever task comes next (in the benchmark, the next
        // tab's measured target; session 27).
        inner.uses_due.clear();
        inner.store.close();
        inner.changes.close();
    }
}

/// The ModuleId (BLAKE3, hex) of some bytes.
#[wasm_bindgen(js_name = moduleId)]
pub fn module_id(bytes: &[u8]) -> String {
    ModuleId::of(bytes).to_string()
}
