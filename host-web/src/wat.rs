//! `watToWasm`: WebAssembly text to bytes, for pages that write modules by hand.
//!
//! Built only with the `wat` feature: the text parser is a large part of the package, and
//! a page that never parses text should not download it. The npm package ships it as a
//! separate entry point, `linkcache-web/wat`.

use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;

use crate::errors::WebError;

/// Compiles WebAssembly text to bytes (the `wat` crate), so that a page needs no other
/// tool to turn WAT into a module. Throws a `LinkCacheInvalidModule` error with the
/// position.
#[wasm_bindgen(js_name = watToWasm)]
pub fn wat_to_wasm(text: &str) -> Result<Uint8Array, JsValue> {
    wat::parse_str(text)
        .map(|bytes| Uint8Array::from(bytes.as_slice()))
        .map_err(|e| WebError::new("LinkCacheInvalidModule", e.to_string()).to_js())
}
