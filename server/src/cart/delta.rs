//! A cart's change as a delta: what differs between two states of one cart, so the log holds
//! a line's worth of bytes for a CART.ADD instead of the whole cart. A delta applies only to
//! the exact state it was made from (the record names that state's LSN); it carries the new
//! times and currency, the line operations that turn the old lines into the new ones, and the
//! whole out-of-line block (saved and unavailable lines, codes, checkout) when that changed.
//!
//! The store logs a full image instead when a delta cannot say it or would not be smaller: a
//! new cart, a cart whose last change is unknown (LSN 0), a kind or creation time that changed,
//! most lines changed, and every [`IMAGE_EVERY_VERSIONS`] versions, so no chain of deltas grows
//! long (PostgreSQL's sink and a replay never walk more than that many).
//!
//! Layout (postcard): `format u8 | updated_at_ms | expires_at_ms | currency [u8; 3] |
//! ops: [Replace(index, line) | Insert(index, line) | Remove(index)] | extra: Option<...>`.

use serde::{Deserialize, Serialize};

use super::image::{ExtraParts, ImageTail, LineImage};
use super::names::NamesRead;
use super::{Cart, Names};
use protocol::Currency;

/// The encoding's own version, first in every delta.
const DELTA_FORMAT: u8 = 1;

/// A full image is logged at least every this many versions of a cart.
pub const IMAGE_EVERY_VERSIONS: u64 = 32;

/// A delta.
#[derive(Serialize, Deserialize)]
struct CartDelta<'a> {
    format: u8,
    updated_at_ms: u64,
    expires_at_ms: u64,
    currency: [u8; 3],
    #[serde(borrow)]
    ops: Vec<LineOp<'a>>,
    #[serde(borrow)]
    extra: Option<ExtraImage<'a>>,
}

/// One step from the old lines to the new, applied in order.
#[derive(Serialize, Deserialize)]
enum LineOp<'a> {
    /// The line at this index becomes this one.
    Replace(u32, #[serde(borrow)] LineImage<'a>),
    /// This line goes in at this index (the end: appended).
    Insert(u32, #[serde(borrow)] LineImage<'a>),
    /// The line at this index goes.
    Remove(u32),
}

/// The whole out-of-line block, when it changed.
#[derive(Serialize, Deserialize)]
struct ExtraImage<'a> {
    #[serde(borrow)]
    saved: Vec<(LineImage<'a>, u64)>,
    #[serde(borrow)]
    unavailable: Vec<LineImage<'a>>,
    #[serde(borrow)]
    tail: ImageTail<'a>,
}

/// The delta from `before` to `after` (the same cart, `after` its next state), or `None` when a
/// full image should be logged instead (see the module notes).
pub fn encode(before: &Cart, after: &Cart, names: &Names) -> Option<Vec<u8>> {
    let names = &names.read();
    let fits = before.lsn != 0
        && !after.version.is_multiple_of(IMAGE_EVERY_VERSIONS)
        && before.kind == after.kind
        && before.created_at_ms == after.created_at_ms;
    if !fits {
        return None;
    }
    let ops = line_ops(before, after, names);
    if ops.len() * 2 > after.lines.len() + 2 {
        return None; // Most lines changed: the image is as small and simpler.
    }
    let extra = (before.extra != after.extra).then(|| {
        let parts = ExtraParts::of(after, names);
        ExtraImage {
            saved: parts.saved,
            unavailable: parts.unavailable,
            tail: parts.tail,
        }
    });
    let delta = CartDelta {
        format: DELTA_FORMAT,
        updated_at_ms: after.updated_at_ms,
        expires_at_ms: after.expires_at_ms,
        currency: after.currency.0,
        ops,
        extra,
    };
    Some(postcard::to_allocvec(&delta).expect("encoding into a Vec cannot fail"))
}

/// The operations that turn `before`'s lines into `after`'s: the lines that differ between
/// the longest common prefix and suffix are replaced one for one, then the surplus removed or
/// the rest inserted.
fn line_ops<'a>(before: &Cart, after: &'a Cart, names: &'a NamesRead<'_>) -> Vec<LineOp<'a>> {
    let (old, new) = (&before.lines, &after.lines);
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let room = old.len().min(new.len()) - prefix;
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    let old_middle = old.len() - prefix - suffix;
    let new_middle = &new[prefix..new.len() - suffix];
    let mut ops = Vec::new();
    let index = |at: usize| u32::try_from(at).expect("carts hold few lines");
    for (at, line) in new_middle.iter().enumerate().take(old_middle) {
        ops.push(LineOp::Replace(
            index(prefix + at),
            LineImage::of(line, names),
        ));
    }
    for _ in new_middle.len()..old_middle {
        ops.push(LineOp::Remove(index(prefix + new_middle.len())));
    }
    for (at, line) in new_middle.iter().enumerate().skip(old_middle) {
        ops.push(LineOp::Insert(
            index(prefix + at),
            LineImage::of(line, names),
        ));
    }
    ops
}

