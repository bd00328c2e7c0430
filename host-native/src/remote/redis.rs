//! The remote tier on Redis (or any server speaking its protocol, Valkey included),
//! through the `redis` crate's synchronous client.
//!
//! ```text
//! {prefix}v1:m:{id}          module bytes                       SET NX
//! {prefix}v1:mf:{id}         manifest record                    SET NX
//! {prefix}v1:ix:{name hash}  hash: field {id} = "{rank} {name}", field #next = counter
//!                                                               one Lua script per entry
//! {prefix}v1:a:{engine}:{id} artifact envelope (envelope.rs)    SET NX
//! ```
//!
//! Publishing an entry is one script that runs atomically in the server: if the module
//! has no entry for the name yet, it takes the next rank of the name and files the
//! entry; either way it returns every entry of the name. Two machines publishing the
//! same name at once therefore both keep their entry, with different ranks, and both
//! learn the other's. A machine's commands run in order on its connection, and one
//! pipeline sends a module's bytes and manifest before its entries, so no reader sees
//! an entry whose objects are missing.
//!
//! Fetches run small scripts too, so that a value larger than the caller's cap (a
//! forged 500 MB "manifest") is never transferred: the script answers its length
//! instead. Connections are pooled (at most four idle) and dropped after any error (a
//! timed-out pipeline leaves replies in flight). Socket timeouts are set from the
//! operation's deadline before each round trip.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use linkcache_core::ModuleId;
use redis::{Connection, RedisError, Value};

use super::backend::{
    Backend, Caps, Failure, Fetched, Io, MAX_ENTRIES_PER_NAME, MAX_INDEX_BYTES, Object, Outcome,
    Publication, Ranked, Wanted, name_hash,
};
use crate::error::Error;
use crate::registry::lock;

const IDLE_CONNECTIONS: usize = 4;

/// Files an entry unless the module has one, then returns the name's entries (or their
/// total size, when larger than ARGV[4]).
const PUBLISH_ENTRY: &str = r"
local k = KEYS[1]
if redis.call('HEXISTS', k, ARGV[1]) == 0 and redis.call('HLEN', k) < tonumber(ARGV[3]) + 1 then
  local rank = redis.call('HINCRBY', k, '#next', 1) - 1
  redis.call('HSET', k, ARGV[1], rank .. ' ' .. ARGV[2])
end
local all = redis.call('HGETALL', k)
local size = 0
for _, v in ipairs(all) do size = size + #v end
if size > tonumber(ARGV[4]) then return size end
return all
";

/// For each key: the value when at most ARGV[i] bytes long, its length when longer,
/// nil when absent.
const GET_CAPPED: &str = r"
local out = {}
for i, k in ipairs(KEYS) do
  local n = redis.call('STRLEN', k)
  if n == 0 then out[i] = false
  elseif n <= tonumber(ARGV[i]) then out[i] = redis.call('GET', k)
  else out[i] = n end
end
return out
";

/// For each hash key: its fields and values when small enough, else their total size.
const HGETALL_CAPPED: &str = r"
local out = {}
for i, k in ipairs(KEYS) do
  local all = redis.call('HGETALL', k)
  local size = 0
  for _, v in ipairs(all) do size = size + #v end
  if size > tonumber(ARGV[1]) then out[i] = size else out[i] = all end
end
return out
";

pub(crate) struct RedisBackend {
    client: redis::Client,
    prefix: String,
    idle: Mutex<Vec<Connection>>,
}

