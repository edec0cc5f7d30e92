//! Concurrency: many connections writing the same carts at once lose nothing, count nothing
//! twice, never deadlock, and idempotent retries racing each other apply once.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cartd_tests::{int, ok, view, Cartd};
use redis::aio::MultiplexedConnection;
use serde_json::Value as Json;
use tokio::task::JoinSet;

/// Connections writing at once in each test.
const CONNECTIONS: usize = 8;

/// A connection whose replies may take up to 10 s: the redis crate's default of 500 ms is too
/// little for a long pipeline on a loaded test machine.
async fn connect(cartd: &Cartd) -> MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{}/", cartd.addr())).expect("valid url");
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(10)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect")
}

/// Sends `commands` as one pipeline; every reply must be an integer.
async fn pipeline_ints(conn: &mut MultiplexedConnection, commands: &[Vec<String>]) -> Vec<i64> {
    let mut pipe = redis::pipe();
    for command in commands {
        pipe.cmd(&command[0]);
        for arg in &command[1..] {
            pipe.arg(arg);
        }
    }
    pipe.query_async(conn)
        .await
        .unwrap_or_else(|error| panic!("a pipeline of {} failed: {error}", commands.len()))
}

/// Sends one command that must reply an integer.
async fn call_int(conn: &mut MultiplexedConnection, args: &[String]) -> i64 {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    int(&ok(conn, &args).await)
}

/// `CART.ADD key product - qty PRICE 100 CURRENCY USD REPLY VERSION`.
fn add(key: &str, product: &str, qty: u32) -> Vec<String> {
    [
        "CART.ADD",
        key,
        product,
        "-",
        &qty.to_string(),
        "PRICE",
        "100",
        "CURRENCY",
        "USD",
        "REPLY",
        "VERSION",
    ]
    .map(String::from)
    .to_vec()
}

/// The active lines of a cart view, product to quantity.
fn quantities(view: &Json) -> BTreeMap<String, i64> {
    view["items"]
        .as_array()
        .expect("items is an array")
        .iter()
        .map(|line| {
            let product = line["product"].as_str().expect("product").to_string();
            (product, line["qty"].as_i64().expect("qty"))
        })
        .collect()
}

/// Waits for every task and collects their results; a panic in a task fails the test.
async fn join_all<T: 'static>(mut tasks: JoinSet<T>) -> Vec<T> {
    let mut results = Vec::new();
    while let Some(result) = tasks.join_next().await {
        results.push(result.unwrap_or_else(|error| panic!("a task failed: {error}")));
    }
    results
}

/// 8 connections adding 1 to the same line 5,000 times each end with quantity and version
/// 40,000, and the versions replied across all connections are exactly 1..=40,000: every add
/// was applied exactly once, and each connection saw its own adds in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_to_one_line_count_every_unit_once() {
    const ADDS: usize = 5_000;
    const CHUNK: usize = 250;
    let cartd = Cartd::start("[carts]\nmax_qty_per_line = 1000000\n");
    let mut tasks = JoinSet::new();
    for _ in 0..CONNECTIONS {
        let mut conn = connect(&cartd).await;
        tasks.spawn(async move {
            let chunk = vec![add("cart:hot", "sku", 1); CHUNK];
            let mut versions = Vec::with_capacity(ADDS);
            for _ in 0..ADDS / CHUNK {
                versions.extend(pipeline_ints(&mut conn, &chunk).await);
            }
            versions
        });
    }
    let per_connection = join_all(tasks).await;
    for versions in &per_connection {
        assert!(
            versions.windows(2).all(|pair| pair[0] < pair[1]),
            "one connection's adds are applied in the order sent"
        );
    }
    let mut all: Vec<i64> = per_connection.into_iter().flatten().collect();
    all.sort_unstable();
    let total = (CONNECTIONS * ADDS) as i64;
    assert_eq!(all, (1..=total).collect::<Vec<_>>(), "each version once");
    let mut conn = connect(&cartd).await;
    let cart = view(&mut conn, "cart:hot").await;
    assert_eq!(cart["version"], total);
    assert_eq!(
        quantities(&cart),
        BTreeMap::from([("sku".to_string(), total)])
    );
    assert_eq!(cart["totals"]["item_count"], total);
}

