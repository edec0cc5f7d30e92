//! Moving slots between cluster nodes, as `redis-cli --cluster reshard` does it: `MIGRATE`
//! (Redis's syntax; the carts go in cartd's image format), `ASKING`, and cartd's own
//! `CART.IMPORT key image [REPLACE]`, which `MIGRATE` sends to the target node.

use bytes::Bytes;

use crate::args::Args;
use crate::error::CommandError;

/// `MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password]
/// [AUTH2 username password] [KEYS key [key ...]]`.
#[derive(Debug, PartialEq)]
pub struct Migrate {
    /// The target node's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How long each exchange with the target may take, in milliseconds.
    pub timeout_ms: u64,
    /// Keep the carts here too.
    pub copy: bool,
    /// Replace carts the target has already.
    pub replace: bool,
    /// `AUTH password` or `AUTH2 username password` for the target.
    pub auth: Option<(Option<String>, String)>,
    /// The carts to move.
    pub keys: Vec<Bytes>,
}

impl Migrate {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<Migrate, CommandError> {
        let host = String::from_utf8_lossy(&args.next_bytes()?).into_owned();
        let port = crate::args::parse_i64(&args.next_bytes()?)
            .ok()
            .and_then(|port| u16::try_from(port).ok())
            .filter(|port| *port > 0)
            .ok_or_else(|| CommandError::err("value is not an integer or out of range"))?;
        let key = args.next_bytes()?;
        let db = args.next_bytes()?;
        if &db[..] != b"0" {
            return Err(CommandError::err(
                "cartd has one database: MIGRATE's destination-db must be 0",
            ));
        }
        let timeout_ms = crate::args::parse_i64(&args.next_bytes()?)
            .ok()
            .and_then(|timeout| u64::try_from(timeout).ok())
            .ok_or_else(|| CommandError::err("value is not an integer or out of range"))?;
        let mut migrate = Migrate {
            host,
            port,
            timeout_ms: if timeout_ms == 0 { 1_000 } else { timeout_ms },
            copy: false,
            replace: false,
            auth: None,
            keys: Vec::new(),
        };
        while args.remaining() > 0 {
            let option = args.next_bytes()?;
            if option.eq_ignore_ascii_case(b"COPY") {
                migrate.copy = true;
            } else if option.eq_ignore_ascii_case(b"REPLACE") {
                migrate.replace = true;
            } else if option.eq_ignore_ascii_case(b"AUTH") {
                let password = String::from_utf8_lossy(&args.next_bytes()?).into_owned();
                migrate.auth = Some((None, password));
            } else if option.eq_ignore_ascii_case(b"AUTH2") {
                let user = String::from_utf8_lossy(&args.next_bytes()?).into_owned();
                let password = String::from_utf8_lossy(&args.next_bytes()?).into_owned();
                migrate.auth = Some((Some(user), password));
            } else if option.eq_ignore_ascii_case(b"KEYS") {
                if !key.is_empty() {
                    return Err(CommandError::err(
                        "When using MIGRATE KEYS option, the key argument must be set to the empty string",
                    ));
                }
                while args.remaining() > 0 {
                    migrate.keys.push(args.next_key()?);
                }
            } else {
                return Err(CommandError::err("syntax error"));
            }
        }
        if !key.is_empty() {
            migrate.keys.push(key);
        }
        Ok(migrate)
    }
}

/// `CART.IMPORT key image [REPLACE]`: the cart as a source node's MIGRATE sends it.
#[derive(Debug, PartialEq)]
pub struct CartImport {
    /// The cart.
    pub key: Bytes,
    /// Its image, in cartd's format.
    pub image: Bytes,
    /// Replace a cart of that key held here.
    pub replace: bool,
}

impl CartImport {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<CartImport, CommandError> {
        let key = args.next_key()?;
        let image = args.next_bytes()?;
        let replace = match args.remaining() {
            0 => false,
            1 if args.next_bytes()?.eq_ignore_ascii_case(b"REPLACE") => true,
            _ => return Err(CommandError::err("syntax error")),
        };
        Ok(CartImport {
            key,
            image,
            replace,
        })
    }
}
