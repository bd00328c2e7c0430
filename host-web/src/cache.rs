//! [`LinkCache`], the JavaScript API: open a cache, add modules, target functions.
//!
//! Loading drives the core planner with asynchronous answers from IndexedDB, compiles
//! the planned modules with `WebAssembly.compile` (kept per tab), and instantiates them
//! in plan order with import objects built from the plan: exports of earlier instances,
//! forwarding functions for modules that import each other (trampolines) and for edges
//! outside the closure (lazy stubs), `WebAssembly.Global`s for `linkcache:global`
//! imports, and the embedder's own imports.
//!
//! Concurrency: every tab and worker of an origin shares the database. Within a tab,
//! targets may run concurrently: each plans against the tab's [`Linkage`] and a plan
//! that another target overtook is planned again ([`Linkage::commit`] says so).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use js_sys::{Array, Function, Map, Object, Promise, Reflect, Uint8Array};
use linkcache_core::{
    Bundle, BundledModule, GlobalBinding, GlobalCheck, GlobalOutcome, ImportBinding, Linkage,
    LoadPlan, Miss, ModuleId, Need, Planner, Progress, ValType, Value, analyze,
};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, closure::Closure};
use wasm_bindgen_futures::{JsFuture, future_to_promise};
use web_sys::{BroadcastChannel, MessageEvent};

use crate::errors::WebError;
use crate::store::IdbStore;

#[wasm_bindgen(inline_js = r#"
export function make_forwarder(funcs, name, lazy) {
  return function (...args) {
    const f = funcs.get(name);
    if (f === undefined) {
      const e = new Error(lazy
        ? `linkcache: \`${name}\` lies outside the closure loaded so far; await cache.target("${name}") before calling code that reaches it`
        : `linkcache: \`${name}\` was called before its module group was bound`);
      e.name = "LinkCacheNotLoaded";
      throw e;
    }
    return f(...args);
  };
}
export function new_global(type, mutable, value) {
  return new WebAssembly.Global({ value: type, mutable }, value);
}
export function set_global(global, value) { global.value = value; }
export function now() { return performance.now(); }
export function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }
export function to_text(x) { try { return String(x); } catch { return typeof x; } }
"#)]
extern "C" {
    fn make_forwarder(funcs: &Map, name: &str, lazy: bool) -> Function;
    #[wasm_bindgen(catch)]
    fn new_global(ty: &str, mutable: bool, value: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    fn set_global(global: &JsValue, value: &JsValue) -> Result<(), JsValue>;
    fn now() -> f64;
    fn sleep(ms: u32) -> Promise;
    fn to_text(value: &JsValue) -> String;
}

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** The options of `LinkCache.open`. */
export interface LinkCacheOptions {
  /** Your import object, for every import namespace other than `linkcache:fn` and `linkcache:global`. */
  imports?: WebAssembly.Imports;
  /**
   * The value of a global definition (the text the module was compiled against; `bytes` holds it raw):
   * a number for i32, f32 and f64, a BigInt for i64. Throw, or return `{ stale: reason }`, when the
   * definition is outdated: the functions that use it become `stale_global` misses.
   * Default: the definition is the text of a literal of the global's type.
   */
  resolveGlobal?: (name: string, definition: string, type: ValueType, bytes: Uint8Array) => number | bigint | { stale: string };
  /** How long to wait for another tab that holds an older version of the database open (default 5000). */
  upgradeTimeoutMs?: number;
}

export type ValueType = "i32" | "i64" | "f32" | "f64";

/** Why `target` cannot return a function. */
export type MissCause = "unknown" | "missing_dependency" | "stale_global" | "broken" | "signature_mismatch";

/** The error `target` rejects with on a miss (`name` is "LinkCacheMiss"). */
export interface LinkCacheMissError extends Error {
  cause: MissCause;
  /** The function the miss is about: the target, or a function it reaches. */
  function: string;
  /** The missing dependency or the stale global, if any. */
  detail: string | null;
}

/** What `tryTarget` resolves to. */
export type TargetReport =
  | { hit: true; fn: Function; module: string; signature: string; params: ValueType[]; results: ValueType[];
      /** Modules this call instantiated (the partial load), compiled or not. */
      loaded: string[];
      /** Modules this call compiled from IndexedDB bytes. */
      compiled: string[]; timeMs: number }
  | { hit: false; cause: MissCause; function: string; detail: string | null; message: string; timeMs: number };

/** What one tab or worker did since it opened the cache. */
export interface LinkCacheStats {
  hits: number;
  misses: Partial<Record<MissCause, number>>;
  modulesLoaded: number;
  modulesCompiled: number;
  globalsValidated: number;
  globalsStale: number;
  brokenSkipped: number;
  bytesRead: number;
  modulesAdded: number;
  compiles: number;
  timeMs: number;
}

export interface FunctionInfo { name: string; signature: string; calls: string[]; globals: string[] }

export interface ModuleInfo {
  id: string;
  committedAt: number;
  byteLen?: number;
  /** Instantiated in this tab. */
  loaded: boolean;
  /** Why its manifest cannot be read. */
  broken?: string;
  functions: FunctionInfo[];
}

export interface CacheGraph {
  modules: ModuleInfo[];
  functions: { name: string; definedIn: string[]; boundTo: string | null }[];
  edges: { module: string; function: string; calls: string }[];
}

/** A message of `onChange`: another tab or worker added modules or cleared the cache. */
export type ChangeMessage = { type: "added"; modules: string[] } | { type: "cleared"; modules: [] };
"#;

/// Statistics of one `LinkCache` (one tab or worker) since it was opened.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Targets that returned a function.
    pub hits: u64,
    /// Misses by cause.
    pub misses: BTreeMap<String, u64>,
    /// Modules instantiated.
    pub modules_loaded: u64,
    /// Modules compiled with `WebAssembly.compile` from IndexedDB bytes.
    pub modules_compiled: u64,
    /// Global definitions validated.
    pub globals_validated: u64,
    /// Global definitions found stale.
    pub globals_stale: u64,
    /// Broken modules skipped.
    pub broken_skipped: u64,
    /// Bytes read from IndexedDB.
    pub bytes_read: u64,
    /// Modules added by this tab.
    pub modules_added: u64,
    /// Calls of `getOrCompile`'s compile callback.
    pub compiles: u64,
    /// Milliseconds spent targeting.
    pub time_ms: f64,
}

