//! Keyspace commands with arguments: `EXISTS`/`DEL` key lists and `SCAN`.

use bytes::Bytes;

use super::options::reject_repeat;
use crate::args::Args;
use crate::error::CommandError;

/// Longest `COUNT` a SCAN may ask for: one call visits at most this many carts.
pub const SCAN_COUNT_MAX: usize = 100_000;

pub(super) fn parse_keys(args: &mut Args) -> Result<Vec<Bytes>, CommandError> {
    Ok(args.rest())
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
#[derive(Debug, PartialEq)]
pub struct Scan {
    /// Where to continue; 0 starts.
    pub cursor: u64,
    /// Glob the keys must match.
    pub pattern: Option<Bytes>,
    /// How many carts to visit (a hint, as in Redis).
    pub count: usize,
    /// `TYPE`: only `cart` matches anything.
    pub kind: Option<Bytes>,
}

impl Scan {
    /// Parses the arguments after the name.
    pub fn parse(args: &mut Args) -> Result<Scan, CommandError> {
        let cursor_text = args.next_bytes()?;
        let cursor = std::str::from_utf8(&cursor_text)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| CommandError::err("invalid cursor"))?;
        let mut scan = Scan {
            cursor,
            pattern: None,
            count: 10,
            kind: None,
        };
        let mut count_seen = false;
        while let Some(name) = args.next_if_any() {
            if name.eq_ignore_ascii_case(b"MATCH") {
                reject_repeat(scan.pattern.is_some())?;
                scan.pattern = Some(args.next_bytes()?);
            } else if name.eq_ignore_ascii_case(b"COUNT") {
                reject_repeat(count_seen)?;
                count_seen = true;
                let count = args.next_i64()?;
                if count < 1 {
                    return Err(CommandError::syntax());
                }
                scan.count = usize::try_from(count)
                    .unwrap_or(SCAN_COUNT_MAX)
                    .min(SCAN_COUNT_MAX);
            } else if name.eq_ignore_ascii_case(b"TYPE") {
                reject_repeat(scan.kind.is_some())?;
                scan.kind = Some(args.next_bytes()?);
            } else {
                return Err(CommandError::syntax());
            }
        }
        Ok(scan)
    }
}
