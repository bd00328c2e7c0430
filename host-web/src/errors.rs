//! Errors as JavaScript sees them: `Error` objects with a clear message and a `name` a
//! program can test.
//!
//! | name | when |
//! | --- | --- |
//! | `LinkCacheMiss` | `target` cannot return a function; `missCause`, `function`, `detail` say why |
//! | `LinkCacheInvalidModule` | `addModule` got bytes that are not a module linkcache accepts |
//! | `LinkCacheCorrupt` | a bundle or record failed its checks |
//! | `LinkCacheQuotaExceeded` | the origin's storage quota is full; nothing was half-written |
//! | `LinkCacheUpgradeBlocked` | another tab holds an older version of the database open |
//! | `LinkCacheSchemaTooNew` | the database was written by a newer linkcache-web |
//! | `LinkCacheClosed` | the cache was closed, or another tab upgraded or deleted the database |
//! | `LinkCacheReentrant` | `getOrCompile` was called from inside a compile callback |
//! | `LinkCacheCompileFailed` | a compile callback threw or returned no module that helps |
//! | `LinkCacheStorage` | any other IndexedDB failure |
//! | `LinkCacheNotLoaded` | a lazy edge was called before its function was targeted |

use js_sys::{Object, Reflect};
use linkcache_core::Miss;
use wasm_bindgen::JsValue;
use web_sys::DomException;

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
        let cause = camel_case(miss.cause());
        WebError {
            name: "LinkCacheMiss",
            message: format!("miss ({cause}): {miss}"),
            miss: Some((
                cause,
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
            // Not `cause`: ES2022 gives `Error.cause` to the underlying error.
            set("missCause", JsValue::from_str(cause));
            set("function", JsValue::from_str(function));
            set(
                "detail",
                detail.as_deref().map_or(JsValue::NULL, JsValue::from_str),
            );
        }
        error.into()
    }
}

/// `missing_dependency` as `missingDependency`: the JS face's keys are camelCase.
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl From<WebError> for JsValue {
    fn from(e: WebError) -> JsValue {
        e.to_js()
    }
}

/// The error for a DOMException `dom_name` raised while `doing` something.
pub fn from_dom_exception(doing: &str, dom_name: &str, detail: &str) -> WebError {
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    match dom_name {
        "QuotaExceededError" => WebError::new(
            "LinkCacheQuotaExceeded",
            format!(
                "{doing}: the storage quota of this origin is exhausted, so nothing was written; \
                 free space (clear() this or another cache) and try again{detail}"
            ),
        ),
        "VersionError" => WebError::new(
            "LinkCacheSchemaTooNew",
            format!(
                "{doing}: the database was written by a newer linkcache-web (schema version above {}); \
                 use that version, or clear the site's data{detail}",
                crate::store::SCHEMA_VERSION
            ),
        ),
        _ => WebError::new("LinkCacheStorage", format!("{doing}: {dom_name}{detail}")),
    }
}

/// The `name` and `message` of the exception inside an IndexedDB error, if there is one.
fn exception(error: &idb::Error) -> Option<(String, String)> {
    use idb::Error as E;
    let value: &JsValue = match error {
        E::DomException(e) => e.as_ref(),
        E::AddFailed(v)
        | E::ClearFailed(v)
        | E::CountFailed(v)
        | E::DeleteFailed(v)
        | E::GetAllFailed(v)
        | E::GetAllKeysFailed(v)
        | E::GetFailed(v)
        | E::IndexedDbOpenFailed(v)
        | E::IndexNotFound(v)
        | E::KeyRangeCreateFailed(v)
        | E::ObjectStoreNotFound(v)
        | E::TransactionCommitError(v)
        | E::TransactionOpenFailed(v)
        | E::UpdateFailed(v) => v,
        _ => return None,
    };
    let text = |key: &str| {
        Reflect::get(value, &JsValue::from_str(key))
            .ok()
            .and_then(|v| v.as_string())
    };
    Some((text("name")?, text("message").unwrap_or_default()))
}

/// The error for a failure of IndexedDB while `doing` something.
pub fn storage_error(doing: &str, error: &idb::Error) -> WebError {
    match exception(error) {
        Some((name, _))
            if name == "InvalidStateError"
                && matches!(error, idb::Error::TransactionOpenFailed(_)) =>
        {
            WebError::new(
                "LinkCacheClosed",
                format!(
                    "{doing}: the database connection is closed (close() was called, or another tab or \
                     worker upgraded or deleted the database); open the cache again"
                ),
            )
        }
        Some((name, message)) => from_dom_exception(doing, &name, &message),
        None => WebError::new("LinkCacheStorage", format!("{doing}: {error}")),
    }
}

/// The error for a transaction the browser aborted while `doing` something; `reason` is
/// the transaction's `error` (a quota abort carries `QuotaExceededError`).
pub fn transaction_aborted(doing: &str, reason: Option<DomException>) -> WebError {
    match reason {
        Some(e) => from_dom_exception(doing, &e.name(), &e.message()),
        None => WebError::new(
            "LinkCacheStorage",
            format!(
                "{doing}: the browser aborted the transaction without a reason; nothing was written"
            ),
        ),
    }
}
