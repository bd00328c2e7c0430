//! `getOrCompile`: target a function, and on a miss let the embedder's compiler add the
//! modules it needs.
//!
//! Concurrent calls for one func_name in a tab share one run (the compiler runs once);
//! calls for different names run independently. When the origin's storage quota is full,
//! the compiled modules are kept in this tab's memory instead ([`LinkCache::add_in_memory`])
//! and the function is returned all the same; `stats().notPersisted` counts them.

use js_sys::{Array, Function, Promise, Uint8Array};
use linkcache_core::ModuleId;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::cache::{Decoded, LinkCache, js_err};
use crate::errors::WebError;
use crate::js::{bytes_of, describe, settle};

/// How many rounds of compile-and-target `getOrCompile` runs before giving up.
const ROUNDS: usize = 5;

#[wasm_bindgen]
impl LinkCache {
    /// Targets `funcName`; on a miss calls `compile(miss)` (`miss` is the
    /// `LinkCacheMiss` error, with `missCause`, `function` and `detail`), which returns
    /// or resolves to the bytes of a module (an `ArrayBuffer` or any view) or an array
    /// of them; adds those modules and tries again, up to 5 rounds, stopping early when a
    /// round leaves the same miss (`LinkCacheCompileFailed`).
    ///
    /// Concurrent calls for the same `funcName` in this tab share one run: the compiler
    /// runs once. A compile callback that calls `getOrCompile` on this cache (before its
    /// first `await`) gets `LinkCacheReentrant`: it should return every module the
    /// function needs instead. When the storage quota is full, the modules run from this
    /// tab's memory (`stats().notPersisted`).
    #[wasm_bindgen(js_name = getOrCompile, unchecked_return_type = "Promise<Function>")]
    pub fn get_or_compile(
        &self,
        #[wasm_bindgen(js_name = funcName)] func_name: String,
        #[wasm_bindgen(
            unchecked_param_type = "(miss: LinkCacheMiss) => BufferSource | BufferSource[] | Promise<BufferSource | BufferSource[]>"
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
        if let Some(running) = this.inner.borrow().get_or_compile.get(&func_name) {
            return running.clone();
        }
        let name = func_name.clone();
        let run = future_to_promise(async move {
            let result = this.get_or_compile_rounds(&func_name, &compile).await;
            this.inner.borrow_mut().get_or_compile.remove(&func_name);
            result
        });
        self.inner
            .borrow_mut()
            .get_or_compile
            .insert(name, run.clone());
        run
    }
}

impl LinkCache {
    async fn get_or_compile_rounds(
        &self,
        func_name: &str,
        compile: &Function,
    ) -> Result<JsValue, JsValue> {
        let failed = |m: String| WebError::new("LinkCacheCompileFailed", m).to_js();
        let mut last: Option<(String, String, Option<String>)> = None;
        for _ in 0..ROUNDS {
            let error = match self.target_inner(func_name).await {
                Ok((func, _)) => return Ok(func.into()),
                Err(e) if e.miss.is_some() => e,
                Err(e) => return Err(e.to_js()),
            };
            if last == error.miss {
                break;
            }
            last = error.miss.clone();
            self.inner.borrow_mut().compiling = Some(func_name.to_string());
            let returned = compile.call1(&JsValue::NULL, &error.to_js());
            self.inner.borrow_mut().compiling = None;
            self.inner.borrow_mut().stats.compiles += 1;
            let value = match returned {
                Ok(value) => settle(value).await,
                Err(e) => Err(e),
            }
            .map_err(|e| {
                WebError::new(
                    "LinkCacheCompileFailed",
                    format!(
                        "the compile callback for `{func_name}` failed: {}",
                        describe(&e)
                    ),
                )
                .with_cause(e)
                .to_js()
            })?;
            let modules = compiled_modules(&value).ok_or_else(|| {
                failed(format!(
                    "the compile callback for `{func_name}` returned {}, not module bytes (an ArrayBuffer or a view) or an array of them",
                    describe(&value)
                ))
            })?;
            let mut added = Vec::new();
            for module in modules {
                match self.add(&module).await {
                    Ok(id) => added.push(id),
                    Err(e) if e.name == "LinkCacheQuotaExceeded" => {
                        self.add_in_memory(&module).await.map_err(js_err)?;
                    }
                    Err(e) => return Err(e.to_js()),
                }
            }
            if !added.is_empty() {
                self.broadcast_added(&added);
            }
        }
        let (cause, function, detail) = last.unwrap_or_default();
        let detail = detail.map(|d| format!(" `{d}`")).unwrap_or_default();
        Err(failed(format!(
            "the compile callback's modules did not make `{func_name}` targetable: still {cause} at `{function}`{detail}"
        )))
    }

    /// Keeps a module this tab could not store (the quota is full) in memory, where this
    /// tab's plans find it after the stored candidates.
    pub(crate) async fn add_in_memory(&self, wasm: &[u8]) -> Result<ModuleId, WebError> {
        let manifest = crate::analyzer::analyze(wasm).await?;
        let id = manifest.module;
        let manifest = std::sync::Arc::new(manifest);
        let mut inner = self.inner.borrow_mut();
        inner.manifests.insert(
            id,
            Decoded {
                manifest: Ok(std::sync::Arc::clone(&manifest)),
                checked: true,
                sha256: None,
            },
        );
        if inner
            .memory
            .insert(id, (manifest, Uint8Array::from(wasm)))
            .is_none()
        {
            inner.stats.not_persisted += 1;
        }
        Ok(id)
    }
}

/// What a compile callback returned, as module bytes: a buffer or view, or an array of
/// them.
fn compiled_modules(value: &JsValue) -> Option<Vec<Vec<u8>>> {
    if let Some(bytes) = bytes_of(value) {
        return Some(vec![bytes]);
    }
    if !Array::is_array(value) {
        return None;
    }
    Array::from(value).iter().map(|v| bytes_of(&v)).collect()
}
