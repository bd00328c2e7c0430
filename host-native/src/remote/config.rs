//! [`RemoteConfig`]: where the remote tier is and how it is used, parsed from one URL
//! (`CacheBuilder::remote`, `$LINKCACHE_REMOTE`, the CLI's `--remote`).
//!
//! ```text
//! redis://[user:password@]host:port[/db][?prefix=lc:]      a Redis server (or Valkey)
//! s3://bucket[/prefix]?endpoint=http://host:port&region=… an S3-compatible store
//! off                                                       no remote tier
//! ```
//!
//! Query keys every scheme takes: `mode=read-write|read-only|off`, `timeout_ms` (the
//! deadline of one remote read, default 1000), `publish_timeout_ms` (the deadline of one
//! background publication batch, default 30000: S3 files one object per function),
//! `cooldown_ms` (how long the remote
//! is skipped after repeated failures, default 10000), `trust=native` (precompiled code
//! from the remote may run here), `key_file=/path` (a shared secret that signs
//! precompiled code; `$LINKCACHE_REMOTE_KEY` works too), `max_module_bytes`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::error::Error;

/// What the remote tier may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoteMode {
    /// Read on a local miss, publish local commits.
    ReadWrite,
    /// Read on a local miss, never write (an untrusted CI job).
    ReadOnly,
}

/// Whether precompiled code from the remote may run on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoteTrust {
    /// Only wasm bytes, manifests and index entries come from the remote (each checked
    /// against its id or checksum); every module is compiled on this machine. The
    /// default: wasm is sandboxed, native code is not.
    WasmOnly,
    /// Precompiled artifacts are shared too: fetched ones are used after their checksum
    /// (and, with a key, their signature) verify. Use only with a remote that only
    /// trusted machines can write.
    Native,
}

/// The storage engine behind the remote tier, with its own part of the URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Engine {
    /// A Redis server: the URL the `redis` crate connects to (our own query keys
    /// removed) and the prefix of every key.
    Redis { url: String, prefix: String },
    /// An S3 bucket: its name, the prefix of every object, the endpoint (empty: AWS)
    /// and the region.
    S3 {
        bucket: String,
        root: String,
        endpoint: Option<String>,
        region: String,
    },
}

/// A parsed remote configuration.
///
/// ```text
/// redis://[user:password@]host:port[/db][?prefix=lc:]      a Redis server (or Valkey)
/// s3://bucket[/prefix]?endpoint=http://host:port&region=… an S3-compatible store
/// off                                                       no remote tier
/// ```
///
/// Query keys every scheme takes: `mode=read-write|read-only|off`; `timeout_ms` (the
/// deadline of one remote read, default 1000); `publish_timeout_ms` (of one background
/// publication batch, default 30000); `cooldown_ms` (how long the remote is skipped
/// after three failures in a row, default 10000); `trust=native` (precompiled code from
/// the remote may run here; `$LINKCACHE_REMOTE_TRUST=native` too); `key_file=/path` (a
/// shared secret that signs precompiled code; `$LINKCACHE_REMOTE_KEY` too);
/// `max_module_bytes` (default 64 MiB). S3 credentials come from the usual `AWS_*`
/// variables (or the AWS config files), never from the instance metadata endpoint.
#[derive(Clone)]
pub struct RemoteConfig {
    pub(crate) engine: Engine,
    /// What the tier may do.
    pub mode: RemoteMode,
    /// Whether precompiled code from the remote may run here.
    pub trust: RemoteTrust,
    /// The deadline of one remote read (a closure fetch, a probe); dropping the last
    /// clone of a cache waits at most twice this for queued publications.
    pub timeout: Duration,
    /// The deadline of one publication batch (in the background, or `push`).
    pub publish_timeout: Duration,
    /// How long the remote is skipped after repeated failures (doubling, at most 12×,
    /// while it keeps failing).
    pub cooldown: Duration,
    /// The largest module (and manifest) accepted from the remote.
    pub max_module_bytes: u64,
    /// The largest precompiled artifact accepted from the remote.
    pub max_artifact_bytes: u64,
    /// The key signing precompiled code (derived from the shared secret), if any.
    pub(crate) key: Option<[u8; 32]>,
    /// The URL with its password removed, for stats and messages.
    redacted: String,
}

