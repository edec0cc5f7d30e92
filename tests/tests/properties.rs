//! Property tests against a real cartd: random operation sequences never take a cart past its
//! limits and match a simple model step by step; random merges follow the merge rules.
//!
//! Each test starts one cartd and one tokio runtime, and every proptest case uses fresh cart
//! keys on that server.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use cartd_tests::{cmd, int, json_reply, ok, view, Cartd};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use redis::aio::MultiplexedConnection;
use serde_json::Value as Json;

/// Products the random operations pick from: more than `max_lines_per_cart`, so the line
/// limit is reached often.
const PRODUCTS: [&str; 6] = ["p0", "p1", "p2", "p3", "p4", "p5"];

/// Small limits, so random operations run into every one of them.
const LIMITS_CONFIG: &str =
    "[carts]\nmax_lines_per_cart = 4\nmax_qty_per_line = 9\nmax_saved_per_cart = 2\n";
const LINES_MAX: usize = 4;
const QTY_MAX: u32 = 9;
const SAVED_MAX: usize = 2;

/// Room for every product, a small quantity cap.
const MERGE_CONFIG: &str = "[carts]\nmax_lines_per_cart = 10\nmax_qty_per_line = 9\n";

/// Bounded runs: 24 cases, no regression files written, little shrinking.
fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    })
}

/// A multi-threaded runtime: the redis connection's driver keeps running between the
/// `block_on` calls of successive cases.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `strategy` through `test` and fails the Rust test with proptest's minimal case.
fn check<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    if let Err(error) = runner().run(&strategy, test) {
        panic!("{error}");
    }
}

/// One mutation of the limits property.
#[derive(Debug, Clone)]
enum Op {
    /// `CART.ADD`, with `PRICE 100 CURRENCY USD` when `priced`.
    Add {
        product: usize,
        qty: u32,
        priced: bool,
    },
    /// `CART.SET`.
    Set { product: usize, qty: u32 },
    /// `CART.REMOVE ... FROM CART|SAVED`.
    Remove { product: usize, saved: bool },
    /// `CART.SAVE`.
    Save { product: usize },
    /// `CART.RESTORE`.
    Restore { product: usize },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let product = 0..PRODUCTS.len();
    // Quantities from 0 to past the limit of 9.
    let qty = 0..=12u32;
    prop_oneof![
        4 => (product.clone(), qty.clone(), prop::bool::weighted(0.85))
            .prop_map(|(product, qty, priced)| Op::Add { product, qty, priced }),
        2 => (product.clone(), qty).prop_map(|(product, qty)| Op::Set { product, qty }),
        1 => (product.clone(), any::<bool>())
            .prop_map(|(product, saved)| Op::Remove { product, saved }),
        2 => product.clone().prop_map(|product| Op::Save { product }),
        2 => product.prop_map(|product| Op::Restore { product }),
    ]
}

impl Op {
    /// The request, replying the new version.
    fn args(&self, key: &str) -> Vec<String> {
        let mut args: Vec<String> = match *self {
            Op::Add {
                product,
                qty,
                priced,
            } => {
                let mut args = vec!["CART.ADD", key, PRODUCTS[product], "-", &qty.to_string()]
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>();
                if priced {
                    args.extend(["PRICE", "100", "CURRENCY", "USD"].map(String::from));
                }
                args
            }
            Op::Set { product, qty } => ["CART.SET", key, PRODUCTS[product], "-", &qty.to_string()]
                .map(String::from)
                .to_vec(),
            Op::Remove { product, saved } => {
                let from = if saved { "SAVED" } else { "CART" };
                ["CART.REMOVE", key, PRODUCTS[product], "-", "FROM", from]
                    .map(String::from)
                    .to_vec()
            }
            Op::Save { product } => ["CART.SAVE", key, PRODUCTS[product], "-"]
                .map(String::from)
                .to_vec(),
            Op::Restore { product } => ["CART.RESTORE", key, PRODUCTS[product], "-"]
                .map(String::from)
                .to_vec(),
        };
        args.extend(["REPLY", "VERSION"].map(String::from));
        args
    }
}

/// What the model says an operation does.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Succeeds and moves the version on by one.
    Changed,
    /// Succeeds and changes nothing (REMOVE of an absent line, SET to the same quantity).
    Unchanged,
    /// Fails with one of these error codes and changes nothing.
    Fails(Vec<&'static str>),
}

/// The cart as the model sees it: quantities of active and saved lines, and the version.
#[derive(Debug, Clone, Default)]
struct Model {
    exists: bool,
    version: i64,
    lines: BTreeMap<usize, u32>,
    saved: BTreeMap<usize, u32>,
}

