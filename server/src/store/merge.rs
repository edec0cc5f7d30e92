//! `CART.MERGE` in the store: both shards locked in index order, the guest cart taken out,
//! folded into the user cart (or re-keyed as it), and the result validated, all atomically.
//! MERGE reads the catalog under the locks (caps and prices): it must be one step so its
//! idempotent reply is exactly the reply the client saw, and it is rare next to adds.
//!
//! A guest cart served by another cluster node arrives handed off (`handoff.rs`,
//! `crate::handoff`): it is folded in the same way, and the merge's record holds the received
//! handoff instead of the guest cart's tombstone, which the giving node logged.

use bytes::Bytes;
use parking_lot::MutexGuard;
use protocol::{CartMerge, CommandError, ErrorCode, Reply};

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

/// The user cart a guest cart is folded into: its shard (locked), where in it, the command,
/// and the handoff the guest cart came by, if another node gave it.
struct MergeInto<'s, 'a> {
    shard: &'s mut Shard,
    at: Location,
    cmd: &'a CartMerge,
    handed: Option<&'a Handed>,
}

/// Where the guest cart of a merge comes from.
pub enum GuestFrom {
    /// A shard of this node.
    Here,
    /// Another node handed it off (`CART.HANDOFF`): its image, or `None` when that node had
    /// no guest cart.
    Handed(Option<Handed>),
}

/// A guest cart another node handed off.
#[derive(Debug, Clone)]
pub struct Handed {
    /// The handoff's id.
    pub id: Bytes,
    /// The guest cart's image.
    pub cart: Bytes,
    /// The cluster id of the node that gave it.
    pub from: String,
}

impl Store {
    /// `CART.MERGE`, its guest cart from `guest_from`.
    pub fn merge(
        &self,
        cmd: &CartMerge,
        guest_from: GuestFrom,
        now_ms: u64,
    ) -> Result<Reply, CommandError> {
        // The user cart is taken as a copy before the guest cart is removed.
        assert_ne!(
            cmd.guest_key, cmd.user_key,
            "the parser refuses a self-merge"
        );
        let guest_at = self.locate(&cmd.guest_key);
        let user_at = self.locate(&cmd.user_key);
        let (mut user_guard, mut other_guard) = match guest_from {
            GuestFrom::Here => self.lock_pair(user_at.shard, guest_at.shard),
            GuestFrom::Handed(_) => (self.shard(user_at.shard), None),
        };
        let options = &cmd.mutation;
        if let Some(version) = self.replayed(&mut user_guard, user_at.hash, options, now_ms)? {
            drop(other_guard);
            let user = self.touch(&mut user_guard, user_at, &cmd.user_key, now_ms);
            drop(user_guard);
            let reply = self.replay_reply(&cmd.user_key, version, user.as_ref(), options, now_ms);
            return Ok(reply);
        }
        let mut user_cart = self.live(&mut user_guard, user_at, &cmd.user_key, now_ms);
        if user_cart.is_none() {
            self.may_make(&cmd.user_key)?;
        }
        check_version(options, user_cart.as_ref())?;
        if let Some(user) = user_cart.as_mut() {
            if let Some(checkout) = user.frozen(now_ms) {
                return Err(frozen(checkout.hold_until_ms));
            }
            user.end_checkout();
        }

        let (guest_cart, handed) = match guest_from {
            GuestFrom::Here => {
                let guest_shard: &mut Shard = match other_guard.as_deref_mut() {
                    Some(shard) => shard,
                    None => &mut user_guard,
                };
                let guest = self.take_local_guest(guest_shard, guest_at, cmd, now_ms)?;
                if guest.is_none() && self.may_make(&cmd.guest_key).is_err() {
                    // Moved away with its slot after the request was routed.
                    return Err(CommandError::new(
                        ErrorCode::TryAgain,
                        "the guest cart's slot is moving to another node; retry",
                    ));
                }
                (guest, None)
            }
            GuestFrom::Handed(handed) => self.handed_guest(handed)?,
        };

        let (user, validation) = match (guest_cart, user_cart) {
            // Nothing to merge: safe to retry, the reply is the user cart as it is.
            (None, None) => return Ok(Reply::Null),
            (None, Some(user)) => {
                let user = self.nothing_to_merge(&mut user_guard, user_at, cmd, user, now_ms);
                (user, Validation::Skipped)
            }
            (Some(guest), user) => {
                let into = MergeInto {
                    shard: &mut user_guard,
                    at: user_at,
                    cmd,
                    handed: handed.as_ref(),
                };
                (
                    self.fold_guest(into, guest, user, now_ms),
                    Validation::Fresh,
                )
            }
        };
        drop(other_guard);
        self.remember(&mut user_guard, user_at.hash, options, user.version, now_ms);
        // The reply is made from the copy, with the shard free (as `Store::mutate_with`).
        drop(user_guard);
        let (mode, format) = (options.reply, options.format);
        Ok(self.reply_for(&cmd.user_key, &user, mode, format, now_ms, validation))
    }

