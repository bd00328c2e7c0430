//! linkcache-web's analyzer in a wasm file of its own: `analyze` (bytes to a manifest
//! record) and `checkAgainst` (a manifest record against bytes).
//!
//! wasmparser's validator and linkcache's analysis are about a third of what the
//! package would otherwise hold, and only `addModule`, `getOrCompile` and
//! `importBundle` (and a load of a module another analyzer version checked) need them.
//! The npm package that `cargo xtask web-pkg` builds loads this file on first use
//! (`analyzer/` beside the package's own wasm); `wasm-pack build host-web` builds one
//! wasm file with the analyzer inside instead (linkcache-web's default feature
//! `bundled-analyzer`). Users never import this module themselves.
//!
//! On targets other than wasm32 the crate is empty.

#![cfg_attr(target_arch = "wasm32", warn(missing_docs))]

#[cfg(target_arch = "wasm32")]
mod wasm {
    use linkcache_core::{Manifest, analyze as analyze_bytes};
    use wasm_bindgen::prelude::*;

    fn error(message: String) -> JsValue {
        js_sys::Error::new(&message).into()
    }

    /// Analyzes module bytes: the manifest record (`Manifest::encode`), or throws an
    /// `Error` whose message says why the bytes are refused.
    #[wasm_bindgen]
    pub fn analyze(wasm: &[u8]) -> Result<Vec<u8>, JsValue> {
        analyze_bytes(wasm)
            .map(|manifest| manifest.encode())
            .map_err(|e| error(e.to_string()))
    }

    /// Checks a manifest record against module bytes (`Manifest::check_against`):
    /// throws an `Error` whose message says how they differ.
    #[wasm_bindgen(js_name = checkAgainst)]
    pub fn check_against(manifest: &[u8], wasm: &[u8]) -> Result<(), JsValue> {
        let manifest = Manifest::decode(manifest)
            .map_err(|e| error(format!("its manifest does not decode: {e}")))?;
        manifest.check_against(wasm).map_err(error)
    }
}
