//! Errors as JavaScript sees them: instances of the package's own `Error` classes, with
//! a message a web developer understands and a class (and `name`) a program can test.
//!
//! ```text
//! LinkCacheError                  every error the package throws or rejects with
//! ├── LinkCacheMiss               `target` cannot return a function; `missCause`, `function`, `detail` say why
//! ├── LinkCacheInvalidModule      `addModule` got bytes that are not a module linkcache accepts
//! ├── LinkCacheCorrupt            a bundle or record failed its checks
//! ├── LinkCacheReentrant          `getOrCompile` was called from inside a compile callback
//! ├── LinkCacheCompileFailed      a compile callback threw (`cause`) or returned no module that helps
//! ├── LinkCacheNotLoaded          a lazy edge was called before its function was targeted
//! └── LinkCacheStorage            IndexedDB failed (`cause`: its DOMException, when there is one)
//!     ├── LinkCacheQuotaExceeded  the origin's storage quota is full; nothing was half-written
//!     ├── LinkCacheUpgradeBlocked another tab holds an older version of the database open
//!     ├── LinkCacheSchemaTooNew   the database was written by a newer linkcache-web
//!     └── LinkCacheClosed         the cache was closed, or another tab upgraded or deleted the database
//! ```
//!
//! `e instanceof LinkCacheMiss` works on what the package rejects with, and `e.name` is
//! the class's name. A miss's cause is `missCause` (camelCase: `missingDependency`, ...);
//! ES2022's `Error.cause` is left to the underlying error (the IndexedDB `DOMException`,
//! or what a compile callback threw). The classes are defined in JavaScript below and
//! re-exported from the package's entry point (wasm-bindgen's `reexport`).

use js_sys::Reflect;
use linkcache_core::Miss;
use wasm_bindgen::prelude::*;
use web_sys::DomException;

#[wasm_bindgen(inline_js = r#"
export class LinkCacheError extends Error {}
export class LinkCacheMiss extends LinkCacheError {
  constructor(message, options = {}) {
    super(message, "cause" in options ? { cause: options.cause } : undefined);
    this.missCause = options.missCause ?? "unknown";
    this.function = options.function ?? "";
    this.detail = options.detail ?? null;
  }
}
export class LinkCacheInvalidModule extends LinkCacheError {}
export class LinkCacheCorrupt extends LinkCacheError {}
export class LinkCacheReentrant extends LinkCacheError {}
export class LinkCacheCompileFailed extends LinkCacheError {}
export class LinkCacheNotLoaded extends LinkCacheError {}
export class LinkCacheStorage extends LinkCacheError {}
export class LinkCacheQuotaExceeded extends LinkCacheStorage {}
export class LinkCacheUpgradeBlocked extends LinkCacheStorage {}
export class LinkCacheSchemaTooNew extends LinkCacheStorage {}
export class LinkCacheClosed extends LinkCacheStorage {}

const classes = {
  LinkCacheError, LinkCacheMiss, LinkCacheInvalidModule, LinkCacheCorrupt, LinkCacheReentrant,
  LinkCacheCompileFailed, LinkCacheNotLoaded, LinkCacheStorage, LinkCacheQuotaExceeded,
  LinkCacheUpgradeBlocked, LinkCacheSchemaTooNew, LinkCacheClosed,
};
// `name` on each prototype (as DOMException has it), spelled out so that a minifier
// renaming the classes does not change it.
for (const [name, error] of Object.entries(classes)) {
  Object.defineProperty(error.prototype, "name", { value: name, writable: true, configurable: true });
}

export function make_error(name, message, cause, missCause, func, detail) {
  const options = cause === undefined ? {} : { cause };
  const error = classes[name] ?? LinkCacheError;
  if (error === LinkCacheMiss) Object.assign(options, { missCause, function: func, detail });
  return new error(message, options);
}