/// 8 connections adding 100 different products each (twice) to one cart leave all 800 lines in
/// the cart, each with exactly its own quantity, and the version counts all 1,600 adds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_of_distinct_lines_keep_every_line() {
    const PRODUCTS: usize = 100;
    let cartd = Cartd::start("[carts]\nmax_lines_per_cart = 1000\n");
    let mut tasks = JoinSet::new();
    for task in 0..CONNECTIONS {
        let mut conn = connect(&cartd).await;
        tasks.spawn(async move {
            let first: Vec<_> = (0..PRODUCTS)
                .map(|i| add("cart:wide", &format!("p{task}-{i}"), (i % 7 + 1) as u32))
                .collect();
            let second: Vec<_> = (0..PRODUCTS)
                .map(|i| add("cart:wide", &format!("p{task}-{i}"), 1))
                .collect();
            for chunk in first.chunks(25).chain(second.chunks(25)) {
                pipeline_ints(&mut conn, chunk).await;
            }
        });
    }
    join_all(tasks).await;
    let mut conn = connect(&cartd).await;
    let cart = view(&mut conn, "cart:wide").await;
    let expected: BTreeMap<String, i64> = (0..CONNECTIONS)
        .flat_map(|task| (0..PRODUCTS).map(move |i| (format!("p{task}-{i}"), (i % 7 + 2) as i64)))
        .collect();
    assert_eq!(quantities(&cart), expected);
    assert_eq!(cart["version"], (2 * CONNECTIONS * PRODUCTS) as i64);
}

/// Guest carts in the merge race.
const GUESTS: usize = 200;

fn guest_key(n: usize) -> String {
    format!("cart:guest:{n}")
}

/// What one guest cart's adder saw: adds acknowledged before and after the guest was merged.
#[derive(Debug, Default, Clone, Copy)]
struct GuestTally {
    pre_merge: i64,
    post_merge: i64,
    merged: bool,
}

impl GuestTally {
    /// Every guest cart starts at version 2 (two lines). Only its adder writes to it, so before
    /// the merge its adds reply 3, 4, ...; the merge deletes it and the next add recreates it at
    /// version 1, then 2, ... Any other version means an add was lost or applied twice.
    fn record(&mut self, n: usize, version: i64) {
        if !self.merged && version == 2 + self.pre_merge + 1 {
            self.pre_merge += 1;
        } else if version == self.post_merge + 1 {
            self.merged = true;
            self.post_merge += 1;
        } else {
            panic!("guest {n}: an add replied version {version} after {self:?}");
        }
    }
}

/// Adds product `g{n}` to each of `guests` in turn until the merges are done, then once more to
/// the even ones (so some recreated guest carts stay and the odd ones may be gone).
async fn add_to_guests(
    mut conn: MultiplexedConnection,
    guests: Vec<usize>,
    done: Arc<AtomicBool>,
) -> Vec<(usize, GuestTally)> {
    let mut tallies = vec![GuestTally::default(); guests.len()];
    let mut racing = true;
    while racing {
        racing = !done.load(Ordering::SeqCst);
        for (slot, &n) in guests.iter().enumerate() {
            if !racing && n % 2 == 1 {
                continue;
            }
            let version = call_int(&mut conn, &add(&guest_key(n), &format!("g{n}"), 1)).await;
            tallies[slot].record(n, version);
        }
    }
    guests.into_iter().zip(tallies).collect()
}

/// Adds `u` and `s` alternately to `cart:user` until the merges are done; returns how many of
/// each were acknowledged.
async fn add_to_user(mut conn: MultiplexedConnection, done: Arc<AtomicBool>) -> (i64, i64) {
    let (mut u_adds, mut s_adds) = (0, 0);
    while !done.load(Ordering::SeqCst) {
        let product = if (u_adds + s_adds) % 2 == 0 { "u" } else { "s" };
        call_int(&mut conn, &add("cart:user", product, 1)).await;
        if product == "u" {
            u_adds += 1;
        } else {
            s_adds += 1;
        }
    }
    (u_adds, s_adds)
}

