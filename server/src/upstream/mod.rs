//! The HTTP catalog and inventory services (`[upstream]`, contract in docs/UPSTREAM.md).
//!
//! Before a validating `CART.GET` or a `CART.CHECKOUT` runs, the connection holds it back and
//! calls [`Upstream::refresh`] with the cart's lines (see [`before_view`]): prices missing or
//! older than `price_ttl_s` and stock levels older than `stock_ttl_s` (all of them for a
//! checkout) are fetched, one batch per service, both services in parallel, each request under
//! `timeout_ms` and its service's circuit breaker ([`breaker`]). A variant another view is
//! already fetching is waited for, not asked again ([`flights`]). The answers go into the
//! catalog cache; the view itself is then priced from the cache as always. When a service
//! fails, `refresh` says so and the view is marked `validation: stale`.
//!
//! No shard lock is held here: the cart's lines were copied out before, and the view re-reads
//! the cart after. The HTTP client's connection tasks end when the server, and with it the
//! client and its pool, is dropped at shutdown.

mod breaker;
mod flights;
mod http;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use hyper::Uri;
use protocol::{CommandError, Currency, PRICE_MINOR_MAX};

use crate::cart::{LineKey, Names, Price};
use crate::catalog::{Catalog, Facet};
use crate::config::UpstreamConfig;
use crate::info::line;
use crate::limits::UPSTREAM_IN_FLIGHT_KEYS_MAX;
use crate::server::{now_ms, Server};
pub use breaker::BreakerState;
use breaker::{Breaker, Transition};
use flights::{Claim, Flight, Flights, Refused};
use http::{HttpClient, ItemRef, PriceBatch, StockBatch};

/// Why a refresh did not bring every line up to date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// A request got no complete answer in time.
    #[error("{service}: no answer within {timeout_ms} ms")]
    Timeout {
        /// `catalog` or `inventory`.
        service: &'static str,
        /// The configured timeout.
        timeout_ms: u64,
    },
    /// A request failed: transport error, non-2xx status, malformed answer.
    #[error("{service}: {reason}")]
    Failed {
        /// `catalog` or `inventory`.
        service: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The service's circuit breaker is open: no request was sent.
    #[error("{service}: circuit breaker open")]
    BreakerOpen {
        /// `catalog` or `inventory`.
        service: &'static str,
    },
    /// Too many variants are being fetched already; no request was sent.
    #[error("{service}: {UPSTREAM_IN_FLIGHT_KEYS_MAX} product variants in flight already")]
    Busy {
        /// `catalog` or `inventory`.
        service: &'static str,
    },
    /// Another view's request, which this view waited for, failed.
    #[error("{service}: the shared request failed")]
    Shared {
        /// `catalog` or `inventory`.
        service: &'static str,
    },
}

/// Counters of one service, for INFO.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// HTTP requests sent.
    pub requests: AtomicU64,
    /// Requests that failed, timeouts included.
    pub failures: AtomicU64,
    /// Requests that got no answer within `timeout_ms`.
    pub timeouts: AtomicU64,
    /// Variants a view waited for because another view's request was fetching them.
    pub coalesced: AtomicU64,
    /// Views that needed a request the open breaker did not let out (or the in-flight bound).
    pub rejected: AtomicU64,
}

/// One service: where it is, its breaker, what it is fetching, its counters.
#[derive(Debug)]
struct Service {
    name: &'static str,
    facet: Facet,
    uri: Uri,
    ttl_ms: u64,
    timeout_ms: u64,
    batch_max: usize,
    client: HttpClient,
    breaker: Breaker,
    flights: Flights,
    stats: ServiceStats,
}

/// The configured services (at least one).
#[derive(Debug)]
pub struct Upstream {
    catalog: Option<Service>,
    inventory: Option<Service>,
}

/// A view's lines to refresh before it runs (from [`before_view`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRefresh {
    /// The cart's active lines.
    pub keys: Vec<LineKey>,
    /// Fetch every line whatever its age (`CART.CHECKOUT`).
    pub force: bool,
}

/// Checks one `[upstream]` URL: `http://host[:port]/path`.
pub fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|error| format!("{url:?} is not a URL: {error}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{url:?}: only http:// URLs are supported (put a TLS proxy in front for https)"
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} names no host"));
    }
    Ok(uri)
}

