//! Real servers on loopback for the remote tier's tests and benchmarks: Debian's
//! `redis-server` as a child process (free port, persistence off), and the one request
//! an S3 test server needs without a signature (creating a bucket).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port no process listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// A Redis server running as a child process, killed (and its directory removed) when
/// dropped.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    binary: PathBuf,
    dir: PathBuf,
}

impl RedisServer {
    /// The redis-server binary: `$LINKCACHE_REDIS_SERVER`, else on `PATH`, else in
    /// `/usr/bin` or `/usr/sbin`.
    pub fn binary() -> Option<PathBuf> {
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

    /// Starts `binary` on a free port and waits until it answers.
    pub fn start(binary: PathBuf) -> io::Result<RedisServer> {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("linkcache-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut server = RedisServer {
            child: None,
            port,
            binary,
            dir,
        };
        server.restart()?;
        Ok(server)
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

    /// Starts the server again on the same port, empty, and waits until it answers
    /// `PING` (at most 10 s).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.child = Some(
            Command::new(&self.binary)
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "redis-server did not answer",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn answers(&self) -> bool {
        let reply = (|| -> io::Result<[u8; 5]> {
            let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
            stream.set_read_timeout(Some(Duration::from_secs(1)))?;
            stream.write_all(b"PING\r\n")?;
            let mut reply = [0; 5];
            stream.read_exact(&mut reply)?;
            Ok(reply)
        })();
        reply.is_ok_and(|reply| &reply == b"+PONG")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates `bucket` on the S3 test server at `endpoint` (`http://host:port`) with one
/// unsigned request (moto takes it); returns the HTTP status.
pub fn create_bucket(endpoint: &str, bucket: &str) -> io::Result<u16> {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host)?;
    write!(
        stream,
        "PUT /{bucket} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    std::str::from_utf8(reply.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP reply"))
}
