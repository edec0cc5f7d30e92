//! [`Args`]: a cursor over one request's arguments with typed readers. Every reader fails
//! with the Redis-style error a client expects; none of them knows the store or its config.

use bytes::Bytes;

use crate::cmd::{Currency, LineId};
use crate::error::CommandError;
use crate::{ITEM_ID_BYTES_MAX, KEY_BYTES_MAX, PRICE_MINOR_MAX};

/// The arguments after the command name, read front to back.
#[derive(Debug)]
pub struct Args {
    items: Vec<Bytes>,
    position: usize,
}

impl Args {
    /// A cursor over `items` (the command name already removed).
    pub fn new(items: Vec<Bytes>) -> Args {
        Args { items, position: 0 }
    }

    /// How many arguments are left.
    pub fn remaining(&self) -> usize {
        self.items.len() - self.position
    }

    /// The next argument; a missing one is a syntax error (arity was checked before, so only
    /// an option's value can be missing).
    pub fn next_bytes(&mut self) -> Result<Bytes, CommandError> {
        let item = self
            .items
            .get(self.position)
            .cloned()
            .ok_or_else(CommandError::syntax)?;
        self.position += 1;
        Ok(item)
    }

    /// The next argument if there is one.
    pub fn next_if_any(&mut self) -> Option<Bytes> {
        let item = self.items.get_mut(self.position).map(std::mem::take);
        self.position += usize::from(item.is_some());
        item
    }

    /// Every argument left.
    pub fn rest(&mut self) -> Vec<Bytes> {
        let rest = self.items.split_off(self.position);
        self.position = self.items.len();
        rest
    }

    /// A cart key: 1..=256 bytes.
    pub fn next_key(&mut self) -> Result<Bytes, CommandError> {
        let key = self.next_bytes()?;
        check_key(&key)?;
        Ok(key)
    }

    /// A product and a variant id, each 1..=64 bytes of UTF-8.
    pub fn next_line_id(&mut self) -> Result<LineId, CommandError> {
        let product = self.next_item_id("product id")?;
        let variant = self.next_item_id("variant id")?;
        Ok(LineId { product, variant })
    }

    fn next_item_id(&mut self, what: &str) -> Result<Bytes, CommandError> {
        let id = self.next_bounded(what, ITEM_ID_BYTES_MAX)?;
        if std::str::from_utf8(&id).is_err() {
            return Err(CommandError::err(format!("{what} must be valid UTF-8")));
        }
        Ok(id)
    }

    /// An opaque identifier of 1..=`max_bytes` bytes (a promotion code, a checkout token, an
    /// order id): empty is an `ERR` naming `what`, longer a `LIMIT`.
    pub fn next_bounded(&mut self, what: &str, max_bytes: usize) -> Result<Bytes, CommandError> {
        let value = self.next_bytes()?;
        if value.is_empty() {
            return Err(CommandError::err(format!("{what} must not be empty")));
        }
        if value.len() > max_bytes {
            return Err(CommandError::limit(format!(
                "{what} is {} bytes, the limit is {max_bytes}",
                value.len()
            )));
        }
        Ok(value)
    }

    /// A signed 64-bit integer.
    pub fn next_i64(&mut self) -> Result<i64, CommandError> {
        parse_i64(&self.next_bytes()?)
    }

    /// An unsigned 64-bit integer (a negative one is out of range).
    pub fn next_u64(&mut self) -> Result<u64, CommandError> {
        let value = self.next_i64()?;
        u64::try_from(value).map_err(|_| CommandError::not_an_integer())
    }

    /// A quantity that must be at least `min` (1 for adds, 0 for sets); its upper bound is the
    /// store's `max_qty_per_line`, which the store checks.
    pub fn next_qty(&mut self, min: i64) -> Result<u32, CommandError> {
        let value = self.next_i64()?;
        if value < min {
            return Err(CommandError::err(format!(
                "quantity must be at least {min}, got {value}"
            )));
        }
        u32::try_from(value).map_err(|_| CommandError::not_an_integer())
    }

    /// A price in minor units: 0..=PRICE_MINOR_MAX.
    pub fn next_price(&mut self) -> Result<i64, CommandError> {
        self.next_minor_units("price")
    }