/// Whether the request `args` is a view that needs its lines refreshed first: `CART.GET key`
/// without `NOVALIDATE` whose cart exists and whose validation is not cached, or
/// `CART.CHECKOUT key ...` (every line, `force`). `None` without an upstream, while loading,
/// for other commands, and when no line is due (so a view with nothing to fetch is not held
/// back, and its pipelined batch is not cut in two).
pub fn before_view(
    args: &[Bytes],
    spec: &protocol::CommandSpec,
    server: &Server,
    now_ms: u64,
) -> Option<ViewRefresh> {
    let upstream = server.upstream.as_ref()?;
    if server.loading.load(Relaxed) {
        return None;
    }
    let force = match spec.id {
        protocol::CommandId::CartCheckout => true,
        protocol::CommandId::CartGet => {
            if args[1..]
                .iter()
                .any(|arg| arg.eq_ignore_ascii_case(b"NOVALIDATE"))
            {
                return None;
            }
            false
        }
        _ => return None,
    };
    let key = &args[spec.keys.positions(args.len()).next()?];
    let store = &server.store;
    let keys = store.line_keys_to_validate(key, now_ms, force)?;
    let wanted = upstream.wants(&store.catalog, &keys, force, now_ms);
    wanted.then_some(ViewRefresh { keys, force })
}

impl Upstream {
    /// The services `config` names; `None` when it names none.
    ///
    /// # Panics
    ///
    /// On a URL that [`crate::config::Config::check`] would refuse (it runs on every loaded
    /// configuration before a server is made).
    pub fn new(config: &UpstreamConfig) -> Option<Upstream> {
        if !config.enabled() {
            return None;
        }
        let client = HttpClient::new();
        let service = |name: &'static str, facet: Facet, url: &str, ttl_s: u64| {
            (!url.is_empty()).then(|| Service {
                name,
                facet,
                uri: parse_url(url).expect("Config::check accepted the upstream URLs"),
                ttl_ms: ttl_s * 1000,
                timeout_ms: config.timeout_ms,
                batch_max: config.batch_max,
                client: client.clone(),
                breaker: Breaker::new(config.breaker_failures, config.breaker_cooldown_ms),
                flights: Flights::default(),
                stats: ServiceStats::default(),
            })
        };
        Some(Upstream {
            catalog: service(
                "catalog",
                Facet::Price,
                &config.catalog_url,
                config.price_ttl_s,
            ),
            inventory: service(
                "inventory",
                Facet::Stock,
                &config.inventory_url,
                config.stock_ttl_s,
            ),
        })
    }

    /// Brings `keys` up to date in `catalog` at `now_ms`: prices missing or past their window
    /// from the catalog service, stock levels past theirs from the inventory service (every
    /// key of both when `force`), one batch per service (split past `batch_max`), both in
    /// parallel. Variants another view is fetching are waited for instead. `Err`: a service
    /// failed, timed out, or its breaker is open; what the cache holds is all there is.
    pub async fn refresh(
        &self,
        catalog: &Catalog,
        names: &Names,
        keys: &[LineKey],
        force: bool,
        now_ms: u64,
    ) -> Result<(), UpstreamError> {
        let (prices, stock) = tokio::join!(
            refresh_one(self.catalog.as_ref(), catalog, names, keys, force, now_ms),
            refresh_one(self.inventory.as_ref(), catalog, names, keys, force, now_ms),
        );
        prices.and(stock)
    }

    /// Whether any of `keys` is due for a fetch from a configured service at `now_ms` (all
    /// are when `force`, if there are any). Read without the coalescing locks: a quick
    /// look that [`Upstream::refresh`] repeats under them.
    pub fn wants(&self, catalog: &Catalog, keys: &[LineKey], force: bool, now_ms: u64) -> bool {
        let due = |service: &Option<Service>| {
            service.as_ref().is_some_and(|service| {
                keys.iter()
                    .any(|&key| force || catalog.due(key, service.facet, now_ms, service.ttl_ms))
            })
        };
        due(&self.catalog) || due(&self.inventory)
    }

    /// The `upstream_*` fields of `INFO upstream`.
    pub fn info(&self, out: &mut String) {
        let now_ms = now_ms();
        line(out, "upstream_enabled", 1);
        for (name, service) in [("catalog", &self.catalog), ("inventory", &self.inventory)] {
            let field = |suffix: &str| format!("upstream_{name}_{suffix}");
            line(out, &field("enabled"), u8::from(service.is_some()));
            let Some(service) = service else { continue };
            let stats = &service.stats;
            line(out, &field("requests"), stats.requests.load(Relaxed));
            line(out, &field("failures"), stats.failures.load(Relaxed));
            line(out, &field("timeouts"), stats.timeouts.load(Relaxed));
            line(out, &field("coalesced"), stats.coalesced.load(Relaxed));
            line(out, &field("rejected"), stats.rejected.load(Relaxed));
            line(out, &field("in_flight"), service.flights.len());
            line(
                out,
                &field("breaker"),
                service.breaker.state(now_ms).as_str(),
            );
        }
        line(out, "upstream_in_flight_max", UPSTREAM_IN_FLIGHT_KEYS_MAX);
    }
}