struct Inner {
    name: String,
    store: Rc<IdbStore>,
    linkage: Linkage,
    modules: HashMap<ModuleId, js_sys::WebAssembly::Module>,
    instances: HashMap<ModuleId, Object>,
    /// func_name -> bound function; a JS Map so that forwarders find it synchronously.
    funcs: Map,
    shared_globals: HashMap<String, JsValue>,
    imports: JsValue,
    resolve_global: Option<Function>,
    stats: Stats,
    /// Counts `forget`s: a plan made before one is never committed after it.
    epoch: u64,
    /// The func_name whose compile callback is running synchronously right now.
    compiling: Option<String>,
    channel: Option<BroadcastChannel>,
    on_change: Vec<Function>,
    _listener: Option<Closure<dyn FnMut(MessageEvent)>>,
}

/// A linkcache in this tab or worker, over one IndexedDB database shared by the origin.
#[wasm_bindgen]
pub struct LinkCache {
    inner: Rc<RefCell<Inner>>,
}

fn js_err(e: WebError) -> JsValue {
    e.to_js()
}

fn val_type_name(ty: ValType) -> &'static str {
    match ty {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::FuncRef => "anyfunc",
        ValType::ExternRef => "externref",
    }
}

/// A core value as a JS value: numbers, and BigInt for i64.
fn to_js(value: Value) -> JsValue {
    match value {
        Value::I32(x) => JsValue::from(x),
        Value::I64(x) => JsValue::from(js_sys::BigInt::from(x)),
        Value::F32(bits) => JsValue::from(f32::from_bits(bits)),
        Value::F64(bits) => JsValue::from(f64::from_bits(bits)),
        Value::V128(_) => JsValue::UNDEFINED,
    }
}

/// A JS value as a core value of type `ty`.
fn from_js(ty: ValType, value: &JsValue) -> Option<Value> {
    /// An integral number in `[min, max]`.
    fn integer(value: &JsValue, min: f64, max: f64) -> Option<f64> {
        value
            .as_f64()
            .filter(|x| x.fract() == 0.0 && (min..=max).contains(x))
    }
    Some(match ty {
        // -2^31 ..= 2^32 - 1: unsigned values wrap, as WebAssembly.Global's do.
        ValType::I32 => {
            Value::I32(integer(value, -2_147_483_648.0, 4_294_967_295.0)? as i64 as i32)
        }
        ValType::I64 => match value.dyn_ref::<js_sys::BigInt>() {
            Some(big) => Value::I64(i64::try_from(big.clone()).ok()?),
            // A safe integer given as a number.
            None => Value::I64(
                integer(value, -9_007_199_254_740_991.0, 9_007_199_254_740_991.0)? as i64,
            ),
        },
        ValType::F32 => Value::from_f32(value.as_f64()? as f32),
        ValType::F64 => Value::from_f64(value.as_f64()?),
        _ => return None,
    })
}

