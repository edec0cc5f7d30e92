//! What the sink tests share: a database per test, an in-memory log, a JSON codec, records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};

use crate::record::{
    Change, Event, EventKind, Lsn, Record, RecordSource, Space, State, TombstoneReason,
};
use crate::sink::{connect, CartRow, ReferenceKey, ReferenceValue, RowCodec, SinkHandle};

/// How long a test waits for the sink before failing.
const WAIT_MS_MAX: u64 = 30_000;

/// The URL of the PostgreSQL the tests use.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: the PostgreSQL sink tests need a PostgreSQL they may create \
         databases in (scripts/test starts a throwaway cluster and sets it)",
    )
}

/// `url` naming database `name` instead of its own.
pub fn url_for_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let host_start = base.find("://").map_or(0, |at| at + 3);
    let host_end = base[host_start..]
        .find('/')
        .map_or(base.len(), |at| host_start + at);
    format!("{}/{name}{query}", &base[..host_end])
}

/// A database name no other test uses.
pub fn unique_database_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .subsec_nanos();
    let counter = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("sink_test_{}_{counter}_{nanos}", std::process::id())
}

/// A database of its own for one test.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl TestDb {
    /// A name and URL for a database that does not exist yet.
    pub fn planned() -> TestDb {
        let name = unique_database_name();
        TestDb {
            url: url_for_database(&admin_url(), &name),
            name,
        }
    }

    /// A new, migrated database and a pool on it.
    pub async fn create() -> (TestDb, PgPool) {
        let db = TestDb::planned();
        db.create_now().await;
        let pool = connect(&db.url)
            .await
            .expect("connect to the test database");
        (db, pool)
    }

    /// Creates the planned database.
    pub async fn create_now(&self) {
        let sql = format!("CREATE DATABASE {}", self.name);
        admin()
            .await
            .execute(sql.as_str())
            .await
            .expect("create a test database");
    }

    /// Drops the database, closing `pool` first.
    pub async fn drop(self, pool: PgPool) {
        pool.close().await;
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        admin()
            .await
            .execute(sql.as_str())
            .await
            .expect("drop a test database");
    }

    /// Ends every connection to this database (as a crash or restart of PostgreSQL would).
    pub async fn kill_connections(&self) -> u64 {
        sqlx::query(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .fetch_one(&mut admin().await)
        .await
        .expect("terminate the test database's connections")
        .get::<i64, _>(0) as u64
    }
}

/// A connection to the database `DATABASE_URL` names.
async fn admin() -> PgConnection {
    PgConnection::connect(&admin_url())
        .await
        .expect("connect to DATABASE_URL")
}

/// An in-memory log the test appends to while the sink reads it.
#[derive(Clone, Default)]
pub struct VecSource {
    records: Arc<Mutex<Vec<Record>>>,
    /// Reads still to fail, to stand for an unreadable log.
    pub failing_reads: Arc<AtomicU64>,
}

impl VecSource {
    /// Appends records (in LSN order).
    pub fn push(&self, records: impl IntoIterator<Item = Record>) {
        self.records.lock().unwrap().extend(records);
    }
}

impl RecordSource for VecSource {
    fn read_after(&mut self, after: Lsn, max: usize) -> std::io::Result<Vec<Record>> {
        let fail = self
            .failing_reads
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            });
        if fail.is_ok() {
            return Err(std::io::Error::other("injected read failure"));
        }
        let records = self.records.lock().unwrap();
        let start = records.partition_point(|record| record.lsn <= after);
        Ok(records[start..].iter().take(max).cloned().collect())
    }
}

/// Images are [`CartRow`]s as JSON; `{"refuse": true}` is refused.
pub struct JsonCodec;

impl RowCodec for JsonCodec {
    fn to_row(&self, _key: &[u8], image: &[u8]) -> Result<CartRow, String> {
        serde_json::from_slice(image).map_err(|error| format!("not a JSON cart: {error}"))
    }

    fn from_row(&self, _key: &[u8], row: &CartRow) -> Result<Bytes, String> {
        serde_json::to_vec(row)
            .map(Bytes::from)
            .map_err(|error| error.to_string())
    }