/// [`Upstream::refresh`] for one service, if it is configured.
async fn refresh_one(
    service: Option<&Service>,
    catalog: &Catalog,
    names: &Names,
    keys: &[LineKey],
    force: bool,
    now_ms: u64,
) -> Result<(), UpstreamError> {
    match service {
        Some(service) => service.refresh(catalog, names, keys, force, now_ms).await,
        None => Ok(()),
    }
}

impl Service {
    /// [`Upstream::refresh`] for this service.
    async fn refresh(
        &self,
        catalog: &Catalog,
        names: &Names,
        keys: &[LineKey],
        force: bool,
        now_ms: u64,
    ) -> Result<(), UpstreamError> {
        let due = |key| force || catalog.due(key, self.facet, now_ms, self.ttl_ms);
        let planned = self
            .flights
            .plan(keys, due, || self.breaker.allow(now_ms))
            .map_err(|refused| {
                self.stats.rejected.fetch_add(1, Relaxed);
                match refused {
                    Refused::BreakerOpen => UpstreamError::BreakerOpen { service: self.name },
                    Refused::Full => UpstreamError::Busy { service: self.name },
                }
            })?;
        self.stats
            .coalesced
            .fetch_add(planned.coalesced as u64, Relaxed);
        let own = async {
            match planned.claim {
                Some(claim) => self.fetch(claim, catalog, names).await,
                None => Ok(()),
            }
        };
        let waited = join_all(planned.waits.into_iter().map(Flight::outcome));
        let (own, waited) = tokio::join!(own, waited);
        own?;
        if waited.into_iter().all(|ok| ok) {
            Ok(())
        } else {
            Err(UpstreamError::Shared { service: self.name })
        }
    }

    /// Fetches the claimed variants, `batch_max` per request, all requests in parallel, and
    /// writes the answers into the catalog before the claim's waiters are told.
    async fn fetch(
        &self,
        claim: Claim<'_>,
        catalog: &Catalog,
        names: &Names,
    ) -> Result<(), UpstreamError> {
        let keys = claim.keys();
        // Copied out: the names' read guard is not held across the requests.
        let owned: Vec<(Box<str>, Box<str>)> = {
            let names = names.read();
            keys.iter()
                .map(|key| {
                    (
                        names.resolve(key.product).into(),
                        names.resolve(key.variant).into(),
                    )
                })
                .collect()
        };
        let items: Vec<ItemRef<'_>> = owned
            .iter()
            .map(|(product, variant)| ItemRef { product, variant })
            .collect();
        let requests = keys
            .chunks(self.batch_max)
            .zip(items.chunks(self.batch_max))
            .map(|(keys, items)| self.request(keys, items, catalog, names));
        let result: Result<(), UpstreamError> = join_all(requests).await.into_iter().collect();
        claim.finish(result.is_ok());
        result
    }

