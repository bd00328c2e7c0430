//! `modules()` and `graph()`: the cache described for people and drawings.

use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::Promise;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::cache::{LinkCache, js_err};
use crate::errors::WebError;
use crate::js::to_plain;

#[wasm_bindgen]
impl LinkCache {
    /// Every module of the cache, in commit order (the order duplicates are preferred
    /// in): `[{id, committedAt, usedAt?, byteLen, loaded, broken?, functions: [{name,
    /// signature, calls, globals}]}]`. `usedAt`: when a tab last recorded a use of it
    /// (ms since the epoch; what `gc` goes by); `loaded`: instantiated in this tab;
    /// `broken`: why its manifest cannot be read.
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
}

impl LinkCache {
    /// Every module of the store, described for `modules()` and `graph()`.
    async fn module_infos(&self) -> Result<Vec<ModuleInfo>, WebError> {
        // This tab's queued uses show in `usedAt`: their write goes before this read.
        self.flush_uses();
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
                                name: String::from(&f.name),
                                signature: f.signature.to_string(),
                                calls: f.calls.iter().map(String::from).collect(),
                                globals: f.globals.iter().map(String::from).collect(),
                            })
                            .collect(),
                    ),
                    Err(reason) => (None, Some(reason), Vec::new()),
                };
                ModuleInfo {
                    id: stored.id.to_string(),
                    committed_at: stored.committed_at,
                    used_at: stored.used_at,
                    byte_len,
                    loaded: inner.linkage.is_loaded(&stored.id),
                    broken,
                    functions,
                }
            })
            .collect())
    }
}

/// One module as `modules()` describes it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModuleInfo {
    id: String,
    committed_at: u64,
    /// When a tab last recorded a use of it (ms since the epoch; see `gc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    used_at: Option<f64>,
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
