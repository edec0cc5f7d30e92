//! Gift cards across the cluster: a card is decided by the primary serving its code's slot
//! (its owner). A request on another node that needs the owner asks it first, in a pre-step
//! the connection awaits before the request runs (no thread waits on the network; see
//! [`before_command`]), and the request then runs with what the owner answered:
//!
//! - `GIFTCARD.SET|GET|DEL` are forwarded as they are; the owner's answer is the answer.
//! - `CART.GIFTCARD ... ADD code` asks the owner for the card (`GIFTCARD.GET`), so the check
//!   that it exists, is in the cart's currency and has a balance sees the owner's card.
//! - `CART.CHECKOUT` chooses the checkout's token first and asks each owner to hold what the
//!   card would pay (`GIFTSYNC HOLD`); the checkout then pays at most that from it.
//! - `CART.COMPLETE` asks each owner to spend what the frozen checkout pays with its card
//!   (`GIFTSYNC SPEND`, once per token however often it is asked), then completes.
//! - A checkout released, run out or deleted asks the owners to release without waiting
//!   ([`Owners::release`], a bounded queue); a hold not released runs out at the checkout's
//!   own hold time anyway, the same `until_ms` on both nodes.
//!
//! A card this node owns takes none of this: the command runs as it does standalone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use protocol::{Command, CommandError, CommandId, CommandSpec, Currency, ErrorCode, Reply};
use tokio::sync::mpsc;

use super::calls::Calls;
use super::wire::Value;
use crate::limits::PEER_RELEASE_QUEUE_MAX;
use crate::pricing::{Availability, Spent};
use crate::server::Server;
use crate::store::{CardOwners, HeldElsewhere};

/// A release waiting to be sent: the owner's layout index, the token, the card.
pub type Release = (usize, Box<str>, Box<str>);

/// Who owns which card, and the queue of releases for the owners.
pub struct Owners {
    topology: Arc<cluster::Topology>,
    releases: mpsc::Sender<Release>,
    /// Releases not queued because the queue was full (their holds run out by themselves).
    pub releases_dropped: AtomicU64,
    /// Slots whose cards this node handed to the node taking the slot (its layout index),
    /// which decides them from then on ([`crate::slot_cards`]).
    sealed: Mutex<HashMap<u16, usize>>,
    any_sealed: AtomicBool,
}

impl Owners {
    /// The owners of `layout`'s slots, and the receiving end of their release queue.
    pub fn new(topology: Arc<cluster::Topology>) -> (Arc<Owners>, mpsc::Receiver<Release>) {
        let (releases, receiver) = mpsc::channel(PEER_RELEASE_QUEUE_MAX);
        let owners = Owners {
            topology,
            releases,
            releases_dropped: AtomicU64::new(0),
            sealed: Mutex::new(HashMap::new()),
            any_sealed: AtomicBool::new(false),
        };
        (Arc::new(owners), receiver)
    }

    /// The layout index of the primary deciding card `code`, when that is not this node (a
    /// slot nobody serves leaves its cards here).
    pub fn owner_elsewhere(&self, code: &[u8]) -> Option<usize> {
        let layout = self.topology.load();
        let slot = cluster::key_slot(code);
        if self.any_sealed.load(Ordering::Acquire) {
            if let Some(&taker) = self.sealed.lock().get(&slot) {
                return Some(taker);
            }
        }
        let owner = layout.owner_index(slot)?;
        (owner != layout.me).then_some(owner)
    }

    /// Whether card `code`'s slot is sealed here: handed to the node taking it, which does not
    /// decide it before it has recorded the move.
    pub fn sealed(&self, code: &[u8]) -> bool {
        self.any_sealed.load(Ordering::Acquire)
            && self.sealed.lock().contains_key(&cluster::key_slot(code))
    }

    /// The cards of `slot` are the node at layout index `taker`'s to decide from now on.
    pub fn seal(&self, slot: u16, taker: usize) {
        let mut sealed = self.sealed.lock();
        sealed.insert(slot, taker);
        self.any_sealed.store(true, Ordering::Release);
    }