    /// One request through the breaker's accounting, under the timeout.
    async fn request(
        &self,
        keys: &[LineKey],
        items: &[ItemRef<'_>],
        catalog: &Catalog,
        names: &Names,
    ) -> Result<(), UpstreamError> {
        self.stats.requests.fetch_add(1, Relaxed);
        let timeout = Duration::from_millis(self.timeout_ms);
        let answer = tokio::time::timeout(timeout, self.ask(keys, items, catalog, names));
        let error = match answer.await {
            Ok(Ok(())) => {
                self.note_outcome(true);
                return Ok(());
            }
            Ok(Err(reason)) => UpstreamError::Failed {
                service: self.name,
                reason,
            },
            Err(_) => {
                self.stats.timeouts.fetch_add(1, Relaxed);
                UpstreamError::Timeout {
                    service: self.name,
                    timeout_ms: self.timeout_ms,
                }
            }
        };
        self.stats.failures.fetch_add(1, Relaxed);
        tracing::debug!(%error, items = keys.len(), "upstream request failed");
        self.note_outcome(false);
        Err(error)
    }

    fn note_outcome(&self, ok: bool) {
        match self.breaker.record(ok, now_ms()) {
            Some(Transition::Opened) => tracing::warn!(
                service = self.name,
                "upstream {} failing: circuit breaker open, views served from the cache",
                self.name
            ),
            Some(Transition::Closed) => {
                tracing::info!(service = self.name, "upstream {} answers again", self.name);
            }
            None => {}
        }
    }

    /// Posts one batch and writes its answer into the catalog, refreshed as of its arrival
    /// (a view that waited long for it still gets full windows out of it).
    async fn ask(
        &self,
        keys: &[LineKey],
        items: &[ItemRef<'_>],
        catalog: &Catalog,
        names: &Names,
    ) -> Result<(), String> {
        match self.facet {
            Facet::Price => {
                let batch: PriceBatch = self.client.post(&self.uri, items).await?;
                store_prices(batch, keys, catalog, names, now_ms())
            }
            Facet::Stock => {
                let batch: StockBatch = self.client.post(&self.uri, items).await?;
                store_stock(batch, keys, catalog, names, now_ms())
            }
        }
    }
}

/// The variants of one request, to match the answer's items against.
type Asked = ahash::AHashSet<LineKey>;

/// The key of an answered item, if it was asked for (anything else is ignored).
fn asked(names: &Names, asked: &Asked, product: &str, variant: &str) -> Option<LineKey> {
    let key = LineKey {
        product: names.get(product.as_bytes())?,
        variant: names.get(variant.as_bytes())?,
    };
    asked.contains(&key).then_some(key)
}

fn catalog_full(error: CommandError) -> String {
    format!("answer not cached: {}", error.message)
}

/// Writes a catalog answer: every item is checked before anything is written, so a malformed
/// answer changes nothing. Asked variants left out are recorded as refreshed, prices kept.
fn store_prices(
    batch: PriceBatch,
    keys: &[LineKey],
    catalog: &Catalog,
    names: &Names,
    now_ms: u64,
) -> Result<(), String> {
    let asked_keys: Asked = keys.iter().copied().collect();
    let mut answers = ahash::AHashMap::with_capacity(batch.items.len());
    for item in batch.items {
        if !(0..=PRICE_MINOR_MAX).contains(&item.price) {
            return Err(format!(
                "answered a price out of range for {}/{}: {}",
                item.product, item.variant, item.price
            ));
        }
        let currency = Currency::parse(item.currency.as_bytes())
            .map_err(|error| format!("answered a bad currency: {}", error.message))?;
        if let Some(key) = asked(names, &asked_keys, &item.product, &item.variant) {
            let price = Price {
                minor: item.price,
                currency,
            };
            answers.insert(key, (price, item.max_qty));
        }
    }
    record(keys, answers, |key, answer| {
        catalog.refresh_price(key, answer, now_ms)
    })
}

/// Writes an inventory answer; asked variants left out are recorded as refreshed, stock kept.
fn store_stock(
    batch: StockBatch,
    keys: &[LineKey],
    catalog: &Catalog,
    names: &Names,
    now_ms: u64,
) -> Result<(), String> {
    let asked_keys: Asked = keys.iter().copied().collect();
    let mut answers = ahash::AHashMap::with_capacity(batch.items.len());
    for item in batch.items {
        if let Some(key) = asked(names, &asked_keys, &item.product, &item.variant) {
            answers.insert(key, item.stock);
        }
    }
    record(keys, answers, |key, stock| {
        catalog.refresh_stock(key, stock, now_ms)
    })
}

/// Writes every asked key's answer with `write`: `None` for one the service left out (recorded
/// as refreshed, the cached value kept).
fn record<T>(
    keys: &[LineKey],
    mut answers: ahash::AHashMap<LineKey, T>,
    mut write: impl FnMut(LineKey, Option<T>) -> Result<(), CommandError>,
) -> Result<(), String> {
    for &key in keys {
        write(key, answers.remove(&key)).map_err(catalog_full)?;
    }
    Ok(())
}
