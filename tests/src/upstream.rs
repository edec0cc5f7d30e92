//! A fake of the HTTP catalog and inventory services (docs/UPSTREAM.md) for cartd's
//! `[upstream]`: one HTTP/1.1 server on 127.0.0.1 with a port the OS picks, answering
//! `POST /catalog` and `POST /inventory`. It records every request it gets (which items), and
//! each test tells it the prices and stock levels it knows and how each service behaves:
//! answer, fail with HTTP 500, answer nonsense, answer late, or hold every answer until
//! released.
//! Its tasks stop when it is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value as Json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::WAIT;

/// Which of the two services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// `POST /catalog`: prices.
    Catalog,
    /// `POST /inventory`: stock levels.
    Inventory,
}

/// How a service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// At once, with what it knows.
    Answer,
    /// HTTP 500.
    Fail,
    /// HTTP 200 with a body that is not the contract's JSON.
    Garbage,
    /// With what it knows, after this long.
    Delay(Duration),
    /// With what it knows, once [`FakeUpstream::release`] is called.
    Hold,
}

/// One request a service got: the `(product, variant)` items it asked for, in order.
pub type Items = Vec<(String, String)>;

#[derive(Debug, Default)]
struct Known {
    /// `(product, variant)` -> (price, currency, max_qty).
    prices: HashMap<(String, String), (i64, String, Option<u32>)>,
    stock: HashMap<(String, String), u64>,
    behaviour: HashMap<Service, Behaviour>,
    requests: HashMap<Service, Vec<Items>>,
}

#[derive(Debug)]
struct Shared {
    known: Mutex<Known>,
    /// `true` once held answers may go.
    released: watch::Sender<bool>,
}

/// The running fake; stops when dropped.
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.server.abort();
    }
}

impl FakeUpstream {
    /// Starts the fake on 127.0.0.1 (port chosen by the OS); both services answer at once
    /// and know nothing yet.
    pub async fn start() -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake upstream");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared {
            known: Mutex::new(Known::default()),
            released: watch::Sender::new(false),
        });
        let server = tokio::spawn(accept_loop(listener, shared.clone()));
        FakeUpstream {
            addr,
            shared,
            server,
        }
    }

    /// The `[upstream]` section pointing both services here, followed by `extra` lines.
    pub fn config(&self, extra: &str) -> String {
        format!(
            "[upstream]\ncatalog_url = \"http://{0}/catalog\"\ninventory_url = \"http://{0}/inventory\"\n{extra}\n",
            self.addr
        )
    }

    /// The catalog knows `product`/`variant` at `price` USD.
    pub fn price(&self, product: &str, variant: &str, price: i64) {
        self.known().prices.insert(
            (product.to_owned(), variant.to_owned()),
            (price, "USD".to_owned(), None),
        );
    }

    /// The inventory knows `product`/`variant` with `stock` units.
    pub fn stock(&self, product: &str, variant: &str, stock: u64) {
        self.known()
            .stock
            .insert((product.to_owned(), variant.to_owned()), stock);
    }

    /// From now on `service` behaves so. [`Behaviour::Hold`] also takes back an earlier
    /// release.
    pub fn behave(&self, service: Service, behaviour: Behaviour) {
        if behaviour == Behaviour::Hold {
            self.shared.released.send_replace(false);
        }
        self.known().behaviour.insert(service, behaviour);
    }

    /// Lets every held answer go (and later ones under `Hold` at once).
    pub fn release(&self) {
        self.shared.released.send_replace(true);
    }

    /// Every request `service` got so far, oldest first.
    pub fn requests(&self, service: Service) -> Vec<Items> {
        self.known()
            .requests
            .get(&service)
            .cloned()
            .unwrap_or_default()
    }

    /// How many requests `service` got so far.
    pub fn count(&self, service: Service) -> usize {
        self.requests(service).len()
    }

    /// Waits (up to [`WAIT`]) until `service` got at least `count` requests.
    pub async fn wait_for_requests(&self, service: Service, count: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.count(service) < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service:?} got {} requests, not {count}, within {WAIT:?}",
                self.count(service)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.shared.known.lock().expect("fake upstream lock")
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await; // out of descriptors: no spin
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(request, &shared).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set does not grow with every one.
        while connections.try_join_next().is_some() {}
    }
}

/// Records the request, behaves as told, and answers what the service knows of its items.
async fn answer(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let service = match request.uri().path() {
        "/catalog" => Service::Catalog,
        "/inventory" => Service::Inventory,
        _ => return reply(StatusCode::NOT_FOUND, json!({"error": "no such service"})),
    };
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, json!({"error": "no body"})),
    };
    let Some(items) = parse_items(&body) else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "bad request body"}),
        );
    };
    let behaviour = {
        let mut known = shared.known.lock().expect("fake upstream lock");
        known
            .requests
            .entry(service)
            .or_default()
            .push(items.clone());
        known
            .behaviour
            .get(&service)
            .copied()
            .unwrap_or(Behaviour::Answer)
    };
    match behaviour {
        Behaviour::Answer => {}
        Behaviour::Fail => return reply(StatusCode::INTERNAL_SERVER_ERROR, json!({})),
        Behaviour::Garbage => return reply(StatusCode::OK, json!({"items": "none today"})),
        Behaviour::Delay(delay) => tokio::time::sleep(delay).await,
        Behaviour::Hold => {
            let mut released = shared.released.subscribe();
            let _ = released.wait_for(|released| *released).await;
        }
    }
    let known = shared.known.lock().expect("fake upstream lock");
    let answered: Vec<Json> = items
        .into_iter()
        .filter_map(|item| match service {
            Service::Catalog => known.prices.get(&item).map(|(price, currency, max_qty)| {
                let mut entry = json!({"product": item.0, "variant": item.1,
                                       "price": price, "currency": currency});
                if let Some(max_qty) = max_qty {
                    entry["max_qty"] = json!(max_qty);
                }
                entry
            }),
            Service::Inventory => known
                .stock
                .get(&item)
                .map(|stock| json!({"product": item.0, "variant": item.1, "stock": stock})),
        })
        .collect();
    reply(StatusCode::OK, json!({ "items": answered }))
}

/// The items of a request body `{"items":[{"product":..,"variant":..},..]}`.
fn parse_items(body: &[u8]) -> Option<Items> {
    let body: Json = serde_json::from_slice(body).ok()?;
    body["items"]
        .as_array()?
        .iter()
        .map(|item| {
            Some((
                item["product"].as_str()?.to_owned(),
                item["variant"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

fn reply(status: StatusCode, body: Json) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("a header"),
    );
    response
}