    /// The cards of `slot` are this node's to decide again; whether they were sealed.
    pub fn unseal(&self, slot: u16) -> bool {
        let mut sealed = self.sealed.lock();
        let was = sealed.remove(&slot).is_some();
        self.any_sealed.store(!sealed.is_empty(), Ordering::Release);
        was
    }

    /// Whether `slot`'s cards are sealed here.
    pub fn is_sealed(&self, slot: u16) -> bool {
        self.any_sealed.load(Ordering::Acquire) && self.sealed.lock().contains_key(&slot)
    }

    /// The slots whose cards are sealed here.
    pub fn sealed_slots(&self) -> Vec<u16> {
        if !self.any_sealed.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.sealed.lock().keys().copied().collect()
    }
}

impl CardOwners for Arc<Owners> {
    fn elsewhere(&self, code: &str) -> bool {
        self.owner_elsewhere(code.as_bytes()).is_some()
    }

    fn release(&self, token: &str, code: &str) {
        let Some(owner) = self.owner_elsewhere(code.as_bytes()) else {
            return;
        };
        if self
            .releases
            .try_send((owner, token.into(), code.into()))
            .is_err()
        {
            self.releases_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends the queued releases, one at a time, until the server stops. One that fails is
/// dropped: its hold runs out at its time.
pub async fn send_releases(server: Arc<Server>, mut queue: mpsc::Receiver<Release>) {
    let Some(peers) = server.peers.clone() else {
        return;
    };
    loop {
        let next = tokio::select! {
            next = queue.recv() => next,
            () = server.shutdown.cancelled() => return,
        };
        let Some((owner, token, code)) = next else {
            return;
        };
        let words: [&[u8]; 4] = [b"GIFTSYNC", b"RELEASE", code.as_bytes(), token.as_bytes()];
        if let Err(why) = peers.calls.call(owner, &words).await {
            tracing::debug!(%code, %why, "a gift card hold could not be released at its owner; it runs out by itself");
        }
    }
}

/// What a request needs of other nodes before it runs.
#[derive(Debug)]
pub enum Call {
    /// A request about a card whose slot is changing hands this moment: `-TRYAGAIN`, asking
    /// no one (sent on, the node taking the slot would send it back here until it has
    /// recorded the move).
    Moving(Bytes),
    /// `GIFTCARD.SET|GET|DEL` of a card another node owns: sent there as it is.
    Forward {
        /// The owner's layout index.
        owner: usize,
        /// The request.
        args: Vec<Bytes>,
    },
    /// `CART.GIFTCARD ADD` of a card another node owns: the card as the owner has it.
    Look {
        /// The owner's layout index.
        owner: usize,
        /// The card.
        code: Bytes,
    },
    /// `CART.CHECKOUT`: a hold of each card decided elsewhere, for a token chosen now.
    Hold {
        /// The token, the hold's end, and the cards (filled in by the answers).
        held: HeldElsewhere,
        /// The cart's currency.
        currency: Currency,
        /// For each card of `held`: its owner's layout index and what to hold at most.
        asks: Vec<(usize, i64)>,
    },
    /// `CART.COMPLETE`: a spend of each card decided elsewhere.
    Spend {
        /// The checkout's token.
        token: Bytes,
        /// Each card: its owner's layout index, its code, what the checkout pays with it.
        spends: Vec<(usize, Box<str>, i64)>,
    },
}

/// What the other nodes answered, for the request to run with (taken by its handler).
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// The owner's answer to a forwarded `GIFTCARD.*`.
    Answer(Reply),
    /// The card `CART.GIFTCARD ADD` names, as its owner has it (`None`: unknown there).
    Card(Option<Availability>),
    /// What the owners hold for the checkout.
    Held(HeldElsewhere),
    /// What the owners spent for the completion.
    Spent(Vec<Spent>),
    /// An owner could not be asked, or refused: the request answers this and does nothing.
    Failed(CommandError),
}

/// What a handler of a command about card `code` answers, given what the pre-step got:
/// the owner's answer or its failure (`Some`), or `None` to run here, when this node decides
/// the card. A card decided elsewhere whose owner was not asked (inside MULTI: EXEC runs no
/// pre-steps) is refused rather than decided here.
pub fn answered_elsewhere(
    code: &str,
    server: &Server,
    prepared: Option<Prepared>,
) -> Result<Option<Reply>, CommandError> {
    match prepared {
        Some(Prepared::Answer(answer)) => Ok(Some(answer)),
        Some(Prepared::Failed(error)) => Err(error),
        _ if server.store.decided_elsewhere(code) => Err(not_asked(code)),
        _ => Ok(None),
    }
}

/// The refusal of a command about a card decided elsewhere whose owner was not asked.
pub fn not_asked(code: &str) -> CommandError {
    CommandError::new(
        ErrorCode::TryAgain,
        format!("gift card {code} is decided by another cluster node, which was not asked (inside MULTI, or the cart changed meanwhile); send it again outside MULTI"),
    )
}

/// The call `args` needs before it runs, if any: only in a cluster, only for a card another
/// primary owns. Cheap when it needs none (one slot lookup, or one cart read for CHECKOUT and
/// COMPLETE of a cart with gift cards).
pub fn before_command(
    args: &[Bytes],
    spec: &CommandSpec,
    server: &Server,
    now_ms: u64,
) -> Option<Call> {
    let owners = &server.peers.as_ref()?.owners;
    match spec.id {
        CommandId::GiftCardSet | CommandId::GiftCardGet | CommandId::GiftCardDel => {
            if owners.sealed(args.get(1)?) {
                return Some(Call::Moving(args[1].clone()));
            }
            let owner = owners.owner_elsewhere(args.get(1)?)?;
            Some(Call::Forward {
                owner,
                args: args.to_vec(),
            })
        }
        CommandId::CartGiftCard if args.get(2)?.eq_ignore_ascii_case(b"ADD") => {
            let code = args.get(3)?;
            if owners.sealed(code) {
                return Some(Call::Moving(code.clone()));
            }
            let owner = owners.owner_elsewhere(code)?;
            Some(Call::Look {
                owner,
                code: code.clone(),
            })
        }
        CommandId::CartCheckout => {
            // The cart first: a checkout paying with no card decided elsewhere (the usual
            // one) costs one cart read here and nothing more.
            let asks = server.store.hold_asks(args.get(1)?, now_ms)?;
            let Ok(Command::CartCheckout(cmd)) = Command::parse(args.to_vec()) else {
                return None; // The command answers its own parse error.
            };
            let hold_ms = cmd
                .hold_s
                .map_or(server.store.config.checkout_hold_ms, |seconds| {
                    seconds * 1000
                });
            let owner_of = |code: &str| owners.owner_elsewhere(code.as_bytes());
            let held = HeldElsewhere {
                token: crate::store::new_token(),
                hold_until_ms: now_ms + hold_ms,
                cards: asks
                    .asks
                    .iter()
                    .map(|(code, _)| (code.clone(), None))
                    .collect(),
            };
            let currency = asks.currency;
            let asks = asks.asks.iter();
            let asks = asks.map(|(code, amount)| Some((owner_of(code)?, *amount)));
            Some(Call::Hold {
                held,
                currency,
                asks: asks.collect::<Option<Vec<_>>>()?,
            })
        }
        CommandId::CartComplete => {
            let (key, token) = (args.get(1)?, args.get(2)?);
            let spends = server.store.spends_elsewhere(key, token, now_ms)?;
            let spends = spends.into_iter().map(|(code, amount)| {
                Some((owners.owner_elsewhere(code.as_bytes())?, code, amount))
            });
            Some(Call::Spend {
                token: token.clone(),
                spends: spends.collect::<Option<Vec<_>>>()?,
            })
        }
        _ => None,
    }
}

/// Lets go of what a pre-step got that its command did not take (it was refused before its
/// handler ran, say): holds taken for a checkout that did not run are released at their
/// owners. (A spend not taken needs nothing: the completion sent again is answered it.)
pub fn abandon(prepared: Option<Prepared>, owners: &Arc<Owners>) {
    if let Some(Prepared::Held(held)) = prepared {
        for (code, card) in &held.cards {
            if card.is_some_and(|card| card.available > 0) {
                owners.release(&held.token, code);
            }
        }
    }
}

/// Makes the calls `call` needs and says what they answered.
pub async fn run(call: Call, server: &Server) -> Prepared {
    let Some(peers) = &server.peers else {
        return Prepared::Failed(CommandError::err("not a cluster node"));
    };
    let calls = &peers.calls;
    let result = match call {
        Call::Moving(code) => Err(CommandError::new(
            ErrorCode::TryAgain,
            format!(
                "gift card {} is moving with its hash slot to another cluster node; try again",
                String::from_utf8_lossy(&code)
            ),
        )),
        Call::Forward { owner, args } => forward(calls, owner, &args).await,
        Call::Look { owner, code } => look(calls, owner, &code).await,
        Call::Hold {
            held,
            currency,
            asks,
        } => hold((calls, &peers.owners), held, currency, &asks).await,
        Call::Spend { token, spends } => spend(calls, &token, &spends).await,
    };
    result.unwrap_or_else(Prepared::Failed)
}

/// The owner could not be asked: the request did nothing, and may be sent again.
fn unreachable_owner(why: &str) -> CommandError {
    CommandError::new(
        ErrorCode::TryAgain,
        format!("the cluster node deciding this gift card could not be asked ({why}); try again"),
    )
}

async fn forward(calls: &Calls, owner: usize, args: &[Bytes]) -> Result<Prepared, CommandError> {
    let words: Vec<&[u8]> = args.iter().map(|arg| &arg[..]).collect();
    let value = calls
        .call(owner, &words)
        .await
        .map_err(|why| unreachable_owner(&why))?;
    let is_get = args[0].eq_ignore_ascii_case(b"GIFTCARD.GET");
    Ok(Prepared::Answer(reply_of(value, is_get)))
}

async fn look(calls: &Calls, owner: usize, code: &[u8]) -> Result<Prepared, CommandError> {
    let words: [&[u8]; 2] = [b"GIFTCARD.GET", code];
    let value = calls
        .call(owner, &words)
        .await
        .map_err(|why| unreachable_owner(&why))?;
    let field = |fields: &[Value], name: &[u8]| {
        let at = fields
            .chunks(2)
            .position(|pair| pair[0] == Value::Bulk(Some(Bytes::copy_from_slice(name))))?;
        fields.get(2 * at + 1).cloned()
    };
    match value {
        Value::Bulk(None) | Value::Array(None) => Ok(Prepared::Card(None)),
        Value::Array(Some(fields)) => {
            let available = match field(&fields, b"available") {
                Some(Value::Integer(available)) => available,
                _ => return Err(unreachable_owner("GIFTCARD.GET answered without available")),
            };
            let currency = match field(&fields, b"currency") {
                Some(Value::Bulk(Some(text))) => Currency::parse(&text).ok(),
                _ => None,
            };
            let currency = currency.ok_or_else(|| unreachable_owner("no currency"))?;
            Ok(Prepared::Card(Some(Availability {
                available,
                currency,
                holds_full: false,
            })))
        }
        Value::Error(error) => Err(error_of(&error)),
        other => Err(unreachable_owner(&format!(
            "GIFTCARD.GET answered {other:?}"
        ))),
    }
}

/// Asks each owner to hold its card for the checkout; the first that cannot be asked, or
/// refuses, fails it all, and what the others held is released.
async fn hold(
    (calls, owners): (&Calls, &Arc<Owners>),
    mut held: HeldElsewhere,
    currency: Currency,
    asks: &[(usize, i64)],
) -> Result<Prepared, CommandError> {
    let until = held.hold_until_ms.to_string();
    let token = held.token.clone();
    for ((code, card), (owner, amount)) in held.cards.iter_mut().zip(asks) {
        if *amount <= 0 {
            // The cart needs nothing from it: nothing to hold, and it pays nothing.
            *card = Some(Availability {
                available: 0,
                currency,
                holds_full: false,
            });
            continue;
        }
        let amount = amount.to_string();
        let words: [&[u8]; 7] = [
            b"GIFTSYNC",
            b"HOLD",
            code.as_bytes(),
            token.as_bytes(),
            until.as_bytes(),
            amount.as_bytes(),
            currency.as_str().as_bytes(),
        ];
        let answer = match calls.call(*owner, &words).await {
            Ok(Value::Array(Some(fields))) => held_card(&fields),
            Ok(Value::Bulk(None) | Value::Array(None)) => Ok(None),
            Ok(Value::Error(error)) => Err(error_of(&error)),
            Ok(other) => Err(unreachable_owner(&format!(
                "GIFTSYNC HOLD answered {other:?}"
            ))),
            Err(why) => Err(unreachable_owner(&why)),
        };
        match answer {
            Ok(answer) => *card = answer,
            Err(error) => {
                abandon(Some(Prepared::Held(held)), owners);
                return Err(error);
            }
        }
    }
    Ok(Prepared::Held(held))
}

/// A `GIFTSYNC HOLD` answer, `[held, currency, holds_full]`, as the checkout's pricing sees
/// the card.
fn held_card(fields: &[Value]) -> Result<Option<Availability>, CommandError> {
    let bad = || unreachable_owner(&format!("GIFTSYNC HOLD answered {fields:?}"));
    let [Value::Integer(held), Value::Bulk(Some(currency)), Value::Integer(full)] = fields else {
        return Err(bad());
    };
    Ok(Some(Availability {
        available: *held,
        currency: Currency::parse(currency).map_err(|_| bad())?,
        holds_full: *full != 0,
    }))
}

/// Asks each owner to spend what the checkout pays with its card. One that fails fails the
/// completion (which then changes nothing here): what others spent stays spent for the
/// token, and the completion asked again takes it no second time.
async fn spend(
    calls: &Calls,
    token: &[u8],
    spends: &[(usize, Box<str>, i64)],
) -> Result<Prepared, CommandError> {
    let mut spent = Vec::with_capacity(spends.len());
    for (owner, code, amount) in spends {
        let amount_text = amount.to_string();
        let words: [&[u8]; 5] = [
            b"GIFTSYNC",
            b"SPEND",
            code.as_bytes(),
            token,
            amount_text.as_bytes(),
        ];
        let value = calls
            .call(*owner, &words)
            .await
            .map_err(|why| unreachable_owner(&why))?;
        let bad = |value: &Value| unreachable_owner(&format!("GIFTSYNC SPEND answered {value:?}"));
        let Value::Array(Some(fields)) = &value else {
            return Err(match value {
                Value::Error(error) => error_of(&error),
                other => bad(&other),
            });
        };
        let [Value::Integer(taken), Value::Integer(balance), Value::Bulk(Some(currency))] =
            &fields[..]
        else {
            return Err(bad(&value));
        };
        spent.push(Spent {
            code: code.clone(),
            amount: *taken,
            balance: *balance,
            currency: Currency::parse(currency).map_err(|_| bad(&value))?,
            peer_holds: Default::default(),
        });
    }
    Ok(Prepared::Spent(spent))
}

/// An error reply from a peer as this node answers it: its code kept when cartd knows it.
fn error_of(line: &str) -> CommandError {
    let (code, message) = line.split_once(' ').unwrap_or((line, ""));
    match ErrorCode::ALL.iter().find(|known| known.as_str() == code) {
        Some(&known) => CommandError::new(known, message),
        None => CommandError::err(line.to_string()),
    }
}

/// A peer's RESP2 reply as this node's reply; `map`: an even array is a map (GIFTCARD.GET's,
/// flattened on the wire), so a RESP3 client gets the map it would get from the owner.
fn reply_of(value: Value, map: bool) -> Reply {
    match value {
        Value::Simple(text) if text == "OK" => Reply::ok(),
        Value::Simple(text) => Reply::Simple(text.into()),
        Value::Error(error) => Reply::Error(error_of(&error)),
        Value::Integer(number) => Reply::Integer(number),
        Value::Bulk(Some(bytes)) => Reply::Bulk(bytes),
        Value::Bulk(None) => Reply::Null,
        Value::Array(None) => Reply::NullArray,
        Value::Array(Some(items)) if map && items.len() % 2 == 0 => {
            let mut items = items.into_iter().map(|item| reply_of(item, false));
            let mut pairs = Vec::new();
            while let (Some(name), Some(value)) = (items.next(), items.next()) {
                pairs.push((name, value));
            }
            Reply::Map(pairs)
        }
        Value::Array(Some(items)) => Reply::Array(
            items
                .into_iter()
                .map(|item| reply_of(item, false))
                .collect(),
        ),
    }
}
