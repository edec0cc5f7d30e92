//! Gift cards moving with their hash slot (docs/CLUSTER.md "Resharding"). A card is decided
//! by the primary serving its code's slot, so when the slot changes hands its cards must
//! change hands at the same moment, whole: balance, every hold (the old owner's own
//! checkouts' and other nodes'), and the spends it remembers.
//!
//! The node taking the slot does it, at its `CLUSTER SETSLOT slot NODE <itself>` (redis-cli
//! tells the target first), before it records the move:
//!
//! 1. It asks the old owner `GIFTSYNC HANDOVER slot <its id>`. The old owner seals the slot's
//!    cards (under the registry's lock: from then on a change of one is refused with
//!    `-TRYAGAIN`, and so is a request for one from its own clients) and answers them whole.
//!    The answer starts with the old owner's term.
//! 2. It puts each card in place and logs it (dropping any other card of the slot it had: a
//!    copy an earlier move left), and waits until the log has it.
//! 3. It records the move (PostgreSQL, or its `slot-moves`) and decides the cards from then on.
//!    In PostgreSQL only while the old owner's group is still at the term it sealed under: a
//!    replica that took over since decides the cards as it had them, and the move is refused
//!    (`-TRYAGAIN`) to be run again.
//! 4. The old owner, once its layout gives the slot away, drops its sealed copies, logged as
//!    moved (PostgreSQL's row is the new owner's to write: its term is the higher one). A seal
//!    lives in memory: a node that starts serving as a primary (restarted, or its replica
//!    promoted) drops the cards of every slot another group serves, except those importing.
//!
//! A step that fails leaves the move unrecorded and can be run again: a second HANDOVER
//! answers the same sealed cards, and taking a card again replaces it. `SETSLOT slot STABLE`
//! or `MIGRATING` on the old owner lifts the seal (the slot stays there). The old owner
//! refuses `SETSLOT slot NODE <other>` while it holds cards of the slot not handed over.

use std::collections::HashSet;

use bytes::Bytes;
use protocol::{CommandError, ErrorCode, Reply};
use tracing::info;

use crate::peers::wire::Value;
use crate::server::{now_ms, Server};

/// Whether `code` is a card of hash slot `slot`.
fn in_slot(slot: u16) -> impl Fn(&str) -> bool {
    move |code: &str| cluster::key_slot(code.as_bytes()) == slot
}

/// Runs `change` (no await inside: what it logs is noted per thread) and waits until the log
/// has what it appended, so a crash after the reply finds it there.
async fn logged<T>(server: &Server, change: impl FnOnce() -> T) -> T {
    crate::store::take_appended_lsn();
    let done = change();
    let lsn = crate::store::take_appended_lsn();
    if let (Some(durability), true) = (server.durability.get(), lsn > 0) {
        durability.wal.wait_ack(lsn).await;
    }
    done
}

/// `GIFTSYNC HANDOVER slot node-id` at the node serving `slot`: its cards are sealed and sent.
pub fn hand_over(server: &Server, slot: u16, to: &[u8]) -> Result<Reply, CommandError> {
    let (Some(layout), Some(peers)) = (server.layout(), server.peers.as_ref()) else {
        return Err(CommandError::err(
            "This instance has cluster support disabled",
        ));
    };
    let to_name = String::from_utf8_lossy(to);
    let taker = layout
        .index_of(&to_name)
        .filter(|&at| at != layout.me && layout.nodes[at].replica_of.is_none())
        .ok_or_else(|| CommandError::err(format!("{to_name} is not another primary")))?;
    if layout.owner_index(slot) != Some(layout.me) {
        return Err(CommandError::err(format!(
            "I'm not the owner of hash slot {slot}"
        )));
    }
    peers.owners.seal(slot, taker);
    let sealed = server.store.gift_cards_seal(in_slot(slot), now_ms());
    info!(
        slot,
        cards = sealed.len(),
        to = %to_name,
        "the gift cards of a hash slot are sealed for the node taking it"
    );
    let term = i64::try_from(server.failover.term()).unwrap_or(i64::MAX);
    let mut reply = Vec::with_capacity(1 + 2 * sealed.len());
    reply.push(Reply::Integer(term));
    for (card, image) in sealed {
        reply.push(Reply::Bulk(Bytes::from(card.code.into_string())));
        reply.push(Reply::Bulk(Bytes::from(image)));
    }
    Ok(Reply::Array(reply))
}

