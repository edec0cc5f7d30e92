//! `[upstream]` over real sockets (docs/UPSTREAM.md): a validating CART.GET refreshes the
//! cart's lines from the HTTP catalog and inventory services first. A [`FakeUpstream`] inside
//! the test plays both services; every test runs its own cartd and its own fake.
//!
//! Batching (one request per service with every line), the freshness windows, the timeout, a
//! malformed answer and the circuit breaker (views served from the cache, marked stale),
//! coalescing (1,000 views of one product make one request), the views that ask nothing
//! (NOVALIDATE, a cached validation, no upstream), CART.CHECKOUT forcing a fetch, and a bad
//! URL refused at start.

use std::time::{Duration, Instant};

use cartd_tests::{
    cart_add, encode_command, info, info_field, info_number, item, json_reply, lines, ok,
    parse_reply, resp3_to_json, w, Behaviour, Cartd, FakeUpstream, RawConn, Service, WAIT,
};
use redis::aio::MultiplexedConnection;
use serde_json::Value as Json;

/// Starts cartd with `[upstream]` pointing at `fake` (plus `upstream_extra` lines in that
/// section) and the other sections in `rest`.
async fn start(fake: &FakeUpstream, upstream_extra: &str, rest: &str) -> Cartd {
    Cartd::start_async(&format!("{}{rest}", fake.config(upstream_extra))).await
}

/// `CART.GET key FORMAT JSON`, validating.
async fn get(conn: &mut MultiplexedConnection, key: &str) -> Json {
    json_reply(&ok(conn, &["CART.GET", key, "FORMAT", "JSON"]).await)
}

/// The items of each request, sorted, for comparing regardless of order.
fn sorted_requests(fake: &FakeUpstream, service: Service) -> Vec<Vec<(String, String)>> {
    fake.requests(service)
        .into_iter()
        .map(|mut items| {
            items.sort();
            items
        })
        .collect()
}

fn items(products: &[&str]) -> Vec<(String, String)> {
    products
        .iter()
        .map(|product| (product.to_string(), "-".to_string()))
        .collect()
}