    /// A delta is a JSON object whose fields replace the image's; `{"refuse": true}` is refused.
    fn apply_delta(
        &self,
        _key: &[u8],
        image: &[u8],
        delta: &[u8],
        version: u64,
    ) -> Result<Vec<u8>, String> {
        let mut image: Value = serde_json::from_slice(image).map_err(|e| e.to_string())?;
        let delta: Value = serde_json::from_slice(delta).map_err(|e| e.to_string())?;
        if delta["refuse"] == Value::Bool(true) {
            return Err("refused delta".into());
        }
        let (Some(fields), Some(changes)) = (image.as_object_mut(), delta.as_object()) else {
            return Err("not JSON objects".into());
        };
        for (name, value) in changes {
            fields.insert(name.clone(), value.clone());
        }
        fields.insert("version".into(), Value::from(version));
        serde_json::to_vec(&image).map_err(|e| e.to_string())
    }

    /// Catalog keys are `product/variant`; codes are themselves.
    fn reference_key(&self, space: Space, key: &[u8]) -> Result<ReferenceKey, String> {
        Ok(match space {
            Space::Catalog => {
                let text = std::str::from_utf8(key).map_err(|e| e.to_string())?;
                let (product, variant) = text.split_once('/').ok_or("no / in the key")?;
                ReferenceKey::Catalog {
                    product: product.as_bytes().to_vec(),
                    variant: variant.as_bytes().to_vec(),
                }
            }
            Space::Promotion => ReferenceKey::Promotion(key.to_vec()),
            Space::GiftCard => ReferenceKey::GiftCard(key.to_vec()),
            Space::Cart | Space::Handoff => return Err("not reference data".into()),
        })
    }

    /// Images are JSON: `{"price":..,"stock":..}`, a promotion document, `{"balance":..}`.
    fn reference_value(&self, space: Space, image: &[u8]) -> Result<ReferenceValue, String> {
        let json: Value = serde_json::from_slice(image).map_err(|e| e.to_string())?;
        Ok(match space {
            Space::Catalog => ReferenceValue::Catalog {
                price: json["price"].as_i64(),
                currency: json["currency"].as_str().map(String::from),
                stock: json["stock"].as_i64(),
                max_qty: json["max_qty"].as_i64().map(|qty| qty as i32),
                updated_at_ms: json["updated_at_ms"].as_i64().unwrap_or(0),
            },
            Space::Promotion => ReferenceValue::Promotion {
                automatic: json["automatic"].as_bool().unwrap_or(false),
                document: json,
            },
            Space::GiftCard => ReferenceValue::GiftCard {
                balance: json["balance"].as_i64().ok_or("no balance")?,
                currency: json["currency"].as_str().unwrap_or("USD").into(),
                peer_spent: serde_json::from_value(json["peer_spent"].clone()).unwrap_or_default(),
            },
            Space::Cart | Space::Handoff => return Err("not reference data".into()),
        })
    }

    fn reference_image(
        &self,
        key: &ReferenceKey,
        value: &ReferenceValue,
    ) -> Result<(Space, Vec<u8>, Vec<u8>), String> {
        let (space, key) = match key {
            ReferenceKey::Catalog { product, variant } => {
                (Space::Catalog, [&product[..], b"/", variant].concat())
            }
            ReferenceKey::Promotion(code) => (Space::Promotion, code.clone()),
            ReferenceKey::GiftCard(code) => (Space::GiftCard, code.clone()),
        };
        let image = match value {
            ReferenceValue::Catalog { price, stock, .. } => json!({"price": price, "stock": stock}),
            ReferenceValue::Promotion { document, .. } => document.clone(),
            ReferenceValue::GiftCard {
                balance,
                currency,
                peer_spent,
            } => {
                json!({"balance": balance, "currency": currency, "peer_spent": peer_spent})
            }
        };
        Ok((space, key, serde_json::to_vec(&image).unwrap()))
    }
}

/// A record of one reference change: `image` JSON, or `None` for a tombstone.
pub fn reference(lsn: Lsn, space: Space, key: &str, image: Option<Value>) -> Record {
    let state = match image {
        Some(image) => State::Image(serde_json::to_vec(&image).unwrap().into()),
        None => State::Tombstone(TombstoneReason::Deleted),
    };
    Record {
        lsn,
        changes: vec![Change {
            space,
            key: Bytes::copy_from_slice(key.as_bytes()),
            version: 0,
            at_ms: 1_700_000_000_000 + lsn,
            state,
            event: None,
            guard: None,
        }],
    }
}

/// The codec as the sink takes it.
pub fn codec() -> Arc<dyn RowCodec> {
    Arc::new(JsonCodec)
}