fn prop(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn set(object: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(object, &JsValue::from_str(key), value);
}

#[wasm_bindgen]
impl LinkCache {
    /// Opens the cache `name` (an IndexedDB database of this origin).
    ///
    /// `options.imports`: the embedder's import object, for every import outside the
    /// `linkcache:*` namespaces. `options.resolveGlobal(name, definition, type, bytes)`:
    /// the value of a global definition (the text the module was compiled against; a
    /// number, or a BigInt for i64), or throw or return `{stale: reason}` to declare it
    /// stale; by default the definition is a literal of the type.
    /// `options.upgradeTimeoutMs` (default 5000): how long to wait for other tabs to let
    /// a schema upgrade through before failing with `LinkCacheUpgradeBlocked`.
    #[wasm_bindgen(unchecked_return_type = "Promise<LinkCache>")]
    pub fn open(
        name: String,
        #[wasm_bindgen(unchecked_optional_param_type = "LinkCacheOptions")] options: JsValue,
    ) -> Promise {
        future_to_promise(async move {
            let imports = prop(&options, "imports");
            let resolve_global = prop(&options, "resolveGlobal").dyn_into::<Function>().ok();
            let timeout = prop(&options, "upgradeTimeoutMs")
                .as_f64()
                .unwrap_or(5000.0) as u32;
            let store = open_with_timeout(&name, timeout).await.map_err(js_err)?;
            let cache = LinkCache {
                inner: Rc::new(RefCell::new(Inner {
                    name: name.clone(),
                    store: Rc::new(store),
                    linkage: Linkage::new(),
                    modules: HashMap::new(),
                    instances: HashMap::new(),
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
                    compiling: None,
                    channel: None,
                    on_change: Vec::new(),
                    _listener: None,
                })),
            };
            cache.listen();
            Ok(cache.into())
        })
    }

    /// The database name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.inner.borrow().name.clone()
    }

    fn handle(&self) -> LinkCache {
        LinkCache {
            inner: Rc::clone(&self.inner),
        }
    }

    fn listen(&self) {
        let name = format!("linkcache:{}", self.inner.borrow().name);
        let Ok(channel) = BroadcastChannel::new(&name) else {
            return;
        };
        let weak = Rc::downgrade(&self.inner);
        let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(inner) = weak.upgrade() else { return };
            let callbacks = inner.borrow().on_change.clone();
            for callback in callbacks {
                let _ = callback.call1(&JsValue::NULL, &event.data());
            }
        });
        channel.set_onmessage(Some(listener.as_ref().unchecked_ref()));
        let mut inner = self.inner.borrow_mut();
        inner.channel = Some(channel);
        inner._listener = Some(listener);
    }

    fn broadcast(&self, kind: &str, ids: &[ModuleId]) {
        let inner = self.inner.borrow();
        if let Some(channel) = &inner.channel {
            let message = Object::new();
            set(&message, "type", &JsValue::from_str(kind));
            let ids: Array = ids
                .iter()
                .map(|id| JsValue::from_str(&id.to_string()))
                .collect();
            set(&message, "modules", &ids);
            let _ = channel.post_message(&message);
        }
    }

    /// Calls `callback(message)` when another tab or worker of this origin adds modules
    /// (`{type: "added", modules: [ids]}`) or clears the cache (`{type: "cleared"}`).
    #[wasm_bindgen(js_name = onChange)]
    pub fn on_change(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(message: ChangeMessage) => void")]
        callback: Function,
    ) {
        self.inner.borrow_mut().on_change.push(callback);
    }

    /// Analyzes and commits a module; resolves to its ModuleId (hex). Rejects with
    /// `LinkCacheInvalidModule` for bytes linkcache does not accept.
    #[wasm_bindgen(js_name = addModule, unchecked_return_type = "Promise<string>")]
    pub fn add_module(&self, bytes: Uint8Array) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let id = this.add(&bytes.to_vec()).await.map_err(js_err)?;
            this.broadcast("added", &[id]);
            Ok(JsValue::from_str(&id.to_string()))
        })
    }

    async fn add(&self, wasm: &[u8]) -> Result<ModuleId, WebError> {
        let manifest =
            analyze(wasm).map_err(|e| WebError::new("LinkCacheInvalidModule", e.to_string()))?;
        let store = Rc::clone(&self.inner.borrow().store);
        store.commit(wasm, &manifest).await?;
        self.inner.borrow_mut().stats.modules_added += 1;
        Ok(manifest.module)
    }

    /// Resolves to the function `funcName` (a WebAssembly export, called directly), or
    /// rejects with a `LinkCacheMiss` whose `cause`, `function` and `detail` say why.
    #[wasm_bindgen(unchecked_return_type = "Promise<Function>")]
    pub fn target(&self, #[wasm_bindgen(js_name = funcName)] func_name: String) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let (func, _) = this.target_inner(&func_name).await.map_err(js_err)?;
            Ok(func.into())
        })
    }

    /// Like `target`, but resolves to a report instead of rejecting on a miss:
    /// `{hit: true, fn, module, signature, params, results, loaded: [ids], compiled: [ids],
    /// timeMs}` or
    /// `{hit: false, cause, function, detail, message, timeMs}`.
    #[wasm_bindgen(js_name = tryTarget, unchecked_return_type = "Promise<TargetReport>")]
    pub fn try_target(&self, #[wasm_bindgen(js_name = funcName)] func_name: String) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let started = now();
            let report = Object::new();
            match this.target_inner(&func_name).await {
                Ok((func, load)) => {
                    set(&report, "hit", &JsValue::TRUE);
                    set(&report, "fn", &func);
                    let module = this.inner.borrow().linkage.binding(&func_name);
                    set(
                        &report,
                        "module",
                        &JsValue::from_str(&module.map(|m| m.to_string()).unwrap_or_default()),
                    );
                    let signature = module.and_then(|m| {
                        let inner = this.inner.borrow();
                        Some(
                            inner
                                .linkage
                                .loaded_manifest(&m)?
                                .function(&func_name)?
                                .signature
                                .clone(),
                        )
                    });
                    if let Some(signature) = signature {
                        let names = |types: &[ValType]| -> Array {
                            types
                                .iter()
                                .map(|t| JsValue::from_str(val_type_name(*t)))
                                .collect()
                        };
                        set(&report, "params", &names(&signature.params));
                        set(&report, "results", &names(&signature.results));
                        set(
                            &report,
                            "signature",
                            &JsValue::from_str(&signature.to_string()),
                        );
                    }
                    let ids = |v: &[ModuleId]| -> Array {
                        v.iter()
                            .map(|id| JsValue::from_str(&id.to_string()))
                            .collect()
                    };
                    set(&report, "loaded", &ids(&load.loaded));
                    set(&report, "compiled", &ids(&load.compiled));
                }
                Err(e) if e.miss.is_some() => {
                    let (cause, function, detail) = e.miss.clone().unwrap();
                    set(&report, "hit", &JsValue::FALSE);
                    set(&report, "cause", &JsValue::from_str(&cause));
                    set(&report, "function", &JsValue::from_str(&function));
                    set(
                        &report,
                        "detail",
                        &detail.as_deref().map_or(JsValue::NULL, JsValue::from_str),
                    );
                    set(&report, "message", &JsValue::from_str(&e.message));
                }
                Err(e) => return Err(e.to_js()),
            }
            set(&report, "timeMs", &JsValue::from_f64(now() - started));
            Ok(report.into())
        })
    }

    /// Targets `funcName`; on a miss calls `compile(miss)` (`miss` is the
    /// `LinkCacheMiss` error, with `cause`, `function` and `detail`), which returns or
    /// resolves to a `Uint8Array` or an array of them; adds those modules and tries
    /// again, up to 5 rounds, stopping early when a round leaves the same miss
    /// (`LinkCacheCompileFailed`).
    ///
    /// A compile callback that calls `getOrCompile` on this cache (before its first
    /// `await`) gets `LinkCacheReentrant`: it should return every module the function
    /// needs instead. Independent `getOrCompile` calls may run concurrently.
    #[wasm_bindgen(js_name = getOrCompile, unchecked_return_type = "Promise<Function>")]
    pub fn get_or_compile(
        &self,
        #[wasm_bindgen(js_name = funcName)] func_name: String,
        #[wasm_bindgen(
            unchecked_param_type = "(miss: LinkCacheMissError) => Uint8Array | Uint8Array[] | Promise<Uint8Array | Uint8Array[]>"
        )]
        compile: Function,
    ) -> Promise {
        let this = self.handle();
        // A compile callback of this cache is running synchronously: it called us.
        if let Some(current) = this.inner.borrow().compiling.clone() {
            let error = WebError::new(
                "LinkCacheReentrant",
                format!(
                    "getOrCompile(\"{func_name}\") was called from the compile callback for `{current}`; \
                     return every module the function needs from that callback instead"
                ),
            );
            return Promise::reject(&error.to_js());
        }
        future_to_promise(async move {
            let failed = |m: String| WebError::new("LinkCacheCompileFailed", m).to_js();
            let mut last: Option<(String, String, Option<String>)> = None;
            for _ in 0..5 {
                let error = match this.target_inner(&func_name).await {
                    Ok((func, _)) => return Ok(func.into()),
                    Err(e) if e.miss.is_some() => e,
                    Err(e) => return Err(e.to_js()),
                };
                if last == error.miss {
                    break;
                }
                last = error.miss.clone();
                this.inner.borrow_mut().compiling = Some(func_name.clone());
                let returned = compile.call1(&JsValue::NULL, &error.to_js());
                this.inner.borrow_mut().compiling = None;
                this.inner.borrow_mut().stats.compiles += 1;
                let value = match returned {
                    Ok(value) => match value.dyn_ref::<Promise>() {
                        Some(promise) => JsFuture::from(promise.clone()).await,
                        None => Ok(value),
                    },
                    Err(e) => Err(e),
                }
                .map_err(|e| {
                    failed(format!(
                        "the compile callback for `{func_name}` failed: {}",
                        describe(&e)
                    ))
                })?;
                let modules = compiled_modules(&value).ok_or_else(|| {
                    failed(format!(
                        "the compile callback for `{func_name}` returned {}, not a Uint8Array or an array of them",
                        describe(&value)
                    ))
                })?;
                let mut added = Vec::new();
                for module in modules {
                    added.push(this.add(&module.to_vec()).await.map_err(js_err)?);
                }
                this.broadcast("added", &added);
            }
            let (cause, function, detail) = last.unwrap_or_default();
            let detail = detail.map(|d| format!(" `{d}`")).unwrap_or_default();
            Err(failed(format!(
                "the compile callback's modules did not make `{func_name}` targetable: still {cause} at `{function}`{detail}"
            )))
        })
    }

    /// This tab's statistics (a plain object; see the README for the fields).
    #[wasm_bindgen(unchecked_return_type = "LinkCacheStats")]
    pub fn stats(&self) -> JsValue {
        to_plain(&self.inner.borrow().stats)
    }

    /// func_name -> ModuleId for every function bound in this tab.
    #[wasm_bindgen(unchecked_return_type = "Record<string, string>")]
    pub fn bindings(&self) -> JsValue {
        let object = Object::new();
        for (func, module) in self.inner.borrow().linkage.bindings() {
            set(&object, func, &JsValue::from_str(&module.to_string()));
        }
        object.into()
    }

    /// Every module of the cache, in commit order (the order duplicates are preferred
    /// in): `[{id, committedAt, byteLen, loaded, broken?, functions: [{name, signature,
    /// calls, globals}]}]`. `loaded`: instantiated in this tab; `broken`: why its
    /// manifest cannot be read.
    #[wasm_bindgen(unchecked_return_type = "Promise<ModuleInfo[]>")]
    pub fn modules(&self) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let modules = this.module_infos().await.map_err(js_err)?;
            Ok(to_plain(&modules))
        })
    }

    /// The cache as a graph, for drawing it: `{modules, functions, edges}`.
    /// `modules` as [`modules`](LinkCache::modules); `functions`: every func_name with
    /// the modules defining it (`definedIn`, in the order duplicates are preferred; more
    /// than one is a duplicate) and the one it is bound to in this tab (`boundTo`);
    /// `edges`: `{module, function, calls}` for every func_name (`calls`) that a
    /// function of a module imports through `linkcache:fn`.
    #[wasm_bindgen(unchecked_return_type = "Promise<CacheGraph>")]
    pub fn graph(&self) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let modules = this.module_infos().await.map_err(js_err)?;
            let mut defined: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            let mut edges = Vec::new();
            for module in &modules {
                for function in &module.functions {
                    defined.entry(&function.name).or_default().push(&module.id);
                    for call in &function.calls {
                        edges.push(GraphEdge {
                            module: &module.id,
                            function: &function.name,
                            calls: call,
                        });
                    }
                }
            }
            let inner = this.inner.borrow();
            let functions: Vec<FunctionNode> = defined
                .into_iter()
                .map(|(name, defined_in)| FunctionNode {
                    name,
                    defined_in,
                    bound_to: inner.linkage.binding(name).map(|m| m.to_string()),
                })
                .collect();
            Ok(to_plain(&Graph {
                modules: &modules,
                functions,
                edges,
            }))
        })
    }

    /// Imports a bundle (from `linkcache export` or `exportBundle`); resolves to the
    /// ids. Rejects with `LinkCacheCorrupt` when the bundle or a module fails its checks.
    #[wasm_bindgen(js_name = importBundle, unchecked_return_type = "Promise<string[]>")]
    pub fn import_bundle(&self, bytes: Uint8Array) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let corrupt = |m: String| WebError::new("LinkCacheCorrupt", m).to_js();
            let bundle = Bundle::decode(&bytes.to_vec())
                .map_err(|e| corrupt(format!("bundle rejected: {e}")))?;
            for (index, module) in bundle.modules.iter().enumerate() {
                module
                    .manifest
                    .check_against(&module.wasm)
                    .map_err(|e| corrupt(format!("bundled module #{index}: {e}")))?;
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
            this.broadcast("added", &ids);
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
    /// already returned keep working). Other tabs get an `onChange` message.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn clear(&self) -> Promise {
        let this = self.handle();
        future_to_promise(async move {
            let store = Rc::clone(&this.inner.borrow().store);
            store.clear().await.map_err(js_err)?;
            this.forget();
            this.broadcast("cleared", &[]);
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Forgets this tab's link state (bindings, instances, compiled modules), as a reload
    /// would; the database is untouched.
    pub fn forget(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.epoch += 1;
        inner.linkage = Linkage::new();
        inner.modules.clear();
        inner.instances.clear();
        inner.funcs = Map::new();
        inner.shared_globals.clear();
    }

    /// Closes the database connection (once its running transactions finish) and the
    /// change channel. Functions already returned keep working; later calls that need
    /// the database reject with `LinkCacheClosed`.
    pub fn close(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.store.close();
        if let Some(channel) = inner.channel.take() {
            channel.close();
        }
        inner._listener = None;
    }
}

/// One module as `modules()` describes it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModuleInfo {
    id: String,
    committed_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    byte_len: Option<u64>,
    loaded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    broken: Option<String>,
    functions: Vec<FunctionInfo>,
}

#[derive(Serialize)]
struct FunctionInfo {
    name: String,
    signature: String,
    calls: Vec<String>,
    globals: Vec<String>,
}

#[derive(Serialize)]
struct Graph<'a> {
    modules: &'a [ModuleInfo],
    functions: Vec<FunctionNode<'a>>,
    edges: Vec<GraphEdge<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionNode<'a> {
    name: &'a str,
    defined_in: Vec<&'a str>,
    bound_to: Option<String>,
}

