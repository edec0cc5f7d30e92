//! The two targets and what an operation is on each. Against cartd an operation is one
//! command. Against Redis it is the data model cartd replaces: a hash `cart:{id}` with one field
//! per line (`{product}:{variant}` -> JSON of qty, price_at_add, added_at), a hash
//! `cart_meta:{id}` (version, currency, updated_at, saved lines), TTLs renewed on every write,
//! every write one Lua script loaded once and called with EVALSHA, a view the HGETALL of both
//! hashes (two replies), a merge one script. The braces are a hash tag: both of a cart's
//! hashes are in one Redis Cluster slot, so its scripts run there.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use crate::resp::{push_command, Conn};

/// Which server a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// cartd, native cart commands.
    Cartd,
    /// Redis with the hash + Lua seed model.
    Redis,
}

impl Kind {
    /// As in URLs and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cartd => "cartd",
            Kind::Redis => "redis",
        }
    }
}

/// A server to load: `cartd://host:port` or `redis://host:port`.
#[derive(Debug, Clone)]
pub struct Target {
    /// Which server.
    pub kind: Kind,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.kind.as_str(), self.addr)
    }
}

impl FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(url: &str) -> anyhow::Result<Target> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            anyhow!("target {url:?}: expected cartd://HOST:PORT or redis://HOST:PORT")
        })?;
        let kind = match scheme {
            "cartd" => Kind::Cartd,
            "redis" => Kind::Redis,
            other => bail!("target {url:?}: unknown scheme {other:?} (cartd or redis)"),
        };
        let host_port = rest.trim_end_matches('/');
        let addr = host_port
            .to_socket_addrs()
            .with_context(|| format!("target {url:?}: expected HOST:PORT after the scheme"))?
            .next()
            .ok_or_else(|| anyhow!("target {url:?}: {host_port} resolves to no address"))?;
        Ok(Target { kind, addr })
    }
}

/// The currency every harness cart is priced in.
const CURRENCY: &str = "USD";
/// Guest cart TTL in the Redis model (cartd's default guest_ttl_s).
const GUEST_TTL_S: &str = "86400";
/// User cart TTL in the Redis model (cartd's default user_ttl_s).
const USER_TTL_S: &str = "2592000";
/// Guest cart ids start with this; the rest are user carts (cartd: `cart:guest:` prefix).
pub const GUEST_ID_PREFIX: &str = "guest:";

/// One cart operation, named by cart id (`guest:123` or `u42`); each target maps ids to keys.
#[derive(Debug, Clone, Copy)]
pub enum Op<'a> {
    /// Add `qty` of a product variant at `price` minor units.
    Add {
        /// Cart id.
        cart: &'a str,
        /// Product id.
        product: &'a str,
        /// Variant id.
        variant: &'a str,
        /// Quantity to add.
        qty: u32,
        /// Unit price in minor units.
        price: u64,
    },
    /// Set a line's quantity.
    SetQty {
        /// Cart id.
        cart: &'a str,
        /// Product id.
        product: &'a str,
        /// Variant id.
        variant: &'a str,
        /// New quantity.
        qty: u32,
    },
    /// Remove a line.
    Remove {
        /// Cart id.
        cart: &'a str,
        /// Product id.
        product: &'a str,
        /// Variant id.
        variant: &'a str,
    },
    /// Move a line to saved-for-later.
    Save {
        /// Cart id.
        cart: &'a str,
        /// Product id.
        product: &'a str,
        /// Variant id.
        variant: &'a str,
    },
    /// Read the whole cart.
    View {
        /// Cart id.
        cart: &'a str,
    },
    /// Merge a guest cart into a user cart (login).
    Merge {
        /// Guest cart id.
        guest: &'a str,
        /// User cart id.
        user: &'a str,
    },
}

