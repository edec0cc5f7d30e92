//! Fuzz harnesses for what the server decodes: promotion documents, cart images and deltas,
//! and (through the durability layer's harnesses) log records and snapshots, which are then
//! put into a store as recovery does and shown as CART.GET shows them. One function per fuzz
//! target, each taking any bytes and panicking only when a property of the code under test
//! fails. The cargo-fuzz targets in `tests/fuzz/` call them, and so does the stable corpus
//! replay test (`tests/tests/fuzz_corpora.rs`). See docs/FUZZING.md.
#![doc(hidden)]

use std::path::Path;

use bytes::{Bytes, BytesMut};
use persistence::fuzzing::Seed;
use persistence::snapshot::{Entry, EntryKind};
use persistence::{Change, Guard, GuardKind, Record, Space, State};
use protocol::{Currency, Format, Protocol, Reply};
use serde_json::Value;

use crate::cart::priced::CartPricing;
use crate::cart::view::{self, Validation};
use crate::cart::{delta, image, Cart, CartExtra, CartKind, Checkout, CodeList, Line};
use crate::cart::{LineKey, Names, Price, SavedLine};
use crate::config::Config;
use crate::pricing::engine::{self, GiftCardInput, PriceInput, PricedLine};
use crate::pricing::Promotion;
use crate::store::{Store, StoreConfig};

/// The time every harness runs at (late 2025, Unix ms).
const NOW_MS: u64 = 1_764_000_000_000;

/// The key-hash seed of the harnesses' stores.
const SEED: [u64; 4] = [1, 2, 3, 4];

/// Values derived from the input, deterministically (a seeded `rand` generator).
struct Derived(rand::rngs::StdRng);

impl Derived {
    fn new(seed: u64) -> Derived {
        Derived(rand::SeedableRng::seed_from_u64(seed))
    }

    /// A number in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: u64) -> u64 {
        rand::Rng::random_range(&mut self.0, 0..bound)
    }
}

/// FNV-1a of `data`: a seed that follows the input.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An empty store of two shards with the default limits, seeded.
fn store() -> Store {
    let mut config = Config::default();
    config.server.shards = 2;
    let store = Store::new(StoreConfig::from(&config), NOW_MS);
    assert!(store.set_seed(SEED));
    store
}

/// Encodes `reply` in both protocols (each must be well formed enough to encode at all).
fn encode_both(reply: &Reply) {
    for protocol in [Protocol::Resp2, Protocol::Resp3] {
        let mut out = BytesMut::new();
        reply.encode(protocol, &mut out);
        assert!(out.ends_with(b"\r\n"), "a reply ends its last line");
    }
}

/// `promo_document`: `data` is a `PROMO.SET` document. One that validates reads back from its
/// canonical form (`PROMO.GET`) to the same promotion and the same canonical form. It is then
/// priced, automatic and as codes, on a cart made of the products it names and others, priced
/// from the input: the engine's own checks hold (no line discounted below zero, the per-line
/// discounts summing to the cart's), the totals add up, and `check_code` says a code applies
/// exactly when pricing the cart with it shows it applied.
pub fn promo_document(data: &[u8]) {
    let promo = match Promotion::from_json(data) {
        Ok(promo) => promo,
        Err(error) => {
            assert!(!error.is_empty());
            return;
        }
    };
    let canonical = promo.to_json();
    let text = canonical.to_string();
    let again = Promotion::from_json(text.as_bytes())
        .unwrap_or_else(|error| panic!("the canonical document {text} is refused: {error}"));
    assert_eq!(again, promo, "read back from {text}");
    assert_eq!(again.to_json(), canonical, "the canonical form is stable");
    price_promotion(&promo, &canonical, fnv(data));
}