/// Merges every guest cart into `cart:user` with QTY SUM, in order; each merge's reply version
/// is above the previous one.
async fn merge_guests(mut conn: MultiplexedConnection, done: Arc<AtomicBool>) {
    let mut last = 0;
    for n in 0..GUESTS {
        let args = [
            "CART.MERGE",
            &guest_key(n),
            "cart:user",
            "QTY",
            "SUM",
            "REPLY",
            "VERSION",
        ]
        .map(String::from);
        let version = call_int(&mut conn, &args).await;
        assert!(version > last, "merge versions grow: {last} then {version}");
        last = version;
    }
    done.store(true, Ordering::SeqCst);
}

/// Creates every guest cart with `g{n}` × (n % 5 + 1) and `s` × 1, at version 2.
async fn create_guests(conn: &mut MultiplexedConnection) {
    let setup: Vec<_> = (0..GUESTS)
        .flat_map(|n| {
            let key = guest_key(n);
            [
                add(&key, &format!("g{n}"), (n % 5 + 1) as u32),
                add(&key, "s", 1),
            ]
        })
        .collect();
    let versions = pipeline_ints(conn, &setup).await;
    assert!(versions.chunks(2).all(|pair| pair == [1, 2]));
}

/// 200 guest carts are merged (QTY SUM) into one user cart while other connections keep adding
/// to the guest carts and to the user cart. Nothing is lost or doubled: the user cart holds each
/// guest's initial lines plus exactly the guest adds acknowledged before its merge, plus every
/// direct add; each guest cart is gone, or holds exactly the adds acknowledged after its merge
/// (a guest cart nobody adds to is always gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merges_racing_adds_lose_and_double_nothing() {
    const ADDERS: usize = 4;
    let cartd = Cartd::start("[carts]\nmax_lines_per_cart = 1000\nmax_qty_per_line = 1000000\n");
    let mut conn = connect(&cartd).await;
    create_guests(&mut conn).await;
    let done = Arc::new(AtomicBool::new(false));
    let mut guest_tasks = JoinSet::new();
    for adder in 0..ADDERS {
        // Every tenth guest cart is left alone: its merge must simply delete it.
        let guests = (adder..GUESTS)
            .step_by(ADDERS)
            .filter(|n| n % 10 != 9)
            .collect();
        guest_tasks.spawn(add_to_guests(connect(&cartd).await, guests, done.clone()));
    }
    let user_task = tokio::spawn(add_to_user(connect(&cartd).await, done.clone()));
    let merge_task = tokio::spawn(merge_guests(connect(&cartd).await, done.clone()));
    merge_task.await.expect("the merges succeed");
    let (u_adds, s_adds) = user_task.await.expect("the user adds succeed");
    let mut tallies = vec![GuestTally::default(); GUESTS];
    for (n, tally) in join_all(guest_tasks).await.concat() {
        tallies[n] = tally;
    }

    let mut expected = BTreeMap::from([("s".to_string(), GUESTS as i64 + s_adds)]);
    if u_adds > 0 {
        expected.insert("u".into(), u_adds);
    }
    for (n, tally) in tallies.iter().enumerate() {
        expected.insert(format!("g{n}"), (n % 5 + 1) as i64 + tally.pre_merge);
    }
    assert_eq!(quantities(&view(&mut conn, "cart:user").await), expected);
    for (n, tally) in tallies.iter().enumerate() {
        let guest = view(&mut conn, &guest_key(n)).await;
        if tally.post_merge == 0 {
            assert_eq!(
                guest,
                Json::Null,
                "guest {n} was merged and never recreated"
            );
        } else {
            let lines = BTreeMap::from([(format!("g{n}"), tally.post_merge)]);
            assert_eq!(quantities(&guest), lines, "guest {n} holds only later adds");
            assert_eq!(guest["version"], tally.post_merge);
            assert_eq!(guest["kind"], "guest");
        }
    }
}

fn pair_keys(i: usize) -> (String, String) {
    (format!("cart:pair:{i}:a"), format!("cart:pair:{i}:b"))
}