impl RedisBackend {
    pub(crate) fn new(url: &str, prefix: &str) -> Result<RedisBackend, Error> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::Config(format!("remote Redis URL: {e}")))?;
        Ok(RedisBackend {
            client,
            prefix: prefix.to_string(),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}v1:{kind}:{rest}", self.prefix)
    }

    /// Runs `work` on a pooled (or new) connection whose socket timeouts end at
    /// `deadline`; the connection goes back to the pool only after a success. A pooled
    /// connection that fails for another reason than the deadline (the server
    /// restarted since) is dropped and `work` tried once more on a new one.
    fn with_connection<T>(
        &self,
        deadline: Instant,
        io: &Io,
        work: impl Fn(&mut Connection) -> redis::RedisResult<T>,
    ) -> Outcome<T> {
        let pooled = lock(&self.idle).pop();
        let was_pooled = pooled.is_some();
        match self.attempt(pooled, deadline, io, &work) {
            Err(Failure::Unavailable(_)) if was_pooled => self.attempt(None, deadline, io, &work),
            outcome => outcome,
        }
    }

    fn attempt<T>(
        &self,
        pooled: Option<Connection>,
        deadline: Instant,
        io: &Io,
        work: &impl Fn(&mut Connection) -> redis::RedisResult<T>,
    ) -> Outcome<T> {
        let mut connection = match pooled {
            Some(connection) => connection,
            None => {
                let remaining = remaining_or_timeout(deadline)?;
                Io::add(&io.round_trips, 1);
                self.client
                    .get_connection_with_timeout(remaining)
                    .map_err(failure)?
            }
        };
        let remaining = remaining_or_timeout(deadline)?;
        connection
            .set_read_timeout(Some(remaining))
            .and_then(|()| connection.set_write_timeout(Some(remaining)))
            .map_err(failure)?;
        Io::add(&io.round_trips, 1);
        let result = work(&mut connection).map_err(failure)?;
        let mut idle = lock(&self.idle);
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(connection);
        }
        Ok(result)
    }

    /// Parses one name's hash (fields and values, flat) into entries; what does not
    /// parse is counted as corrupt.
    fn entries(func_name: &str, reply: Value, io: &Io) -> Vec<Ranked> {
        let fields = match reply {
            Value::Array(fields) => fields,
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            Value::Int(_) => {
                Io::add(&io.oversized, 1);
                return Vec::new();
            }
            Value::Nil => return Vec::new(),
            _ => {
                Io::add(&io.corrupt, 1);
                return Vec::new();
            }
        };
        let mut entries = Vec::new();
        for pair in fields.chunks(2) {
            let [Value::BulkString(field), Value::BulkString(value)] = pair else {
                Io::add(&io.corrupt, 1);
                continue;
            };
            if field.as_slice() == b"#next" {
                continue;
            }
            match parse_entry(func_name, field, value) {
                Some(entry) => entries.push(entry),
                None => Io::add(&io.corrupt, 1),
            }
        }
        entries.sort();
        entries
    }
}

/// An entry as `HGETALL` gives it: the field is the module id, the value `"{rank} {name}"`.
fn parse_entry(func_name: &str, field: &[u8], value: &[u8]) -> Option<Ranked> {
    let module = ModuleId::from_str(std::str::from_utf8(field).ok()?).ok()?;
    let (rank, name) = std::str::from_utf8(value).ok()?.split_once(' ')?;
    (name == func_name).then_some(())?;
    Some(Ranked {
        rank: rank.parse().ok()?,
        module,
    })
}

fn object(value: Value, io: &Io) -> Object {
    match value {
        Value::Nil => Object::Absent,
        Value::BulkString(bytes) => {
            Io::add(&io.bytes_read, bytes.len() as u64);
            Object::Bytes(bytes)
        }
        Value::Int(_) => {
            Io::add(&io.oversized, 1);
            Object::Oversized
        }
        _ => {
            Io::add(&io.corrupt, 1);
            Object::Absent
        }
    }
}

impl Backend for RedisBackend {
    fn index(&self, names: &[&str], deadline: Instant, io: &Io) -> Outcome<Vec<Vec<Ranked>>> {
        let mut script = redis::cmd("EVAL");
        script.arg(HGETALL_CAPPED).arg(names.len());
        for name in names {
            script.arg(self.key("ix", &name_hash(name)));
        }
        script.arg(MAX_INDEX_BYTES);
        let replies: Vec<Value> = self.with_connection(deadline, io, |c| script.query(c))?;
        if replies.len() != names.len() {
            return Err(Failure::Unavailable("a reply of the wrong length".into()));
        }
        Ok(names
            .iter()
            .zip(replies)
            .map(|(name, reply)| Self::entries(name, reply, io))
            .collect())
    }

