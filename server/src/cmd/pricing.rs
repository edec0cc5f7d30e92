//! `PROMO.SET/GET/DEL` and `GIFTCARD.SET/GET/DEL`: the server-wide promotions and gift cards.

use protocol::{
    CommandError, ErrorCode, GiftCardDel, GiftCardGet, GiftCardSet, PromoDel, PromoGet, PromoSet,
    Reply,
};

use crate::peers::gift_cards::{answered_elsewhere, Prepared};
use crate::pricing::promo::Promotion;
use crate::server::Server;

/// A promo or gift card code as text; codes are UTF-8.
pub(super) fn code_text(code: &[u8], kind: ErrorCode) -> Result<&str, CommandError> {
    std::str::from_utf8(code).map_err(|_| CommandError::new(kind, "the code is not UTF-8 text"))
}

/// `PROMO.SET code json`: validates the document, then defines or replaces the promotion.
pub fn promo_set(cmd: PromoSet, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let code = code_text(&cmd.code, ErrorCode::Promo)?;
    let promo = Promotion::from_json(&cmd.json)
        .map_err(|reason| CommandError::new(ErrorCode::Promo, reason))?;
    server
        .store
        .promo_set(code, promo, now)
        .map_err(CommandError::limit)?;
    Ok(Reply::ok())
}

/// `PROMO.GET code`: the document as cartd understood it (JSON), or null.
pub fn promo_get(cmd: PromoGet, server: &Server) -> Result<Reply, CommandError> {
    let code = code_text(&cmd.code, ErrorCode::Promo)?;
    Ok(match server.store.promotions.get(code) {
        Some(promo) => Reply::Bulk(promo.to_json().to_string().into()),
        None => Reply::Null,
    })
}

/// `PROMO.DEL code`: 1 if it existed. Carts holding the code keep it, reported not applied.
pub fn promo_del(cmd: PromoDel, server: &Server, now: u64) -> Result<Reply, CommandError> {
    let code = code_text(&cmd.code, ErrorCode::Promo)?;
    Ok(Reply::Integer(i64::from(
        server.store.promo_remove(code, now),
    )))
}

/// `GIFTCARD.SET code balance currency`: defines a card or replaces its balance. Refused
/// (`-GIFTCARD`) below what checkouts in progress hold on it. In a cluster the three
/// GIFTCARD commands of a card another node decides answer what that node answered
/// (`prepared`, asked before they run).
pub fn gift_card_set(
    cmd: GiftCardSet,
    server: &Server,
    now: u64,
    prepared: Option<Prepared>,
) -> Result<Reply, CommandError> {
    let code = code_text(&cmd.code, ErrorCode::GiftCard)?;
    if let Some(answer) = answered_elsewhere(code, server, prepared)? {
        return Ok(answer);
    }
    server
        .store
        .gift_card_set(code, cmd.balance, cmd.currency, now)?;
    Ok(Reply::ok())
}

/// `GIFTCARD.GET code`: balance, currency, held (reserved by checkouts) and available; null
/// for an unknown card.
pub fn gift_card_get(
    cmd: GiftCardGet,
    server: &Server,
    now: u64,
    prepared: Option<Prepared>,
) -> Result<Reply, CommandError> {
    let code = code_text(&cmd.code, ErrorCode::GiftCard)?;
    if let Some(answer) = answered_elsewhere(code, server, prepared)? {
        return Ok(answer);
    }
    let Some(card) = server.store.gift_cards.get(code, now) else {
        return Ok(Reply::Null);
    };
    Ok(Reply::Map(vec![
        (Reply::from_static("balance"), Reply::Integer(card.balance)),
        (
            Reply::from_static("currency"),
            Reply::text(card.currency.as_str()),
        ),
        (Reply::from_static("held"), Reply::Integer(card.held)),
        (
            Reply::from_static("holds"),
            Reply::Integer(i64::try_from(card.holds).unwrap_or(i64::MAX)),
        ),
        (
            Reply::from_static("available"),
            Reply::Integer((card.balance - card.held).max(0)),
        ),
    ]))
}

/// `GIFTCARD.DEL code`: 1 if it existed. Refused (`-GIFTCARD`) while checkouts hold part of it.
pub fn gift_card_del(
    cmd: GiftCardDel,
    server: &Server,
    now: u64,
    prepared: Option<Prepared>,
) -> Result<Reply, CommandError> {
    let code = code_text(&cmd.code, ErrorCode::GiftCard)?;
    if let Some(answer) = answered_elsewhere(code, server, prepared)? {
        return Ok(answer);
    }
    let removed = server.store.gift_card_remove(code, now)?;
    Ok(Reply::Integer(i64::from(removed)))
}
