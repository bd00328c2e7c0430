//! Real servers for the remote tier's tests: a Redis server per test (Debian's
//! `redis-server`, on 127.0.0.1 at a free port, persistence off), and a port that
//! accepts connections and never answers.
//!
//! `cargo xtask test` installs redis-server and sets `LINKCACHE_REQUIRE_REMOTE_SERVERS`,
//! so there a missing server fails the test; a plain `cargo test` on a machine without
//! one skips the remote tests with a message.

use std::net::TcpListener;
use std::time::Duration;

pub use linkcache_tests::servers::RedisServer;

/// A Redis server for one test, or `None` (with a message) when there is no
/// redis-server and the run does not require one.
pub fn start_redis() -> Option<RedisServer> {
    let Some(binary) = RedisServer::binary() else {
        assert!(
            std::env::var_os("LINKCACHE_REQUIRE_REMOTE_SERVERS").is_none(),
            "redis-server is required (LINKCACHE_REQUIRE_REMOTE_SERVERS) but not installed"
        );
        eprintln!("skipped: no redis-server on this machine (cargo xtask test installs it)");
        return None;
    };
    Some(RedisServer::start(binary).expect("redis-server starts"))
}

/// A connection to the test's server, to inspect or damage what was published.
pub fn connection(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url(""))
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
        .expect("connects to the test's redis-server")
}

/// An address that accepts connections (the kernel completes the handshake) and never
/// answers: nobody calls `accept`.
pub struct BlackHole {
    _listener: TcpListener,
    pub port: u16,
}

impl BlackHole {
    pub fn bind() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        BlackHole {
            _listener: listener,
            port,
        }
    }
}

/// A bucket of its own on the S3-compatible server the run started (moto_server, by
/// `cargo xtask test`, at `$LINKCACHE_TEST_S3`), and an OpenDAL operator on it to look
/// at and damage what was published. `None` (with a message) when there is no server
/// and the run does not require one.
pub struct S3Bucket {
    pub endpoint: String,
    pub bucket: String,
    op: opendal::Operator,
    runtime: tokio::runtime::Runtime,
}

/// Whether S3 requests can be signed here (`AWS_ACCESS_KEY_ID` set, as `cargo xtask
/// test` sets it): without credentials the S3 client fails before it connects, so a
/// test of what the network does cannot run. `false` with a message, unless the run
/// requires the remote servers.
pub fn s3_credentials() -> bool {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        return true;
    }
    assert!(
        std::env::var_os("LINKCACHE_REQUIRE_REMOTE_SERVERS").is_none(),
        "S3 credentials are required (LINKCACHE_REQUIRE_REMOTE_SERVERS) but \
         AWS_ACCESS_KEY_ID is not set"
    );
    eprintln!("skipped: no S3 credentials (cargo xtask test sets them)");
    false
}

impl S3Bucket {
    pub fn create(test: &str) -> Option<S3Bucket> {
        let Some(endpoint) = std::env::var("LINKCACHE_TEST_S3").ok() else {
            assert!(
                std::env::var_os("LINKCACHE_REQUIRE_REMOTE_SERVERS").is_none(),
                "an S3 server is required (LINKCACHE_REQUIRE_REMOTE_SERVERS) but \
                 LINKCACHE_TEST_S3 is not set"
            );
            eprintln!("skipped: no S3 server (cargo xtask test starts one)");
            return None;
        };
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bucket = format!("lc-{test}-{}-{n}", std::process::id());
        // Creating a bucket needs no signature on moto: one raw request.
        let status = linkcache_tests::servers::create_bucket(&endpoint, &bucket).unwrap();
        assert_eq!(status, 200, "creating bucket {bucket}");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = opendal::services::S3::default()
            .bucket(&bucket)
            .endpoint(&endpoint)
            .region("us-east-1")
            .disable_ec2_metadata();
        let transport = opendal::HttpTransporter::new(
            opendal_http_transport_reqwest::ReqwestTransport::default(),
        );
        let op = opendal::Operator::new(builder)
            .unwrap()
            .with_context(opendal::OperationContext::new().with_http_transport(transport));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Some(S3Bucket {
            endpoint,
            bucket,
            op,
            runtime,
        })
    }

    /// `s3://<bucket>/lc?endpoint=…&region=us-east-1` with `options` appended.
    pub fn url(&self, options: &str) -> String {
        let base = format!(
            "s3://{}/lc?endpoint={}&region=us-east-1",
            self.bucket, self.endpoint
        );
        if options.is_empty() {
            base
        } else {
            format!("{base}&{options}")
        }
    }

    /// The object at `key` (below the bucket).
    pub fn get(&self, key: &str) -> Vec<u8> {
        self.runtime
            .block_on(self.op.read(key))
            .unwrap_or_else(|e| panic!("GET {key}: {e}"))
            .to_vec()
    }

    /// Replaces the object at `key`.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        self.runtime
            .block_on(self.op.write(key, bytes.to_vec()))
            .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
    }

    /// Every key of the bucket, sorted.
    pub fn keys(&self) -> Vec<String> {
        let listed = self
            .runtime
            .block_on(async { self.op.list_with("").recursive(true).await })
            .unwrap();
        let mut keys: Vec<String> = listed
            .into_iter()
            .filter(|entry| !entry.path().ends_with('/'))
            .map(|entry| entry.path().to_string())
            .collect();
        keys.sort();
        keys
    }
}

/// A remote engine a test runs against.
pub enum Server {
    Redis(RedisServer),
    S3(S3Bucket),
}

impl Server {
    /// Every engine this machine can run for `test`: Redis, then S3.
    pub fn all(test: &str) -> Vec<Server> {
        let mut servers = Vec::new();
        if let Some(redis) = start_redis() {
            servers.push(Server::Redis(redis));
        }
        if let Some(s3) = S3Bucket::create(test) {
            servers.push(Server::S3(s3));
        }
        servers
    }

    pub fn url(&self, options: &str) -> String {
        match self {
            Server::Redis(redis) => redis.url(options),
            Server::S3(s3) => s3.url(options),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Server::Redis(_) => "redis",
            Server::S3(_) => "s3",
        }
    }
}