/// Every `(product, variant)` a canonical document names (`None`: all variants).
fn named_products(document: &Value) -> Vec<(String, Option<String>)> {
    let mut lists = vec![&document["products"]];
    lists.push(&document["buy"]["products"]);
    lists.push(&document["get"]["products"]);
    let mut named = Vec::new();
    for list in lists {
        for entry in list.as_array().into_iter().flatten() {
            match entry {
                Value::String(product) => named.push((product.clone(), None)),
                Value::Object(fields) => {
                    let text = |key| fields.get(key).and_then(Value::as_str).map(str::to_owned);
                    if let Some(product) = text("product") {
                        named.push((product, text("variant")));
                    }
                }
                _ => {}
            }
        }
    }
    named
}

/// The `(product, variant)` lines of a cart for `document`: each variant it names, two
/// variants of each product it names whole, and one product it does not name.
fn line_ids(document: &Value) -> Vec<(String, String)> {
    let mut ids: Vec<(String, String)> = Vec::new();
    for (product, variant) in named_products(document) {
        match variant {
            Some(variant) => ids.push((product, variant)),
            None => {
                ids.push((product.clone(), "-".into()));
                ids.push((product, "v2".into()));
            }
        }
    }
    ids.push(("other".into(), "-".into()));
    ids.sort();
    ids.dedup();
    ids.truncate(60);
    ids
}

/// Most of `ids` as priced lines, quantities and prices drawn from `random` (mostly small,
/// sometimes at the limits).
fn priced_lines<'a>(ids: &'a [(String, String)], random: &mut Derived) -> Vec<PricedLine<'a>> {
    let prices = [
        0,
        1,
        99,
        1_000,
        12_345,
        1_000_000,
        protocol::PRICE_MINOR_MAX,
    ];
    let mut lines = Vec::new();
    for (product, variant) in ids {
        if random.below(5) == 0 {
            continue;
        }
        let most = if random.below(8) == 0 { 999 } else { 6 };
        lines.push(PricedLine {
            product,
            variant,
            qty: 1 + random.below(most) as u32,
            unit_price: prices[random.below(prices.len() as u64) as usize],
        });
    }
    lines
}

/// Prices `promo` (canonically `document`) on a cart derived from `seed` (see
/// [`promo_document`]).
fn price_promotion(promo: &Promotion, document: &Value, seed: u64) {
    let mut random = Derived::new(seed);
    let ids = line_ids(document);
    let lines = priced_lines(&ids, &mut random);
    let currency = promo.currency().unwrap_or(Currency(*b"USD"));
    let now_ms = match (promo.starts_at_ms(), promo.ends_at_ms()) {
        (Some(start), _) if random.below(4) != 0 => start,
        (_, Some(end)) if random.below(4) == 0 => end,
        _ => NOW_MS,
    };
    let gift_cards = [
        GiftCardInput {
            code: "GC-1",
            card: Some((random.below(100_000) as i64, currency)),
            holds_full: false,
        },
        GiftCardInput {
            code: "GC-EUR",
            card: Some((500, Currency(*b"EUR"))),
            holds_full: random.below(2) == 0,
        },
    ];
    let automatic = [("auto", promo)];
    let codes = [
        ("CODE", Some(promo)),
        ("AGAIN", Some(promo)),
        ("CODE", Some(promo)),
    ];
    let base = PriceInput {
        currency,
        now_ms,
        lines: &lines,
        codes: &[],
        automatic: &[],
        gift_cards: &gift_cards,
    };
    let automatic = PriceInput {
        automatic: &automatic,
        ..base
    };
    let one_code = PriceInput {
        codes: &codes[..1],
        ..base
    };
    let stacked = PriceInput {
        codes: &codes,
        ..automatic
    };
    for input in [&base, &automatic, &one_code, &stacked] {
        check_pricing(input, engine::price(input));
    }
    let checked = engine::check_code(&base, "CODE", Some(promo));
    let priced = engine::price(&one_code);
    assert_eq!(
        checked.is_ok(),
        priced.codes[0].applied,
        "check_code and price disagree: {checked:?} against {:?}",
        priced.codes[0]
    );
}