    fn objects(
        &self,
        wanted: &[Wanted<'_>],
        caps: Caps,
        deadline: Instant,
        io: &Io,
    ) -> Outcome<Vec<Fetched>> {
        let mut keys = Vec::new();
        let mut limits = Vec::new();
        for want in wanted {
            let id = want.module.to_string();
            keys.push(self.key("mf", &id));
            limits.push(caps.module);
            keys.push(self.key("m", &id));
            limits.push(caps.module);
            if let Some(engine) = want.artifact_for {
                keys.push(self.key("a", &format!("{engine}:{id}")));
                limits.push(caps.artifact);
            }
        }
        let mut script = redis::cmd("EVAL");
        script
            .arg(GET_CAPPED)
            .arg(keys.len())
            .arg(&keys)
            .arg(&limits);
        let replies: Vec<Value> = self.with_connection(deadline, io, |c| script.query(c))?;
        if replies.len() != keys.len() {
            return Err(Failure::Unavailable("a reply of the wrong length".into()));
        }
        let mut replies = replies.into_iter();
        let mut next = || object(replies.next().unwrap_or(Value::Nil), io);
        Ok(wanted
            .iter()
            .map(|want| Fetched {
                manifest: next(),
                wasm: next(),
                artifact: if want.artifact_for.is_some() {
                    next()
                } else {
                    Object::Absent
                },
            })
            .collect())
    }

    fn publish(
        &self,
        modules: &[Publication<'_>],
        deadline: Instant,
        io: &Io,
    ) -> Outcome<Vec<Vec<Vec<Ranked>>>> {
        let mut pipe = redis::pipe();
        for module in modules {
            let id = module.module.to_string();
            pipe.cmd("SET")
                .arg(self.key("m", &id))
                .arg(module.wasm)
                .arg("NX")
                .ignore();
            pipe.cmd("SET")
                .arg(self.key("mf", &id))
                .arg(module.manifest)
                .arg("NX")
                .ignore();
            Io::add(
                &io.bytes_written,
                (module.wasm.len() + module.manifest.len()) as u64,
            );
            for name in &module.functions {
                pipe.cmd("EVAL")
                    .arg(PUBLISH_ENTRY)
                    .arg(1)
                    .arg(self.key("ix", &name_hash(name)))
                    .arg(&id)
                    .arg(*name)
                    .arg(MAX_ENTRIES_PER_NAME)
                    .arg(MAX_INDEX_BYTES);
            }
        }
        let replies: Vec<Value> = self.with_connection(deadline, io, |c| pipe.query(c))?;
        let mut replies = replies.into_iter();
        let mut out = Vec::new();
        for module in modules {
            let mut per_function = Vec::new();
            for name in &module.functions {
                let reply = replies.next().unwrap_or(Value::Nil);
                per_function.push(Self::entries(name, reply, io));
            }
            out.push(per_function);
        }
        Ok(out)
    }

    fn publish_artifacts(
        &self,
        engine_key: &str,
        artifacts: &[(ModuleId, Vec<u8>)],
        deadline: Instant,
        io: &Io,
    ) -> Outcome<()> {
        let mut pipe = redis::pipe();
        for (id, envelope) in artifacts {
            pipe.cmd("SET")
                .arg(self.key("a", &format!("{engine_key}:{id}")))
                .arg(envelope.as_slice())
                .arg("NX")
                .ignore();
            Io::add(&io.bytes_written, envelope.len() as u64);
        }
        self.with_connection(deadline, io, |c| pipe.query::<()>(c))
    }

    fn ping(&self, deadline: Instant, io: &Io) -> Outcome<()> {
        self.with_connection(deadline, io, |c| redis::cmd("PING").query::<()>(c))
    }

    fn names(&self, deadline: Instant, io: &Io) -> Outcome<Vec<String>> {
        let pattern = self.key("ix", "*");
        let mut cursor: u64 = 0;
        let mut names = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = self.with_connection(deadline, io, |c| {
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)
            })?;
            if !keys.is_empty() {
                let mut script = redis::cmd("EVAL");
                script
                    .arg(HGETALL_CAPPED)
                    .arg(keys.len())
                    .arg(&keys)
                    .arg(MAX_INDEX_BYTES);
                let replies: Vec<Value> =
                    self.with_connection(deadline, io, |c| script.query(c))?;
                for (key, reply) in keys.iter().zip(replies) {
                    if let Some(name) = name_of(key, &self.key("ix", ""), reply) {
                        names.push(name);
                    } else {
                        Io::add(&io.corrupt, 1);
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// The function name a hash indexes: read from an entry, and checked against the key.
fn name_of(key: &str, key_prefix: &str, reply: Value) -> Option<String> {
    let hash = key.strip_prefix(key_prefix)?;
    let Value::Array(fields) = reply else {
        return None;
    };
    fields.chunks(2).find_map(|pair| {
        let [Value::BulkString(field), Value::BulkString(value)] = pair else {
            return None;
        };
        if field.as_slice() == b"#next" {
            return None;
        }
        let (_, name) = std::str::from_utf8(value).ok()?.split_once(' ')?;
        (name_hash(name) == hash).then(|| name.to_string())
    })
}

/// The time left before `deadline` (at least a millisecond: a zero socket timeout
/// means "none"), or a timeout failure when it has passed.
fn remaining_or_timeout(deadline: Instant) -> Outcome<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Failure::Timeout("the deadline passed".into()));
    }
    Ok(left.max(Duration::from_millis(1)))
}

fn failure(error: RedisError) -> Failure {
    if error.is_timeout() {
        Failure::Timeout(error.to_string())
    } else {
        Failure::Unavailable(error.to_string())
    }
}