export function make_forwarder(funcs, name, lazy) {
  return function (...args) {
    const f = funcs.get(name);
    if (f === undefined) {
      throw new LinkCacheNotLoaded(lazy
        ? `linkcache: \`${name}\` lies outside the closure loaded so far; await cache.target("${name}") before calling code that reaches it`
        : `linkcache: \`${name}\` was called before its module group was bound`);
    }
    return f(...args);
  };
}
"#)]
extern "C" {
    /// The base class of every error linkcache-web throws or rejects with.
    #[wasm_bindgen(extends = js_sys::Error)]
    #[derive(Clone, Debug)]
    pub type LinkCacheError;
    /// `target` cannot return a function: `missCause`, `function` and `detail` say why.
    #[wasm_bindgen(extends = LinkCacheError, extends = js_sys::Error)]
    #[derive(Clone, Debug)]
    pub type LinkCacheMiss;
    /// `addModule` got bytes that are not a module linkcache accepts.
    #[wasm_bindgen(extends = LinkCacheError, extends = js_sys::Error)]
    #[derive(Clone, Debug)]
    pub type LinkCacheInvalidModule;
    /// A bundle or record failed its checks.
    #[wasm_bindgen(extends = LinkCacheError, extends = js_sys::Error)]
    #[derive(Clone, Debug)]
    pub type LinkCacheCorrupt;
    /// `getOrCompile` was called from inside a compile callback.
    #[wasm_bindgen(extends = LinkCacheError, extends = js_sys::Error)]
    #[derive(Clone, Debug)]
    pub type LinkCacheReentrant;
    /// A compile callback threw (its error is the `cause`) or returned no module that helps.
    #[wasm_bindgen(extends = LinkCacheError, extends = js_sys::Error)]
    #[derive(Clone, Debug)]
    pub type LinkCacheCompileFailed;
    /// A lazy edge was called before its function was targeted.
    #[wasm_bindgen(extends = LinkCacheError, extends = js_sys::Error)]
    #[derive(Clone, Debug)]
    pub type LinkCacheNotLoaded;
    /// IndexedDB failed; the `cause` is its `DOMException` when there is one.
    #[wasm_bindgen(extends = LinkCacheError, extends = js_sys::Error)]
    #[derive(Clone, Debug)]
    pub type LinkCacheStorage;
    /// The origin's storage quota is full; nothing was half-written.
    #[wasm_bindgen(extends = LinkCacheStorage, extends = LinkCacheError, extends = js_sys::Error)]
    #[derive(Clone, Debug)]
    pub type LinkCacheQuotaExceeded;
    /// Another tab holds an older version of the database open.
    #[wasm_bindgen(extends = LinkCacheStorage, extends = LinkCacheError, extends = js_sys::Error)]
    #[derive(Clone, Debug)]
    pub type LinkCacheUpgradeBlocked;
    /// The database was written by a newer linkcache-web.
    #[wasm_bindgen(extends = LinkCacheStorage, extends = LinkCacheError, extends = js_sys::Error)]
    #[derive(Clone, Debug)]
    pub type LinkCacheSchemaTooNew;
    /// The cache was closed, or another tab upgraded or deleted the database.
    #[wasm_bindgen(extends = LinkCacheStorage, extends = LinkCacheError, extends = js_sys::Error)]
    #[derive(Clone, Debug)]
    pub type LinkCacheClosed;

    // The classes, re-exported from the package's entry point. Declared as functions
    // (which classes are) so that wasm-bindgen writes no TypeScript for them: the
    // declarations are in `crate::typescript`, with their fields.
    #[wasm_bindgen(reexport, skip_typescript, js_name = LinkCacheError)]
    fn link_cache_error_class();
    #[wasm_bindgen(reexport, skip_typescript, js_name = LinkCacheMiss)]
    fn link_cache_miss_class();
    #[wasm_bindgen(reexport, skip_typescript, js_name = LinkCacheInvalidModule)]
    fn link_cache_invalid_module_class();
    #[wasm_bindgen(reexport, skip_typescript, js_name = LinkCacheCorrupt)]
    fn link_cache_corrupt_class();
    #[wasm_bindgen(reexport, skip_typescript, js_name = LinkCacheReentrant)]
    fn link_cache_reentrant_class();
    #[wasm_bindgen(reexport, skip_typescript, js_name = LinkCacheCompileFailed)]
    fn link_cache_compile_failed_class();
    #[wasm_bindgen(reexport, skip_typescript, js_name = LinkCacheNotLoaded)]
    fn link_cache_not_loaded_class();
    #[wasm_bindgen(reexport, skip_typescript, js_name = LinkCacheStorage)]
    fn link_cache_storage_class();
    #[wasm_bindgen(reexport, skip_typescript, js_name = LinkCacheQuotaExceeded)]
    fn link_cache_quota_exceeded_class();
    #[wasm_bindgen(reexport, skip_typescript, js_name = LinkCacheUpgradeBlocked)]
    fn link_cache_upgrade_blocked_class();
    #[wasm_bindgen(reexport, skip_typescript, js_name = LinkCacheSchemaTooNew)]
    fn link_cache_schema_too_new_class();
    #[wasm_bindgen(reexport, skip_typescript, js_name = LinkCacheClosed)]
    fn link_cache_closed_class();

    /// An instance of the class `name` (`LinkCacheError` for an unknown name).
    fn make_error(
        name: &str,
        message: &str,
        cause: &JsValue,
        miss_cause: Option<String>,
        function: Option<String>,
        detail: Option<String>,
    ) -> LinkCacheError;

    /// A function that calls `funcs.get(name)`, or throws `LinkCacheNotLoaded`.
    pub(crate) fn make_forwarder(funcs: &js_sys::Map, name: &str, lazy: bool) -> js_sys::Function;
}

