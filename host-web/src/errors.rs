//! Errors as JavaScript sees them: `Error` objects with a clear message and a `name` a
//! program can test.
//!
//! | name | when |
//! | --- | --- |
//! | `LinkCacheMiss` | `target` cannot return a function; `cause`, `function`, `detail` say why |
//! | `LinkCacheInvalidModule` | `addModule` got bytes that are not a module linkcache accepts |
//! | `LinkCacheCorrupt` | a bundle or record failed its checks |
//! | `LinkCacheQuotaExceeded` | the origin's storage quota is full; nothing was half-written |
//! | `LinkCacheUpgradeBlocked` | another tab holds an older version of the database open |
//! | `LinkCacheReentrant` | `getOrCompile` was called from inside a compile callback |
//! | `LinkCacheCompileFailed` | a compile callback threw or returned no module that helps |
//! | `LinkCacheStorage` | any other IndexedDB failure |
//! | `LinkCacheNotLoaded` | a lazy edge was called before its function was targeted |

use js_sys::{Object, Reflect};
use linkcache_core::Miss;
use wasm_bindgen::JsValue;

/// An error on its way to JavaScript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebError {
    /// The JS `name`.
    pub name: &'static str,
    /// The message.
    pub message: String,
    /// For misses: cause, function and detail.
    pub miss: Option<(String, String, Option<String>)>,
}

impl WebError {
    /// An error with a name and a message.
    pub fn new(name: &'static str, message: impl Into<String>) -> WebError {
        WebError {
            name,
            message: message.into(),
            miss: None,
        }
    }

    /// The error for a miss.
    pub fn miss(miss: &Miss) -> WebError {
        WebError {
            name: "LinkCacheMiss",
            message: format!("miss ({}): {miss}", miss.cause()),
            miss: Some((
                miss.cause().into(),
                miss.function().into(),
                miss.detail().map(str::to_string),
            )),
        }
    }

    /// The JS `Error` object.
    pub fn to_js(&self) -> JsValue {
        let error = js_sys::Error::new(&self.message);
        error.set_name(self.name);
        if let Some((cause, function, detail)) = &self.miss {
            let object: &Object = error.as_ref();
            let set = |k: &str, v: JsValue| {
                let _ = Reflect::set(object, &JsValue::from_str(k), &v);
            };
            set("cause", JsValue::from_str(cause));
            set("function", JsValue::from_str(function));
            set(
                "detail",
                detail.as_deref().map_or(JsValue::NULL, JsValue::from_str),
            );
        }
        error.into()
    }
}

impl From<WebError> for JsValue {
    fn from(e: WebError) -> JsValue {
        e.to_js()
    }
}

/// The error for a DOMException `dom_name` raised while `doing` something.
pub fn from_dom_exception(doing: &str, dom_name: &str, detail: &str) -> WebError {
    match dom_name {
        "QuotaExceededError" => WebError::new(
            "LinkCacheQuotaExceeded",
            format!(
                "{doing}: the storage quota of this origin is exhausted; nothing was half-written ({detail})"
            ),
        ),
        "VersionError" => WebError::new(
            "LinkCacheUpgradeBlocked",
            format!("{doing}: the database was created by a newer linkcache ({detail})"),
        ),
        _ => WebError::new("LinkCacheStorage", format!("{doing}: {dom_name}: {detail}")),
    }
}

const DOM_NAMES: [&str; 8] = [
    "QuotaExceededError",
    "VersionError",
    "AbortError",
    "InvalidStateError",
    "NotFoundError",
    "ConstraintError",
    "DataError",
    "UnknownError",
];

/// The error for a failure of IndexedDB (through rexie) while `doing` something.
pub fn storage_error(doing: &str, error: &rexie::Error) -> WebError {
    let detail = format!("{error:?}");
    let dom_name = DOM_NAMES
        .iter()
        .find(|name| detail.contains(*name))
        .copied()
        .unwrap_or("Error");
    from_dom_exception(doing, dom_name, &format!("{error}"))
}