/// Waits (up to [`WAIT`]) until the INFO field `name` reaches `at_least`.
async fn wait_for_info(conn: &mut MultiplexedConnection, name: &str, at_least: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let upstream = info(conn, &["upstream"]).await;
        if info_number(&upstream, name) >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed below {at_least}:\n{upstream}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A 4-line cart's view makes one catalog request and one inventory request, each with the 4
/// lines; the view carries the catalog's prices (`price_changed`), moves the line the
/// inventory has none of to `unavailable`, and is fresh.
#[tokio::test]
async fn one_view_makes_one_batch_request_per_service() {
    let fake = FakeUpstream::start().await;
    for (product, price, stock) in [
        ("mug", 1299, 5),
        ("tv", 49_900, 2),
        ("sock", 300, 0),
        ("pen", 150, 40),
    ] {
        fake.price(product, "-", price);
        fake.stock(product, "-", stock);
    }
    let cartd = start(&fake, "", "").await;
    let mut conn = cartd.client(true).await;
    cart_add(&mut conn, "cart:1", "mug", "1", "1299").await;
    cart_add(&mut conn, "cart:1", "tv", "1", "45000").await;
    cart_add(&mut conn, "cart:1", "sock", "3", "300").await;
    cart_add(&mut conn, "cart:1", "pen", "2", "150").await;
    assert_eq!(fake.count(Service::Catalog), 0, "adds ask nothing");

    let view = get(&mut conn, "cart:1").await;
    let all = items(&["mug", "pen", "sock", "tv"]);
    for service in [Service::Catalog, Service::Inventory] {
        assert_eq!(
            sorted_requests(&fake, service),
            vec![all.clone()],
            "{service:?}"
        );
    }
    assert_eq!(view["validation"], "fresh", "{view}");
    assert_eq!(item(&view, "tv")["unit_price"], 49_900);
    assert_eq!(item(&view, "tv")["price_at_add"], 45_000);
    assert_eq!(item(&view, "tv")["price_changed"], true);
    assert_eq!(item(&view, "mug")["price_changed"], false);
    let unavailable: Vec<String> = lines(&view, "unavailable")
        .into_iter()
        .map(|(product, _, _)| product)
        .collect();
    assert_eq!(unavailable, ["sock"]);
    assert_eq!(view["items"].as_array().map(Vec::len), Some(3));

    let upstream = info(&mut conn, &["upstream"]).await;
    assert_eq!(info_number(&upstream, "upstream_enabled"), 1);
    assert_eq!(info_number(&upstream, "upstream_catalog_requests"), 1);
    assert_eq!(info_number(&upstream, "upstream_inventory_requests"), 1);
    assert_eq!(info_number(&upstream, "upstream_catalog_failures"), 0);
    assert_eq!(
        info_field(&upstream, "upstream_catalog_breaker").as_deref(),
        Some("closed")
    );
}

/// With the view cache off, a second view right away asks nothing (both windows are open);
/// past the stock window only the inventory is asked; past the price window both are.
#[tokio::test]
async fn prices_and_stock_are_fetched_only_past_their_windows() {
    let fake = FakeUpstream::start().await;
    fake.price("mug", "-", 500);
    fake.stock("mug", "-", 10);
    let upstream = "price_ttl_s = 3\nstock_ttl_s = 1";
    let cartd = start(&fake, upstream, "[carts]\nvalidation_cache_s = 0\n").await;
    let mut conn = cartd.client(true).await;
    cart_add(&mut conn, "cart:1", "mug", "1", "500").await;

    let first = Instant::now();
    assert_eq!(get(&mut conn, "cart:1").await["validation"], "fresh");
    let counts =
        |fake: &FakeUpstream| (fake.count(Service::Catalog), fake.count(Service::Inventory));
    assert_eq!(counts(&fake), (1, 1));
    assert_eq!(get(&mut conn, "cart:1").await["validation"], "fresh");
    assert_eq!(counts(&fake), (1, 1), "within both windows: nothing asked");

    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(get(&mut conn, "cart:1").await["validation"], "fresh");
    assert!(
        first.elapsed() < Duration::from_millis(2_900),
        "the test ran too slowly"
    );
    assert_eq!(counts(&fake), (1, 2), "past the stock window only");

    tokio::time::sleep_until((first + Duration::from_millis(3_300)).into()).await;
    assert_eq!(get(&mut conn, "cart:1").await["validation"], "fresh");
    assert_eq!(counts(&fake), (2, 3), "past the price window: both");
}

/// A service slower than `timeout_ms`: the view comes back long before the service would
/// have answered, priced from the cache (a CATALOG.SET push, which also counts as a fresh
/// price, so the catalog is not asked) and marked stale; the next view asks again.
#[tokio::test]
async fn a_slow_service_times_out_and_the_view_is_stale() {
    let fake = FakeUpstream::start().await;
    fake.price("mug", "-", 999);
    fake.stock("mug", "-", 10);
    fake.behave(
        Service::Catalog,
        Behaviour::Delay(Duration::from_millis(500)),
    );
    fake.behave(
        Service::Inventory,
        Behaviour::Delay(Duration::from_millis(500)),
    );
    let cartd = start(&fake, "timeout_ms = 30", "").await;
    let mut conn = cartd.client(true).await;
    cart_add(&mut conn, "cart:1", "mug", "2", "700").await;
    ok(&mut conn, &["CATALOG.SET", "mug", "-", "777", "USD"]).await;

    let started = Instant::now();
    let view = get(&mut conn, "cart:1").await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(400),
        "the view waited {took:?}, past the timeout"
    );
    assert_eq!(view["validation"], "stale", "{view}");
    assert_eq!(
        item(&view, "mug")["unit_price"],
        777,
        "priced from the cache"
    );
    assert_eq!(fake.count(Service::Catalog), 0, "a pushed price is fresh");
    assert_eq!(fake.count(Service::Inventory), 1);

    let view = get(&mut conn, "cart:1").await;
    assert_eq!(view["validation"], "stale");
    assert_eq!(
        fake.count(Service::Inventory),
        2,
        "a stale view is not cached"
    );
    let upstream = info(&mut conn, &["upstream"]).await;
    assert_eq!(info_number(&upstream, "upstream_inventory_timeouts"), 2);
    assert_eq!(info_number(&upstream, "upstream_inventory_failures"), 2);
}

