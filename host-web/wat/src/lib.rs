//! `watToWasm` for the browser: WebAssembly text to bytes (the `wat` crate).
//!
//! The text parser is a large part of any wasm that carries it, and most pages that use
//! linkcache-web get their modules from a compiler, not from text; so it lives in its own
//! small wasm file, the npm package's second entry point `linkcache-web/wat`:
//!
//! ```js
//! import initWat, { watToWasm } from "linkcache-web/wat";
//! await initWat();
//! const bytes = watToWasm(`(module (func (export "f") (result i32) (i32.const 7)))`);
//! ```
//!
//! On targets other than wasm32 the crate is empty.

#![cfg_attr(target_arch = "wasm32", warn(missing_docs))]

#[cfg(target_arch = "wasm32")]
mod wasm {
    use js_sys::Uint8Array;
    use wasm_bindgen::prelude::*;

    /// Compiles WebAssembly text to bytes. Throws an `Error` named
    /// `LinkCacheInvalidModule` whose message gives the position of the fault.
    #[wasm_bindgen(js_name = watToWasm)]
    pub fn wat_to_wasm(text: &str) -> Result<Uint8Array, JsValue> {
        wat::parse_str(text)
            .map(|bytes| Uint8Array::from(bytes.as_slice()))
            .map_err(|e| {
                let error = js_sys::Error::new(&e.to_string());
                error.set_name("LinkCacheInvalidModule");
                error.into()
            })
    }
}
