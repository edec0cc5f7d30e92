//! Argument types shared by several commands: line ids, currencies, and the options every
//! mutation takes (`IFVERSION`, `IDEMPOTENCY`, `REPLY`, `FORMAT`), in any order and any case.

use std::fmt;

use bytes::Bytes;

use crate::args::Args;
use crate::error::CommandError;
use crate::TOKEN_BYTES_MAX;

/// A cart line's identity: product and variant (`-` for products without variants).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LineId {
    /// Product id, 1..=64 bytes of UTF-8.
    pub product: Bytes,
    /// Variant id, 1..=64 bytes of UTF-8.
    pub variant: Bytes,
}

/// An ISO 4217 currency code, three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Currency(pub [u8; 3]);

impl Currency {
    /// Parses an ISO 4217 code (the `iso_currency` crate's list), accepting lower case.
    pub fn parse(bytes: &[u8]) -> Result<Currency, CommandError> {
        let refused = || {
            CommandError::err(format!(
                "currency must be an ISO 4217 code such as USD or EUR, got '{}'",
                String::from_utf8_lossy(bytes)
            ))
        };
        let [a, b, c] = bytes else {
            return Err(refused());
        };
        let code = [
            a.to_ascii_uppercase(),
            b.to_ascii_uppercase(),
            c.to_ascii_uppercase(),
        ];
        let known = std::str::from_utf8(&code)
            .ok()
            .and_then(iso_currency::Currency::from_code)
            .is_some();
        if !known {
            return Err(refused());
        }
        Ok(Currency(code))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a mutation replies with (`REPLY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    /// The updated cart view (default).
    #[default]
    Cart,
    /// Only the new version, as an integer.
    Version,
    /// `+OK`.
    None,
}

/// How a cart view is encoded (`FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// RESP map (flattened for RESP2).
    #[default]
    Resp,
    /// One JSON bulk string.
    Json,
}

impl Format {
    /// Parses `RESP` or `JSON`.
    pub fn parse(args: &mut Args) -> Result<Format, CommandError> {
        let value = args.next_bytes()?;
        if value.eq_ignore_ascii_case(b"RESP") {
            Ok(Format::Resp)
        } else if value.eq_ignore_ascii_case(b"JSON") {
            Ok(Format::Json)
        } else {
            Err(CommandError::syntax())
        }
    }
}

/// Options every mutation accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MutationOptions {
    /// `IFVERSION n`: apply only if the cart is at version n (0: the cart must not exist).
    pub if_version: Option<u64>,
    /// `IDEMPOTENCY token`: a retry with the same token and arguments replays the reply.
    pub idempotency: Option<Bytes>,
    /// `REPLY CART|VERSION|NONE`.
    pub reply: ReplyMode,
    /// `FORMAT RESP|JSON` for a cart reply.
    pub format: Format,
    /// Hash of the whole request, set by [`crate::Command::parse`]; tells a retry from a
    /// different request with the same token.
    pub fingerprint: u64,
    /// Which of the defaulted options were written out, so a repeat is refused.
    given: GivenOptions,
}

/// `REPLY` and `FORMAT` have defaults, so whether they were given is tracked beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct GivenOptions {
    reply: bool,
    format: bool,
}

impl MutationOptions {
    /// Reads every remaining argument as a mutation option.
    pub fn parse_rest(args: &mut Args) -> Result<MutationOptions, CommandError> {
        let mut options = MutationOptions::default();
        while let Some(name) = args.next_if_any() {
            if !options.parse_one(&name, args)? {
                return Err(CommandError::syntax());
            }
        }
        Ok(options)
    }

    /// Reads the option named `name` if it is a mutation option; `Ok(false)` if it is not one.
    /// A repeated option is a syntax error.
    pub fn parse_one(&mut self, name: &[u8], args: &mut Args) -> Result<bool, CommandError> {
        if name.eq_ignore_ascii_case(b"IFVERSION") {
            reject_repeat(self.if_version.is_some())?;
            self.if_version = Some(args.next_u64()?);
        } else if name.eq_ignore_ascii_case(b"IDEMPOTENCY") {
            reject_repeat(self.idempotency.is_some())?;
            let token = args.next_bytes()?;
            if token.is_empty() || token.len() > TOKEN_BYTES_MAX {
                return Err(CommandError::limit(format!(
                    "idempotency token must be 1..={TOKEN_BYTES_MAX} bytes, got {}",
                    token.len()
                )));
            }
            self.idempotency = Some(token);
        } else if name.eq_ignore_ascii_case(b"REPLY") {
            reject_repeat(self.given.reply)?;
            self.given.reply = true;
            let value = args.next_bytes()?;
            self.reply = if value.eq_ignore_ascii_case(b"CART") {
                ReplyMode::Cart
            } else if value.eq_ignore_ascii_case(b"VERSION") {
                ReplyMode::Version
            } else if value.eq_ignore_ascii_case(b"NONE") {
                ReplyMode::None
            } else {
                return Err(CommandError::syntax());
            };
        } else if name.eq_ignore_ascii_case(b"FORMAT") {
            reject_repeat(self.given.format)?;
            self.given.format = true;
            self.format = Format::parse(args)?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }
}

/// A repeated option is a syntax error: which of two `IFVERSION`s was meant is a guess.
pub(crate) fn reject_repeat(seen: bool) -> Result<(), CommandError> {
    if seen {
        return Err(CommandError::syntax());
    }
    Ok(())
}
