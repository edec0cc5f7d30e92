//! `CART.MERGE` in the store: both shards locked in index order, the guest cart taken out,
//! folded into the user cart (or re-keyed as it), and the result validated, all atomically.
//! MERGE reads the catalog under the locks (caps and prices): it must be one step so its
//! idempotent reply is exactly the reply the client saw, and it is rare next to adds.

use parking_lot::MutexGuard;
use protocol::{CartMerge, CommandError, Reply};

use super::idempotency::Lookup;
use super::shard::Shard;
use super::{check_version, idempotency_conflict, Store};
use crate::cart::merge::merge;
use crate::cart::view::Validation;
use crate::catalog::apply_plan;

impl Store {
    /// `CART.MERGE`.
    pub fn merge(&self, cmd: &CartMerge, now_ms: u64) -> Result<Reply, CommandError> {
        let guest_at = self.locate(&cmd.guest_key);
        let user_at = self.locate(&cmd.user_key);
        // Lower shard index first: two MERGEs in opposite directions must not deadlock.
        let (mut user_guard, mut other_guard): (
            MutexGuard<'_, Shard>,
            Option<MutexGuard<'_, Shard>>,
        ) = if guest_at.shard == user_at.shard {
            (self.shard(user_at.shard), None)
        } else if guest_at.shard < user_at.shard {
            let guest = self.shard(guest_at.shard);
            (self.shard(user_at.shard), Some(guest))
        } else {
            let user = self.shard(user_at.shard);
            (user, Some(self.shard(guest_at.shard)))
        };
        let options = &cmd.mutation;
        if let Some(token) = &options.idempotency {
            match user_guard
                .idempotency
                .lookup(user_at.hash, token, options.fingerprint, now_ms)
            {
                Lookup::Replay(reply) => return Ok(reply),
                Lookup::Conflict => return Err(idempotency_conflict()),
                Lookup::Miss => {}
            }
        }
        let (user_cart, expired) = user_guard.live_mut(user_at.hash, &cmd.user_key, now_ms);
        self.count_expired(expired);
        check_version(options, user_cart.as_deref())?;
        let user_exists = user_cart.is_some();

        let guest_shard: &mut Shard = match other_guard.as_deref_mut() {
            Some(shard) => shard,
            None => &mut user_guard,
        };
        let expired = guest_shard.reap_if_expired(guest_at.hash, &cmd.guest_key, now_ms);
        self.count_expired(expired);
        let guest_cart = guest_shard.remove(guest_at.hash, &cmd.guest_key);

        let user_kind = self.kind_of(&cmd.user_key);
        let expires_at_ms = now_ms + self.ttl_ms(user_kind);
        let mut validation = Validation::Fresh;
        match (guest_cart, user_exists) {
            // Nothing to merge: safe to retry, the reply is the user cart as it is.
            (None, false) => return Ok(Reply::Null),
            (None, true) => validation = Validation::Skipped,
            (Some(mut guest), false) => {
                guest.kind = user_kind;
                guest.version += 1;
                guest.updated_at_ms = now_ms;
                guest.expires_at_ms = expires_at_ms;
                self.validate_in_place(&mut guest, now_ms);
                user_guard.insert(user_at.hash, &cmd.user_key, guest);
            }
            (Some(guest), true) => {
                let user = user_guard
                    .find_mut(user_at.hash, &cmd.user_key)
                    .expect("checked above");
                let cap = |key| self.catalog.price_and_cap(key).1;
                let report = merge(user, guest, cmd.qty, &self.config.limits, cap);
                if report.dropped_lines > 0 {
                    tracing::debug!(
                        dropped = report.dropped_lines,
                        "merge dropped lines past the limits"
                    );
                }
                user.version += 1;
                user.updated_at_ms = now_ms;
                user.expires_at_ms = expires_at_ms;
                self.validate_in_place(user, now_ms);
                user.debug_check(&self.config.limits);
            }
        }
        drop(other_guard);
        let user = user_guard
            .find(user_at.hash, &cmd.user_key)
            .expect("the user cart exists now");
        let reply = self.reply_for(
            &cmd.user_key,
            user,
            options.reply,
            options.format,
            now_ms,
            validation,
        );
        if let Some(token) = &options.idempotency {
            let ttl_ms = self.config.idempotency_ttl_ms;
            user_guard.idempotency.record(
                user_at.hash,
                token.clone(),
                options.fingerprint,
                reply.clone(),
                now_ms,
                ttl_ms,
            );
        }
        Ok(reply)
    }

    /// Validates a cart whose shard lock is held (the merge already counts as its change).
    fn validate_in_place(&self, cart: &mut crate::cart::Cart, now_ms: u64) {
        let plan = self.catalog.plan_for(cart);
        apply_plan(cart, &plan);
        cart.validated_at_ms = now_ms.max(1);
    }
}
