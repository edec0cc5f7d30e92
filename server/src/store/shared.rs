//! Server-wide data shared by the primaries of a cluster: catalog entries and promotions. A
//! write accepted here is stamped ([`super::stamps`]), applied, logged and handed to the
//! outbox (the peer links of `crate::peers`, which push it to every other primary) under its
//! stamp bucket's lock; a change from a peer is applied and logged only if its stamp is newer
//! than what this node holds, so its replicas get it from this node's log like any other.
//! Digests and buckets let a peer find and pull what it missed.

use bytes::Bytes;
use persistence::{Change, Space, State};

use super::reference::{split_catalog_key, CatalogImage};
use super::stamps::{Stamp, StampGuard, Stamped};
use super::Store;
use crate::cart::LineKey;
use crate::limits::TOMBSTONE_TTL_MS;

/// What a write did to a shared entry.
pub(super) enum Written {
    /// It left this image.
    Image(Vec<u8>),
    /// It deleted the entry.
    Gone,
    /// It changed nothing (a DEL of an unknown entry).
    Nothing,
}

/// One shared entry's last write, as it travels between primaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedChange {
    /// Catalog or promotion.
    pub space: Space,
    /// Its key as the log has it.
    pub key: Bytes,
    /// The write's stamp.
    pub stamp: Stamp,
    /// Its image, or `None` for a DEL.
    pub image: Option<Bytes>,
}

/// Whoever hears of each write accepted here (the peer links).
pub type Outbox = Box<dyn Fn(&SharedChange) + Send + Sync>;

impl Store {
    /// This node's origin for stamps ([`super::stamps::origin_of`] its cluster id); set once,
    /// before any write.
    pub fn set_origin(&self, origin: u64) {
        self.origin
            .store(origin, std::sync::atomic::Ordering::Relaxed);
    }

