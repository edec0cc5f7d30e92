//! Remembered replies of mutations sent with `IDEMPOTENCY token`, per shard, keyed by the
//! cart's key hash and the token. Bounded twice: by age (`idempotency_ttl_s`) and by count (the
//! oldest go first past the shard's share of `max_idempotency_keys`; INFO counts them).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use protocol::Reply;

/// What a lookup found.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// Never seen (or forgotten).
    Miss,
    /// The same request again: its original reply.
    Replay(Reply),
    /// The token was used with other arguments.
    Conflict,
}

#[derive(Debug)]
struct Record {
    fingerprint: u64,
    reply: Reply,
    expires_at_ms: u64,
}

/// One shard's remembered replies.
#[derive(Debug)]
pub struct IdempotencyLog {
    records: HashMap<(u64, Bytes), Record, ahash::RandomState>,
    order: VecDeque<(u64, u64, Bytes)>,
    records_max: usize,
    /// Records dropped early because the log was full.
    pub evicted: u64,
}

impl IdempotencyLog {
    /// An empty log holding at most `records_max` records.
    pub fn new(records_max: usize) -> IdempotencyLog {
        IdempotencyLog {
            records: HashMap::default(),
            order: VecDeque::new(),
            records_max,
            evicted: 0,
        }
    }

    /// Looks a token up for the cart with key hash `hash`.
    pub fn lookup(&self, hash: u64, token: &Bytes, fingerprint: u64, now_ms: u64) -> Lookup {
        match self.records.get(&(hash, token.clone())) {
            Some(record) if record.expires_at_ms > now_ms => {
                if record.fingerprint == fingerprint {
                    Lookup::Replay(record.reply.clone())
                } else {
                    Lookup::Conflict
                }
            }
            _ => Lookup::Miss,
        }
    }

    /// Remembers a reply.
    pub fn record(
        &mut self,
        hash: u64,
        token: Bytes,
        fingerprint: u64,
        reply: Reply,
        now_ms: u64,
        ttl_ms: u64,
    ) {
        self.prune(now_ms);
        if self.records_max == 0 {
            return;
        }
        while self.records.len() >= self.records_max {
            let Some((expires_at_ms, old_hash, old_token)) = self.order.pop_front() else {
                break;
            };
            if self.remove_if(old_hash, old_token, expires_at_ms) {
                self.evicted += 1;
            }
        }
        let expires_at_ms = now_ms + ttl_ms;
        self.order.push_back((expires_at_ms, hash, token.clone()));
        self.records.insert(
            (hash, token),
            Record {
                fingerprint,
                reply,
                expires_at_ms,
            },
        );
    }

    fn prune(&mut self, now_ms: u64) {
        while let Some((expires_at_ms, _, _)) = self.order.front() {
            if *expires_at_ms > now_ms {
                break;
            }
            let (expires_at_ms, hash, token) = self.order.pop_front().expect("front exists");
            self.remove_if(hash, token, expires_at_ms);
        }
    }

    /// Removes the record unless it was replaced by a newer one with a later expiry.
    fn remove_if(&mut self, hash: u64, token: Bytes, expires_at_ms: u64) -> bool {
        let key = (hash, token);
        if self
            .records
            .get(&key)
            .is_some_and(|record| record.expires_at_ms == expires_at_ms)
        {
            self.records.remove(&key);
            return true;
        }
        false
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_conflicts_expiry_and_cap() {
        let mut log = IdempotencyLog::new(2);
        let token = Bytes::from("t");
        log.record(1, token.clone(), 10, Reply::Integer(5), 0, 100);
        assert_eq!(
            log.lookup(1, &token, 10, 50),
            Lookup::Replay(Reply::Integer(5))
        );
        assert_eq!(log.lookup(1, &token, 11, 50), Lookup::Conflict);
        assert_eq!(log.lookup(2, &token, 10, 50), Lookup::Miss);
        assert_eq!(log.lookup(1, &token, 10, 100), Lookup::Miss);
        log.record(2, token.clone(), 1, Reply::Null, 10, 100);
        log.record(3, token.clone(), 1, Reply::Null, 20, 100);
        assert_eq!(log.len(), 2);
        assert_eq!(log.evicted, 1);
        assert_eq!(log.lookup(1, &token, 10, 30), Lookup::Miss);
        log.record(4, token, 1, Reply::Null, 500, 100);
        assert_eq!(log.len(), 1, "expired records are pruned");
    }
}
