//! `GIFTSYNC`: what another cluster node asks of this one for a gift card this node decides
//! (`crate::peers::gift_cards` is the asking end). Each change is logged with the card before
//! the reply goes, so an answered hold or spend survives this node's restart.

use protocol::{CommandError, ErrorCode, GiftSync, Reply};

use super::pricing::code_text;
use crate::server::Server;

/// Runs one `GIFTSYNC` request. Cluster primaries only, for the cards they decide.
pub fn run(command: GiftSync, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let Some(peers) = &server.peers else {
        return Err(CommandError::err(
            "This instance has cluster support disabled",
        ));
    };
    let (GiftSync::Hold { code, token, .. }
    | GiftSync::Spend { code, token, .. }
    | GiftSync::Release { code, token }) = &command
    else {
        let GiftSync::Handover { slot, to } = &command else {
            unreachable!("every other request names a card");
        };
        return crate::slot_cards::hand_over(server, *slot, to);
    };
    let code_bytes = code.clone();
    let code = code_text(code, ErrorCode::GiftCard)?;
    let token = code_text(token, ErrorCode::Token)?;
    if peers.owners.owner_elsewhere(&code_bytes).is_some() {
        // The asking node's layout is behind (the card's slot moved): it may ask again.
        return Err(CommandError::new(
            ErrorCode::TryAgain,
            format!("gift card {code} is decided by another node than this one"),
        ));
    }
    let store = &server.store;
    Ok(match command {
        GiftSync::Hold {
            until_ms,
            amount_max,
            currency,
            ..
        } => {
            let ask = (amount_max, currency);
            match store.gift_card_hold_for_peer(code, token, ask, (until_ms, now))? {
                None => Reply::Null,
                Some(held) => Reply::Array(vec![
                    Reply::Integer(held.held),
                    Reply::text(held.card.currency.as_str()),
                    Reply::Integer(i64::from(held.card.holds_full)),
                ]),
            }
        }
        GiftSync::Spend { amount, .. } => {
            let spent = store.gift_card_spend_for_peer(code, token, amount, now)?;
            Reply::Array(vec![
                Reply::Integer(spent.amount),
                Reply::Integer(spent.balance),
                Reply::text(spent.currency.as_str()),
            ])
        }
        GiftSync::Release { .. } => Reply::Integer(i64::from(
            store.gift_card_release_for_peer(code, token, now),
        )),
        GiftSync::Handover { .. } => unreachable!("answered above"),
    })
}