/// What a priced cart promises whatever its promotions (see [`promo_document`]).
fn check_pricing(input: &PriceInput<'_>, pricing: engine::Pricing) {
    let amount = |line: &PricedLine<'_>| i64::from(line.qty) * line.unit_price;
    assert_eq!(
        pricing.subtotal,
        input.lines.iter().map(amount).sum::<i64>()
    );
    assert_eq!(pricing.line_discounts.len(), input.lines.len());
    for (line, discount) in input.lines.iter().zip(&pricing.line_discounts) {
        assert!((0..=amount(line)).contains(discount), "a line's discount");
    }
    assert_eq!(pricing.line_discounts.iter().sum::<i64>(), pricing.discount);
    assert_eq!(
        pricing.discounts.iter().map(|d| d.amount).sum::<i64>(),
        pricing.discount
    );
    assert!(pricing.discounts.iter().all(|d| d.amount > 0));
    assert_eq!(pricing.codes.len(), input.codes.len());
    assert_eq!(
        pricing.total,
        pricing.subtotal - pricing.discount - pricing.gift_card
    );
    assert!(pricing.total >= 0 && pricing.gift_card >= 0);
    for reason in pricing.codes.iter().filter_map(|code| code.reason.as_ref()) {
        let _ = (reason.as_str(), reason.to_string());
    }
    let _ = CartPricing::from(pricing);
}

/// Decodes `bytes` as a cart image and checks its round trip; the cart, if it is one.
fn image_round_trip(bytes: &[u8], names: &Names) -> Option<Cart> {
    let cart = image::decode(bytes, names).ok()?;
    let encoded = image::encode(&cart, names);
    let again = image::decode(&encoded, names).expect("a re-encoded image decodes");
    assert_eq!(again, cart, "a re-encoded image");
    assert_eq!(image::encode(&again, names), encoded, "encoding is stable");
    Some(cart)
}

/// Shows `cart` as CART.GET would (with the pricing it is frozen with, if any), in both
/// protocols and as JSON.
fn render(cart: &Cart, names: &Names) {
    let checkout = cart.checkout();
    let pricing = checkout
        .and_then(|checkout| CartPricing::decode(&checkout.pricing))
        .unwrap_or_default();
    if let Some(checkout) = checkout {
        if let Some(decoded) = CartPricing::decode(&checkout.pricing) {
            assert_eq!(CartPricing::decode(&decoded.encode()), Some(decoded));
        }
    }
    let reply = view::render(
        b"cart:fuzz",
        cart,
        names,
        NOW_MS,
        Validation::Skipped,
        &pricing,
        checkout,
    );
    encode_both(&reply);
    let _ = reply.to_json().to_string();
}

