//! `CART.PROMO key ADD|REMOVE code` and `CART.GIFTCARD key ADD|REMOVE code`.
//!
//! Adding checks the code against the cart as it is (unknown, expired, other currency, below
//! its minimum, nothing to discount, a second non-stackable code; a card unknown, in another
//! currency or empty) and changes nothing when it fails. A code that stops applying later
//! stays on the cart and the view says why it is not applied.

use persistence::EventKind;
use protocol::{CartGiftCard, CartPromo, CodeAction, CommandError, ErrorCode, Reply};
use serde_json::json;

use super::no_cart;
use super::pricing::code_text;
use crate::limits::{GIFT_CARDS_PER_CART_MAX, PROMO_CODES_PER_CART_MAX};
use crate::server::Server;
use crate::store::{event, Outcome};

fn action_name(action: CodeAction) -> &'static str {
    match action {
        CodeAction::Add => "add",
        CodeAction::Remove => "remove",
    }
}

/// Runs `CART.PROMO`.
pub fn promo(cmd: CartPromo, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let store = &server.store;
    let code = code_text(&cmd.code, ErrorCode::Promo)?;
    let detail = json!({ "promo": code, "action": action_name(cmd.action) });
    let event = event(EventKind::Update, detail);
    store.mutate(&cmd.key, &cmd.mutation, now, event, |cart| {
        let cart = cart.ok_or_else(no_cart)?;
        match cmd.action {
            CodeAction::Remove => Ok(changed(cart.remove_promo_code(code))),
            CodeAction::Add if cart.promo_codes().iter().any(|have| &**have == code) => {
                Ok(Outcome::Unchanged)
            }
            CodeAction::Add => {
                if cart.promo_codes().len() >= PROMO_CODES_PER_CART_MAX {
                    return Err(CommandError::limit(format!(
                        "cart has {PROMO_CODES_PER_CART_MAX} promo codes already"
                    )));
                }
                store.check_promo(cart, code, now).map_err(|reason| {
                    CommandError::new(ErrorCode::Promo, format!("code {code}: {reason}"))
                })?;
                cart.add_promo_code(code);
                Ok(Outcome::Changed)
            }
        }
    })
}

/// Runs `CART.GIFTCARD`. The balance is only reserved at checkout.
pub fn gift_card(cmd: CartGiftCard, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let store = &server.store;
    let code = code_text(&cmd.code, ErrorCode::GiftCard)?;
    let detail = json!({ "gift_card": code, "action": action_name(cmd.action) });
    let event = event(EventKind::Update, detail);
    store.mutate(&cmd.key, &cmd.mutation, now, event, |cart| {
        let cart = cart.ok_or_else(no_cart)?;
        match cmd.action {
            CodeAction::Remove => Ok(changed(cart.remove_gift_card(code))),
            CodeAction::Add if cart.gift_cards().iter().any(|have| &**have == code) => {
                Ok(Outcome::Unchanged)
            }
            CodeAction::Add => {
                if cart.gift_cards().len() >= GIFT_CARDS_PER_CART_MAX {
                    return Err(CommandError::limit(format!(
                        "cart has {GIFT_CARDS_PER_CART_MAX} gift cards already"
                    )));
                }
                let refuse = |message: String| CommandError::new(ErrorCode::GiftCard, message);
                let (available, currency) = store
                    .gift_cards
                    .available(code, now)
                    .ok_or_else(|| refuse(format!("unknown gift card {code}")))?;
                if currency != cart.currency {
                    return Err(refuse(format!(
                        "gift card {code} is in {currency}, the cart is in {}",
                        cart.currency
                    )));
                }
                if available <= 0 {
                    return Err(refuse(format!("gift card {code} has no balance left")));
                }
                cart.add_gift_card(code);
                Ok(Outcome::Changed)
            }
        }
    })
}

fn changed(did: bool) -> Outcome {
    if did {
        Outcome::Changed
    } else {
        Outcome::Unchanged
    }
}