#[derive(Serialize)]
struct GraphEdge<'a> {
    module: &'a str,
    function: &'a str,
    calls: &'a str,
}

/// A value as a plain JS object (maps as objects, `None` as `null`).
fn to_plain<T: Serialize + ?Sized>(value: &T) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::NULL)
}

/// Why a plan could not be instantiated.
enum LoadError {
    /// This module cannot be loaded: mark it broken and plan again.
    Broken(ModuleId, String),
    /// IndexedDB failed: give up this target.
    Storage(WebError),
}

/// What one load did.
#[derive(Default)]
struct LoadReport {
    loaded: Vec<ModuleId>,
    compiled: Vec<ModuleId>,
}

/// What a compile callback returned, as modules: a `Uint8Array` or an array of them.
fn compiled_modules(value: &JsValue) -> Option<Vec<Uint8Array>> {
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return Some(vec![bytes.clone()]);
    }
    if !Array::is_array(value) {
        return None;
    }
    Array::from(value)
        .iter()
        .map(|v| v.dyn_into::<Uint8Array>().ok())
        .collect()
}

fn describe(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| to_text(error))
}

/// Opens the store, failing with `LinkCacheUpgradeBlocked` when another tab or worker
/// keeps an older version of the database open past the timeout (IndexedDB would wait
/// for it forever).
async fn open_with_timeout(name: &str, timeout_ms: u32) -> Result<IdbStore, WebError> {
    let opened: Rc<RefCell<Option<Result<IdbStore, WebError>>>> = Rc::new(RefCell::new(None));
    let abandoned = Rc::new(std::cell::Cell::new(false));
    let (slot, gave_up) = (Rc::clone(&opened), Rc::clone(&abandoned));
    let db_name = name.to_string();
    let open = future_to_promise(async move {
        let result = IdbStore::open(&db_name).await;
        match result {
            // The caller got its error already; a connection nobody holds would block
            // the next upgrade.
            Ok(store) if gave_up.get() => store.close(),
            result => *slot.borrow_mut() = Some(result),
        }
        Ok(JsValue::TRUE)
    });
    let race = Promise::race(&Array::of2(&open, &sleep(timeout_ms)));
    let _ = JsFuture::from(race).await;
    let result = opened.borrow_mut().take();
    abandoned.set(result.is_none());
    result.unwrap_or_else(|| {
        Err(WebError::new(
            "LinkCacheUpgradeBlocked",
            format!(
                "opening `{name}` waited {timeout_ms} ms for another tab or worker that holds an older version of \
                 the database open; close or reload it"
            ),
        ))
    })
}

