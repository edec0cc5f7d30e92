//! `CART.PROMO key ADD|REMOVE code` and `CART.GIFTCARD key ADD|REMOVE code`.
//!
//! Adding checks the code against the cart as it is (unknown, expired, other currency, below
//! its minimum, nothing to discount, a second non-stackable code; a card unknown, in another
//! currency or empty) and changes nothing when it fails. A code that stops applying later
//! stays on the cart and the view says why it is not applied.

use persistence::EventKind;
use protocol::{
    CartGiftCard, CartPromo, CodeAction, CommandError, ErrorCode, MutationOptions, Reply,
};
use serde_json::json;

use super::no_cart;
use super::pricing::code_text;
use crate::cart::{Cart, CodeList};
use crate::limits::{GIFT_CARDS_PER_CART_MAX, PROMO_CODES_PER_CART_MAX};
use crate::peers::gift_cards::{not_asked, Prepared};
use crate::server::Server;
use crate::store::{event, Outcome};

/// Runs `CART.PROMO`.
pub fn promo(cmd: CartPromo, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let store = &server.store;
    let code = code_text(&cmd.code, ErrorCode::Promo)?;
    let change = CodeChange {
        key: &cmd.key,
        mutation: &cmd.mutation,
        action: cmd.action,
        list: CodeList::Promo,
        code,
    };
    change.run(server, now, |cart| {
        store
            .check_promo(cart, code, now)
            .map_err(|reason| CommandError::new(ErrorCode::Promo, format!("code {code}: {reason}")))
    })
}

/// Runs `CART.GIFTCARD`. The balance is only reserved at checkout. In a cluster, ADD of a
/// card another node decides checks the card as that node has it (`prepared`, asked before).
pub fn gift_card(
    cmd: CartGiftCard,
    server: &Server,
    now: u64,
    prepared: Option<Prepared>,
) -> Result<Reply, CommandError> {
    let store = &server.store;
    let code = code_text(&cmd.code, ErrorCode::GiftCard)?;
    let change = CodeChange {
        key: &cmd.key,
        mutation: &cmd.mutation,
        action: cmd.action,
        list: CodeList::GiftCard,
        code,
    };
    change.run(server, now, |cart| {
        let refuse = |message: String| CommandError::new(ErrorCode::GiftCard, message);
        let card = match prepared {
            Some(Prepared::Card(card)) => card,
            Some(Prepared::Failed(error)) => return Err(error),
            _ if store.decided_elsewhere(code) => return Err(not_asked(code)),
            _ => store.gift_cards.available(code, now),
        };
        let card = card.ok_or_else(|| refuse(format!("unknown gift card {code}")))?;
        if card.currency != cart.currency {
            return Err(refuse(format!(
                "gift card {code} is in {}, the cart is in {}",
                card.currency, cart.currency
            )));
        }
        if card.available <= 0 {
            return Err(refuse(format!("gift card {code} has no balance left")));
        }
        Ok(())
    })
}

/// Adding a code to, or dropping it from, one of a cart's code lists.
struct CodeChange<'a> {
    key: &'a [u8],
    mutation: &'a MutationOptions,
    action: CodeAction,
    list: CodeList,
    code: &'a str,
}

impl CodeChange<'_> {
    /// Runs the change; `check` refuses a code that may not be added to the cart as it is.
    /// Adding a code the cart holds, or dropping one it lacks, changes nothing.
    fn run(
        self,
        server: &Server,
        now: u64,
        check: impl FnOnce(&Cart) -> Result<(), CommandError>,
    ) -> Result<Reply, CommandError> {
        let (name, plural, per_cart_max) = match self.list {
            CodeList::Promo => ("promo", "promo codes", PROMO_CODES_PER_CART_MAX),
            CodeList::GiftCard => ("gift_card", "gift cards", GIFT_CARDS_PER_CART_MAX),
        };
        let action = match self.action {
            CodeAction::Add => "add",
            CodeAction::Remove => "remove",
        };
        let event = event(
            EventKind::Update,
            json!({ name: self.code, "action": action }),
        );
        let (list, code) = (self.list, self.code);
        server
            .store
            .mutate(self.key, self.mutation, now, event, |cart| {
                let cart = cart.ok_or_else(no_cart)?;
                let changed = match self.action {
                    CodeAction::Remove => cart.remove_code(list, code),
                    CodeAction::Add if cart.codes(list).iter().any(|have| &**have == code) => false,
                    CodeAction::Add => {
                        if cart.codes(list).len() >= per_cart_max {
                            return Err(CommandError::limit(format!(
                                "cart has {per_cart_max} {plural} already"
                            )));
                        }
                        check(cart)?;
                        cart.add_code(list, code)
                    }
                };
                Ok(if changed {
                    Outcome::Changed
                } else {
                    Outcome::Unchanged
                })
            })
    }
}