/// Merges each pair in `pairs` one way: a into b (`forward`) or b into a.
async fn merge_pairs(mut conn: MultiplexedConnection, pairs: Range<usize>, forward: bool) {
    for i in pairs {
        let (a, b) = pair_keys(i);
        let (from, to) = if forward { (a, b) } else { (b, a) };
        ok(&mut conn, &["CART.MERGE", &from, &to, "REPLY", "NONE"]).await;
    }
}

/// 400 pairs of carts are merged both ways at once (a into b on one connection while b into a
/// on another), four groups in parallel: the merges finish (no deadlock between the two
/// shard locks), and of each pair exactly one cart survives, holding both carts' lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opposite_merges_neither_deadlock_nor_lose_lines() {
    const PAIRS: usize = 400;
    const GROUPS: usize = 4;
    let cartd = Cartd::start_default();
    let mut conn = connect(&cartd).await;
    let setup: Vec<_> = (0..PAIRS)
        .flat_map(|i| {
            let (a, b) = pair_keys(i);
            [add(&a, "from-a", 2), add(&b, "from-b", 3)]
        })
        .collect();
    pipeline_ints(&mut conn, &setup).await;
    let mut tasks = JoinSet::new();
    for group in 0..GROUPS {
        let pairs = group * PAIRS / GROUPS..(group + 1) * PAIRS / GROUPS;
        for forward in [true, false] {
            tasks.spawn(merge_pairs(connect(&cartd).await, pairs.clone(), forward));
        }
    }
    tokio::time::timeout(Duration::from_secs(20), join_all(tasks))
        .await
        .expect("opposite merges finish within 20 s (no deadlock)");
    let both = BTreeMap::from([("from-a".to_string(), 2), ("from-b".to_string(), 3)]);
    for i in 0..PAIRS {
        let (a, b) = pair_keys(i);
        let (view_a, view_b) = (view(&mut conn, &a).await, view(&mut conn, &b).await);
        let survivors: Vec<&Json> = [&view_a, &view_b]
            .into_iter()
            .filter(|cart| !cart.is_null())
            .collect();
        assert_eq!(survivors.len(), 1, "pair {i}: exactly one cart survives");
        assert_eq!(
            quantities(survivors[0]),
            both,
            "pair {i}: it holds both lines"
        );
    }
}

/// 8 connections sending the same 500 idempotent adds at once (token tok-K, K in 0..500) apply
/// each add once: the quantity and the version end at 500, all 8 replies for one token are the
/// same version, and the 500 tokens got the 500 distinct versions 1..=500.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_retries_racing_each_other_apply_once() {
    const TOKENS: usize = 500;
    let cartd = Cartd::start_default();
    let mut tasks = JoinSet::new();
    for _ in 0..CONNECTIONS {
        let mut conn = connect(&cartd).await;
        tasks.spawn(async move {
            let commands: Vec<Vec<String>> = (0..TOKENS)
                .map(|k| {
                    let mut command = add("cart:idem", "sku", 1);
                    command.splice(9..9, ["IDEMPOTENCY".to_string(), format!("tok-{k}")]);
                    command
                })
                .collect();
            let mut versions = Vec::with_capacity(TOKENS);
            for chunk in commands.chunks(50) {
                versions.extend(pipeline_ints(&mut conn, chunk).await);
            }
            versions
        });
    }
    let replies = join_all(tasks).await;
    for k in 0..TOKENS {
        let for_token: Vec<i64> = replies.iter().map(|versions| versions[k]).collect();
        assert!(
            for_token.iter().all(|&version| version == for_token[0]),
            "tok-{k}: every retry replies the original reply, got {for_token:?}"
        );
    }
    let mut versions: Vec<i64> = replies[0].clone();
    versions.sort_unstable();
    assert_eq!(versions, (1..=TOKENS as i64).collect::<Vec<_>>());
    let mut conn = connect(&cartd).await;
    let cart = view(&mut conn, "cart:idem").await;
    assert_eq!(cart["version"], TOKENS as i64);
    assert_eq!(
        quantities(&cart),
        BTreeMap::from([("sku".to_string(), TOKENS as i64)])
    );
}
