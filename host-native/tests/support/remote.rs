//! Real servers for the remote tier's tests: a Redis server per test (Debian's
//! `redis-server`, on 127.0.0.1 at a free port, persistence off), and a port that
//! accepts connections and never answers.
//!
//! `cargo xtask test` installs redis-server and sets `LINKCACHE_REQUIRE_REMOTE_SERVERS`,
//! so there a missing server fails the test; a plain `cargo test` on a machine without
//! one skips the remote tests with a message.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Redis server running as a child of the test; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    binary: PathBuf,
    dir: tempfile::TempDir,
}

fn redis_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LINKCACHE_REDIS_SERVER") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("redis-server"))
        .find(|path| path.is_file())
}

impl RedisServer {
    /// Starts a server, or `None` (with a message) when there is no redis-server and
    /// the run does not require one.
    pub fn start() -> Option<RedisServer> {
        let Some(binary) = redis_binary() else {
            assert!(
                std::env::var_os("LINKCACHE_REQUIRE_REMOTE_SERVERS").is_none(),
                "redis-server is required (LINKCACHE_REQUIRE_REMOTE_SERVERS) but not installed"
            );
            eprintln!("skipped: no redis-server on this machine (cargo xtask test installs it)");
            return None;
        };
        let port = free_port();
        let mut server = RedisServer {
            child: None,
            port,
            binary,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart();
        Some(server)
    }

    /// `redis://127.0.0.1:<port>` with `options` as its query.
    pub fn url(&self, options: &str) -> String {
        if options.is_empty() {
            format!("redis://127.0.0.1:{}", self.port)
        } else {
            format!("redis://127.0.0.1:{}?{options}", self.port)
        }
    }

    /// Kills the server (its data is gone: persistence is off).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut connection) = self.connection_once()
                && redis::cmd("PING").query::<String>(&mut connection).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn connection_once(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url(""))?.get_connection_with_timeout(Duration::from_secs(1))
    }

    /// A connection for the test itself (to inspect or damage what was published).
    pub fn connection(&self) -> redis::Connection {
        self.connection_once()
            .expect("connects to the test's redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port no process listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An address that accepts connections (the kernel completes the handshake) and never
/// answers: nobody calls `accept`.
pub struct BlackHole {
    _listener: TcpListener,
    pub port: u16,
    _held: Vec<TcpStream>,
}

impl BlackHole {
    pub fn bind() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        BlackHole {
            _listener: listener,
            port,
            _held: Vec::new(),
        }
    }
}