    fn origin(&self) -> u64 {
        self.origin.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether reference entries are shared (a cluster node): their stamps go into snapshots.
    pub fn shares_reference(&self) -> bool {
        self.origin() != 0
    }

    /// Hands every shared write accepted here to `outbox` from now on. Set once.
    pub fn set_outbox(&self, outbox: Outbox) {
        if self.outbox.set(outbox).is_err() {
            tracing::warn!("the store's outbox was set twice; the first stays");
        }
    }

    /// A write of a shared entry accepted here: `write` gets the stamp, applies and logs the
    /// change (or fails, changing nothing); then the stamp is recorded and the outbox told, all
    /// under the entry's stamp bucket lock. Returns whether anything was written.
    pub(super) fn write_shared<E>(
        &self,
        space: Space,
        key: &[u8],
        now_ms: u64,
        write: impl FnOnce(Stamp) -> Result<Written, E>,
    ) -> Result<bool, E> {
        let mut guard = self.stamps.lock(space, key);
        let stamp = guard.next(now_ms, self.origin());
        let image = match write(stamp)? {
            Written::Nothing => return Ok(false),
            Written::Image(image) => Some(Bytes::from(image)),
            Written::Gone => None,
        };
        guard.set(Stamped {
            stamp,
            gone: image.is_none(),
        });
        if let Some(outbox) = self.outbox.get() {
            let key = Bytes::copy_from_slice(key);
            outbox(&SharedChange {
                space,
                key,
                stamp,
                image,
            });
        }
        Ok(true)
    }

    /// A peer's change: applied and logged (at its own stamp) only if that stamp is newer than
    /// this node's for the entry; a tombstone older than [`TOMBSTONE_TTL_MS`] is not taken
    /// (this node has forgotten its own by then). Returns whether it was applied; an image that
    /// does not decode is an error and changes nothing.
    pub fn apply_shared(&self, change: &SharedChange, now_ms: u64) -> Result<bool, String> {
        let mut guard = self.stamps.lock(change.space, &change.key);
        if guard
            .current()
            .is_some_and(|current| current.stamp >= change.stamp)
        {
            return Ok(false);
        }
        let stale = change.stamp.at_ms.saturating_add(TOMBSTONE_TTL_MS) < now_ms;
        if change.image.is_none() && stale {
            return Ok(false);
        }
        let image = change.image.as_deref();
        self.load_reference(change.space, &change.key, image)?;
        self.log_reference(change.space, &change.key, image, change.stamp);
        guard.set(Stamped {
            stamp: change.stamp,
            gone: image.is_none(),
        });
        Ok(true)
    }

    /// A replayed change of a shared entry: applied, and its stamp (the change's time and its
    /// `version`, the origin) recorded, in log order.
    pub(super) fn replay_shared(&self, change: &Change) -> Result<(), String> {
        let image = match &change.state {
            State::Image(image) => Some(&image[..]),
            State::Tombstone(_) => None,
            State::Delta { .. } => {
                return Err(format!("a delta for a {}", change.space.as_str()));
            }
        };
        let mut guard = self.stamps.lock(change.space, &change.key);
        self.load_reference(change.space, &change.key, image)?;
        guard.set(Stamped {
            stamp: Stamp {
                at_ms: change.at_ms,
                origin: change.version,
            },
            gone: image.is_none(),
        });
        Ok(())
    }

    /// A stamp from a snapshot, put in place.
    pub(super) fn load_stamp(&self, space: Space, key: &[u8], body: &[u8]) -> Result<(), String> {
        let stamped = Stamped::decode(body)?;
        self.stamps.lock(space, key).set(stamped);
        Ok(())
    }

    /// Every stamp bucket's digest.
    pub fn shared_digests(&self) -> Vec<u64> {
        self.stamps.digests()
    }

    /// The last writes of the entries of stamp bucket `index`, each with its current image,
    /// read under the bucket's lock (`None` past the last bucket).
    pub fn shared_bucket(&self, index: usize) -> Option<Vec<SharedChange>> {
        let entries = self.stamps.bucket(index)?;
        let mut changes = Vec::with_capacity(entries.len());
        for (space, key, _) in entries {
            let guard = self.stamps.lock(space, &key);
            if let Some(change) = self.shared_change(&guard, space, &key) {
                changes.push(change);
            }
        }
        Some(changes)
    }

    /// An entry's last write with its image; `None` if the entry is not stamped or its
    /// registry has no image for a live stamp (it cannot be told apart from stale).
    fn shared_change(
        &self,
        guard: &StampGuard<'_>,
        space: Space,
        key: &[u8],
    ) -> Option<SharedChange> {
        let stamped = guard.current()?;
        let image = if stamped.gone {
            None
        } else {
            Some(Bytes::from(self.shared_image(space, key)?))
        };
        Some(SharedChange {
            space,
            key: Bytes::copy_from_slice(key),
            stamp: stamped.stamp,
            image,
        })
    }

    fn shared_image(&self, space: Space, key: &[u8]) -> Option<Vec<u8>> {
        match space {
            Space::Catalog => {
                let (product, variant) = split_catalog_key(key).ok()?;
                let line = LineKey {
                    product: self.names.get(product)?,
                    variant: self.names.get(variant)?,
                };
                let entry = self.catalog.get(line)?;
                Some(postcard::to_allocvec(&CatalogImage::of(&entry)).expect("into a Vec"))
            }
            Space::Promotion => {
                let code = std::str::from_utf8(key).ok()?;
                let promo = self.promotions.get(code)?;
                Some(promo.to_json().to_string().into_bytes())
            }
            Space::Cart | Space::GiftCard | Space::Handoff => None,
        }
    }

    /// Forgets old tombstones (see [`super::stamps::Stamps::purge`]).
    pub fn purge_tombstones(&self, now_ms: u64) -> usize {
        self.stamps.purge(now_ms)
    }

    /// How many shared entries are stamped, and how many of those are tombstones.
    pub fn stamp_counts(&self) -> (usize, usize) {
        self.stamps.counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::StoreConfig;

    fn store(origin: u64) -> Store {
        let mut config = Config::default();
        config.server.shards = 2;
        let store = Store::new(StoreConfig::from(&config), 1_000);
        store.set_origin(origin);
        store
    }

    fn promo(code: &str, percent: u32, stamp: Stamp) -> SharedChange {
        let document = format!(r#"{{"kind":"percent","percent":{percent}}}"#);
        SharedChange {
            space: Space::Promotion,
            key: Bytes::copy_from_slice(code.as_bytes()),
            stamp,
            image: Some(Bytes::from(document)),
        }
    }

    fn percent(store: &Store, code: &str) -> Option<String> {
        let promo = store.promotions.get(code)?;
        Some(promo.to_json()["percent"].to_string())
    }

    /// Two nodes given each other's writes in either order end with the same promotion, and a
    /// delete's tombstone keeps an older write from bringing it back.
    #[test]
    fn the_newer_stamp_wins_in_any_order() {
        let (one, two) = (store(3), store(5));
        let early = promo(
            "P",
            10,
            Stamp {
                at_ms: 2_000,
                origin: 3,
            },
        );
        let late = promo(
            "P",
            20,
            Stamp {
                at_ms: 2_000,
                origin: 5,
            },
        );
        assert_eq!(one.apply_shared(&early, 3_000), Ok(true));
        assert_eq!(one.apply_shared(&late, 3_000), Ok(true));
        assert_eq!(two.apply_shared(&late, 3_000), Ok(true));
        assert_eq!(two.apply_shared(&early, 3_000), Ok(false), "older");
        assert_eq!(percent(&one, "P"), Some("20".into()));
        assert_eq!(one.shared_digests(), two.shared_digests());

        assert!(
            one.promo_remove("P", 1_500),
            "a local delete goes after the last write"
        );
        let tombstone = &one
            .shared_bucket(super::super::stamps::bucket_of(Space::Promotion, b"P"))
            .expect("a bucket")[0];
        assert_eq!(tombstone.image, None);
        assert!(tombstone.stamp > late.stamp);
        assert_eq!(two.apply_shared(tombstone, 3_000), Ok(true));
        assert_eq!(two.apply_shared(&late, 3_000), Ok(false), "no resurrection");
        assert_eq!(percent(&two, "P"), None);
        assert_eq!(one.shared_digests(), two.shared_digests());
        assert_eq!(one.stamp_counts(), (1, 1));
    }

    /// A change whose image does not decode is refused and changes nothing.
    #[test]
    fn an_undecodable_image_changes_nothing() {
        let one = store(3);
        let mut bad = promo(
            "P",
            10,
            Stamp {
                at_ms: 2_000,
                origin: 5,
            },
        );
        bad.image = Some(Bytes::from_static(b"{not json"));
        assert!(one.apply_shared(&bad, 3_000).is_err());
        assert_eq!(one.stamp_counts(), (0, 0));
        assert_eq!(percent(&one, "P"), None);
    }
}
