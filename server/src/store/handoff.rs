//! The store's side of `CART.MERGE` across cluster nodes (docs/CLUSTER.md, "CART.MERGE across
//! nodes"): the handoffs a node is part of, logged under [`Space::Handoff`] so that recovery,
//! snapshots and replicas hold them as the log does.
//!
//! - *Given* (on the guest cart's node): `CART.HANDOFF` removed the guest cart and keeps its
//!   image, for the user cart named, until `CART.HANDOFF.DONE` says it was merged. One record
//!   holds the guest cart's tombstone and the given entry: the lines are in one place or the
//!   other, never both, never neither.
//! - *Received* (on the user cart's node): the merge's record holds the user cart's image and
//!   the received entry, so a retry that is handed the same handoff again merges nothing; it
//!   goes once the guest cart's node confirmed `CART.HANDOFF.DONE` (the courier,
//!   `crate::handoff`).
//!
//! Log keys: `G` and the guest cart's key for a given entry, `R` and the handoff id for a
//! received one; images are [`HandoffImage`] in postcard. The peer link and the pre-step are in
//! `crate::handoff`; the merge itself is `merge.rs`.

use std::collections::HashMap;

use bytes::Bytes;
use persistence::{ChangeRef, EventKind, Lsn, Space, StateRef, TombstoneReason};
use protocol::{CommandError, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::log::{CartChange, CartState};
use super::{event, frozen, Store};
use crate::cart::image;
use crate::limits::HANDOFFS_MAX;

/// What a handoff entry holds, in the log and snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandoffImage {
    /// The guest cart's image, given for `user_key`.
    Given {
        /// The handoff's id.
        id: Vec<u8>,
        /// The user cart it is merged into.
        user_key: Vec<u8>,
        /// The guest cart's image as it was taken.
        cart: Vec<u8>,
    },
    /// A handoff merged here, from the node `from` (its cluster id).
    Received {
        /// The guest cart's key.
        guest_key: Vec<u8>,
        /// The node that gave it.
        from: String,
    },
}

/// A guest cart handed off and not yet confirmed merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    /// The handoff's id.
    pub id: Bytes,
    /// The user cart it goes to.
    pub user_key: Bytes,
    /// The guest cart's image.
    pub cart: Bytes,
}

/// A handoff merged here whose giver has not yet confirmed `CART.HANDOFF.DONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The guest cart's key.
    pub guest_key: Bytes,
    /// The node that gave it.
    pub from: String,
    /// The record that merged it (0: recovered, durable already).
    pub lsn: Lsn,
}

/// The handoffs this node is part of. Bounded by [`HANDOFFS_MAX`] each.
#[derive(Debug, Default)]
pub struct Handoffs {
    /// By guest cart key.
    given: HashMap<Bytes, Given>,
    /// By handoff id.
    received: HashMap<Bytes, Received>,
}

fn given_key(guest_key: &[u8]) -> Vec<u8> {
    [b"G", guest_key].concat()
}

fn received_key(id: &[u8]) -> Vec<u8> {
    [b"R", id].concat()
}

pub(super) fn handoff_change<'a>(
    key: &'a [u8],
    image: Option<&'a [u8]>,
    now_ms: u64,
) -> ChangeRef<'a> {
    ChangeRef {
        space: Space::Handoff,
        key,
        version: 0,
        at_ms: now_ms,
        state: match image {
            Some(image) => StateRef::Image(image),
            None => StateRef::Tombstone(TombstoneReason::Merged),
        },
        event: None,
        guard: None,
    }
}

fn busy(message: String) -> CommandError {
    CommandError::new(ErrorCode::TryAgain, message)
}

/// A new handoff id: 32 hex digits, random.
fn new_id() -> Bytes {
    let id: u128 = rand::random();
    format!("{id:032x}").into()
}