/// The Lua scripts of the Redis model, loaded once per connection target.
mod lua {
    pub const ADD: &str = r#"
local qty = tonumber(ARGV[2])
local currency = redis.call('HGET', KEYS[2], 'currency')
if currency and currency ~= ARGV[6] then
  return redis.error_reply('ERR cart is priced in ' .. currency)
end
local line = redis.call('HGET', KEYS[1], ARGV[1])
local entry
if line then
  entry = cjson.decode(line)
  entry.qty = entry.qty + qty
else
  entry = {qty = qty, price_at_add = tonumber(ARGV[3]), added_at = tonumber(ARGV[4])}
end
if entry.qty > 999 then
  return redis.error_reply('LIMIT quantity above 999')
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(entry))
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
redis.call('HSET', KEYS[2], 'currency', ARGV[6], 'updated_at', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return version
"#;

    pub const SET: &str = r#"
local line = redis.call('HGET', KEYS[1], ARGV[1])
if not line then
  return redis.error_reply('NOITEM no such line')
end
local qty = tonumber(ARGV[2])
if qty == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  local entry = cjson.decode(line)
  entry.qty = qty
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(entry))
end
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
redis.call('HSET', KEYS[2], 'updated_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return version
"#;

    pub const REMOVE: &str = r#"
local version
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  version = redis.call('HINCRBY', KEYS[2], 'version', 1)
  redis.call('HSET', KEYS[2], 'updated_at', ARGV[2])
else
  version = tonumber(redis.call('HGET', KEYS[2], 'version') or '0')
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return version
"#;

    pub const SAVE: &str = r#"
local line = redis.call('HGET', KEYS[1], ARGV[1])
if not line then
  return redis.error_reply('NOITEM no such line')
end
local saved_field = 'saved:' .. ARGV[1]
local saved = redis.call('HGET', KEYS[2], saved_field)
if saved then
  local entry = cjson.decode(line)
  entry.qty = math.min(entry.qty + cjson.decode(saved).qty, 999)
  line = cjson.encode(entry)
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], saved_field, line)
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
redis.call('HSET', KEYS[2], 'updated_at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return version
"#;

    pub const MERGE: &str = r#"
local lines = redis.call('HGETALL', KEYS[1])
local meta = redis.call('HGETALL', KEYS[2])
if #lines == 0 and #meta == 0 then
  return tonumber(redis.call('HGET', KEYS[4], 'version') or '0')
end
for i = 1, #lines, 2 do
  local mine = redis.call('HGET', KEYS[3], lines[i])
  if mine then
    local entry = cjson.decode(mine)
    entry.qty = math.min(math.max(entry.qty, cjson.decode(lines[i + 1]).qty), 999)
    redis.call('HSET', KEYS[3], lines[i], cjson.encode(entry))
  else
    redis.call('HSET', KEYS[3], lines[i], lines[i + 1])
  end
end
for i = 1, #meta, 2 do
  if string.sub(meta[i], 1, 6) == 'saved:' then
    redis.call('HSETNX', KEYS[4], meta[i], meta[i + 1])
  elseif meta[i] == 'currency' then
    redis.call('HSETNX', KEYS[4], 'currency', meta[i + 1])
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
local version = redis.call('HINCRBY', KEYS[4], 'version', 1)
redis.call('HSET', KEYS[4], 'updated_at', ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[2])
return version
"#;
}

/// How operations are written for one target; for Redis it holds the scripts' SHA1s (the
/// parent of client processes hands it to them as it is).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    kind: Kind,
    shas: [String; 5],
}

const ADD: usize = 0;
const SET: usize = 1;
const REMOVE: usize = 2;
const SAVE: usize = 3;
const MERGE: usize = 4;

impl Model {
    /// Checks that the target answers as its scheme says and, for Redis, loads the scripts.
    pub async fn prepare(target: &Target) -> anyhow::Result<Model> {
        Model::prepare_nodes(target, &[target.addr]).await
    }

    /// As [`Model::prepare`] on every node of a cluster: Redis keeps scripts per node, so each
    /// primary loads them (a script's SHA1 is its text's, the same on all).
    pub async fn prepare_nodes(target: &Target, nodes: &[SocketAddr]) -> anyhow::Result<Model> {
        let mut shas: [String; 5] = Default::default();
        for &addr in nodes {
            shas = prepare_node(target, addr).await?;
        }
        Ok(Model {
            kind: target.kind,
            shas,
        })
    }

    /// A model of `kind` with no scripts loaded (unit tests).
    #[cfg(test)]
    pub fn for_kind(kind: Kind) -> Model {
        Model {
            kind,
            shas: Default::default(),
        }
    }

    /// The key whose slot a cluster routes `cart`'s operations by (both of a Redis cart's keys
    /// share it).
    pub fn routing_key(&self, cart: &str) -> String {
        match self.kind {
            Kind::Cartd => format!("cart:{cart}"),
            Kind::Redis => cart_keys(cart)[0].clone(),
        }
    }

    /// Appends `op` to `buf`; returns how many replies it takes.
    pub fn push(&self, buf: &mut Vec<u8>, op: &Op<'_>, now_ms: u64) -> usize {
        match self.kind {
            Kind::Cartd => push_cartd(buf, op),
            Kind::Redis => self.push_redis(buf, op, now_ms),
        }
    }