impl LinkCache {
    /// Targets `func_name`: plans against IndexedDB, loads, commits; replans when another
    /// target of this tab overtook the plan or a module turned out broken.
    async fn target_inner(&self, func_name: &str) -> Result<(Function, LoadReport), WebError> {
        let started = now();
        let result = self.target_loop(func_name).await;
        let mut inner = self.inner.borrow_mut();
        inner.stats.time_ms += now() - started;
        match &result {
            Ok(_) => inner.stats.hits += 1,
            Err(e) => {
                if let Some((cause, _, _)) = &e.miss {
                    *inner.stats.misses.entry(cause.clone()).or_default() += 1;
                }
            }
        }
        result
    }

    async fn target_loop(&self, func_name: &str) -> Result<(Function, LoadReport), WebError> {
        loop {
            if let Some(func) = self.bound(func_name) {
                return Ok((func, LoadReport::default()));
            }
            let epoch = self.inner.borrow().epoch;
            let plan = self.plan(func_name).await?;
            let mut report = LoadReport::default();
            let instances = match self.instantiate(&plan, &mut report).await {
                Ok(instances) => instances,
                Err(LoadError::Broken(module, reason)) => {
                    let mut inner = self.inner.borrow_mut();
                    inner.linkage.mark_broken(module, reason);
                    inner.stats.broken_skipped += 1;
                    continue;
                }
                Err(LoadError::Storage(e)) => return Err(e),
            };
            let mut inner = self.inner.borrow_mut();
            // Another target of this tab committed first, or the tab forgot its state:
            // plan again against what is bound now.
            if inner.epoch != epoch || inner.linkage.commit(&plan).is_err() {
                continue;
            }
            inner.instances.extend(instances);
            for (func, module) in &plan.bindings {
                let exports = inner.instances.get(module).cloned().unwrap_or_default();
                inner
                    .funcs
                    .set(&JsValue::from_str(func), &prop(&exports, func));
            }
            for (name, ty, value) in &plan.set_globals {
                if let Some(global) = inner.shared_globals.get(name) {
                    set_global(global, &to_js(*value)).map_err(|e| {
                        WebError::new(
                            "LinkCacheStorage",
                            format!("setting global `{name}` ({ty}): {}", describe(&e)),
                        )
                    })?;
                }
            }
            drop(inner);
            return match self.bound(func_name) {
                Some(func) => Ok((func, report)),
                None => Err(WebError::new(
                    "LinkCacheStorage",
                    format!("`{func_name}` was bound but its module does not export it"),
                )),
            };
        }
    }

