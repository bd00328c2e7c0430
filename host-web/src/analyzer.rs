//! The analyzer (wasmparser's validator and linkcache's analysis): `analyze` for
//! `addModule` and `getOrCompile`, `check_against` for `importBundle` and for a load of
//! a manifest another analyzer version checked.
//!
//! It is a third of what the package's wasm would hold, and a page that only targets
//! never needs it. With the default feature `bundled-analyzer` (what `wasm-pack build`
//! and the tests build) it is linked in. Without it (the npm package `cargo xtask
//! web-pkg` builds) it is a second wasm file, `analyzer/linkcache_web_analyzer_bg.wasm`
//! beside the package's own, crate `linkcache-web-analyzer`: imported and instantiated
//! on first use, once per tab or worker, found relative to the package's own files.

use linkcache_core::Manifest;

use crate::errors::WebError;

/// Analyzes module bytes into their manifest (`LinkCacheInvalidModule` when refused).
pub(crate) async fn analyze(wasm: &[u8]) -> Result<Manifest, WebError> {
    imp::analyze(wasm).await
}

/// Checks `manifest` against `wasm`: `Err` says how they differ.
pub(crate) async fn check_against(manifest: &Manifest, wasm: &[u8]) -> Result<(), WebError> {
    imp::check_against(manifest, wasm).await
}

#[cfg(feature = "bundled-analyzer")]
mod imp {
    use linkcache_core::Manifest;

    use crate::errors::WebError;

    pub(super) async fn analyze(wasm: &[u8]) -> Result<Manifest, WebError> {
        linkcache_core::analyze(wasm)
            .map_err(|e| WebError::new("LinkCacheInvalidModule", e.to_string()))
    }

    pub(super) async fn check_against(manifest: &Manifest, wasm: &[u8]) -> Result<(), WebError> {
        manifest
            .check_against(wasm)
            .map_err(|reason| WebError::new("LinkCacheInvalidModule", reason))
    }
}

#[cfg(not(feature = "bundled-analyzer"))]
mod imp {
    use js_sys::{Function, Promise, Reflect, Uint8Array};
    use linkcache_core::Manifest;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    use crate::errors::WebError;
    use crate::js::{describe, prop};

    #[wasm_bindgen(inline_js = r#"
let loading = null;
// The analyzer's module, instantiated once. This file is the package's
// snippets/<crate>/inline<N>.js; the analyzer is in the package's analyzer/ directory.
export function analyzer() {
  if (loading === null) {
    const url = new URL("../../analyzer/linkcache_web_analyzer.js", import.meta.url);
    loading = import(url.href).then(async (module) => {
      await module.default();
      return module;
    });
    // A failed load (offline, say) is tried again by the next call.
    loading.catch(() => { loading = null; });
  }
  return loading;
}
"#)]
    extern "C" {
        fn analyzer() -> Promise;
    }

    /// Calls the analyzer module's function `name` with `args`: its result, or the
    /// message it threw.
    async fn call(name: &str, args: &[&JsValue]) -> Result<Result<JsValue, String>, WebError> {
        let module = JsFuture::from(analyzer()).await.map_err(|e| {
            WebError::new(
                "LinkCacheError",
                format!(
                    "loading linkcache-web's analyzer (analyzer/linkcache_web_analyzer.js beside the package) failed: {}",
                    describe(&e)
                ),
            )
        })?;
        let function: Function = Reflect::get(&module, &JsValue::from_str(name))
            .ok()
            .and_then(|f| f.dyn_into().ok())
            .ok_or_else(|| {
                WebError::new(
                    "LinkCacheError",
                    format!("linkcache-web's analyzer has no `{name}`: is it from another version of the package?"),
                )
            })?;
        let array = js_sys::Array::new();
        for arg in args {
            array.push(arg);
        }
        Ok(function.apply(&JsValue::NULL, &array).map_err(|e| {
            prop(&e, "message")
                .as_string()
                .unwrap_or_else(|| describe(&e))
        }))
    }

    pub(super) async fn analyze(wasm: &[u8]) -> Result<Manifest, WebError> {
        let record = call("analyze", &[&Uint8Array::from(wasm).into()])
            .await?
            .map_err(|reason| WebError::new("LinkCacheInvalidModule", reason))?;
        Manifest::decode(&Uint8Array::new(&record).to_vec()).map_err(|e| {
            WebError::new(
                "LinkCacheError",
                format!("linkcache-web's analyzer answered a manifest that does not decode: {e}"),
            )
        })
    }

    pub(super) async fn check_against(manifest: &Manifest, wasm: &[u8]) -> Result<(), WebError> {
        let record = Uint8Array::from(manifest.encode().as_slice());
        call(
            "checkAgainst",
            &[&record.into(), &Uint8Array::from(wasm).into()],
        )
        .await?
        .map(|_| ())
        .map_err(|reason| WebError::new("LinkCacheInvalidModule", reason))
    }
}
