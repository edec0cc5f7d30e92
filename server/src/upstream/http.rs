//! The wire side of the upstream contract (docs/UPSTREAM.md): one `POST` of a JSON batch,
//! the answer read into typed items. Any non-2xx status, transport error, oversized or
//! malformed body is a failed request; the timeout is the caller's.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::{Deserialize, Serialize};

use crate::limits::{UPSTREAM_IDLE_CONNECTIONS_MAX, UPSTREAM_RESPONSE_BYTES_MAX};

/// How long an idle keep-alive connection to a service is kept.
const IDLE_CONNECTION_MS: u64 = 60_000;

/// One item of a request: a product variant.
#[derive(Debug, Serialize)]
pub struct ItemRef<'a> {
    /// Product id.
    pub product: &'a str,
    /// Variant id.
    pub variant: &'a str,
}

#[derive(Debug, Serialize)]
struct BatchRequest<'a> {
    items: &'a [ItemRef<'a>],
}

/// The catalog service's answer.
#[derive(Debug, Deserialize)]
pub struct PriceBatch {
    /// The variants it knows; the others are left out.
    pub items: Vec<PriceItem>,
}

/// One variant's price.
#[derive(Debug, Deserialize)]
pub struct PriceItem {
    /// Product id.
    pub product: String,
    /// Variant id.
    pub variant: String,
    /// Unit price in minor units.
    pub price: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Per-cart purchase limit (0: none); absent: the cached limit stays.
    #[serde(default)]
    pub max_qty: Option<u32>,
}

/// The inventory service's answer.
#[derive(Debug, Deserialize)]
pub struct StockBatch {
    /// The variants it knows; the others are left out.
    pub items: Vec<StockItem>,
}

/// One variant's stock level.
#[derive(Debug, Deserialize)]
pub struct StockItem {
    /// Product id.
    pub product: String,
    /// Variant id.
    pub variant: String,
    /// Units in stock (0: out of stock).
    pub stock: u64,
}

/// A keep-alive HTTP/1.1 client shared by both services.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    /// A client with a bounded pool of idle connections.
    pub fn new() -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(std::time::Duration::from_millis(IDLE_CONNECTION_MS))
            .pool_max_idle_per_host(UPSTREAM_IDLE_CONNECTIONS_MAX)
            .build(connector);
        HttpClient { client }
    }

    /// Posts `items` to `uri` and parses the answer as `T`.
    pub async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        uri: &Uri,
        items: &[ItemRef<'_>],
    ) -> Result<T, String> {
        let body = serde_json::to_vec(&BatchRequest { items })
            .expect("a list of string pairs always serializes");
        // The client sets `Host` from the URI.
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| error.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| format!("request failed: {error}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), UPSTREAM_RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|error| format!("reading the answer failed: {error}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("answered HTTP {status}"));
        }
        serde_json::from_slice(&body).map_err(|error| format!("answered invalid JSON: {error}"))
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}