    /// Whether `CART.MERGE` would take its guest cart now: not a replay of its token, not
    /// refused by its user cart (IFVERSION, FROZEN). A merge across nodes asks before it takes
    /// the guest cart from its node, so a merge refused here leaves that cart where it is.
    pub fn merge_would_take(&self, cmd: &CartMerge, now_ms: u64) -> bool {
        let at = self.locate(&cmd.user_key);
        let mut shard = self.shard(at.shard);
        if !matches!(
            self.replayed(&mut shard, at.hash, &cmd.mutation, now_ms),
            Ok(None)
        ) {
            return false;
        }
        // Read only (an expired cart is left for the merge to reap): this runs before the
        // command, outside the transaction lock.
        let user = shard
            .find(at.hash, &cmd.user_key)
            .filter(|cart| cart.expires_at_ms > now_ms);
        check_version(&cmd.mutation, user.as_ref()).is_ok()
            && user.is_none_or(|user| user.frozen(now_ms).is_none())
    }

    /// No guest cart: the user cart stays as it is, but a token is still logged with it, so a
    /// retry replays after a restart too.
    fn nothing_to_merge(
        &self,
        user_shard: &mut Shard,
        user_at: Location,
        cmd: &CartMerge,
        mut user: Cart,
        now_ms: u64,
    ) -> Cart {
        if let Some(guard) = idempotency_guard(&cmd.mutation) {
            let before = user.clone();
            self.log_cart(
                &cmd.user_key,
                Some(&before),
                &mut user,
                None,
                Some(guard),
                now_ms,
            );
            user_shard.update(user_at.hash, &cmd.user_key, &user);
        }
        user
    }

    /// Takes the guest cart out of its shard here (put back if it is in checkout: `FROZEN`).
    fn take_local_guest(
        &self,
        guest_shard: &mut Shard,
        guest_at: Location,
        cmd: &CartMerge,
        now_ms: u64,
    ) -> Result<Option<Cart>, CommandError> {
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
        Ok(guest_cart)
    }

    /// The guest cart another node handed off, unless it was merged here already (a retry
    /// handed the same handoff again merges nothing: its lines are in the user cart).
    fn handed_guest(
        &self,
        handed: Option<Handed>,
    ) -> Result<(Option<Cart>, Option<Handed>), CommandError> {
        let Some(handed) = handed.filter(|handed| !self.handoff_received(&handed.id)) else {
            return Ok((None, None));
        };
        if !self.room_for_received() {
            return Err(CommandError::new(
                ErrorCode::TryAgain,
                "too many merges across nodes wait for their guest cart's node to confirm them; retry later",
            ));
        }
        let guest = image::decode(&handed.cart, &self.names).map_err(|error| {
            CommandError::err(format!(
                "the handed-off guest cart does not decode: {error}"
            ))
        })?;
        Ok((Some(guest), Some(handed)))
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
        into: MergeInto<'_, '_>,
        guest: Cart,
        user: Option<Cart>,
        now_ms: u64,
    ) -> Cart {
        let MergeInto {
            shard: user_shard,
            at: user_at,
            cmd,
            handed,
        } = into;
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
        self.log_merge(cmd, &mut user, guest_version, handed, now_ms);
        if created {
            user_shard.insert(user_at.hash, &cmd.user_key, &user);
        } else {
            user_shard.update(user_at.hash, &cmd.user_key, &user);
        }
        user
    }

    /// Logs a merge as one record: the user cart as it now is, and the guest cart gone (or,
    /// handed off by another node, the received handoff), so recovery, PostgreSQL and replicas
    /// see both or neither.
    fn log_merge(
        &self,
        cmd: &CartMerge,
        user: &mut Cart,
        guest_version: u64,
        handed: Option<&Handed>,
        now_ms: u64,
    ) {
        let guest_key = String::from_utf8_lossy(&cmd.guest_key);
        let user_key = String::from_utf8_lossy(&cmd.user_key);
        let into_user = match handed {
            None => event(EventKind::Merge, json!({ "guest": guest_key })),
            Some(handed) => {
                let id = String::from_utf8_lossy(&handed.id);
                event(
                    EventKind::Merge,
                    json!({ "guest": guest_key, "handoff": id }),
                )
            }
        };
        let out_of_guest = event(EventKind::Merge, json!({ "into": user_key }));
        let user_change = CartChange {
            key: &cmd.user_key,
            version: user.version,
            state: CartState::Image(image::encode(user, &self.names)),
            event: Some(&into_user),
            guard: idempotency_guard(&cmd.mutation),
        };
        let Some(handed) = handed else {
            let guest_change = CartChange {
                key: &cmd.guest_key,
                version: guest_version,
                state: CartState::Gone(TombstoneReason::Merged),
                event: Some(&out_of_guest),
                guard: None,
            };
            user.lsn = self.append_carts(&[user_change, guest_change], &[], now_ms);
            return;
        };
        let (key, entry) = Store::received_entry(&cmd.guest_key, &handed.from, &handed.id);
        let received = super::handoff::handoff_change(&key, Some(&entry), now_ms);
        user.lsn = self.append_carts(&[user_change], &[received], now_ms);
        self.keep_received(&handed.id, &cmd.guest_key, &handed.from, user.lsn);
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