/// The cause, function and detail of a miss (as `LinkCacheMiss` has them).
pub type MissFields = (String, String, Option<String>);

/// An error on its way to JavaScript.
#[derive(Clone, Debug)]
pub struct WebError {
    /// The JS class and `name`.
    pub name: &'static str,
    /// The message.
    pub message: String,
    /// For misses: cause, function and detail.
    pub miss: Option<MissFields>,
    /// The underlying error (`Error.cause`): a `DOMException`, what a callback threw.
    pub cause: Option<JsValue>,
}

impl WebError {
    /// An error with a name and a message.
    pub fn new(name: &'static str, message: impl Into<String>) -> WebError {
        WebError {
            name,
            message: message.into(),
            miss: None,
            cause: None,
        }
    }

    /// This error, with `cause` as its `Error.cause`.
    pub fn with_cause(mut self, cause: JsValue) -> WebError {
        self.cause = Some(cause);
        self
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
            cause: None,
        }
    }

    /// The JS error: an instance of the class `name`.
    pub fn to_js(&self) -> JsValue {
        let (miss_cause, function, detail) = match &self.miss {
            Some((cause, function, detail)) => {
                (Some(cause.clone()), Some(function.clone()), detail.clone())
            }
            None => (None, None, None),
        };
        make_error(
            self.name,
            &self.message,
            self.cause.as_ref().unwrap_or(&JsValue::UNDEFINED),
            miss_cause,
            function,
            detail,
        )
        .into()
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
                 free space (gc({{ maxBytes }}) or clear() this or another cache) and try again{detail}"
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

/// The exception inside an IndexedDB error, if there is one.
fn exception(error: &idb::Error) -> Option<&JsValue> {
    use idb::Error as E;
    match error {
        E::DomException(e) => Some(e.as_ref()),
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
        | E::UpdateFailed(v) => Some(v),
        _ => None,
    }
}

/// The error for a failure of IndexedDB while `doing` something; its `cause` is the
/// browser's exception.
pub fn storage_error(doing: &str, error: &idb::Error) -> WebError {
    let Some(value) = exception(error) else {
        return WebError::new("LinkCacheStorage", format!("{doing}: {error}"));
    };
    let text = |key: &str| {
        Reflect::get(value, &JsValue::from_str(key))
            .ok()
            .and_then(|v| v.as_string())
    };
    let error = match text("name") {
        Some(name)
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
        Some(name) => from_dom_exception(doing, &name, &text("message").unwrap_or_default()),
        None => WebError::new("LinkCacheStorage", format!("{doing}: {error}")),
    };
    error.with_cause(value.clone())
}

/// The error for a transaction the browser aborted while `doing` something; `reason` is
/// the transaction's `error` (a quota abort carries `QuotaExceededError`), and the cause.
pub fn transaction_aborted(doing: &str, reason: Option<DomException>) -> WebError {
    match reason {
        Some(e) => from_dom_exception(doing, &e.name(), &e.message()).with_cause(e.into()),
        None => WebError::new(
            "LinkCacheStorage",
            format!(
                "{doing}: the browser aborted the transaction without a reason; nothing was written"
            ),
        ),
    }
}