/// At `CLUSTER SETSLOT slot NODE <this node>`, before the move is recorded: the slot's cards
/// from the primary at layout index `owner`, which serves it now, put in place and logged
/// (and any other card of the slot this node had, a copy left by an earlier move, dropped:
/// the owner's are all there are). The owner's term when it sealed them, `None` outside a
/// cluster.
pub async fn take_over(
    server: &Server,
    slot: u16,
    owner: usize,
) -> Result<Option<u64>, CommandError> {
    let (Some(layout), Some(peers)) = (server.layout(), server.peers.as_ref()) else {
        return Ok(None);
    };
    let unavailable = |why: String| {
        CommandError::new(
            ErrorCode::TryAgain,
            format!(
                "cannot take hash slot {slot}'s gift cards from {}, which serves it: {why}",
                layout.nodes[owner].id
            ),
        )
    };
    let slot_text = slot.to_string();
    let words: [&[u8]; 4] = [
        b"GIFTSYNC",
        b"HANDOVER",
        slot_text.as_bytes(),
        layout.myself().id.as_bytes(),
    ];
    let value = peers.calls.call(owner, &words).await.map_err(unavailable)?;
    let (term, items) = match value {
        Value::Array(Some(items)) if items.len() % 2 == 1 => match &items[0] {
            &Value::Integer(term) => (term, items),
            other => return Err(unavailable(format!("it answered a term of {other:?}"))),
        },
        Value::Error(error) => return Err(unavailable(error)),
        other => return Err(unavailable(format!("it answered {other:?}"))),
    };
    let now = now_ms();
    let (cards, dropped) = logged(server, || {
        let mut handed = HashSet::with_capacity(items.len() / 2);
        for pair in items[1..].chunks(2) {
            let [Value::Bulk(Some(code)), Value::Bulk(Some(image))] = pair else {
                return Err(unavailable(format!("it answered {pair:?}")));
            };
            let code =
                std::str::from_utf8(code).map_err(|_| unavailable("a code not UTF-8".into()))?;
            if !in_slot(slot)(code) {
                return Err(unavailable(format!("it sent card {code} of another slot")));
            }
            server
                .store
                .gift_card_adopt(code, image, now)
                .map_err(unavailable)?;
            handed.insert(code.to_owned());
        }
        let stale = |code: &str| in_slot(slot)(code) && !handed.contains(code);
        let dropped = server.store.gift_cards_drop_moved(stale, false, now);
        Ok((handed.len(), dropped))
    })
    .await?;
    info!(
        slot,
        cards, dropped, "the gift cards of a hash slot taken over"
    );
    Ok(Some(u64::try_from(term).unwrap_or_default()))
}

/// Refuses to give `slot` away from here while cards of it are not handed over (their new
/// owner would not have them).
pub fn refuse_unsealed(server: &Server, slot: u16, to: &str) -> Result<(), CommandError> {
    let cards = server.store.gift_cards.count_unsealed(in_slot(slot));
    if cards == 0 {
        return Ok(());
    }
    Err(CommandError::err(format!(
        "Can't assign hashslot {slot} to a different node while I still hold {cards} gift \
         card(s) for this hash slot: send CLUSTER SETSLOT {slot} NODE {to} to {to} first, which \
         takes them"
    )))
}

/// Lifts the seal of `slot`'s cards here (a move stopped before it was recorded: the slot
/// stays here, and so do they). The node that took them may have written their PostgreSQL
/// rows under its term, which is higher (raised for the import): this group's term is raised
/// above it first and each card logged again, so the rows are this node's again and its
/// later changes reach PostgreSQL. Refused (`-TRYAGAIN`, the seal kept) while that cannot be.
pub async fn unseal(server: &Server, slot: u16) -> Result<(), CommandError> {
    let Some(peers) = server.peers.as_ref() else {
        return Ok(());
    };
    if !peers.owners.is_sealed(slot) {
        return Ok(());
    }
    crate::migration::raise_term(server, "to take back the gift cards of a slot that stays")
        .await?;
    peers.owners.unseal(slot);
    let cards = logged(server, || {
        server.store.gift_cards_unseal(in_slot(slot), now_ms())
    })
    .await;
    info!(
        slot,
        cards, "the gift cards of a hash slot that stays here are unsealed"
    );
    Ok(())
}

/// After the layout changed: the sealed cards of each slot another node serves now are
/// dropped here (that node has them).
pub fn drop_moved(server: &Server) {
    let (Some(layout), Some(peers)) = (server.layout(), server.peers.as_ref()) else {
        return;
    };
    for slot in peers.owners.sealed_slots() {
        if layout.owner_index(slot) == Some(layout.me) {
            continue;
        }
        peers.owners.unseal(slot);
        let cards = server
            .store
            .gift_cards_drop_moved(in_slot(slot), true, now_ms());
        info!(
            slot,
            cards, "the gift cards of a hash slot now served elsewhere are dropped here"
        );
    }
}

/// When this node starts serving as a primary (at its start, or promoted): the cards of
/// slots another group serves are dropped here. They are copies left behind by a move whose
/// last step this node never made: it was stopped between the new owner's record of the move
/// and its own drop (a seal lives in memory only), or it was the old owner's replica. Slots
/// being imported here keep theirs (they may be on their way in).
pub fn drop_foreign(server: &Server) {
    drop_foreign_of(server, |_| true);
}

/// At `SETSLOT slot STABLE` on a primary that does not serve `slot`: the cards it took for a
/// move that stopped before it was recorded are dropped (the slot's owner kept them).
pub fn drop_stopped_import(server: &Server, slot: u16) {
    drop_foreign_of(server, |of| of == slot);
}

/// Drops, on a primary, the cards of the slots `picked` picks that another group serves and
/// that are not being imported here.
fn drop_foreign_of(server: &Server, picked: impl Fn(u16) -> bool) {
    let Some(layout) = server.layout() else {
        return;
    };
    if layout.myself().replica_of.is_some() {
        return;
    }
    let group = layout.myself().group;
    let foreign = |code: &str| {
        let slot = cluster::key_slot(code.as_bytes());
        if !picked(slot) {
            return false;
        }
        let served_by = layout.group_of_slot(slot);
        served_by.is_some_and(|served_by| served_by != group) && !server.slots.importing(slot)
    };
    let cards = server.store.gift_cards_drop_moved(foreign, false, now_ms());
    if cards > 0 {
        info!(
            cards,
            "gift cards of hash slots other groups serve are dropped here (left by a move)"
        );
    }
}
