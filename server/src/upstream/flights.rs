//! Request coalescing for one upstream service: which product variants have a request out
//! right now, and who waits for it. A view claims the variants it needs that nobody is fetching
//! (they go into its own request) and waits for the requests of other views for the rest, so a
//! flash sale of one product makes one upstream call however many views want it.
//!
//! A claim ends in [`Claim::finish`] after the answer is written into the catalog, or in its
//! `Drop` if its view went away first; either way its variants leave the map and its waiters
//! wake up (to a failure in the second case).

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::cart::LineKey;
use crate::limits::UPSTREAM_IN_FLIGHT_KEYS_MAX;

/// The outcome of a request as its waiters see it: `None` while it is out.
type Outcome = Option<bool>;

/// One request that views wait on.
#[derive(Debug, Clone)]
pub struct Flight {
    id: u64,
    done: watch::Receiver<Outcome>,
}

impl Flight {
    /// Waits for the request's outcome: whether it succeeded. A request whose view went away
    /// before it finished counts as failed.
    pub async fn outcome(mut self) -> bool {
        match self.done.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.unwrap_or(false),
            Err(_) => false,
        }
    }
}

/// The variants of one service that have a request out.
#[derive(Debug, Default)]
pub struct Flights {
    map: Mutex<FlightMap>,
}

#[derive(Debug, Default)]
struct FlightMap {
    keys: HashMap<LineKey, Flight>,
    next_id: u64,
}

/// What one view found in the map.
#[derive(Debug)]
pub struct Planned<'a> {
    /// The variants this view fetches itself, with the handle that tells its waiters; `None`
    /// when it fetches nothing.
    pub claim: Option<Claim<'a>>,
    /// Other views' requests it waits for, each once.
    pub waits: Vec<Flight>,
    /// How many of its variants those requests cover.
    pub coalesced: usize,
}

/// Why a view could not claim what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The service's breaker is open.
    BreakerOpen,
    /// The map is at [`UPSTREAM_IN_FLIGHT_KEYS_MAX`].
    Full,
}

impl Flights {
    /// Sorts the `due` ones of `keys` into those another view is fetching (waited for) and
    /// the others (claimed for this view's request, when `allow` lets a request out); the
    /// rest are fresh enough. `due` runs under the map's lock, so a variant whose request
    /// just finished is seen with its new refresh time and not fetched again.
    pub fn plan(
        &self,
        keys: &[LineKey],
        due: impl Fn(LineKey) -> bool,
        allow: impl FnOnce() -> bool,
    ) -> Result<Planned<'_>, Refused> {
        let mut map = self.map.lock();
        let mut waits: Vec<Flight> = Vec::new();
        let mut coalesced = 0;
        let mut own = Vec::new();
        for &key in keys {
            if !due(key) {
                continue;
            }
            if let Some(flight) = map.keys.get(&key) {
                coalesced += 1;
                if !waits.iter().any(|seen| seen.id == flight.id) {
                    waits.push(flight.clone());
                }
            } else if !own.contains(&key) {
                own.push(key);
            }
        }
        if own.is_empty() {
            return Ok(Planned {
                claim: None,
                waits,
                coalesced,
            });
        }
        if map.keys.len() + own.len() > UPSTREAM_IN_FLIGHT_KEYS_MAX {
            return Err(Refused::Full);
        }
        if !allow() {
            return Err(Refused::BreakerOpen);
        }
        let id = map.next_id;
        map.next_id += 1;
        let (sender, done) = watch::channel(None);
        for &key in &own {
            let flight = Flight {
                id,
                done: done.clone(),
            };
            map.keys.insert(key, flight);
        }
        let claim = Claim {
            flights: self,
            keys: own,
            id,
            sender,
        };
        Ok(Planned {
            claim: Some(claim),
            waits,
            coalesced,
        })
    }

    /// Variants with a request out.
    pub fn len(&self) -> usize {
        self.map.lock().keys.len()
    }
}

/// The variants one view fetches itself.
#[derive(Debug)]
pub struct Claim<'a> {
    flights: &'a Flights,
    keys: Vec<LineKey>,
    id: u64,
    sender: watch::Sender<Outcome>,
}

impl Claim<'_> {
    /// The variants to ask for.
    pub fn keys(&self) -> &[LineKey] {
        &self.keys
    }

    /// Ends the request: the variants leave the map, then the waiters learn the outcome. Call
    /// it after the answer is in the catalog, so a view that no longer finds a variant here
    /// finds it fresh there.
    pub fn finish(self, ok: bool) {
        self.release();
        self.sender.send_replace(Some(ok));
    }

    fn release(&self) {
        let mut map = self.flights.map.lock();
        for key in &self.keys {
            if map.keys.get(key).is_some_and(|flight| flight.id == self.id) {
                map.keys.remove(key);
            }
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        // After `finish` this finds nothing left; a claim dropped unfinished frees its
        // variants, and dropping the sender tells its waiters it failed.
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::Names;

    fn keys(names: &Names, products: &[&str]) -> Vec<LineKey> {
        products
            .iter()
            .map(|product| LineKey {
                product: names.intern(product.as_bytes()).unwrap(),
                variant: names.intern(b"-").unwrap(),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_second_view_waits_for_the_first_request() {
        let names = Names::default();
        let flights = Flights::default();
        let first = flights
            .plan(&keys(&names, &["tv", "mug"]), |_| true, || true)
            .unwrap();
        let claim = first.claim.expect("the first view fetches");
        assert_eq!(claim.keys().len(), 2);
        let second = flights
            .plan(&keys(&names, &["tv", "mug", "pen"]), |_| true, || true)
            .unwrap();
        assert_eq!(second.coalesced, 2);
        assert_eq!(second.waits.len(), 1, "one request covers both");
        assert_eq!(second.claim.as_ref().unwrap().keys().len(), 1, "pen only");
        assert_eq!(flights.len(), 3);
        let waiter = tokio::spawn(second.waits[0].clone().outcome());
        claim.finish(true);
        assert!(waiter.await.unwrap());
        drop(second);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_dropped_claim_fails_its_waiters_and_frees_its_keys() {
        let names = Names::default();
        let flights = Flights::default();
        let first = flights
            .plan(&keys(&names, &["tv"]), |_| true, || true)
            .unwrap();
        let second = flights
            .plan(&keys(&names, &["tv"]), |_| true, || false)
            .unwrap();
        assert!(second.claim.is_none());
        drop(first);
        assert!(!second.waits[0].clone().outcome().await);
        assert_eq!(flights.len(), 0);
        let refused = flights.plan(&keys(&names, &["tv"]), |_| true, || false);
        assert_eq!(refused.unwrap_err(), Refused::BreakerOpen);
        let fresh = flights
            .plan(&keys(&names, &["tv"]), |_| false, || panic!("no request"))
            .unwrap();
        assert!(fresh.claim.is_none() && fresh.waits.is_empty());
    }
}
