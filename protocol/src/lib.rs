//! cartd's wire layer: RESP2/RESP3 framing in, typed [`Command`]s out; [`Reply`] values in,
//! RESP bytes out. It holds no I/O, no store and no cart logic: the server owns those.
//!
//! Requests are decoded here, incrementally and strictly (see `request.rs`: `redis-protocol`'s
//! decoder starts over on every call and does not check the CRLF after a bulk string, which
//! made slow requests quadratic and let leftover bytes run as a command). Replies are encoded
//! here, straight from the [`Reply`] tree into the connection's write buffer (see `reply.rs`
//! for why); the tests check both against `redis-protocol`.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod args;
pub mod cmd;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod glob;
mod reply;
mod request;

pub use args::{parse_i64, Args};
pub use cmd::{
    CartAdd, CartCheckout, CartClear, CartComplete, CartGet, CartGiftCard, CartHandoff,
    CartHandoffDone, CartMerge, CartPromo, CartRelease, CartRemove, CartRestore, CartSave, CartSet,
    CatalogDel, CatalogGet, CatalogSet, ClientCommand, ClientKill, CodeAction, Command,
    CommandCommand, CommandId, CommandSpec, Currency, Format, GiftCardDel, GiftCardGet,
    GiftCardSet, GiftSync, Hello, Keys, LineId, LineList, MergeQty, MutationOptions, PromoDel,
    PromoGet, PromoSet, RefSync, RefSyncChange, ReplyMode, Scan, Shutdown, StockSet, COMMANDS,
};
pub use error::{CommandError, ErrorCode};
pub use reply::{Protocol, Reply};
pub use request::{FramingError, RequestDecoder, RequestLimits, ARGS_MAX};

/// Longest cart key, in bytes (PROTOCOL.md: keys are 1..=256 bytes).
pub const KEY_BYTES_MAX: usize = 256;
/// Longest product or variant id, in bytes.
pub const ITEM_ID_BYTES_MAX: usize = 64;
/// Longest idempotency or checkout token, in bytes.
pub const TOKEN_BYTES_MAX: usize = 64;
/// Longest promotion or gift card code, in bytes.
pub const CODE_BYTES_MAX: usize = 64;
/// Longest order id `CART.COMPLETE` records, in bytes.
pub const ORDER_ID_BYTES_MAX: usize = 128;
/// Shortest checkout hold `CART.CHECKOUT ... HOLD` accepts, in seconds.
pub const HOLD_S_MIN: u64 = 1;
/// Longest checkout hold `CART.CHECKOUT ... HOLD` accepts, in seconds (one day).
pub const HOLD_S_MAX: u64 = 86_400;
/// Largest price accepted, in minor units: 10^12 keeps `qty * price` summed over a full cart
/// far inside `i64` (999 * 10^12 * 200 lines < 2^63).
pub const PRICE_MINOR_MAX: i64 = 1_000_000_000_000;
