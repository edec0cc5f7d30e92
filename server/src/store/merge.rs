//! `CART.MERGE` in the store: both shards locked in index order, the guest cart taken out,
//! folded into the user cart (or re-keyed as it), and the result validated, all atomically.
//! MERGE reads the catalog under the locks (caps and prices): it must be one step so its
//! idempotent reply is exactly the reply the client saw, and it is rare next to adds.

use parking_lot::MutexGuard;
use protocol::{CartMerge, CommandError, Reply};

use persistence::{EventKind, TombstoneReason};
use serde_json::json;

use super::log::{CartChange, CartState};
use super::shard::Shard;
use super::{check_version, event, frozen, idempotency_guard, Location, Store};
use crate::cart::image;
use crate::cart::merge::merge;
use crate::cart::view::Validation;
use crate::cart::{Cart, CodeList};
use crate::catalog::apply_plan;
use crate::limits::GIFT_CARDS_PER_CART_MAX;

impl Store {
    /// `CART.MERGE`.
    pub fn merge(&self, cmd: &CartMerge, now_ms: u64) -> Result<Reply, CommandError> {
        // The user cart is taken as a copy before the guest cart is removed.
        assert_ne!(
            cmd.guest_key, cmd.user_key,
            "the parser refuses a self-merge"
        );
        let guest_at = self.locate(&cmd.guest_key);
        let user_at = self.locate(&cmd.user_key);
        let (mut user_guard, mut other_guard) = self.lock_pair(user_at.shard, guest_at.shard);
        let options = &cmd.mutation;
        if let Some(version) = self.replayed(&mut user_guard, user_at.hash, options, now_ms)? {
            drop(other_guard);
            let user = self.touch(&mut user_guard, user_at, &cmd.user_key, now_ms);
            drop(user_guard);
            let reply = self.replay_reply(&cmd.user_key, version, user.as_ref(), options, now_ms);
            return Ok(reply);
        }
        let mut user_cart = self.live(&mut user_guard, user_at, &cmd.user_key, now_ms);
        check_version(options, user_cart.as_ref())?;
        if let Some(user) = user_cart.as_mut() {
            if let Some(checkout) = user.frozen(now_ms) {
                return Err(frozen(checkout.hold_until_ms));
            }
            user.end_checkout();
        }

        let guest_shard: &mut Shard = match other_guard.as_deref_mut() {
            Some(shard) => shard,
            None => &mut user_guard,
        };
        self.reap(guest_shard, guest_at, &cmd.guest_key, now_ms);
        let mut guest_cart = guest_shard.remove(guest_at.hash, &cmd.guest_key);
        if let Some(guest) = guest_cart.as_mut() {
            if let Some(checkout) = guest.frozen(now_ms) {
                let error = frozen(checkout.hold_until_ms);
                guest_shard.insert(guest_at.hash, &cmd.guest_key, guest);
                return Err(error);
            }
            guest.end_checkout();
        }

        let (user, validation) = match (guest_cart, user_cart) {
            // Nothing to merge: safe to retry, the reply is the user cart as it is.
            (None, None) => return Ok(Reply::Null),
            (None, Some(mut user)) => {
                if let Some(guard) = idempotency_guard(options) {
                    // Nothing to merge, but a retry must still replay after a restart.
                    let before = user.clone();
                    self.log_cart(
                        &cmd.user_key,
                        Some(&before),
                        &mut user,
                        None,
                        Some(guard),
                        now_ms,
                    );
                    user_guard.update(user_at.hash, &cmd.user_key, &user);
                }
                (user, Validation::Skipped)
            }
            (Some(guest), user) => {
                let user = self.fold_guest(&mut user_guard, user_at, cmd, guest, user, now_ms);
                (user, Validation::Fresh)
            }
        };
        drop(other_guard);
        self.remember(&mut user_guard, user_at.hash, options, user.version, now_ms);
        // The reply is made from the copy, with the shard free (as `Store::mutate_with`).
        drop(user_guard);
        let (mode, format) = (options.reply, options.format);
        Ok(self.reply_for(&cmd.user_key, &user, mode, format, now_ms, validation))
    }

    /// Locks the user cart's shard and, if different, the guest cart's, lower index first:
    /// two MERGEs in opposite directions must not deadlock.
    fn lock_pair(
        &self,
        user: usize,
        guest: usize,
    ) -> (MutexGuard<'_, Shard>, Option<MutexGuard<'_, Shard>>) {
        if guest == user {
            (self.shard(user), None)
        } else if guest < user {
            let guest = self.shard(guest);
            (self.shard(user), Some(guest))
        } else {
            let user = self.shard(user);
            (user, Some(self.shard(guest)))
        }
    }

