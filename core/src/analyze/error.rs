//! [`AnalysisError`]: every reason the analysis gives no manifest for a module's bytes.

use alloc::string::String;

/// Why bytes could not be turned into a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// The bytes are not a WebAssembly module at all (wrong magic, a component, empty).
    #[error("not a WebAssembly module: {reason}")]
    NotWasm {
        /// What the parser found instead.
        reason: String,
    },
    /// The bytes are a WebAssembly module that fails validation or is truncated.
    #[error("invalid WebAssembly module at byte offset {offset}: {message}")]
    Invalid {
        /// Where in the bytes the problem is.
        offset: usize,
        /// The validator's message.
        message: String,
    },
    /// An import in a `linkcache:*` namespace that the convention does not allow (a
    /// `linkcache:fn` import that is not a function, an unknown `linkcache:` namespace).
    #[error("import `{namespace}` `{name}`: {reason}")]
    UnsupportedImport {
        /// The import's module name.
        namespace: String,
        /// The import's field name.
        name: String,
        /// Why it is not accepted.
        reason: String,
    },
    /// An exported function uses a value type linkcache cannot describe (a typed
    /// reference, a GC type).
    #[error("function `{function}` uses a type linkcache does not support: {reason}")]
    UnsupportedType {
        /// The exported function.
        function: String,
        /// The unsupported type, as the parser describes it.
        reason: String,
    },
    /// An export re-exports an imported function; func_names must be defined where they
    /// are exported.
    #[error(
        "export `{name}` re-exports an imported function; a module may export only functions it defines"
    )]
    ReexportedImport {
        /// The export's name.
        name: String,
    },
    /// A `linkcache:global` import has no definition to validate it against.
    #[error(
        "global `{global}` is imported from `linkcache:global` but has no definition (none in the `linkcache.globals` section, none passed by the caller)"
    )]
    MissingGlobalDefinition {
        /// The global's name.
        global: String,
    },
    /// The `linkcache.globals` custom section cannot be parsed.
    #[error("the `linkcache.globals` custom section is malformed: {reason}")]
    BadGlobalsSection {
        /// What is wrong with it.
        reason: String,
    },
    /// A declaration names a function the module does not export.
    #[error("declared dependencies name `{function}`, which the module does not export")]
    DeclaredUnknownFunction {
        /// The declared function.
        function: String,
    },
    /// A declaration names a dependency the module does not import.
    #[error(
        "function `{function}` declares dependency `{dependency}`, which the module does not import"
    )]
    DeclaredNotImported {
        /// The declared function.
        function: String,
        /// The func_name or global it declares.
        dependency: String,
    },
    /// The module exceeds one of the analysis's limits (see [`analyze_with`](super::analyze_with)).
    #[error("the module is too large to analyze: more {what} than the limit of {limit}")]
    TooLarge {
        /// What exceeds its limit.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// The binary reaches a dependency that the declaration leaves out: the declaration
    /// would make the cache load too little.
    #[error("function `{function}` reaches `{dependency}`, which its declaration leaves out")]
    UndeclaredDependency {
        /// The declared function.
        function: String,
        /// The func_name or global its code reaches.
        dependency: String,
    },
}
