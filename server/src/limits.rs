//! Fixed bounds. Configurable bounds live in `config.rs` beside their defaults.

/// Most store shards.
pub const SHARDS_MAX: usize = 4096;
/// Highest `max_bulk_bytes` a configuration may set.
pub const BULK_BYTES_MAX_LIMIT: usize = 64 * 1024 * 1024;
/// Longest cart TTL a configuration may set (10 years), so deadlines stay far from overflow.
pub const TTL_S_MAX: u64 = 10 * 365 * 24 * 3600;
/// Requests answered before the replies are written out, when a client pipelines more.
pub const REQUESTS_PER_BATCH_MAX: usize = 1024;
/// Bytes read per `read` call at most.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Room made for the first read of a connection; grows towards `READ_CHUNK_BYTES` while reads
/// fill it.
pub const READ_CHUNK_MIN_BYTES: usize = 4096;
/// A connection's write buffer larger than this is released once written, so an idle
/// connection holds little (100,000 connections must fit).
pub const IDLE_BUFFER_BYTES_MAX: usize = 16 * 1024;
/// Replies held for the log (under `always`) before a connection stops running requests.
pub const WRITE_BUFFER_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Reply bytes one turn of a connection produces before it writes them and lets the other
/// clients run: with 4 MiB turns, 500 clients pipelining big CART.GETs delayed a PING by
/// 7.4 s; with 256 KiB turns, 1.7 s.
pub const TURN_REPLY_BYTES_MAX: usize = 256 * 1024;
/// Default `max_interned_ids`: distinct product and variant ids held at once by carts and
/// catalog entries; past it new ids are refused (ids nothing holds are freed by sweeps).
pub const NAMES_MAX: usize = 20_000_000;
/// Highest `max_interned_ids` a config may set.
pub const NAMES_MAX_LIMIT: usize = 1_000_000_000;
/// Product variants the catalog cache holds.
pub const CATALOG_ENTRIES_MAX: usize = 10_000_000;
/// Completed checkout tokens remembered so a retried CART.COMPLETE succeeds again.
pub const COMPLETED_CHECKOUTS_MAX: usize = 1_000_000;
/// Promo codes on one cart.
pub const PROMO_CODES_PER_CART_MAX: usize = 10;
/// Gift cards on one cart.
pub const GIFT_CARDS_PER_CART_MAX: usize = 10;
/// Timing wheel slots (1 s each): a deadline further out is re-armed when its slot comes round.
pub const WHEEL_SLOTS: usize = 4096;
/// Carts an expiry pass looks at per shard-lock hold, so expiry never stalls a shard for long.
pub const EXPIRE_CHECKS_PER_LOCK_MAX: usize = 4096;
/// Attempts of CART.GET to validate a cart that keeps changing underneath it.
pub const VALIDATION_ATTEMPTS_MAX: usize = 3;
/// Highest `upstream.batch_max` a configuration may set.
pub const UPSTREAM_BATCH_ITEMS_MAX: usize = 10_000;
/// Product variants waiting on an upstream request at once, per service; a view that would
/// add more is served stale instead of sending more requests.
pub const UPSTREAM_IN_FLIGHT_KEYS_MAX: usize = 100_000;
/// Longest upstream response body read; a longer one is a failed request.
pub const UPSTREAM_RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Idle keep-alive connections kept per upstream service.
pub const UPSTREAM_IDLE_CONNECTIONS_MAX: usize = 64;
/// How long shutdown waits for connections to finish their batch.
pub const SHUTDOWN_GRACE_MS: u64 = 5_000;

const _: () = assert!(WHEEL_SLOTS.is_power_of_two());
const _: () = assert!(REQUESTS_PER_BATCH_MAX >= 16);
/// Open files cartd keeps for itself beside client connections (log segments, snapshots,
/// PostgreSQL connections, the listener): `maxclients` is lowered to fit the open-file limit
/// less these.
pub const FDS_RESERVED: u64 = 64;

/// Promotions the server keeps; `PROMO.SET` of a new code beyond it is refused.
pub const PROMOTIONS_MAX: usize = 100_000;
/// Automatic promotions: every cart view evaluates each of them, so their number bounds the
/// cost of pricing a cart.
pub const PROMOTIONS_AUTOMATIC_MAX: usize = 100;
/// Gift cards the server keeps; `GIFTCARD.SET` of a new code beyond it is refused.
pub const GIFT_CARDS_MAX: usize = 1_000_000;
/// Unexpired holds one gift card carries; a hold beyond it reserves nothing.
pub const GIFT_CARD_HOLDS_MAX: usize = 64;
/// How long after its hold would have run out a card's owner remembers what another node's
/// checkout spent (so that node's retried spend answers again): a retry comes only while the
/// checkout's hold runs there, this covers their clocks differing.
pub const GIFT_CARD_PEER_SPENT_KEPT_MS: u64 = 60_000;
/// Longest promotion or gift card code, in bytes.
pub const CODE_BYTES_MAX: usize = 64;
/// Entries in one product list of a promotion document.
pub const PROMO_PRODUCTS_MAX: usize = 100;
/// Longest promotion description, in characters.
pub const PROMO_DESCRIPTION_CHARS_MAX: usize = 200;
/// Largest money value in a promotion document or a gift card balance, in minor units (the
/// largest price a line may have): products with line amounts stay far inside `i128`.
pub const PROMO_MONEY_MINOR_MAX: i64 = protocol::PRICE_MINOR_MAX;
/// Largest `qty` of a buy_x_get_y side.
pub const PROMO_QTY_MAX: u32 = 100_000;

