//! The server-wide promotions, behind one lock. Pricing reads them (`Promotions::get`,
//! `Promotions::automatic`) and hands what it read to the engine, which holds no lock. Gift
//! cards live in `gift_cards.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;

use super::promo::Promotion;
use crate::limits::{CODE_BYTES_MAX, PROMOTIONS_AUTOMATIC_MAX, PROMOTIONS_MAX};

/// The automatic promotions with their codes, sorted by code.
pub type AutomaticPromotions = Arc<[(Arc<str>, Arc<Promotion>)]>;

/// Every promotion, by code.
#[derive(Debug, Default)]
pub struct Promotions {
    inner: RwLock<PromotionsInner>,
}

#[derive(Debug)]
struct PromotionsInner {
    by_code: HashMap<Box<str>, Arc<Promotion>>,
    /// The automatic ones again, sorted, and the list handed to pricing, rebuilt when they
    /// change (rarely, and at most `PROMOTIONS_AUTOMATIC_MAX` of them).
    automatic_by_code: BTreeMap<Arc<str>, Arc<Promotion>>,
    automatic: AutomaticPromotions,
}

impl Default for PromotionsInner {
    fn default() -> PromotionsInner {
        PromotionsInner {
            by_code: HashMap::new(),
            automatic_by_code: BTreeMap::new(),
            automatic: Arc::new([]),
        }
    }
}

impl Promotions {
    /// An empty registry.
    pub fn new() -> Promotions {
        Promotions::default()
    }

    /// `PROMO.SET`: defines or replaces the promotion under `code`. Fails, changing nothing, on
    /// a code of the wrong length or when a limit is reached. `log` sees the promotion while
    /// the registry is still locked.
    pub fn set(
        &self,
        code: &str,
        promo: Promotion,
        log: impl FnOnce(&Promotion),
    ) -> Result<(), String> {
        check_code_length(code, "promotion")?;
        let mut inner = self.inner.write();
        let replaces = inner.by_code.get(code).map(|old| old.automatic());
        if replaces.is_none() && inner.by_code.len() >= PROMOTIONS_MAX {
            return Err(format!(
                "the server holds {PROMOTIONS_MAX} promotions already; delete unused ones first"
            ));
        }
        if promo.automatic()
            && replaces != Some(true)
            && inner.automatic_by_code.len() >= PROMOTIONS_AUTOMATIC_MAX
        {
            return Err(format!(
                "{PROMOTIONS_AUTOMATIC_MAX} automatic promotions are defined already (each is \
                 checked on every cart view); delete one or make this one a code"
            ));
        }
        log(&promo);
        let promo = Arc::new(promo);
        inner.by_code.insert(code.into(), Arc::clone(&promo));
        if replaces == Some(true) || promo.automatic() {
            inner.automatic_by_code.remove(code);
            if promo.automatic() {
                inner.automatic_by_code.insert(code.into(), promo);
            }
            inner.rebuild_automatic();
        }
        Ok(())
    }

    /// Puts a promotion from the log or a snapshot in place, replacing one of the same code.
    pub fn load(&self, code: &str, promo: Promotion) {
        let mut inner = self.inner.write();
        let promo = Arc::new(promo);
        let old = inner.by_code.insert(code.into(), Arc::clone(&promo));
        if old.is_some_and(|old| old.automatic()) || promo.automatic() {
            inner.automatic_by_code.remove(code);
            if promo.automatic() {
                inner.automatic_by_code.insert(code.into(), promo);
            }
            inner.rebuild_automatic();
        }
    }

    /// Forgets every promotion (before another recovery attempt).
    pub fn clear(&self) {
        *self.inner.write() = PromotionsInner::default();
    }

    /// Every promotion with its code, for a snapshot.
    pub fn entries(&self) -> Vec<(Box<str>, Arc<Promotion>)> {
        let inner = self.inner.read();
        let entries = inner.by_code.iter();
        entries
            .map(|(code, promo)| (code.clone(), Arc::clone(promo)))
            .collect()
    }