/// The default deadline of one remote operation.
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_millis(1000);
/// The default deadline of one publication batch.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// The default cool-down after repeated remote failures.
pub const DEFAULT_REMOTE_COOLDOWN: Duration = Duration::from_secs(10);
const KEY_CONTEXT: &str = "linkcache 2026 remote artifact mac v1";

impl RemoteConfig {
    /// Parses a remote URL; `Ok(None)` for `off` (or `mode=off`, or an empty string).
    /// The secret signing precompiled code comes from `key_file=` or
    /// `$LINKCACHE_REMOTE_KEY`, and `$LINKCACHE_REMOTE_TRUST=native` trusts native code
    /// as `trust=native` does.
    pub fn parse(url: &str) -> Result<Option<RemoteConfig>, Error> {
        let url = url.trim();
        if url.is_empty() || url.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = |reason: String| Error::Config(format!("remote URL `{}`: {reason}", redact(url)));
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let mut query: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in parsed.query_pairs() {
            query.insert(key.into_owned(), value.into_owned());
        }
        let mut take = |key: &str| query.remove(key);
        let mode = match take("mode").as_deref() {
            None | Some("read-write") => RemoteMode::ReadWrite,
            Some("read-only") => RemoteMode::ReadOnly,
            Some("off") => return Ok(None),
            Some(other) => {
                return Err(bad(format!(
                    "mode `{other}` is none of read-write, read-only, off"
                )));
            }
        };
        let trust_value = take("trust").or_else(|| std::env::var("LINKCACHE_REMOTE_TRUST").ok());
        let trust = match trust_value.as_deref() {
            None | Some("") | Some("wasm") => RemoteTrust::WasmOnly,
            Some("native") => RemoteTrust::Native,
            Some(other) => return Err(bad(format!("trust `{other}` is neither wasm nor native"))),
        };
        let millis = |value: Option<String>, key: &str, default: Duration| match value {
            None => Ok(default),
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| bad(format!("{key} `{text}` is not a positive number"))),
        };
        let timeout = millis(take("timeout_ms"), "timeout_ms", DEFAULT_REMOTE_TIMEOUT)?;
        let cooldown = millis(take("cooldown_ms"), "cooldown_ms", DEFAULT_REMOTE_COOLDOWN)?;
        let publish_timeout = millis(
            take("publish_timeout_ms"),
            "publish_timeout_ms",
            DEFAULT_PUBLISH_TIMEOUT,
        )?;
        let max_module_bytes = match take("max_module_bytes") {
            None => 64 << 20,
            Some(text) => text
                .parse()
                .map_err(|_| bad(format!("max_module_bytes `{text}` is not a number")))?,
        };
        let secret = match take("key_file") {
            Some(path) => Some(
                std::fs::read(&path)
                    .map_err(|e| bad(format!("key_file `{path}`: {e}")))?
                    .trim_ascii()
                    .to_vec(),
            ),
            None => std::env::var("LINKCACHE_REMOTE_KEY")
                .ok()
                .filter(|s| !s.is_empty())
                .map(String::into_bytes),
        };
        let key = secret.map(|secret| blake3::derive_key(KEY_CONTEXT, &secret));
        let engine = match parsed.scheme() {
            "redis" | "rediss" | "redis+unix" | "unix" => {
                let prefix = take("prefix").unwrap_or_else(|| "lc:".into());
                let mut connect = parsed.clone();
                // The redis crate's own query keys; anything else is a mistake.
                let rest: Vec<(String, String)> = ["db", "protocol"]
                    .into_iter()
                    .filter_map(|key| take(key).map(|value| (key.to_string(), value)))
                    .collect();
                if rest.is_empty() {
                    connect.set_query(None);
                } else {
                    connect.query_pairs_mut().clear().extend_pairs(rest);
                }
                Engine::Redis {
                    url: connect.to_string(),
                    prefix,
                }
            }
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("no bucket".into()))?
                    .to_string();
                let root = parsed.path().trim_matches('/').to_string();
                let endpoint = take("endpoint");
                let region = take("region")
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .unwrap_or_else(|| "us-east-1".into());
                Engine::S3 {
                    bucket,
                    root,
                    endpoint,
                    region,
                }
            }
            other => {
                return Err(bad(format!(
                    "the scheme `{other}` is not supported (redis://, s3://, or off)"
                )));
            }
        };
        if let Some(unknown) = query.keys().next() {
            return Err(bad(format!("unknown option `{unknown}`")));
        }
        Ok(Some(RemoteConfig {
            engine,
            mode,
            trust,
            timeout,
            publish_timeout,
            cooldown,
            max_module_bytes,
            max_artifact_bytes: 256 << 20,
            key,
            redacted: redact(url),
        }))
    }

    /// The configuration from `$LINKCACHE_REMOTE` (`Ok(None)` when unset or `off`).
    pub fn from_env() -> Result<Option<RemoteConfig>, Error> {
        match std::env::var("LINKCACHE_REMOTE") {
            Ok(url) => RemoteConfig::parse(&url),
            Err(_) => Ok(None),
        }
    }

    /// The URL with its password removed.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    /// Whether fetched artifacts must carry a valid signature (a shared key is set).
    pub fn signed(&self) -> bool {
        self.key.is_some()
    }

    /// The storage engine's name (`redis`, `s3`).
    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Redis { .. } => "redis",
            Engine::S3 { .. } => "s3",
        }
    }
}

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.redacted)
            .field("mode", &self.mode)
            .field("trust", &self.trust)
            .field("timeout", &self.timeout)
            .field("signed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

/// `url` with a password (and a secret in the query) replaced by `***`.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_keep_the_server_part_and_take_our_options() {
        let config = RemoteConfig::parse(
            "redis://user:secret@127.0.0.1:6379/2?prefix=t:&mode=read-only&timeout_ms=250&trust=native",
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.mode, RemoteMode::ReadOnly);
        assert_eq!(config.trust, RemoteTrust::Native);
        assert_eq!(config.timeout, Duration::from_millis(250));
        assert_eq!(config.cooldown, DEFAULT_REMOTE_COOLDOWN);
        assert_eq!(config.publish_timeout, DEFAULT_PUBLISH_TIMEOUT);
        let quick = RemoteConfig::parse("redis://h:1?publish_timeout_ms=250")
            .unwrap()
            .unwrap();
        assert_eq!(quick.publish_timeout, Duration::from_millis(250));
        assert_eq!(quick.timeout, DEFAULT_REMOTE_TIMEOUT);
        match &config.engine {
            Engine::Redis { url, prefix } => {
                assert_eq!(url, "redis://user:secret@127.0.0.1:6379/2");
                assert_eq!(prefix, "t:");
            }
            Engine::S3 { .. } => panic!("not redis"),
        }
        assert!(!config.redacted_url().contains("secret"));
        assert!(config.redacted_url().contains("***"));
    }

    #[test]
    fn s3_urls_name_bucket_prefix_endpoint_and_region() {
        let config = RemoteConfig::parse(
            "s3://my-bucket/a/b?endpoint=http://127.0.0.1:9000&region=eu-west-1",
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.mode, RemoteMode::ReadWrite);
        assert!(
            config.engine
                == Engine::S3 {
                    bucket: "my-bucket".into(),
                    root: "a/b".into(),
                    endpoint: Some("http://127.0.0.1:9000".into()),
                    region: "eu-west-1".into(),
                }
        );
    }

    #[test]
    fn off_and_bad_urls() {
        assert!(RemoteConfig::parse("off").unwrap().is_none());
        assert!(RemoteConfig::parse("").unwrap().is_none());
        assert!(
            RemoteConfig::parse("redis://h:1?mode=off")
                .unwrap()
                .is_none()
        );
        for bad in [
            "ftp://h/x",
            "redis://h:1?mode=sometimes",
            "redis://h:1?timeout_ms=0",
            "s3://b?colour=red",
            "not a url",
        ] {
            let error = RemoteConfig::parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} parsed"));
            assert!(matches!(error, Error::Config(_)), "{bad}: {error}");
        }
    }
}