const _: () = assert!(PROMOTIONS_AUTOMATIC_MAX <= PROMOTIONS_MAX);
/// Channels and patterns one client subscribes to at most (each costs a registry entry).
pub const SUBSCRIPTIONS_PER_CLIENT_MAX: usize = 100_000;
/// Subscriptions (a client to a channel or pattern) the server holds at most, over all clients.
pub const SUBSCRIPTIONS_MAX: usize = 10_000_000;
/// Longest channel or pattern name a client subscribes to, and longest BCAST prefix.
pub const CHANNEL_BYTES_MAX: usize = 1024;
/// BCAST prefixes one tracking client registers at most (each change is matched against all).
pub const TRACKING_PREFIXES_MAX: usize = 1000;
/// Highest `slowlog-max-len`: an entry keeps at most `SLOWLOG_ARGS_MAX` arguments of at most
/// `SLOWLOG_ARG_BYTES_MAX` bytes each (about 4.5 KiB), so a full log takes at most ~450 MB.
/// Redis has no such bound.
pub const SLOWLOG_LEN_LIMIT: usize = 100_000;
/// Arguments a slow log entry keeps, the last one saying how many more there were (Redis's
/// `SLOWLOG_ENTRY_MAX_ARGC`).
pub const SLOWLOG_ARGS_MAX: usize = 32;
/// Bytes of one argument a slow log entry keeps, then `... (N more bytes)` (Redis's
/// `SLOWLOG_ENTRY_MAX_STRING`).
pub const SLOWLOG_ARG_BYTES_MAX: usize = 128;
/// Bytes of a client name a slow log entry keeps (names are short: CLIENT SETNAME takes no
/// spaces, and a longer one is cut).
pub const SLOWLOG_CLIENT_NAME_BYTES_MAX: usize = 128;
/// Samples the latency monitor keeps per event, one per second at most (Redis's
/// `LATENCY_TS_LEN`).
pub const LATENCY_SAMPLES_PER_EVENT_MAX: usize = 160;
/// Longest CLIENT PAUSE: a year (Redis takes any); longer is refused, so deadlines never
/// overflow.
pub const CLIENT_PAUSE_MS_MAX: u64 = 365 * 24 * 3600 * 1000;
const _: () = assert!(SLOWLOG_ARGS_MAX >= 2); // room for an argument and the "more" marker

/// How long a deleted shared reference entry (catalog, promotion) keeps its stamped tombstone,
/// so an older write of it arriving late from a peer that was down or cut off does not bring it
/// back. A node away longer than this may bring back an entry deleted meanwhile.
pub const TOMBSTONE_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// Tombstones kept at most; beyond it the oldest go first.
pub const REFERENCE_TOMBSTONES_MAX: usize = 1_000_000;
/// Changes waiting to be pushed to one peer primary; beyond it a change is not queued and
/// reaches that peer by the next digest comparison instead.
pub const PEER_PUSH_QUEUE_MAX: usize = 4096;
/// Changes sent to a peer in one pipelined batch.
pub const PEER_PUSH_BATCH_MAX: usize = 256;
/// Between two digest comparisons with a peer.
pub const PEER_SYNC_INTERVAL_MS: u64 = 500;
/// A peer's connect, and each of its replies, at most; then the link is dropped and made again.
pub const PEER_TIMEOUT_MS: u64 = 2000;
/// Between attempts to reach a peer that is down.
pub const PEER_RETRY_MS: u64 = 200;
/// Largest reply read from a peer (a pulled bucket of catalog entries).
pub const PEER_REPLY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Handoffs (CART.MERGE across nodes) a node keeps unconfirmed at once, given and received
/// each; past it a merge across nodes gets `-TRYAGAIN` ([`crate::store::Store::handoff_counts`]).
pub const HANDOFFS_MAX: usize = 4096;

/// How often the courier retries the `CART.HANDOFF.DONE`s still owed.
pub const HANDOFF_RETRY_MS: u64 = 500;
/// Gift card calls in flight to one peer primary at once (each on its own connection, kept
/// for the next call); a call beyond it waits for one to end.
pub const PEER_CALLS_IN_FLIGHT_MAX: usize = 16;
/// Gift card holds waiting to be released at their owners (a checkout released, expired or
/// deleted here); beyond it a release is not queued and its hold runs out by itself.
pub const PEER_RELEASE_QUEUE_MAX: usize = 4096;