/// Error codes that apply, or `None` when there are none.
fn refuse(codes: &[(&'static str, bool)]) -> Option<Expect> {
    let applying: Vec<&'static str> = codes
        .iter()
        .filter(|(_, applies)| *applies)
        .map(|(code, _)| *code)
        .collect();
    (!applying.is_empty()).then_some(Expect::Fails(applying))
}

impl Model {
    /// Applies `op` to the model (only if it succeeds) and says what the server should do.
    fn apply(&mut self, op: &Op) -> Expect {
        let expect = match *op {
            Op::Add {
                product,
                qty,
                priced,
            } => self.add(product, qty, priced),
            Op::Set { product, qty } => self.set(product, qty),
            Op::Remove { product, saved } => self.remove(product, saved),
            Op::Save { product } => self.save(product),
            Op::Restore { product } => self.restore(product),
        };
        if expect == Expect::Changed {
            self.version += 1;
        }
        expect
    }

    fn add(&mut self, product: usize, qty: u32, priced: bool) -> Expect {
        if qty == 0 {
            return Expect::Fails(vec!["ERR"]);
        }
        let current = self.lines.get(&product).copied();
        let total = current.unwrap_or(0) + qty;
        let new_line = current.is_none();
        if let Some(refused) = refuse(&[
            ("NOPRICE", new_line && !priced),
            ("LIMIT", total > QTY_MAX),
            ("LIMIT", new_line && self.lines.len() >= LINES_MAX),
        ]) {
            return refused;
        }
        self.exists = true;
        self.lines.insert(product, total);
        Expect::Changed
    }

    fn set(&mut self, product: usize, qty: u32) -> Expect {
        if !self.exists {
            return refuse(&[("NOCART", true), ("LIMIT", qty > QTY_MAX)]).expect("NOCART");
        }
        let present = self.lines.contains_key(&product);
        if let Some(refused) = refuse(&[("NOITEM", !present), ("LIMIT", qty > QTY_MAX)]) {
            return refused;
        }
        if qty == 0 {
            self.lines.remove(&product);
        } else if self.lines.insert(product, qty) == Some(qty) {
            return Expect::Unchanged;
        }
        Expect::Changed
    }

    fn remove(&mut self, product: usize, saved: bool) -> Expect {
        if !self.exists {
            return Expect::Fails(vec!["NOCART"]);
        }
        let list = if saved {
            &mut self.saved
        } else {
            &mut self.lines
        };
        match list.remove(&product) {
            Some(_) => Expect::Changed,
            None => Expect::Unchanged,
        }
    }

    fn save(&mut self, product: usize) -> Expect {
        if !self.exists {
            return Expect::Fails(vec!["NOCART"]);
        }
        let already_saved = self.saved.contains_key(&product);
        if let Some(refused) = refuse(&[
            ("NOITEM", !self.lines.contains_key(&product)),
            ("LIMIT", !already_saved && self.saved.len() >= SAVED_MAX),
        ]) {
            return refused;
        }
        let qty = self.lines.remove(&product).expect("checked");
        let saved = self.saved.entry(product).or_default();
        *saved = (*saved + qty).min(QTY_MAX);
        Expect::Changed
    }

    fn restore(&mut self, product: usize) -> Expect {
        if !self.exists {
            return Expect::Fails(vec!["NOCART"]);
        }
        let saved = self.saved.get(&product).copied();
        let current = self.lines.get(&product).copied();
        let total = current.unwrap_or(0) + saved.unwrap_or(0);
        if let Some(refused) = refuse(&[
            ("NOITEM", saved.is_none()),
            ("LIMIT", total > QTY_MAX),
            ("LIMIT", current.is_none() && self.lines.len() >= LINES_MAX),
        ]) {
            return refused;
        }
        self.saved.remove(&product);
        self.lines.insert(product, total);
        Expect::Changed
    }
}

/// The view without `ttl_ms` (which counts down between two reads).
async fn view_without_ttl(conn: &mut MultiplexedConnection, key: &str) -> Json {
    let mut cart = view(conn, key).await;
    if let Some(fields) = cart.as_object_mut() {
        fields.remove("ttl_ms");
    }
    cart
}

/// Product index to quantity, from a list of view lines.
fn line_quantities(lines: &Json) -> BTreeMap<usize, u32> {
    lines
        .as_array()
        .expect("a list of lines")
        .iter()
        .map(|line| {
            let product = line["product"].as_str().expect("product");
            let index = PRODUCTS.iter().position(|p| *p == product);
            let qty = line["qty"].as_u64().expect("qty") as u32;
            (index.expect("a known product"), qty)
        })
        .collect()
}

/// The cart is within every limit and holds what the model holds.
fn check_against_model(cart: &Json, model: &Model) -> Result<(), TestCaseError> {
    if !model.exists {
        prop_assert_eq!(cart, &Json::Null, "no cart yet");
        return Ok(());
    }
    let items = cart["items"].as_array().expect("items");
    let saved = cart["saved"].as_array().expect("saved");
    prop_assert!(items.len() <= LINES_MAX, "{} lines", items.len());
    prop_assert_eq!(
        line_quantities(&cart["items"]).len(),
        items.len(),
        "no line twice"
    );
    prop_assert_eq!(
        line_quantities(&cart["saved"]).len(),
        saved.len(),
        "no saved twice"
    );
    prop_assert!(saved.len() <= SAVED_MAX, "{} saved lines", saved.len());
    for line in items.iter().chain(saved) {
        let qty = line["qty"].as_u64().expect("qty");
        prop_assert!((1..=u64::from(QTY_MAX)).contains(&qty), "qty {}", qty);
    }
    prop_assert_eq!(line_quantities(&cart["items"]), model.lines.clone());
    prop_assert_eq!(line_quantities(&cart["saved"]), model.saved.clone());
    prop_assert_eq!(cart["version"].as_i64(), Some(model.version));
    let count: u32 = model.lines.values().sum();
    prop_assert_eq!(
        cart["totals"]["item_count"].as_u64(),
        Some(u64::from(count))
    );
    Ok(())
}

/// Runs one operation and compares the reply and the cart with the model.
async fn step(
    conn: &mut MultiplexedConnection,
    key: &str,
    model: &mut Model,
    op: &Op,
) -> Result<(), TestCaseError> {
    let before = view_without_ttl(conn, key).await;
    let expect = model.apply(op);
    let args = op.args(key);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reply = cmd(conn, &args).await;
    let after = view_without_ttl(conn, key).await;
    match (&expect, reply) {
        (Expect::Changed | Expect::Unchanged, Ok(version)) => {
            prop_assert_eq!(int(&version), model.version, "{:?} replies the version", op);
            if expect == Expect::Unchanged {
                prop_assert_eq!(&after, &before, "{:?} changes nothing", op);
            }
        }
        (Expect::Fails(codes), Err(error)) => {
            let code = error.split(' ').next().unwrap_or_default();
            prop_assert!(codes.contains(&code), "{:?} failed with {}", op, error);
            prop_assert_eq!(&after, &before, "{:?} failed and changed nothing", op);
        }
        (expect, reply) => {
            prop_assert!(false, "{:?}: expected {:?}, got {:?}", op, expect, reply);
        }
    }
    check_against_model(&after, model)
}

/// Random sequences of CART.ADD, SET, REMOVE, SAVE and RESTORE (quantities 0..=12, six
/// products) with max 4 lines, quantity 9 and 2 saved lines: the cart never exceeds a limit;
/// each operation succeeds with the version on by one (unchanged, and the cart identical, for
/// a no-op), or fails with a fitting error code and the cart view unchanged byte for byte; and
/// after every step the lines and saved lines equal a simple model's.
#[test]
fn random_operations_respect_the_limits_and_match_a_model() {
    let cartd = Cartd::start(LIMITS_CONFIG);
    let runtime = runtime();
    let conn = runtime.block_on(cartd.client(false));
    let case = AtomicUsize::new(0);
    check(prop::collection::vec(op_strategy(), 1..60), |ops| {
        let key = format!("cart:limits:{}", case.fetch_add(1, Ordering::Relaxed));
        let mut conn = conn.clone();
        runtime.block_on(async {
            let mut model = Model::default();
            for op in &ops {
                step(&mut conn, &key, &mut model, op).await?;
            }
            Ok(())
        })
    });
}

/// Random lines for one side of a merge: product index to quantity 1..=9.
fn lines_strategy() -> impl Strategy<Value = BTreeMap<usize, u32>> {
    prop::collection::btree_map(0..PRODUCTS.len(), 1..=QTY_MAX, 0..=PRODUCTS.len())
}

/// Creates a cart with `lines`, each priced `base + product index`.
async fn fill(
    conn: &mut MultiplexedConnection,
    key: &str,
    lines: &BTreeMap<usize, u32>,
    base: i64,
) {
    for (&product, &qty) in lines {
        let (qty, price) = (qty.to_string(), (base + product as i64).to_string());
        let args = [
            "CART.ADD",
            key,
            PRODUCTS[product],
            "-",
            &qty,
            "PRICE",
            &price,
            "CURRENCY",
            "USD",
            "REPLY",
            "NONE",
        ];
        ok(conn, &args).await;
    }
}

/// Product index to (quantity, unit price) of a view's active lines.
fn priced_lines(cart: &Json) -> BTreeMap<usize, (u32, i64)> {
    let items = cart["items"].as_array().expect("items");
    let quantities = line_quantities(&cart["items"]);
    assert_eq!(quantities.len(), items.len(), "no line twice");
    items
        .iter()
        .map(|line| {
            let product = line["product"].as_str().expect("product");
            let index = PRODUCTS.iter().position(|p| *p == product).expect("known");
            let price = line["unit_price"].as_i64().expect("unit_price");
            (index, (quantities[&index], price))
        })
        .collect()
}

/// What the merge model expects of the user cart: lines in both take max or sum (capped at 9)
/// at the user's price; lines in one cart keep their quantity and price.
fn merged_model(
    guest: &BTreeMap<usize, u32>,
    user: &BTreeMap<usize, u32>,
    sum: bool,
) -> BTreeMap<usize, (u32, i64)> {
    let mut merged: BTreeMap<usize, (u32, i64)> = guest
        .iter()
        .map(|(&product, &qty)| (product, (qty, GUEST_PRICE + product as i64)))
        .collect();
    for (&product, &qty) in user {
        let combined = match guest.get(&product) {
            Some(&guest_qty) if sum => (qty + guest_qty).min(QTY_MAX),
            Some(&guest_qty) => qty.max(guest_qty),
            None => qty,
        };
        merged.insert(product, (combined, USER_PRICE + product as i64));
    }
    merged
}

const GUEST_PRICE: i64 = 500;
const USER_PRICE: i64 = 100;

/// Merges random guest and user carts (either may be missing) and compares with the model.
async fn merge_case(
    conn: &mut MultiplexedConnection,
    n: usize,
    (guest, user, sum): (BTreeMap<usize, u32>, BTreeMap<usize, u32>, bool),
) -> Result<(), TestCaseError> {
    let (guest_key, user_key) = (format!("cart:guest:merge:{n}"), format!("cart:merge:{n}"));
    fill(conn, &guest_key, &guest, GUEST_PRICE).await;
    fill(conn, &user_key, &user, USER_PRICE).await;
    let rule = if sum { "SUM" } else { "MAX" };
    let args = [
        "CART.MERGE",
        &guest_key,
        &user_key,
        "QTY",
        rule,
        "FORMAT",
        "JSON",
    ];
    let reply = json_reply(&ok(conn, &args).await);
    let stored = view(conn, &user_key).await;
    prop_assert_eq!(
        view(conn, &guest_key).await,
        Json::Null,
        "the guest cart is gone"
    );
    if guest.is_empty() && user.is_empty() {
        prop_assert_eq!(&reply, &Json::Null, "nothing to merge replies null");
        prop_assert_eq!(&stored, &Json::Null);
        return Ok(());
    }
    let expected = merged_model(&guest, &user, sum);
    prop_assert_eq!(priced_lines(&reply), expected.clone(), "the reply");
    prop_assert_eq!(priced_lines(&stored), expected, "the stored cart");
    prop_assert_eq!(&reply["kind"], "user");
    let version = match (guest.is_empty(), user.is_empty()) {
        (true, _) => user.len(),
        (false, true) => guest.len() + 1,
        (false, false) => user.len() + 1,
    };
    prop_assert_eq!(reply["version"].as_u64(), Some(version as u64));
    prop_assert_eq!(&stored["version"], &reply["version"]);
    prop_assert_eq!(reply["saved"].as_array().map(Vec::len), Some(0));
    Ok(())
}

/// Random guest and user carts (six products, quantities 1..=9, one currency) merged with
/// random QTY MAX or SUM: the user cart then holds, for a product in both, the max or the sum
/// capped at 9, at the user's price; guest-only and user-only lines as they were; the version
/// is the user cart's plus one (the guest's plus one when there was no user cart, the user's
/// when there was no guest cart); and the guest cart is deleted.
#[test]
fn random_merges_follow_the_merge_rules() {
    let cartd = Cartd::start(MERGE_CONFIG);
    let runtime = runtime();
    let conn = runtime.block_on(cartd.client(false));
    let case = AtomicUsize::new(0);
    let strategy = (lines_strategy(), lines_strategy(), any::<bool>());
    check(strategy, |input| {
        let n = case.fetch_add(1, Ordering::Relaxed);
        let mut conn = conn.clone();
        runtime.block_on(merge_case(&mut conn, n, input))
    });
}