/// A 200 whose body is not the contract's JSON is a failed request: the view is stale and
/// keeps its price, nothing of that answer is cached, and the other service's answer is.
#[tokio::test]
async fn a_malformed_answer_is_a_failure() {
    let fake = FakeUpstream::start().await;
    fake.price("mug", "-", 500);
    fake.stock("mug", "-", 10);
    fake.behave(Service::Catalog, Behaviour::Garbage);
    let cartd = start(&fake, "", "").await;
    let mut conn = cartd.client(true).await;
    cart_add(&mut conn, "cart:1", "mug", "1", "450").await;
    let view = get(&mut conn, "cart:1").await;
    assert_eq!(view["validation"], "stale", "{view}");
    assert_eq!(item(&view, "mug")["unit_price"], 450);
    let entry = resp3_to_json(&ok(&mut conn, &["CATALOG.GET", "mug", "-"]).await);
    assert_eq!(entry["price"], Json::Null, "{entry}");
    assert_eq!(entry["stock"], 10, "{entry}");
    let upstream = info(&mut conn, &["upstream"]).await;
    assert_eq!(info_number(&upstream, "upstream_catalog_failures"), 1);
    assert_eq!(info_number(&upstream, "upstream_catalog_timeouts"), 0);
    assert_eq!(info_number(&upstream, "upstream_inventory_failures"), 0);
}

/// Three failed views open both breakers: the next views reach neither service and are
/// stale. After the cooldown one trial goes out; it fails, so the breaker opens again; after
/// the next cooldown, with the services healthy, the trial succeeds and views are fresh.
#[tokio::test]
async fn the_breaker_opens_after_failures_and_closes_after_a_good_trial() {
    let fake = FakeUpstream::start().await;
    fake.price("mug", "-", 500);
    fake.stock("mug", "-", 10);
    fake.behave(Service::Catalog, Behaviour::Fail);
    fake.behave(Service::Inventory, Behaviour::Fail);
    let upstream = "timeout_ms = 2000\nbreaker_failures = 3\nbreaker_cooldown_ms = 1500";
    let cartd = start(&fake, upstream, "").await;
    let mut conn = cartd.client(true).await;
    cart_add(&mut conn, "cart:1", "mug", "1", "450").await;
    let counts =
        |fake: &FakeUpstream| (fake.count(Service::Catalog), fake.count(Service::Inventory));

    for _ in 0..3 {
        assert_eq!(get(&mut conn, "cart:1").await["validation"], "stale");
    }
    let opened = Instant::now();
    assert_eq!(counts(&fake), (3, 3));
    for _ in 0..3 {
        let view = get(&mut conn, "cart:1").await;
        assert_eq!(view["validation"], "stale");
        assert_eq!(
            item(&view, "mug")["unit_price"],
            450,
            "nothing cached to price from"
        );
    }
    assert_eq!(counts(&fake), (3, 3), "an open breaker sends nothing");
    assert!(opened.elapsed() < Duration::from_millis(1_400), "too slow");
    let upstream = info(&mut conn, &["upstream"]).await;
    assert_eq!(
        info_field(&upstream, "upstream_catalog_breaker").as_deref(),
        Some("open")
    );
    assert_eq!(info_number(&upstream, "upstream_inventory_rejected"), 3);

    tokio::time::sleep_until((opened + Duration::from_millis(1_700)).into()).await;
    assert_eq!(get(&mut conn, "cart:1").await["validation"], "stale");
    assert_eq!(counts(&fake), (4, 4), "one trial each");
    let reopened = Instant::now();
    assert_eq!(get(&mut conn, "cart:1").await["validation"], "stale");
    assert_eq!(counts(&fake), (4, 4), "the failed trial opened it again");

    fake.behave(Service::Catalog, Behaviour::Answer);
    fake.behave(Service::Inventory, Behaviour::Answer);
    tokio::time::sleep_until((reopened + Duration::from_millis(1_700)).into()).await;
    let view = get(&mut conn, "cart:1").await;
    assert_eq!(view["validation"], "fresh", "{view}");
    assert_eq!(item(&view, "mug")["unit_price"], 500);
    assert_eq!(counts(&fake), (5, 5));
    let upstream = info(&mut conn, &["upstream"]).await;
    assert_eq!(
        info_field(&upstream, "upstream_inventory_breaker").as_deref(),
        Some("closed")
    );
}