    /// `PROMO.GET`.
    pub fn get(&self, code: &str) -> Option<Arc<Promotion>> {
        self.inner.read().by_code.get(code).cloned()
    }

    /// `PROMO.DEL`: whether there was one; `log` runs while the registry is still locked.
    pub fn remove(&self, code: &str, log: impl FnOnce()) -> bool {
        let mut inner = self.inner.write();
        let Some(old) = inner.by_code.remove(code) else {
            return false;
        };
        log();
        if old.automatic() {
            inner.automatic_by_code.remove(code);
            inner.rebuild_automatic();
        }
        true
    }

    /// The automatic promotions, sorted by code: one shared list, cheap to take per cart view.
    pub fn automatic(&self) -> AutomaticPromotions {
        Arc::clone(&self.inner.read().automatic)
    }

    /// How many promotions there are.
    pub fn len(&self) -> usize {
        self.inner.read().by_code.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PromotionsInner {
    fn rebuild_automatic(&mut self) {
        self.automatic = self
            .automatic_by_code
            .iter()
            .map(|(code, promo)| (Arc::clone(code), Arc::clone(promo)))
            .collect();
        debug_assert!(self.automatic.iter().all(|(_, promo)| promo.automatic()));
    }
}

fn check_code_length(code: &str, what: &str) -> Result<(), String> {
    if code.is_empty() || code.len() > CODE_BYTES_MAX {
        return Err(format!("a {what} code must be 1..={CODE_BYTES_MAX} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn promo(automatic: bool) -> Promotion {
        let document = json!({"kind": "percent", "percent": 10, "automatic": automatic});
        Promotion::from_json(document.to_string().as_bytes()).expect("valid")
    }

    fn automatic_codes(promotions: &Promotions) -> Vec<String> {
        promotions
            .automatic()
            .iter()
            .map(|(code, _)| code.to_string())
            .collect()
    }

    #[test]
    fn promotions_keep_the_automatic_list_sorted_and_current() {
        let promotions = Promotions::new();
        promotions.set("zeta", promo(true), |_| {}).unwrap();
        promotions.set("SAVE10", promo(false), |_| {}).unwrap();
        promotions.set("alpha", promo(true), |_| {}).unwrap();
        assert_eq!(automatic_codes(&promotions), ["alpha", "zeta"]);
        assert_eq!(promotions.len(), 3);
        promotions.set("zeta", promo(false), |_| {}).unwrap();
        assert_eq!(automatic_codes(&promotions), ["alpha"]);
        promotions.set("SAVE10", promo(true), |_| {}).unwrap();
        assert_eq!(automatic_codes(&promotions), ["SAVE10", "alpha"]);
        assert!(promotions.remove("alpha", || {}));
        assert!(!promotions.remove("alpha", || {}));
        assert_eq!(automatic_codes(&promotions), ["SAVE10"]);
        assert!(promotions
            .get("zeta")
            .is_some_and(|promo| !promo.automatic()));
        assert!(promotions.get("alpha").is_none());
        assert!(promotions.set("", promo(false), |_| {}).is_err());
        assert!(promotions
            .set(&"x".repeat(65), promo(false), |_| {})
            .is_err());
    }

    #[test]
    fn automatic_promotions_are_bounded() {
        let promotions = Promotions::new();
        for index in 0..PROMOTIONS_AUTOMATIC_MAX {
            promotions
                .set(&format!("auto{index}"), promo(true), |_| {})
                .unwrap();
        }
        let refused = promotions.set("one-more", promo(true), |_| {});
        assert!(refused.is_err_and(|error| error.contains("automatic")));
        promotions.set("auto0", promo(true), |_| {}).unwrap(); // a replacement is no new one
        promotions.set("a-code", promo(false), |_| {}).unwrap();
        assert_eq!(promotions.automatic().len(), PROMOTIONS_AUTOMATIC_MAX);
    }
}