impl Store {
    /// `CART.HANDOFF guest user` on the guest cart's node: removes the guest cart and keeps
    /// it as given to `user_key`, in one record; a handoff of this guest cart to the same user
    /// cart still unconfirmed is returned again (a retry). `None`: there is no guest cart.
    pub fn hand_off(
        &self,
        guest_key: &Bytes,
        user_key: &Bytes,
        now_ms: u64,
    ) -> Result<Option<Given>, CommandError> {
        let at = self.locate(guest_key);
        let mut shard = self.shard(at.shard);
        let mut handoffs = self.handoffs.lock();
        if let Some(given) = handoffs.given.get(guest_key) {
            if given.user_key == *user_key {
                return Ok(Some(given.clone()));
            }
            return Err(busy(format!(
                "the guest cart is being merged into {}; retry that merge first",
                String::from_utf8_lossy(&given.user_key)
            )));
        }
        self.reap(&mut shard, at, guest_key, now_ms);
        let Some(mut guest) = shard.remove(at.hash, guest_key) else {
            return Ok(None);
        };
        if let Some(checkout) = guest.frozen(now_ms) {
            let error = frozen(checkout.hold_until_ms);
            shard.insert(at.hash, guest_key, &guest);
            return Err(error);
        }
        if handoffs.given.len() >= HANDOFFS_MAX {
            shard.insert(at.hash, guest_key, &guest);
            return Err(busy(format!(
                "{HANDOFFS_MAX} handoffs wait for their merge to be confirmed; retry later"
            )));
        }
        guest.end_checkout();
        let given = Given {
            id: new_id(),
            user_key: user_key.clone(),
            cart: image::encode(&guest, &self.names).into(),
        };
        let entry = HandoffImage::Given {
            id: given.id.to_vec(),
            user_key: user_key.to_vec(),
            cart: given.cart.to_vec(),
        };
        let entry = postcard::to_allocvec(&entry).expect("into a Vec");
        let key = given_key(guest_key);
        let detail = json!({
            "into": String::from_utf8_lossy(user_key),
            "handoff": String::from_utf8_lossy(&given.id),
        });
        let out_of_guest = event(EventKind::Merge, detail);
        let gone = CartChange {
            key: guest_key,
            version: guest.version,
            state: CartState::Gone(TombstoneReason::Merged),
            event: Some(&out_of_guest),
            guard: None,
        };
        let kept = handoff_change(&key, Some(&entry), now_ms);
        self.append_carts(&[gone], &[kept], now_ms);
        handoffs.given.insert(guest_key.clone(), given.clone());
        Ok(Some(given))
    }

    /// `CART.HANDOFF.DONE guest id` on the guest cart's node: the merge of handoff `id` is
    /// durable on the user cart's node, so its given entry goes (logged). Whether it was
    /// there; a repeat finds nothing and changes nothing.
    pub fn handoff_done(&self, guest_key: &[u8], id: &[u8], now_ms: u64) -> bool {
        let mut handoffs = self.handoffs.lock();
        if handoffs
            .given
            .get(guest_key)
            .is_none_or(|given| given.id != id)
        {
            return false;
        }
        handoffs.given.remove(guest_key);
        self.append(&[handoff_change(&given_key(guest_key), None, now_ms)]);
        true
    }

    /// Whether handoff `id` was merged here already (a retry is handed it again).
    pub fn handoff_received(&self, id: &[u8]) -> bool {
        self.handoffs.lock().received.contains_key(id)
    }

    /// The received entry of a merge, as the change logged with it; kept once the record's
    /// LSN is known ([`Store::keep_received`]).
    pub(super) fn received_entry(guest_key: &[u8], from: &str, id: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let entry = HandoffImage::Received {
            guest_key: guest_key.to_vec(),
            from: from.to_owned(),
        };
        let entry = postcard::to_allocvec(&entry).expect("into a Vec");
        (received_key(id), entry)
    }

    /// Keeps a received entry merged by the record at `lsn`.
    pub(super) fn keep_received(&self, id: &[u8], guest_key: &[u8], from: &str, lsn: Lsn) {
        let mut handoffs = self.handoffs.lock();
        assert!(
            handoffs.received.len() < HANDOFFS_MAX,
            "checked before the merge"
        );
        let received = Received {
            guest_key: Bytes::copy_from_slice(guest_key),
            from: from.to_owned(),
            lsn,
        };
        handoffs
            .received
            .insert(Bytes::copy_from_slice(id), received);
    }

    /// Whether another received entry fits.
    pub(super) fn room_for_received(&self) -> bool {
        self.handoffs.lock().received.len() < HANDOFFS_MAX
    }