    /// Every module of the store, described for `modules()` and `graph()`.
    async fn module_infos(&self) -> Result<Vec<ModuleInfo>, WebError> {
        let store = Rc::clone(&self.inner.borrow().store);
        let all = store.all().await?;
        let inner = self.inner.borrow();
        Ok(all
            .into_iter()
            .map(|stored| {
                let (byte_len, broken, functions) = match stored.manifest {
                    Ok(manifest) => (
                        Some(manifest.byte_len),
                        None,
                        manifest
                            .functions
                            .iter()
                            .map(|f| FunctionInfo {
                                name: f.name.clone(),
                                signature: f.signature.to_string(),
                                calls: f.calls.clone(),
                                globals: f.globals.clone(),
                            })
                            .collect(),
                    ),
                    Err(reason) => (None, Some(reason), Vec::new()),
                };
                ModuleInfo {
                    id: stored.id.to_string(),
                    committed_at: stored.committed_at,
                    byte_len,
                    loaded: inner.linkage.is_loaded(&stored.id),
                    broken,
                    functions,
                }
            })
            .collect())
    }

    fn bound(&self, func_name: &str) -> Option<Function> {
        let inner = self.inner.borrow();
        inner.linkage.binding(func_name)?;
        inner
            .funcs
            .get(&JsValue::from_str(func_name))
            .dyn_into::<Function>()
            .ok()
    }

