//! One transaction's worth of rows from a run of records: the last change of each cart (and of
//! each catalog entry, promotion and gift card) decides its row (an upsert or a delete), and
//! every change with an event becomes one event row. Column vectors, so the
//! writer binds each column once as an array whatever the batch's size.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::columns::{
    json_has_nul, json_without_nul, key_text, lsn_to_db, ms_to_db, version_to_db,
};
use super::reference::ReferenceRows;
use super::{CartRow, RowCodec};
use crate::record::{Change, Event, EventKind, Lsn, Record, Space, State, TombstoneReason};

/// The rows one transaction writes, and the LSN its checkpoint moves to.
#[derive(Debug, Default)]
pub struct Batch {
    /// LSN of the first record.
    pub first_lsn: Lsn,
    /// LSN of the last record: the checkpoint after the transaction.
    pub last_lsn: Lsn,
    /// Records the batch came from.
    pub records: usize,
    /// Carts to insert or replace.
    pub upserts: Upserts,
    /// Carts to delete.
    pub deletes: Deletes,
    /// One event per change that has one.
    pub events: Events,
    /// Catalog entries, promotions and gift cards to write or delete.
    pub reference: ReferenceRows,
    /// Images the codec could not turn into rows, one sentence each: their carts keep the row
    /// they had, the events are still written, and the checkpoint still moves.
    pub codec_errors: Vec<String>,
}

/// `carts` rows to upsert, one vector per column.
#[derive(Debug, Default)]
pub struct Upserts {
    pub keys: Vec<String>,
    pub kinds: Vec<String>,
    pub user_ids: Vec<Option<String>>,
    pub currencies: Vec<String>,
    pub items: Vec<Value>,
    pub saved: Vec<Value>,
    pub unavailable: Vec<Value>,
    pub metadata: Vec<Value>,
    pub versions: Vec<i64>,
    pub lsns: Vec<i64>,
    pub created_at_ms: Vec<i64>,
    pub updated_at_ms: Vec<i64>,
    pub expires_at_ms: Vec<i64>,
    /// The images themselves, for a restore to take back whole.
    pub images: Vec<Vec<u8>>,
}

/// `carts` rows to delete, each only if the row is older than the tombstone.
#[derive(Debug, Default)]
pub struct Deletes {
    pub keys: Vec<String>,
    pub lsns: Vec<i64>,
}

/// `cart_events` rows to insert.
#[derive(Debug, Default)]
pub struct Events {
    pub lsns: Vec<i64>,
    /// The change's place in its record: (node, lsn, seq) names one event.
    pub seqs: Vec<i16>,
    pub keys: Vec<String>,
    pub kinds: Vec<&'static str>,
    pub payloads: Vec<Value>,
    pub at_ms: Vec<i64>,
}

/// Images of carts as PostgreSQL holds them, with the LSN that wrote each: the base a batch's
/// deltas apply to when the batch does not hold the cart's earlier state itself.
pub type Bases = HashMap<Vec<u8>, (Lsn, Bytes)>;

/// The carts of `records` whose first change in them is a delta: their current row's image
/// is needed to apply it ([`Bases`]).
pub fn bases_needed(records: &[Record]) -> Vec<Vec<u8>> {
    let mut seen: HashMap<&[u8], bool> = HashMap::new();
    for change in records.iter().flat_map(|record| &record.changes) {
        if change.space == Space::Cart {
            let is_delta = matches!(change.state, State::Delta { .. });
            seen.entry(&change.key[..]).or_insert(is_delta);
        }
    }
    let needed = seen.into_iter().filter(|(_, delta)| *delta);
    needed.map(|(key, _)| key.to_vec()).collect()
}