/// Applies the delta `bytes` to `cart`, which must be the state it was made from; the cart
/// then is at `version`. A delta that does not fit the cart is an error, and the cart is left
/// as it was.
pub fn apply(cart: &mut Cart, bytes: &[u8], version: u64, names: &Names) -> Result<(), String> {
    let delta: CartDelta =
        postcard::from_bytes(bytes).map_err(|error| format!("undecodable delta: {error}"))?;
    if delta.format != DELTA_FORMAT {
        return Err(format!("cart delta format {} is not known", delta.format));
    }
    let mut lines = cart.lines.clone();
    for op in &delta.ops {
        match op {
            LineOp::Replace(at, line) => {
                let slot = lines
                    .get_mut(*at as usize)
                    .ok_or_else(|| format!("a delta replaces line {at} of {}", cart.lines.len()))?;
                *slot = line.to_line(names).map_err(|error| error.message)?;
            }
            LineOp::Insert(at, line) => {
                let at = *at as usize;
                if at > lines.len() {
                    return Err(format!(
                        "a delta inserts at {at} into {} lines",
                        lines.len()
                    ));
                }
                lines.insert(at, line.to_line(names).map_err(|error| error.message)?);
            }
            LineOp::Remove(at) => {
                if *at as usize >= lines.len() {
                    return Err(format!("a delta removes line {at} of {}", lines.len()));
                }
                lines.remove(*at as usize);
            }
        }
    }
    let extra = match &delta.extra {
        Some(extra) => ExtraParts::extra(&extra.saved, &extra.unavailable, &extra.tail, names)
            .map_err(|error| error.message)?,
        None => cart.extra.take(),
    };
    cart.lines = lines;
    cart.extra = extra;
    cart.version = version;
    cart.updated_at_ms = delta.updated_at_ms;
    cart.expires_at_ms = delta.expires_at_ms;
    cart.currency = Currency(delta.currency);
    Ok(())
}

#[cfg(test)]
mod tests;

/// Applies the delta `bytes` to a cart's image (the state it was made from) and returns the
/// image of the new state, at `version`: what the PostgreSQL sink does, with no cart decoded
/// and no id interned.
pub fn apply_to_image(image: &[u8], bytes: &[u8], version: u64) -> Result<Vec<u8>, String> {
    let delta: CartDelta =
        postcard::from_bytes(bytes).map_err(|error| format!("undecodable delta: {error}"))?;
    if delta.format != DELTA_FORMAT {
        return Err(format!("cart delta format {} is not known", delta.format));
    }
    // The lines a cart refuses to decode are refused here too (see `LineImage::check`).
    let op_lines = delta.ops.iter().filter_map(|op| match op {
        LineOp::Replace(_, line) | LineOp::Insert(_, line) => Some(line),
        LineOp::Remove(_) => None,
    });
    let extra_lines = delta.extra.iter().flat_map(|extra| {
        let saved = extra.saved.iter().map(|(line, _)| line);
        saved.chain(&extra.unavailable)
    });
    for line in op_lines.chain(extra_lines) {
        line.check()?;
    }
    let (mut cart, mut tail) = super::image::split(image)?;
    for op in delta.ops {
        let lines = &mut cart.lines;
        match op {
            LineOp::Replace(at, line) => {
                let count = lines.len();
                *lines
                    .get_mut(at as usize)
                    .ok_or_else(|| format!("a delta replaces line {at} of {count}"))? = line;
            }
            LineOp::Insert(at, line) if at as usize <= lines.len() => {
                lines.insert(at as usize, line)
            }
            LineOp::Remove(at) if (at as usize) < lines.len() => {
                lines.remove(at as usize);
            }
            LineOp::Insert(at, _) | LineOp::Remove(at) => {
                return Err(format!(
                    "a delta's line {at} is out of the {} lines",
                    lines.len()
                ))
            }
        }
    }
    if let Some(extra) = delta.extra {
        cart.saved = extra.saved;
        cart.unavailable = extra.unavailable;
        tail = extra.tail;
    }
    cart.format = super::image::IMAGE_FORMAT;
    cart.version = version;
    cart.updated_at_ms = delta.updated_at_ms;
    cart.expires_at_ms = delta.expires_at_ms;
    cart.currency = delta.currency;
    Ok(super::image::join(&cart, &tail))
}