    /// Runs the planner to a plan or a miss, answering its needs from IndexedDB.
    async fn plan(&self, func_name: &str) -> Result<LoadPlan, WebError> {
        let store = Rc::clone(&self.inner.borrow().store);
        let mut planner = Planner::new(func_name);
        let outcome = loop {
            let progress = planner.next(&self.inner.borrow().linkage);
            match progress {
                Progress::Ready(plan) => break Ok(plan),
                Progress::Miss(miss) => break Err(miss),
                Progress::Need(Need::Candidates(func)) => {
                    self.answer_closure(&store, &mut planner, func).await?;
                }
                Progress::Need(Need::Manifest(module)) => {
                    let manifest = store.manifest(&module).await?;
                    planner.answer_manifest(module, manifest);
                }
                Progress::Need(Need::Globals(checks)) => {
                    for check in &checks {
                        let outcome = self.resolve_global(check);
                        planner.answer_global(check, outcome);
                    }
                }
            }
        };
        let mut inner = self.inner.borrow_mut();
        let broken_before = inner.linkage.broken_modules().count();
        inner.linkage.learn(&planner);
        inner.stats.broken_skipped +=
            (inner.linkage.broken_modules().count() - broken_before) as u64;
        outcome.map_err(|miss: Miss| WebError::miss(&miss))
    }

    /// Answers the candidates of `func_name` together with the rest of its closure
    /// (candidates and manifests, transitively), as `linkcache_core::plan` does: the
    /// planner restarts its search after every answer, and here every question is an
    /// IndexedDB transaction.
    async fn answer_closure(
        &self,
        store: &IdbStore,
        planner: &mut Planner,
        func_name: String,
    ) -> Result<(), WebError> {
        let mut work = vec![func_name];
        while let Some(func) = work.pop() {
            if planner.has_candidates(&func) {
                continue;
            }
            let candidates = store.candidates(&func).await?;
            for candidate in &candidates {
                let loaded = self
                    .inner
                    .borrow()
                    .linkage
                    .loaded_manifest(&candidate.module)
                    .cloned();
                let manifest = match loaded {
                    Some(manifest) => manifest,
                    None if self
                        .inner
                        .borrow()
                        .linkage
                        .broken_reason(&candidate.module)
                        .is_some() =>
                    {
                        continue;
                    }
                    None => {
                        if planner.answered_manifest(&candidate.module).is_none() {
                            let answer = store.manifest(&candidate.module).await?;
                            planner.answer_manifest(candidate.module, answer);
                        }
                        match planner.answered_manifest(&candidate.module) {
                            Some(Ok(manifest)) => manifest.clone(),
                            _ => continue,
                        }
                    }
                };
                if let Some(function) = manifest.function(&func) {
                    let inner = self.inner.borrow();
                    for callee in &function.calls {
                        if inner.linkage.binding(callee).is_none()
                            && !planner.has_candidates(callee)
                        {
                            work.push(callee.clone());
                        }
                    }
                }
            }
            planner.answer_candidates(&func, candidates);
        }
        Ok(())
    }

    fn resolve_global(&self, check: &GlobalCheck) -> GlobalOutcome {
        let resolver = self.inner.borrow().resolve_global.clone();
        let outcome = match resolver {
            None => linkcache_core::literal_global(check),
            Some(resolve) => {
                let text = String::from_utf8_lossy(&check.global.definition).into_owned();
                let ty = check.global.ty;
                let args = Array::of4(
                    &JsValue::from_str(&check.global.name),
                    &JsValue::from_str(&text),
                    &JsValue::from_str(val_type_name(ty)),
                    &Uint8Array::from(check.global.definition.as_slice()),
                );
                match resolve.apply(&JsValue::NULL, &args) {
                    Ok(value) => {
                        let stale = prop(&value, "stale");
                        if value.is_object() && !stale.is_undefined() {
                            Err(stale.as_string().unwrap_or_else(|| to_text(&stale)))
                        } else {
                            from_js(ty, &value).ok_or_else(|| {
                                format!(
                                    "resolveGlobal(\"{}\") returned {}, not a {ty} value{}",
                                    check.global.name,
                                    to_text(&value),
                                    if ty == ValType::I64 {
                                        " (a BigInt)"
                                    } else {
                                        ""
                                    }
                                )
                            })
                        }
                    }
                    Err(e) => Err(describe(&e)),
                }
            }
        };
        let mut inner = self.inner.borrow_mut();
        match &outcome {
            Ok(_) => inner.stats.globals_validated += 1,
            Err(_) => inner.stats.globals_stale += 1,
        }
        outcome
    }