    fn push_redis(&self, buf: &mut Vec<u8>, op: &Op<'_>, now_ms: u64) -> usize {
        let now = now_ms.to_string();
        match *op {
            Op::Add {
                cart,
                product,
                variant,
                qty,
                price,
            } => {
                let field = format!("{product}:{variant}");
                let (qty, price) = (qty.to_string(), price.to_string());
                let args = [field.as_str(), &qty, &price, &now, ttl_of(cart), CURRENCY];
                self.evalsha(buf, ADD, &cart_keys(cart), &args);
            }
            Op::SetQty {
                cart,
                product,
                variant,
                qty,
            } => {
                let field = format!("{product}:{variant}");
                let qty = qty.to_string();
                let args = [field.as_str(), &qty, &now, ttl_of(cart)];
                self.evalsha(buf, SET, &cart_keys(cart), &args);
            }
            Op::Remove {
                cart,
                product,
                variant,
            }
            | Op::Save {
                cart,
                product,
                variant,
            } => {
                let script = if matches!(op, Op::Remove { .. }) {
                    REMOVE
                } else {
                    SAVE
                };
                let field = format!("{product}:{variant}");
                let args = [field.as_str(), &now, ttl_of(cart)];
                self.evalsha(buf, script, &cart_keys(cart), &args);
            }
            Op::View { cart } => {
                let [lines, meta] = cart_keys(cart);
                push_command(buf, &[b"HGETALL", lines.as_bytes()]);
                push_command(buf, &[b"HGETALL", meta.as_bytes()]);
                return 2;
            }
            Op::Merge { guest, user } => {
                let [guest_lines, guest_meta] = cart_keys(guest);
                let [user_lines, user_meta] = cart_keys(user);
                let keys = [guest_lines, guest_meta, user_lines, user_meta];
                self.evalsha(buf, MERGE, &keys, &[&now, USER_TTL_S]);
            }
        }
        1
    }

    fn evalsha(&self, buf: &mut Vec<u8>, script: usize, keys: &[String], args: &[&str]) {
        let numkeys = keys.len().to_string();
        let mut parts: Vec<&[u8]> = vec![b"EVALSHA", self.shas[script].as_bytes()];
        parts.push(numkeys.as_bytes());
        parts.extend(keys.iter().map(|key| key.as_bytes()));
        parts.extend(args.iter().map(|arg| arg.as_bytes()));
        push_command(buf, &parts);
    }
}

async fn prepare_node(target: &Target, addr: SocketAddr) -> anyhow::Result<[String; 5]> {
    let mut conn = Conn::connect(addr, None)
        .await
        .with_context(|| format!("{target}: cannot connect to {addr}"))?;
    let mut shas: [String; 5] = Default::default();
    match target.kind {
        Kind::Cartd => {
            let reply = conn.call(&[b"CART.GET", b"cart:bench:probe"]).await?;
            // A cluster node that does not serve the key's slot redirects it: cartd all the same.
            if let Some(error) = reply.error().filter(|error| !error.starts_with("MOVED ")) {
                bail!("{target}: the server does not answer CART.GET as cartd does: {error}");
            }
        }
        Kind::Redis => {
            let scripts = [lua::ADD, lua::SET, lua::REMOVE, lua::SAVE, lua::MERGE];
            for (sha, script) in shas.iter_mut().zip(scripts) {
                let reply = conn.call(&[b"SCRIPT", b"LOAD", script.as_bytes()]).await?;
                *sha = reply
                    .text()
                    .ok_or_else(|| anyhow!("{target}: SCRIPT LOAD failed: {:?}", reply.error()))?;
            }
        }
    }
    Ok(shas)
}

fn ttl_of(cart: &str) -> &'static str {
    if cart.starts_with(GUEST_ID_PREFIX) {
        GUEST_TTL_S
    } else {
        USER_TTL_S
    }
}

fn cart_keys(cart: &str) -> [String; 2] {
    [format!("cart:{{{cart}}}"), format!("cart_meta:{{{cart}}}")]
}