/// `cart_image`: `data` is decoded as a cart image, and also as `len u16 LE | image | delta`:
/// a cart image and a delta to apply to it. An image that decodes re-encodes to one that
/// decodes to the same cart and encodes to the same bytes again; the cart renders. A delta
/// applies to the decoded cart exactly when it applies to the image (as the PostgreSQL sink
/// applies it), both giving the same cart; and the delta `delta::encode` makes from the cart
/// before to the cart after, applied to the cart before, gives the cart after.
pub fn cart_image(data: &[u8]) {
    let names = Names::default();
    if let Some(cart) = image_round_trip(data, &names) {
        render(&cart, &names);
    }
    let Some((length, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let length = usize::from(u16::from_le_bytes(*length)).min(rest.len());
    let (image_bytes, delta_bytes) = rest.split_at(length);
    let Some(before) = image_round_trip(image_bytes, &names) else {
        return;
    };
    let version = before.version.wrapping_add(1);
    let mut after = before.clone();
    let applied = delta::apply(&mut after, delta_bytes, version, &names);
    let imaged = delta::apply_to_image(image_bytes, delta_bytes, version);
    match (&applied, &imaged) {
        (Ok(()), Ok(image_after)) => {
            let from_image =
                image::decode(image_after, &names).expect("the image a delta makes decodes");
            assert_eq!(from_image, after, "a delta on the image and on the cart");
        }
        (Err(_), Err(_)) => {
            assert_eq!(after, before, "a delta that does not apply changes nothing");
            return;
        }
        _ => panic!("a delta applies to the cart ({applied:?}) or the image ({imaged:?})"),
    }
    render(&after, &names);
    let mut before = before;
    before.lsn = 1;
    after.lsn = 1;
    if let Some(again) = delta::encode(&before, &after, &names) {
        let mut replayed = before.clone();
        delta::apply(&mut replayed, &again, after.version, &names)
            .expect("a delta applies to the cart it was made from");
        assert_eq!(replayed, after, "a re-encoded delta");
    }
}

/// The key of the token block of shard `index` of 2, as snapshots key it.
const BLOCK_KEY: [u8; 8] = [0, 0, 0, 0, 2, 0, 0, 0];

/// Shows every cart of `keys` from `store` (validation skipped: no upstream here).
fn show_carts(store: &Store, keys: &[Bytes]) {
    for key in keys {
        for format in [Format::Resp, Format::Json] {
            encode_both(&store.get(key, true, format, NOW_MS, false, true));
        }
    }
    let _ = (store.len(), store.token_stats());
}

/// `snapshot`: `data` is loaded as a snapshot by the durability layer's harness (as it is,
/// and with its checksums made right; see `persistence::fuzzing::snapshot`), and its bytes
/// are also taken as a token block on their own. Every entry read is then put into a store as
/// recovery puts it (errors are fine, panics are not), the frozen carts' gift card holds are
/// rebuilt, and every cart is shown.
pub fn snapshot(data: &[u8]) {
    let mut entries = persistence::fuzzing::snapshot(data);
    entries.push(Entry {
        kind: EntryKind::Block,
        key: Bytes::from_static(&BLOCK_KEY),
        lsn: 0,
        body: Bytes::copy_from_slice(data),
    });
    let store = store();
    let mut keys = Vec::new();
    for entry in entries {
        if entry.kind == EntryKind::Cart {
            keys.push(entry.key.clone());
        }
        let _ = store.load_entry(entry, NOW_MS);
    }
    store.rebuild_gift_card_holds(NOW_MS);
    show_carts(&store, &keys);
}

/// `wal_frame`: `data` is read as log frames by the durability layer's harness (see
/// `persistence::fuzzing::wal_frame`), and every record read is replayed into a store as
/// recovery replays it, strictly (stopping at the first record that does not apply) and as
/// `--repair` does; then the frozen carts' gift card holds are rebuilt and every cart is
/// shown.
pub fn wal_frame(data: &[u8]) {
    let records = persistence::fuzzing::wal_frame(data);
    for lenient in [false, true] {
        let store = store();
        let mut keys = Vec::new();
        for record in &records {
            let applied = store.apply_record(record, NOW_MS, lenient);
            keys.extend(
                record
                    .changes
                    .iter()
                    .filter(|change| change.space == Space::Cart)
                    .map(|change| change.key.clone()),
            );
            if applied.is_err() && !lenient {
                break;
            }
        }
        let _ = store.finish_replay(lenient);
        store.rebuild_gift_card_holds(NOW_MS);
        show_carts(&store, &keys);
    }
}

/// A line of `product`/`variant` interned in `names`.
fn line(names: &Names, product: &str, variant: &str, qty: u32, price: i64) -> Line {
    Line {
        key: LineKey {
            product: names.intern(product.as_bytes()).expect("few names"),
            variant: names.intern(variant.as_bytes()).expect("few names"),
        },
        qty,
        unit_price: price,
        price_at_add: price + 100,
        added_at_ms: NOW_MS - 60_000,
        foreign_price: false,
    }
}

/// The carts the seeds are made of: empty, with lines, with every out-of-line list, and
/// frozen for checkout with a gift card.
struct SeedCarts {
    empty: Cart,
    plain: Cart,
    full: Cart,
    frozen: Cart,
}

impl SeedCarts {
    fn new(names: &Names) -> SeedCarts {
        let usd = Currency(*b"USD");
        let empty = Cart::new(CartKind::Guest, usd, NOW_MS);
        let mut plain = Cart::new(CartKind::User, usd, NOW_MS - 3_600_000);
        plain.version = 3;
        plain.lsn = 3;
        plain.expires_at_ms = NOW_MS + 86_400_000;
        plain.lines.push(line(names, "p1", "-", 2, 999));
        plain.lines.push(line(names, "shirt", "red", 1, 2_500));
        let mut full = plain.clone();
        full.version = 4;
        full.lines.push(line(names, "tv", "55", 1, 59_900));
        full.extra = Some(Box::new(CartExtra {
            saved: vec![SavedLine {
                line: line(names, "sock", "-", 3, 300),
                saved_at_ms: NOW_MS - 1_000,
            }],
            unavailable: vec![Line {
                foreign_price: true,
                ..line(names, "eur-only", "-", 1, 1_000)
            }],
            ..CartExtra::default()
        }));
        full.add_code(CodeList::Promo, "SAVE10");
        full.add_code(CodeList::GiftCard, "GC-1");
        let mut frozen = full.clone();
        frozen.version = 5;
        let pricing = CartPricing {
            gift_cards: vec![crate::cart::priced::GiftCardState {
                code: "GC-1".into(),
                applied: 1_000,
                reason: None,
            }],
            ..CartPricing::plain(&frozen)
        };
        frozen.begin_checkout(Checkout {
            token: "chk-1".into(),
            hold_until_ms: NOW_MS + 900_000,
            pricing: pricing.encode().into(),
        });
        SeedCarts {
            empty,
            plain,
            full,
            frozen,
        }
    }

    /// `cart_image` seeds: each cart's image, and images with a delta on them (a line added;
    /// a quantity and the out-of-line block changed; a line gone). Also returns the first delta.
    fn image_seeds(&self, names: &Names) -> (Vec<Seed>, Vec<u8>) {
        let mut seeds = Vec::new();
        let carts = [
            ("empty", &self.empty),
            ("plain", &self.plain),
            ("full", &self.full),
            ("frozen", &self.frozen),
        ];
        for (name, cart) in carts {
            let image = image::encode(cart, names);
            seeds.push(("cart_image", format!("gen-image-{name}"), image));
        }
        let mut added = self.plain.clone();
        added.version = 4;
        added.updated_at_ms = NOW_MS;
        added.lines.push(line(names, "hat", "-", 1, 1_500));
        let mut changed = self.full.clone();
        changed.version = 5;
        changed.lines[0].qty = 7;
        changed.add_code(CodeList::Promo, "FREESHIP");
        let mut removed = self.full.clone();
        removed.version = 5;
        removed.lines.remove(1);
        let pairs = [
            ("added", &self.plain, &added),
            ("changed", &self.full, &changed),
            ("removed", &self.full, &removed),
        ];
        let mut first_delta = Vec::new();
        for (name, before, after) in pairs {
            let before_image = image::encode(before, names);
            let mut before = before.clone();
            before.lsn = before.lsn.max(1);
            let delta = delta::encode(&before, after, names).expect("a small change is a delta");
            let mut input = (before_image.len() as u16).to_le_bytes().to_vec();
            input.extend_from_slice(&before_image);
            input.extend_from_slice(&delta);
            seeds.push(("cart_image", format!("gen-image-delta-{name}"), input));
            if first_delta.is_empty() {
                first_delta = delta;
            }
        }
        (seeds, first_delta)
    }
}

/// Fills `store` with catalog entries, promotions, a gift card and two carts (one frozen)
/// whose records carry request tokens.
fn fill_store(store: &Store, carts: &SeedCarts) {
    let names = &store.names;
    let key = |product: &str, variant: &str| LineKey {
        product: names.intern(product.as_bytes()).expect("few names"),
        variant: names.intern(variant.as_bytes()).expect("few names"),
    };
    let usd = Currency(*b"USD");
    let price = |minor| Price {
        minor,
        currency: usd,
    };
    store
        .catalog_set(key("p1", "-"), price(999), Some(10), Some(5), NOW_MS)
        .expect("a catalog entry");
    store
        .catalog_set(key("tv", "55"), price(59_900), None, None, NOW_MS)
        .expect("a catalog entry");
    let bundle = r#"{"kind":"bundle","products":["tv","soundbar"],"price":60000,"currency":"USD","automatic":true}"#;
    for (code, document) in [
        ("SAVE10", r#"{"kind":"percent","percent":10}"#),
        ("TVSET", bundle),
    ] {
        let promo = Promotion::from_json(document.as_bytes()).expect("a valid document");
        store.promo_set(code, promo, NOW_MS).expect("a promotion");
    }
    store
        .gift_card_set("GC-1", 5_000, usd, NOW_MS)
        .expect("a gift card");
    for (key, cart) in [
        (&b"cart:guest:1"[..], &carts.plain),
        (b"cart:7", &carts.frozen),
    ] {
        let change = Change {
            space: Space::Cart,
            key: Bytes::copy_from_slice(key),
            version: cart.version,
            at_ms: NOW_MS,
            state: State::Image(image::encode(cart, names).into()),
            event: None,
            guard: Some(Guard {
                kind: GuardKind::Idempotency,
                token: Bytes::from_static(b"req-1"),
                fingerprint: 42,
            }),
        };
        let record = Record {
            lsn: cart.version,
            changes: vec![change],
        };
        store
            .apply_record(&record, NOW_MS, false)
            .expect("a record applies");
    }
}

/// Seed inputs for every server-side target, made by the code itself: cart images and images
/// with deltas on them (see [`SeedCarts`]), the durability layer's seeds carrying them (see
/// `persistence::fuzzing::seed_inputs`), and a whole snapshot that a store of carts, tokens,
/// catalog entries, promotions and gift cards wrote into `scratch` (an empty directory), with
/// its largest token block. `tests/tests/fuzz_corpora.rs` writes them into the corpora (see
/// docs/FUZZING.md).
pub fn seed_inputs(scratch: &Path) -> Vec<Seed> {
    let store = store();
    let carts = SeedCarts::new(&store.names);
    let (mut seeds, first_delta) = carts.image_seeds(&store.names);
    fill_store(&store, &carts);
    let info = store.write_snapshot(scratch).expect("a snapshot");
    let snapshot = std::fs::read(&info.path).expect("the snapshot just written");
    let mut block = Vec::new();
    persistence::snapshot::load(&info.path, |entry| {
        if entry.kind == EntryKind::Block && block.len() < entry.body.len() {
            block = entry.body.to_vec();
        }
    })
    .expect("the snapshot just written loads");
    seeds.push(("snapshot", "gen-store-snapshot".into(), snapshot));
    seeds.push(("snapshot", "gen-token-block".into(), block.clone()));
    seeds.push(("snapshot", "gen-token-block-empty".into(), vec![0, 0, 0]));
    let image = image::encode(&carts.plain, &store.names);
    seeds.extend(persistence::fuzzing::seed_inputs(
        &image,
        &first_delta,
        &block,
    ));
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harnesses_take_their_seeds_and_garbage() {
        let scratch = std::env::temp_dir().join(format!("cartd-fuzz-seeds-{}", std::process::id()));
        let seeds = seed_inputs(&scratch);
        let _ = std::fs::remove_dir_all(&scratch);
        for (target, name, bytes) in &seeds {
            match *target {
                "cart_image" => {
                    if !name.contains("delta") {
                        assert!(image::decode(bytes, &Names::default()).is_ok(), "{name}");
                    }
                    cart_image(bytes);
                }
                "snapshot" => snapshot(bytes),
                "wal_frame" => wal_frame(bytes),
                other => panic!("{other}"),
            }
        }
        for garbage in [&b""[..], b"\x02", b"{}", b"\x00\x00\x00\x00\xff\xff\xff"] {
            promo_document(garbage);
            cart_image(garbage);
            snapshot(garbage);
            wal_frame(garbage);
        }
        promo_document(br#"{"kind":"percent","percent":10,"products":["p1"]}"#);
    }
}