impl Batch {
    /// The batch for `records` (in LSN order, at least one), with `bases` holding the stored
    /// image of each cart [`bases_needed`] named. `read_at_ms` stands in for the time of
    /// events that carry none.
    pub fn build(
        records: &[Record],
        codec: &dyn RowCodec,
        read_at_ms: i64,
        bases: &Bases,
    ) -> Batch {
        assert!(!records.is_empty(), "a batch needs at least one record");
        let mut batch = Batch {
            first_lsn: records[0].lsn,
            last_lsn: records[records.len() - 1].lsn,
            records: records.len(),
            ..Batch::default()
        };
        // Every change of each cart, in order (deltas build on the ones before); the last
        // change of each reference entry. As (record index, change index).
        let mut carts: HashMap<&[u8], Vec<(usize, usize)>> = HashMap::new();
        let mut last_reference: HashMap<(Space, &[u8]), (usize, usize)> = HashMap::new();
        for (index, record) in records.iter().enumerate() {
            assert!(
                index == 0 || records[index - 1].lsn < record.lsn,
                "LSNs must rise"
            );
            for (seq, change) in record.changes.iter().enumerate() {
                if change.space == Space::Cart {
                    carts.entry(&change.key[..]).or_default().push((index, seq));
                } else if change.space.has_rows() {
                    last_reference.insert((change.space, &change.key[..]), (index, seq));
                }
                if let Some(event) = &change.event {
                    batch
                        .events
                        .push(record.lsn, seq, change, event, read_at_ms);
                }
            }
        }
        // In the order of each one's last change: the same input always writes in one order.
        let mut chains: Vec<Vec<(usize, usize)>> = carts.into_values().collect();
        chains.sort_unstable_by_key(|chain| *chain.last().expect("a chain has a change"));
        for chain in chains {
            batch.push_cart(records, &chain, codec, bases);
        }
        let mut references: Vec<(usize, usize)> = last_reference.into_values().collect();
        references.sort_unstable();
        for (index, seq) in references {
            let (lsn, change) = (records[index].lsn, &records[index].changes[seq]);
            if let Err(reason) = batch.reference.push(lsn, change, codec) {
                batch.codec_errors.push(format!(
                    "the {} {:?} at LSN {lsn} does not make a row: {reason}",
                    change.space.as_str(),
                    String::from_utf8_lossy(&change.key)
                ));
            }
        }
        batch
    }

    /// The row change of one cart from its changes in the batch (`chain`, in order): the last
    /// decides it, its image built from the deltas on the one before.
    fn push_cart(
        &mut self,
        records: &[Record],
        chain: &[(usize, usize)],
        codec: &dyn RowCodec,
        bases: &Bases,
    ) {
        let key = &records[chain[0].0].changes[chain[0].1].key;
        // The cart's state as of an LSN: `None` once gone, or once a delta found no base.
        let mut state: Option<(Lsn, Bytes)> = bases.get(&key[..]).cloned();
        let mut gone = false;
        let mut moved = false;
        let last_lsn = records[chain[chain.len() - 1].0].lsn;
        if state.as_ref().is_some_and(|(at, _)| *at >= last_lsn) {
            return; // PostgreSQL already holds this state or a later one.
        }
        for &(index, seq) in chain {
            let lsn = records[index].lsn;
            if state.as_ref().is_some_and(|(at, _)| *at >= lsn) {
                continue; // Written before (by a restore); the row's state is this or later.
            }
            let change = &records[index].changes[seq];
            match &change.state {
                State::Tombstone(reason) => {
                    state = None;
                    gone = true;
                    moved = *reason == TombstoneReason::Moved;
                }
                State::Image(image) => {
                    state = Some((lsn, image.clone()));
                    gone = false;
                    moved = false;
                }
                State::Delta { base_lsn, delta } => {
                    gone = false;
                    moved = false;
                    state = match state.take() {
                        Some((at, image)) if at == *base_lsn => {
                            match codec.apply_delta(key, &image, delta, change.version) {
                                Ok(next) => Some((lsn, Bytes::from(next))),
                                Err(reason) => {
                                    self.cart_refused(key, lsn, &reason);
                                    None
                                }
                            }
                        }
                        other => {
                            let had = other.map_or("no stored state".into(), |(at, _)| {
                                format!("the stored state of LSN {at}")
                            });
                            let reason = format!("its delta applies to LSN {base_lsn}, {had}");
                            self.cart_refused(key, lsn, &reason);
                            None
                        }
                    };
                }
            }
        }
        if gone && moved {
            return; // Moved to another node with its slot: its row is that node's now.
        }
        if gone {
            self.deletes.keys.push(key_text(key));
            self.deletes.lsns.push(lsn_to_db(last_lsn));
            return;
        }
        let Some((lsn, image)) = state.filter(|(lsn, _)| *lsn == last_lsn) else {
            return; // Refused above: the row stays as it was.
        };
        match codec.to_row(key, &image).and_then(checked) {
            Ok(row) => self.upserts.push(lsn, key, row, &image),
            Err(reason) => self.cart_refused(key, lsn, &reason),
        }
    }