fn push_cartd(buf: &mut Vec<u8>, op: &Op<'_>) -> usize {
    const VERSION: [&[u8]; 2] = [b"REPLY", b"VERSION"];
    match *op {
        Op::Add {
            cart,
            product,
            variant,
            qty,
            price,
        } => {
            let key = format!("cart:{cart}");
            let (qty, price) = (qty.to_string(), price.to_string());
            let args = [key.as_bytes(), product.as_bytes(), variant.as_bytes()];
            let rest = [qty.as_bytes(), b"PRICE", price.as_bytes(), b"CURRENCY"];
            let rest = [&rest[..], &[CURRENCY.as_bytes()], &VERSION[..]].concat();
            push_line_command(buf, b"CART.ADD", &args, &rest);
        }
        Op::SetQty {
            cart,
            product,
            variant,
            qty,
        } => {
            let key = format!("cart:{cart}");
            let qty = qty.to_string();
            let args = [key.as_bytes(), product.as_bytes(), variant.as_bytes()];
            push_line_command(
                buf,
                b"CART.SET",
                &args,
                &[qty.as_bytes(), VERSION[0], VERSION[1]],
            );
        }
        Op::Remove {
            cart,
            product,
            variant,
        }
        | Op::Save {
            cart,
            product,
            variant,
        } => {
            let name: &[u8] = match op {
                Op::Remove { .. } => b"CART.REMOVE",
                _ => b"CART.SAVE",
            };
            let key = format!("cart:{cart}");
            let args = [key.as_bytes(), product.as_bytes(), variant.as_bytes()];
            push_line_command(buf, name, &args, &VERSION);
        }
        Op::View { cart } => {
            let key = format!("cart:{cart}");
            push_command(buf, &[b"CART.GET", key.as_bytes()]);
        }
        Op::Merge { guest, user } => {
            let (guest, user) = (format!("cart:{guest}"), format!("cart:{user}"));
            let args = [b"CART.MERGE".as_slice(), guest.as_bytes(), user.as_bytes()];
            push_command(buf, &[args[0], args[1], args[2], VERSION[0], VERSION[1]]);
        }
    }
    1
}

fn push_line_command(buf: &mut Vec<u8>, name: &[u8], line: &[&[u8]; 3], rest: &[&[u8]]) {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + line.len() + rest.len());
    parts.push(name);
    parts.extend_from_slice(line);
    parts.extend_from_slice(rest);
    push_command(buf, &parts);
}

/// The server's resident set size, from `INFO memory` (`used_memory_rss`, which both report).
pub async fn rss_bytes(target: &Target) -> anyhow::Result<u64> {
    let mut conn = Conn::connect(target.addr, None).await?;
    let reply = conn.call(&[b"INFO", b"memory"]).await?;
    let info = reply
        .text()
        .ok_or_else(|| anyhow!("{target}: INFO memory failed: {:?}", reply.error()))?;
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory_rss:"))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| anyhow!("{target}: INFO memory has no used_memory_rss"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_urls() {
        let target: Target = "cartd://127.0.0.1:7379".parse().unwrap();
        assert_eq!(target.kind, Kind::Cartd);
        assert_eq!(target.addr.port(), 7379);
        let target: Target = "redis://127.0.0.1:6379/".parse().unwrap();
        assert_eq!(target.kind, Kind::Redis);
        assert!("memcached://127.0.0.1:1".parse::<Target>().is_err());
        assert!("127.0.0.1:1".parse::<Target>().is_err());
        assert!("cartd://nowhere".parse::<Target>().is_err());
    }

    #[test]
    fn a_redis_cart_s_two_keys_share_the_slot_it_is_routed_by() {
        let model = Model {
            kind: Kind::Redis,
            shas: Default::default(),
        };
        let [lines, meta] = cart_keys("fs42");
        let routed = crate::cluster::key_slot(model.routing_key("fs42").as_bytes());
        assert_eq!(crate::cluster::key_slot(lines.as_bytes()), routed);
        assert_eq!(crate::cluster::key_slot(meta.as_bytes()), routed);
        assert_eq!(routed, crate::cluster::key_slot(b"fs42"));
    }

    #[test]
    fn a_redis_view_is_two_replies_and_a_cartd_view_one() {
        let model = Model {
            kind: Kind::Redis,
            shas: Default::default(),
        };
        let mut buf = Vec::new();
        assert_eq!(model.push(&mut buf, &Op::View { cart: "u1" }, 0), 2);
        let model = Model {
            kind: Kind::Cartd,
            shas: Default::default(),
        };
        buf.clear();
        assert_eq!(model.push(&mut buf, &Op::View { cart: "u1" }, 0), 1);
        assert_eq!(buf, b"*2\r\n$8\r\nCART.GET\r\n$7\r\ncart:u1\r\n");
    }
}
