//! [`Error`]: everything that can go wrong in `linkcache-native`, with enough context to
//! act on.

use std::io;
use std::path::{Path, PathBuf};

use linkcache_core::{AnalysisError, BundleError, FuncSig, Miss};

/// An error of the native host.
///
/// A [`Miss`](Error::Miss) is the expected outcome of targeting a function that is not
/// (usably) cached: compile it and add the module, or use
/// [`Cache::get_or_compile`](crate::Cache::get_or_compile). Every other variant is a
/// failure that leaves the cache usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The function cannot be targeted; the miss names the cause.
    #[error("miss: {0}")]
    Miss(#[from] Miss),
    /// The bytes given to `add_module` are not a module linkcache accepts.
    #[error("module rejected: {0}")]
    InvalidModule(#[from] AnalysisError),
    /// A bundle could not be imported.
    #[error("bundle rejected: {0}")]
    InvalidBundle(#[from] BundleError),
    /// A file of the cache could not be read or written (a full disk, permissions).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A compilation (or a call) was started on a cache from inside its own compile
    /// callback (or from a host function running inside a call into it) on the same
    /// thread. Return every module a function needs from one compile callback instead.
    #[error(
        "`{requested}` was requested from inside {inside} on the same thread; a compile callback \
         must return every module its function needs instead of compiling through the cache"
    )]
    Reentrant {
        /// What the thread was inside: "the compile callback for `f`", "a call into this cache".
        inside: String,
        /// The function requested from inside it.
        requested: String,
    },
    /// The compile callback returned modules that still do not make the function
    /// targetable.
    #[error("the compiler's modules did not make `{function}` targetable: {miss}")]
    CompileDidNotHelp {
        /// The function asked for.
        function: String,
        /// The miss that remained.
        miss: Box<Miss>,
    },
    /// The compile callback failed.
    #[error("compiling `{function}` failed: {reason}")]
    CompileFailed {
        /// The function asked for.
        function: String,
        /// The compiler's error.
        reason: String,
    },
    /// A typed target was requested with types that do not match the function.
    #[error("`{function}` has signature {found}, but the caller's types are {expected}")]
    SignatureMismatch {
        /// The function.
        function: String,
        /// The signature the caller asked for.
        expected: String,
        /// The function's signature.
        found: FuncSig,
    },
    /// A call was made with arguments that do not fit the function.
    #[error("bad arguments for `{function}`: {reason}")]
    BadArguments {
        /// The function.
        function: String,
        /// What is wrong.
        reason: String,
    },
    /// The called WebAssembly code trapped, or instantiating it failed.
    #[error("`{function}` trapped: {source}")]
    Trap {
        /// The function called.
        function: String,
        /// wasmtime's error, with the wasm backtrace.
        source: wasmtime::Error,
    },
    /// The embedder's linker could not supply an import.
    #[error("linking failed: {0}")]
    Link(String),
    /// The cache directory is opened read-only (a read-only mount, a directory this user
    /// cannot write, a root that is not trusted): it serves what it holds, and adding,
    /// importing or collecting garbage is refused.
    #[error("the cache directory {} is read-only here ({reason}); adding to it is not possible", dir.display())]
    ReadOnly {
        /// The cache root.
        dir: PathBuf,
        /// Why this process does not write to it.
        reason: String,
    },
    /// A configuration given to the cache is not valid (a remote URL, an option).
    #[error("configuration: {0}")]
    Config(String),
    /// The remote tier could not do what was asked of it explicitly (`push`, `pull`);
    /// on the ordinary paths a failing remote is a miss, never this error.
    #[error("remote tier: {0}")]
    Remote(String),
    /// A target was used with a cache other than the one it came from.
    #[error("this target belongs to another Cache; target the function on this one")]
    WrongCache,
}

impl Error {
    pub(crate) fn io(path: &Path, source: io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The miss, when this error is one.
    pub fn miss(&self) -> Option<&Miss> {
        match self {
            Error::Miss(miss) => Some(miss),
            _ => None,
        }
    }

    /// Whether the disk is full (or the user's quota exhausted).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull
            || source.raw_os_error() == Some(28 /* ENOSPC */)
            || source.raw_os_error() == Some(122 /* EDQUOT */))
    }
}

/// Attaches a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, Error> {
        self.map_err(|e| Error::io(path, e))
    }
}