    /// Folds the guest cart into the user cart (or makes it the user cart), validates, stores
    /// and logs the result, and returns it.
    fn fold_guest(
        &self,
        user_shard: &mut Shard,
        user_at: Location,
        cmd: &CartMerge,
        guest: Cart,
        user: Option<Cart>,
        now_ms: u64,
    ) -> Cart {
        let user_kind = self.kind_of(&cmd.user_key);
        let expires_at_ms = now_ms + self.ttl_ms(user_kind);
        let guest_version = guest.version;
        let (mut user, created) = match user {
            None => {
                let mut guest = guest;
                guest.kind = user_kind;
                guest.version += 1;
                guest.updated_at_ms = now_ms;
                guest.expires_at_ms = expires_at_ms;
                self.validate_in_place(&mut guest, now_ms);
                (guest, true)
            }
            Some(mut user) => {
                let guest_codes = guest.promo_codes().to_vec();
                let guest_cards = guest.gift_cards().to_vec();
                let cap = |key| self.catalog.price_and_cap(key).1;
                let report = merge(&mut user, guest, cmd.qty, &self.config.limits, cap);
                if report.dropped_lines > 0 {
                    tracing::debug!(
                        dropped = report.dropped_lines,
                        "merge dropped lines past the limits"
                    );
                }
                user.version += 1;
                user.updated_at_ms = now_ms;
                user.expires_at_ms = expires_at_ms;
                self.validate_in_place(&mut user, now_ms);
                self.keep_best_codes(&mut user, guest_codes, now_ms);
                for card in &guest_cards {
                    if user.gift_cards().len() < GIFT_CARDS_PER_CART_MAX {
                        user.add_code(CodeList::GiftCard, card);
                    }
                }
                user.debug_check(&self.config.limits);
                (user, false)
            }
        };
        self.log_merge(cmd, &mut user, guest_version, now_ms);
        if created {
            user_shard.insert(user_at.hash, &cmd.user_key, &user);
        } else {
            user_shard.update(user_at.hash, &cmd.user_key, &user);
        }
        user
    }

    /// Logs a merge as one record: the user cart as it now is, and the guest cart gone, so
    /// recovery, PostgreSQL and replicas see both or neither.
    fn log_merge(&self, cmd: &CartMerge, user: &mut Cart, guest_version: u64, now_ms: u64) {
        if self.wal().is_none() {
            return;
        }
        let guest_key = String::from_utf8_lossy(&cmd.guest_key);
        let user_key = String::from_utf8_lossy(&cmd.user_key);
        let into_user = event(EventKind::Merge, json!({ "guest": guest_key }));
        let out_of_guest = event(EventKind::Merge, json!({ "into": user_key }));
        let changes = [
            CartChange {
                key: &cmd.user_key,
                version: user.version,
                state: CartState::Image(image::encode(user, &self.names)),
                event: Some(&into_user),
                guard: idempotency_guard(&cmd.mutation),
            },
            CartChange {
                key: &cmd.guest_key,
                version: guest_version,
                state: CartState::Gone(TombstoneReason::Merged),
                event: Some(&out_of_guest),
                guard: None,
            },
        ];
        user.lsn = self.append_carts(&changes, &[], now_ms);
    }

    /// Keeps the promo codes, the user cart's or the guest cart's, that give the merged cart
    /// the larger discount; the user cart's on a tie.
    fn keep_best_codes(&self, merged: &mut Cart, guest_codes: Vec<Box<str>>, now_ms: u64) {
        if guest_codes.is_empty() || guest_codes == merged.promo_codes() {
            return;
        }
        let with_user = self.price(merged, now_ms).discount;
        let with_guest = self.price_with_codes(merged, &guest_codes, now_ms).discount;
        if with_guest > with_user {
            merged.set_promo_codes(guest_codes);
        }
    }

    /// Validates a cart whose shard lock is held (the merge already counts as its change).
    fn validate_in_place(&self, cart: &mut Cart, now_ms: u64) {
        let plan = self.catalog.plan_for(cart);
        apply_plan(cart, &plan);
        cart.validated_at_ms = now_ms.max(1);
    }
}