    /// An amount of money in minor units, 0..=PRICE_MINOR_MAX (a price, a gift card balance);
    /// `what` names it in the error.
    pub fn next_minor_units(&mut self, what: &str) -> Result<i64, CommandError> {
        let value = self.next_i64()?;
        if !(0..=PRICE_MINOR_MAX).contains(&value) {
            return Err(CommandError::err(format!(
                "{what} must be between 0 and {PRICE_MINOR_MAX} minor units, got {value}"
            )));
        }
        Ok(value)
    }

    /// An ISO 4217 currency code: three letters, upper-cased.
    pub fn next_currency(&mut self) -> Result<Currency, CommandError> {
        Currency::parse(&self.next_bytes()?)
    }

    /// Fails with a syntax error if anything is left.
    pub fn finish(&self) -> Result<(), CommandError> {
        if self.remaining() > 0 {
            return Err(CommandError::syntax());
        }
        Ok(())
    }
}

/// Checks a cart key's length: 1..=256 bytes.
pub fn check_key(key: &[u8]) -> Result<(), CommandError> {
    if key.is_empty() {
        return Err(CommandError::err("key must not be empty"));
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(CommandError::limit(format!(
            "key is {} bytes, the limit is {KEY_BYTES_MAX}",
            key.len()
        )));
    }
    Ok(())
}

/// Parses a decimal integer exactly as Redis does: no spaces, no plus sign, no leading zeros.
pub fn parse_i64(bytes: &[u8]) -> Result<i64, CommandError> {
    let text = std::str::from_utf8(bytes).map_err(|_| CommandError::not_an_integer())?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|byte| byte.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    if !canonical {
        return Err(CommandError::not_an_integer());
    }
    text.parse::<i64>()
        .map_err(|_| CommandError::not_an_integer())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(items: &[&str]) -> Args {
        Args::new(
            items
                .iter()
                .map(|item| Bytes::copy_from_slice(item.as_bytes()))
                .collect(),
        )
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_i64(b"42"), Ok(42));
        assert_eq!(parse_i64(b"-7"), Ok(-7));
        for bad in [
            "",
            "+1",
            " 1",
            "01",
            "1.5",
            "9223372036854775808",
            "-0",
            "abc",
            "-",
        ] {
            assert_eq!(
                parse_i64(bad.as_bytes()),
                Err(CommandError::not_an_integer()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_are_bounded() {
        assert!(args(&[""]).next_key().is_err());
        let long = "k".repeat(KEY_BYTES_MAX + 1);
        assert_eq!(
            args(&[&long]).next_key().unwrap_err().code,
            crate::ErrorCode::Limit
        );
        assert!(args(&[&long[1..]]).next_key().is_ok());
    }

    #[test]
    fn quantities_and_prices_are_checked() {
        assert!(args(&["0"]).next_qty(1).is_err());
        assert!(args(&["-1"]).next_qty(0).is_err());
        assert_eq!(args(&["0"]).next_qty(0), Ok(0));
        assert!(args(&["4294967296"]).next_qty(1).is_err());
        assert!(args(&["-1"]).next_price().is_err());
        assert!(args(&["1000000000001"]).next_price().is_err());
        assert_eq!(args(&["999"]).next_price(), Ok(999));
    }

    #[test]
    fn item_ids_are_bounded_utf8() {
        let long = "p".repeat(ITEM_ID_BYTES_MAX + 1);
        assert!(args(&[&long, "-"]).next_line_id().is_err());
        assert!(args(&["", "-"]).next_line_id().is_err());
        let mut invalid = Args::new(vec![Bytes::from_static(b"\xff"), Bytes::from_static(b"-")]);
        assert!(invalid.next_line_id().is_err());
        assert!(args(&["sku-1", "-"]).next_line_id().is_ok());
    }

    #[test]
    fn leftovers_are_a_syntax_error() {
        let mut cursor = args(&["a", "b"]);
        cursor.next_bytes().unwrap();
        assert_eq!(cursor.finish(), Err(CommandError::syntax()));
    }
}