/// 1,000 carts hold product `flash`; 500 connections send two views each, while both
/// services hold their answers. One view's request goes out; the 499 other first views wait
/// on it (INFO counts them). Once released, every view is fresh at the catalog's price, and
/// each service got exactly one request, for `flash` alone.
#[tokio::test]
async fn a_thousand_views_of_one_product_make_one_request() {
    const CONNECTIONS: usize = 500;
    const VIEWS_PER_CONNECTION: usize = 2;
    let fake = FakeUpstream::start().await;
    fake.price("flash", "-", 4_200);
    fake.stock("flash", "-", 50);
    fake.behave(Service::Catalog, Behaviour::Hold);
    fake.behave(Service::Inventory, Behaviour::Hold);
    let cartd = start(&fake, "timeout_ms = 5000\nstock_ttl_s = 60", "").await;
    let mut conn = cartd.client(true).await;
    let mut pipe = redis::pipe();
    for cart in 0..CONNECTIONS * VIEWS_PER_CONNECTION {
        pipe.cmd("CART.ADD")
            .arg(format!("cart:{cart}"))
            .arg(&["flash", "-", "1", "PRICE", "4000", "CURRENCY", "USD"][..])
            .arg(&["REPLY", "NONE"][..]);
    }
    let added: Vec<redis::Value> = pipe.query_async(&mut conn).await.expect("the adds");
    assert_eq!(added.len(), CONNECTIONS * VIEWS_PER_CONNECTION);

    let mut viewers = Vec::with_capacity(CONNECTIONS);
    for connection in 0..CONNECTIONS {
        let mut raw = RawConn::connect(cartd.addr()).await;
        let mut requests = Vec::new();
        for view in 0..VIEWS_PER_CONNECTION {
            let key = format!("cart:{}", connection * VIEWS_PER_CONNECTION + view);
            requests.extend(encode_command(&["CART.GET", &key, "FORMAT", "JSON"]));
        }
        raw.send(&requests).await;
        viewers.push(raw);
    }
    fake.wait_for_requests(Service::Catalog, 1).await;
    let waiting = CONNECTIONS as u64 - 1;
    wait_for_info(&mut conn, "upstream_catalog_coalesced", waiting).await;
    wait_for_info(&mut conn, "upstream_inventory_coalesced", waiting).await;
    fake.release();

    let mut readers = tokio::task::JoinSet::new();
    for mut raw in viewers {
        readers.spawn(async move {
            let mut views = Vec::new();
            for _ in 0..VIEWS_PER_CONNECTION {
                views.push(json_reply(&parse_reply(&raw.read_reply().await)));
            }
            views
        });
    }
    let mut seen = 0;
    while let Some(views) = readers.join_next().await {
        for view in views.expect("a reader") {
            assert_eq!(view["validation"], "fresh", "{view}");
            assert_eq!(item(&view, "flash")["unit_price"], 4_200);
            seen += 1;
        }
    }
    assert_eq!(seen, CONNECTIONS * VIEWS_PER_CONNECTION);
    assert_eq!(fake.requests(Service::Catalog), [items(&["flash"])]);
    assert_eq!(fake.requests(Service::Inventory), [items(&["flash"])]);
    let upstream = info(&mut conn, &["upstream"]).await;
    assert_eq!(info_number(&upstream, "upstream_catalog_requests"), 1);
    assert_eq!(info_number(&upstream, "upstream_catalog_in_flight"), 0);
}