/// A user cart at `version`, last updated at `updated_at_ms`, expiring at `expires_at_ms`.
pub fn cart(version: i64, updated_at_ms: i64, expires_at_ms: i64) -> CartRow {
    CartRow {
        kind: "user".into(),
        user_id: Some(format!("user-{version}")),
        currency: "EUR".into(),
        items: json!([{"product": "p1", "variant": "-", "qty": version, "price": 999}]),
        saved: json!([]),
        unavailable: json!([]),
        metadata: json!({"channel": "web"}),
        version,
        created_at_ms: 1_700_000_000_000,
        updated_at_ms,
        expires_at_ms,
    }
}

/// A record of one cart change.
fn cart_change(lsn: Lsn, key: &[u8], version: u64, state: State, event: Event) -> Record {
    Record {
        lsn,
        changes: vec![Change {
            space: Space::Cart,
            key: Bytes::copy_from_slice(key),
            version,
            at_ms: 0,
            state,
            event: Some(event),
            guard: None,
        }],
    }
}

/// A record writing `row` as the image of `key`.
pub fn image(lsn: Lsn, key: &[u8], row: &CartRow, kind: EventKind, detail: Value) -> Record {
    let image = State::Image(serde_json::to_vec(row).unwrap().into());
    let event = Event {
        kind,
        detail: serde_json::to_vec(&detail).unwrap().into(),
    };
    cart_change(lsn, key, row.version as u64, image, event)
}

/// A record changing `key` to `version` by `fields` (JSON replacing the image's), from its
/// state as of `base_lsn`.
pub fn delta(lsn: Lsn, key: &[u8], version: u64, base_lsn: Lsn, fields: Value) -> Record {
    let state = State::Delta {
        base_lsn,
        delta: serde_json::to_vec(&fields).unwrap().into(),
    };
    let event = Event {
        kind: EventKind::Add,
        detail: Bytes::new(),
    };
    cart_change(lsn, key, version, state, event)
}

/// A record removing `key`, last at `version`.
pub fn tombstone(lsn: Lsn, key: &[u8], version: u64, reason: TombstoneReason) -> Record {
    let kind = match reason {
        TombstoneReason::Expired => EventKind::Abandon,
        TombstoneReason::Merged => EventKind::Merge,
        TombstoneReason::CheckedOut => EventKind::Checkout,
        TombstoneReason::Deleted | TombstoneReason::Moved => EventKind::Delete,
    };
    let event = Event {
        kind,
        detail: Bytes::new(),
    };
    cart_change(lsn, key, version, State::Tombstone(reason), event)
}

/// A simple add: cart `key` at `version`, living until far in the future.
pub fn add(lsn: Lsn, key: &[u8], version: i64) -> Record {
    let row = cart(version, 1_700_000_000_000 + version, FAR_FUTURE_MS);
    image(
        lsn,
        key,
        &row,
        EventKind::Add,
        json!({"product": "p1", "qty": 1}),
    )
}

/// A time long after any test runs.
pub const FAR_FUTURE_MS: i64 = 4_000_000_000_000;

/// Waits until the sink's checkpoint reaches `lsn`, failing the test after a while.
pub async fn wait_for_checkpoint(handle: &SinkHandle, lsn: Lsn) {
    wait_for(
        handle,
        &format!("the checkpoint to reach LSN {lsn}"),
        |handle| handle.stats.checkpoint_lsn() >= lsn,
    )
    .await;
}

/// Waits until `done` holds, failing the test after a while with the sink's last error.
pub async fn wait_for(handle: &SinkHandle, what: &str, done: impl Fn(&SinkHandle) -> bool) {
    let start = Instant::now();
    while !done(handle) {
        assert!(
            start.elapsed() < Duration::from_millis(WAIT_MS_MAX),
            "waited {WAIT_MS_MAX} ms for {what}; checkpoint at {}, last error: {:?}",
            handle.stats.checkpoint_lsn(),
            handle.stats.last_error()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every event as (lsn, cart_key, kind), in LSN order.
pub async fn events(pool: &PgPool) -> Vec<(i64, String, String)> {
    sqlx::query_as("SELECT lsn, cart_key, kind FROM cart_events ORDER BY lsn, id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Every cart as (key, version, lsn), by key.
pub async fn carts(pool: &PgPool) -> Vec<(String, i64, i64)> {
    sqlx::query_as("SELECT key, version, lsn FROM carts ORDER BY key")
        .fetch_all(pool)
        .await
        .unwrap()
}