    /// Compiles (or reuses) and instantiates every module of `plan`, in order. Returns
    /// the new instances' exports, or the first module that failed and why.
    async fn instantiate(
        &self,
        plan: &LoadPlan,
        report: &mut LoadReport,
    ) -> Result<HashMap<ModuleId, Object>, LoadError> {
        let store = Rc::clone(&self.inner.borrow().store);
        let mut fresh: HashMap<ModuleId, Object> = HashMap::new();
        for planned in &plan.modules {
            let id = planned.module;
            let fail = |reason: String| LoadError::Broken(id, reason);
            let cached = self.inner.borrow().modules.get(&id).cloned();
            let module = match cached {
                Some(module) => module,
                None => {
                    let bytes = store
                        .module_bytes(&id)
                        .await
                        .map_err(LoadError::Storage)?
                        .map_err(fail)?;
                    planned.manifest.check_against(&bytes).map_err(fail)?;
                    let buffer = Uint8Array::from(bytes.as_slice());
                    let module: js_sys::WebAssembly::Module =
                        JsFuture::from(js_sys::WebAssembly::compile(&buffer))
                            .await
                            .map_err(|e| {
                                fail(format!("WebAssembly.compile failed: {}", describe(&e)))
                            })?
                            .unchecked_into();
                    let mut inner = self.inner.borrow_mut();
                    inner.stats.modules_compiled += 1;
                    inner.stats.bytes_read += bytes.len() as u64;
                    inner.modules.insert(id, module.clone());
                    report.compiled.push(id);
                    module
                }
            };
            let imports = self.import_object(planned, &fresh).map_err(fail)?;
            let instance =
                JsFuture::from(js_sys::WebAssembly::instantiate_module(&module, &imports))
                    .await
                    .map_err(|e| fail(format!("instantiation failed: {}", describe(&e))))?;
            let exports: Object = prop(&instance, "exports").unchecked_into();
            fresh.insert(id, exports);
            self.inner.borrow_mut().stats.modules_loaded += 1;
            report.loaded.push(id);
        }
        Ok(fresh)
    }

    fn import_object(
        &self,
        planned: &linkcache_core::PlannedModule,
        fresh: &HashMap<ModuleId, Object>,
    ) -> Result<Object, String> {
        let mut inner = self.inner.borrow_mut();
        let imports = Object::new();
        for (import, binding) in planned.manifest.imports.iter().zip(&planned.imports) {
            let value: JsValue = match binding {
                ImportBinding::Export { module, func } => {
                    let exports = fresh
                        .get(module)
                        .or_else(|| inner.instances.get(module))
                        .ok_or_else(|| format!("module {} is not instantiated", module.short()))?;
                    prop(exports, func)
                }
                ImportBinding::Trampoline { func } => {
                    make_forwarder(&inner.funcs, func, false).into()
                }
                ImportBinding::Lazy { func, .. } => make_forwarder(&inner.funcs, func, true).into(),
                ImportBinding::Global { name, binding } => match binding {
                    GlobalBinding::Value(value) => {
                        new_global(val_type_name(value.ty()), false, &to_js(*value))
                            .map_err(|e| format!("global `{name}`: {}", describe(&e)))?
                    }
                    GlobalBinding::Placeholder(ty) => {
                        let zero = ty
                            .zero()
                            .ok_or_else(|| format!("global `{name}` has no placeholder"))?;
                        new_global(val_type_name(*ty), false, &to_js(zero))
                            .map_err(|e| format!("global `{name}`: {}", describe(&e)))?
                    }
                    GlobalBinding::Shared(ty) => {
                        if let Some(global) = inner.shared_globals.get(name) {
                            global.clone()
                        } else {
                            let zero = ty
                                .zero()
                                .ok_or_else(|| format!("global `{name}` cannot be shared"))?;
                            let global = new_global(val_type_name(*ty), true, &to_js(zero))
                                .map_err(|e| format!("global `{name}`: {}", describe(&e)))?;
                            inner.shared_globals.insert(name.clone(), global.clone());
                            global
                        }
                    }
                },
                ImportBinding::Embedder => {
                    let value = prop(&prop(&inner.imports, &import.namespace), &import.name);
                    if value.is_undefined() {
                        return Err(format!(
                            "it imports `{}` `{}`, which the embedder's imports do not define",
                            import.namespace, import.name
                        ));
                    }
                    value
                }
            };
            let namespace = prop(&imports, &import.namespace);
            let namespace = if namespace.is_object() {
                namespace
            } else {
                let object: JsValue = Object::new().into();
                set(&imports, &import.namespace, &object);
                object
            };
            set(namespace.unchecked_ref(), &import.name, &value);
        }
        Ok(imports)
    }
}

/// Compiles WebAssembly text to bytes (the `wat` crate), so that a page needs no other
/// tool to turn WAT into a module. Throws a `SyntaxError`-like `Error` with the position.
#[wasm_bindgen(js_name = watToWasm)]
pub fn wat_to_wasm(text: &str) -> Result<Uint8Array, JsValue> {
    wat::parse_str(text)
        .map(|bytes| Uint8Array::from(bytes.as_slice()))
        .map_err(|e| WebError::new("LinkCacheInvalidModule", e.to_string()).to_js())
}

/// The ModuleId (BLAKE3, hex) of some bytes.
#[wasm_bindgen(js_name = moduleId)]
pub fn module_id(bytes: &[u8]) -> String {
    ModuleId::of(bytes).to_string()
}