/// NOVALIDATE asks nothing, nor does a view whose validation is cached; CART.CHECKOUT asks
/// both services about every line even though both windows are open.
#[tokio::test]
async fn novalidate_and_cached_views_ask_nothing_and_checkout_forces_a_fetch() {
    let fake = FakeUpstream::start().await;
    fake.price("mug", "-", 500);
    fake.stock("mug", "-", 10);
    let cartd = start(&fake, "", "").await;
    let mut conn = cartd.client(false).await;
    cart_add(&mut conn, "cart:1", "mug", "1", "450").await;
    let skipped = json_reply(
        &ok(
            &mut conn,
            &["CART.GET", "cart:1", "novalidate", "FORMAT", "JSON"],
        )
        .await,
    );
    assert_eq!(skipped["validation"], "skipped");
    assert_eq!(fake.count(Service::Catalog), 0);
    assert_eq!(get(&mut conn, "cart:1").await["validation"], "fresh");
    assert_eq!(get(&mut conn, "cart:1").await["validation"], "cached");
    assert_eq!(fake.count(Service::Catalog), 1);
    assert_eq!(fake.count(Service::Inventory), 1);
    // CART.CHECKOUT asks anew, cache or not, and freezes the cart at the service's price.
    fake.price("mug", "-", 520);
    let frozen = json_reply(&ok(&mut conn, &w("cart.checkout cart:1 FORMAT JSON")).await);
    assert_eq!(fake.count(Service::Catalog), 2);
    assert_eq!(fake.count(Service::Inventory), 2);
    assert_eq!(frozen["status"], "checkout");
    assert_eq!(item(&frozen, "mug")["unit_price"], 520);
    // A frozen cart is not re-priced, so neither its view nor a retried CHECKOUT asks.
    get(&mut conn, "cart:1").await;
    ok(&mut conn, &w("CART.CHECKOUT cart:1")).await;
    assert_eq!(fake.count(Service::Catalog), 2);
    let token = frozen["checkout_token"].as_str().expect("a token");
    ok(&mut conn, &["CART.RELEASE", "cart:1", token]).await;
    // With the catalog failing, CHECKOUT is refused: no checkout on unchecked prices.
    fake.behave(Service::Catalog, Behaviour::Fail);
    let refused = cartd_tests::fails(&mut conn, &w("CART.CHECKOUT cart:1")).await;
    assert!(refused.starts_with("TRYAGAIN "), "{refused}");
    assert_eq!(fake.count(Service::Catalog), 3);
    assert_eq!(get(&mut conn, "cart:1").await["status"], "active");
}

/// Without `[upstream]` nothing is asked of anyone: INFO says so, and views validate
/// against the pushed catalog cache as before.
#[tokio::test]
async fn without_upstream_views_use_the_pushed_cache() {
    let cartd = Cartd::start_async("").await;
    let mut conn = cartd.client(true).await;
    cart_add(&mut conn, "cart:1", "mug", "1", "450").await;
    ok(&mut conn, &["CATALOG.SET", "mug", "-", "500", "USD"]).await;
    let view = get(&mut conn, "cart:1").await;
    assert_eq!(view["validation"], "fresh");
    assert_eq!(item(&view, "mug")["unit_price"], 500);
    let upstream = info(&mut conn, &["upstream"]).await;
    assert_eq!(info_number(&upstream, "upstream_enabled"), 0);
    assert!(info(&mut conn, &["all"]).await.contains("# Upstream\r\n"));
}

/// A URL that is not plain http:// stops cartd at start with a message naming the key.
#[tokio::test]
async fn a_bad_upstream_url_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("cartd.toml");
    std::fs::write(
        &config,
        "[upstream]\ncatalog_url = \"https://catalog.internal/prices\"\n",
    )
    .expect("write the config");
    let output = std::process::Command::new(cartd_tests::cartd_bin())
        .arg("--config")
        .arg(&config)
        .args(["--bind", "127.0.0.1", "--port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .expect("cartd runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("upstream.catalog_url"), "{stderr}");
    assert!(stderr.contains("http://"), "{stderr}");
}