    /// The received entries whose giver still waits for `CART.HANDOFF.DONE`: (id, entry).
    pub fn handoffs_to_confirm(&self) -> Vec<(Bytes, Received)> {
        let handoffs = self.handoffs.lock();
        let entries = handoffs.received.iter();
        entries
            .map(|(id, received)| (id.clone(), received.clone()))
            .collect()
    }

    /// The giver confirmed handoff `id`: its received entry goes (logged). A background
    /// change: it takes the transaction lock shared, as commands do.
    pub fn handoff_confirmed(&self, id: &[u8], now_ms: u64) {
        let _shared = self.shared();
        let mut handoffs = self.handoffs.lock();
        if handoffs.received.remove(id).is_some() {
            self.append(&[handoff_change(&received_key(id), None, now_ms)]);
        }
    }

    /// How many handoffs are given and received (INFO, tests).
    pub fn handoff_counts(&self) -> (usize, usize) {
        let handoffs = self.handoffs.lock();
        (handoffs.given.len(), handoffs.received.len())
    }

    /// Every handoff entry as its log key and image, for a snapshot.
    pub(super) fn handoff_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let handoffs = self.handoffs.lock();
        let given = handoffs.given.iter().map(|(guest_key, given)| {
            let entry = HandoffImage::Given {
                id: given.id.to_vec(),
                user_key: given.user_key.to_vec(),
                cart: given.cart.to_vec(),
            };
            (given_key(guest_key), entry)
        });
        let received = handoffs.received.iter().map(|(id, received)| {
            let entry = HandoffImage::Received {
                guest_key: received.guest_key.to_vec(),
                from: received.from.clone(),
            };
            (received_key(id), entry)
        });
        given
            .chain(received)
            .map(|(key, entry)| (key, postcard::to_allocvec(&entry).expect("into a Vec")))
            .collect()
    }

    /// Puts a handoff entry of the log or a snapshot in place (`None`: it is gone).
    pub(super) fn load_handoff(&self, key: &[u8], image: Option<&[u8]>) -> Result<(), String> {
        let mut handoffs = self.handoffs.lock();
        let (role, rest) = key.split_first().ok_or("an empty handoff key")?;
        let rest = Bytes::copy_from_slice(rest);
        let Some(image) = image else {
            if *role == b'G' {
                handoffs.given.remove(&rest);
            } else {
                handoffs.received.remove(&rest);
            }
            return Ok(());
        };
        let image: HandoffImage = postcard::from_bytes(image)
            .map_err(|error| format!("undecodable handoff image: {error}"))?;
        match (role, image) {
            (b'G', HandoffImage::Given { id, user_key, cart }) => {
                let given = Given {
                    id: id.into(),
                    user_key: user_key.into(),
                    cart: cart.into(),
                };
                handoffs.given.insert(rest, given);
            }
            (b'R', HandoffImage::Received { guest_key, from }) => {
                let received = Received {
                    guest_key: guest_key.into(),
                    from,
                    lsn: 0,
                };
                handoffs.received.insert(rest, received);
            }
            _ => return Err("a handoff key and image that do not match".into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use protocol::{CartMerge, Command, Currency, ErrorCode};

    use crate::cart::{Cart, CartKind, LineKey, Price};
    use crate::config::Config;
    use crate::store::{GuestFrom, Handed, Store, StoreConfig};

    const NOW_MS: u64 = 1_700_000_000_000;

    fn store() -> Store {
        Store::new(StoreConfig::from(&Config::default()), NOW_MS)
    }

    /// Puts a cart of `lines` (product, qty) under `key`.
    fn put(store: &Store, key: &str, kind: CartKind, lines: &[(&str, u32)]) {
        let usd = Currency(*b"USD");
        let mut cart = Cart::new(kind, usd, NOW_MS);
        for (product, qty) in lines {
            let line = LineKey {
                product: store.names.intern(product.as_bytes()).unwrap(),
                variant: store.names.intern(b"-").unwrap(),
            };
            let price = Price {
                minor: 100,
                currency: usd,
            };
            let limits = &store.config.limits;
            cart.add(line, *qty, Some(price), None, limits, NOW_MS)
                .unwrap();
        }
        cart.version = 1;
        cart.expires_at_ms = NOW_MS + 3_600_000;
        store.put_recovered(key.as_bytes(), cart);
    }

    fn merge_command(guest: &str, user: &str) -> CartMerge {
        let raw = ["CART.MERGE", guest, user, "QTY", "SUM", "REPLY", "VERSION"];
        let raw = raw
            .iter()
            .map(|word| Bytes::from(word.to_string()))
            .collect();
        match Command::parse(raw).unwrap() {
            Command::CartMerge(cmd) => cmd,
            other => panic!("{other:?}"),
        }
    }

    fn qty_of(store: &Store, key: &str, product: &str) -> Option<u32> {
        let at = store.locate(key.as_bytes());
        let cart = store.shard(at.shard).find(at.hash, key.as_bytes())?;
        let id = store.names.intern(product.as_bytes()).unwrap();
        let line = cart.lines.iter().find(|line| line.key.product == id)?;
        Some(line.qty)
    }

    /// A handoff is given once: a retry for the same user cart gets the same entry, one for
    /// another user cart is refused, and DONE lets it go (a repeat changes nothing).
    #[test]
    fn a_guest_cart_is_given_once_until_done() {
        let giver = store();
        put(&giver, "cart:guest:1", CartKind::Guest, &[("a", 2)]);
        let (guest, user) = (Bytes::from("cart:guest:1"), Bytes::from("cart:user:1"));
        let given = giver.hand_off(&guest, &user, NOW_MS).unwrap().unwrap();
        assert_eq!(
            qty_of(&giver, "cart:guest:1", "a"),
            None,
            "the guest cart is gone"
        );
        let again = giver.hand_off(&guest, &user, NOW_MS).unwrap().unwrap();
        assert_eq!(again, given, "a retry gets the same entry");
        let other = giver.hand_off(&guest, &Bytes::from("cart:user:2"), NOW_MS);
        assert_eq!(other.unwrap_err().code, ErrorCode::TryAgain);
        assert!(!giver.handoff_done(&guest, b"another id", NOW_MS));
        assert!(giver.handoff_done(&guest, &given.id, NOW_MS));
        assert!(!giver.handoff_done(&guest, &given.id, NOW_MS), "a repeat");
        assert_eq!(giver.hand_off(&guest, &user, NOW_MS).unwrap(), None);
    }

    /// A handoff handed twice (a retry after the merge) is merged once; both kinds of entry
    /// come back from a snapshot's entries.
    #[test]
    fn a_handoff_is_merged_once_and_kept_by_snapshots() {
        let (giver, taker) = (store(), store());
        put(
            &giver,
            "cart:guest:1",
            CartKind::Guest,
            &[("a", 2), ("b", 3)],
        );
        put(&taker, "cart:user:1", CartKind::User, &[("a", 1)]);
        let (guest, user) = (Bytes::from("cart:guest:1"), Bytes::from("cart:user:1"));
        let given = giver.hand_off(&guest, &user, NOW_MS).unwrap().unwrap();
        let handed = Handed {
            id: given.id.clone(),
            cart: given.cart.clone(),
            from: "n2".into(),
        };
        let cmd = merge_command("cart:guest:1", "cart:user:1");
        for _ in 0..2 {
            let handed = GuestFrom::Handed(Some(handed.clone()));
            taker.merge(&cmd, handed, NOW_MS).unwrap();
            assert_eq!(qty_of(&taker, "cart:user:1", "a"), Some(3));
            assert_eq!(qty_of(&taker, "cart:user:1", "b"), Some(3));
        }
        for store in [&giver, &taker] {
            let entries = store.handoff_entries();
            assert_eq!(entries.len(), 1);
            let loaded = self::store();
            for (key, image) in &entries {
                loaded.load_handoff(key, Some(image)).unwrap();
            }
            assert_eq!(loaded.handoff_counts(), store.handoff_counts());
        }
        assert!(giver.handoff_done(&guest, &given.id, NOW_MS));
        taker.handoff_confirmed(&given.id, NOW_MS);
        assert_eq!(taker.handoff_counts(), (0, 0));
        assert_eq!(giver.handoff_counts(), (0, 0));
    }
}