    fn cart_refused(&mut self, key: &[u8], lsn: Lsn, reason: &str) {
        self.codec_errors.push(format!(
            "cart {:?} at LSN {lsn} does not make a row: {reason}; its row is left as it was",
            String::from_utf8_lossy(key)
        ));
    }
}

/// `row` if PostgreSQL will take it; a bad row would fail every retry of the transaction.
fn checked(row: CartRow) -> Result<CartRow, String> {
    if row.kind != "user" && row.kind != "guest" {
        return Err(format!(
            "kind {:?} is neither \"user\" nor \"guest\"",
            row.kind
        ));
    }
    let texts = [Some(&row.kind), row.user_id.as_ref(), Some(&row.currency)];
    if texts.into_iter().flatten().any(|text| text.contains('\0')) {
        return Err("a text field holds a NUL byte, which PostgreSQL text refuses".into());
    }
    let documents = [&row.items, &row.saved, &row.unavailable, &row.metadata];
    if documents.into_iter().any(json_has_nul) {
        return Err("a JSON string holds a NUL character, which jsonb refuses".into());
    }
    Ok(row)
}

impl Upserts {
    fn push(&mut self, lsn: Lsn, key: &[u8], row: CartRow, image: &[u8]) {
        self.keys.push(key_text(key));
        self.kinds.push(row.kind);
        self.user_ids.push(row.user_id);
        self.currencies.push(row.currency);
        self.items.push(row.items);
        self.saved.push(row.saved);
        self.unavailable.push(row.unavailable);
        self.metadata.push(row.metadata);
        self.versions.push(row.version);
        self.lsns.push(lsn_to_db(lsn));
        self.created_at_ms.push(ms_to_db(row.created_at_ms));
        self.updated_at_ms.push(ms_to_db(row.updated_at_ms));
        self.expires_at_ms.push(ms_to_db(row.expires_at_ms));
        self.images.push(image.to_vec());
    }
}

impl Events {
    fn push(&mut self, lsn: Lsn, seq: usize, change: &Change, event: &Event, read_at_ms: i64) {
        let payload = event_payload(change, event);
        let at_ms = payload
            .get("at_ms")
            .and_then(Value::as_i64)
            .unwrap_or(read_at_ms);
        self.lsns.push(lsn_to_db(lsn));
        self.seqs
            .push(i16::try_from(seq).expect("a record holds few changes"));
        self.keys.push(key_text(&change.key));
        self.kinds.push(event_kind(change, event));
        self.payloads.push(payload);
        self.at_ms.push(ms_to_db(at_ms));
    }
}

/// The `cart_events.kind` of a change: its event's kind, except that an expiry is "abandon"
/// whatever the event says.
fn event_kind(change: &Change, event: &Event) -> &'static str {
    match change.state {
        State::Tombstone(TombstoneReason::Expired) => EventKind::Abandon.as_str(),
        _ => event.kind.as_str(),
    }
}

/// The event's details as a JSON object, plus `at_ms` (when the change carries its time),
/// `version` and, for a tombstone, `reason`. Details that are not a JSON object are kept under
/// `detail` (or `detail_text`) rather than lost; NULs, which jsonb refuses, become U+FFFD.
fn event_payload(change: &Change, event: &Event) -> Value {
    let detail = &event.detail;
    let mut object = if detail.is_empty() {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(detail) {
            Ok(Value::Object(object)) => object,
            Ok(other) => Map::from_iter([("detail".to_owned(), other)]),
            Err(_) => Map::from_iter([(
                "detail_text".to_owned(),
                Value::String(String::from_utf8_lossy(detail).into_owned()),
            )]),
        }
    };
    if change.at_ms > 0 {
        let at_ms = i64::try_from(change.at_ms).unwrap_or(i64::MAX);
        object.insert("at_ms".into(), at_ms.into());
    }
    object.insert("version".into(), version_to_db(change.version).into());
    if let State::Tombstone(reason) = change.state {
        object.insert("reason".into(), reason.as_str().into());
    }
    let payload = Value::Object(object);
    if json_has_nul(&payload) {
        json_without_nul(payload)
    } else {
        payload
    }
}
