//! Command handlers: what cartd does with each parsed command. `CART.ADD` is
//! `cmd/cart_add.rs`; the connection, keyspace and server commands share a file per group.

mod acl;
mod cart_add;
mod cart_checkout;
mod cart_clear;
mod cart_get;
mod cart_handoff;
mod cart_merge;
mod cart_promo;
mod cart_remove;
mod cart_restore;
mod cart_save;
mod cart_set;
mod catalog;
mod cluster;
mod config_set;
pub mod connection;
mod giftsync;
mod introspection;
mod keyspace;
mod memory;
mod pricing;
pub mod pubsub;
mod refsync;
mod replication;
mod server;
mod snapshots;

use persistence::{Event, EventKind};
use protocol::{Command, CommandError, ErrorCode, Reply};

use crate::cart::{LineKey, Names};
use crate::dispatch::Session;
use crate::server::{now_ms, Server};
use crate::store::no_cart;

/// Runs a parsed command. `None`: no reply (SHUTDOWN closes the connection instead).
// One arm per command: a dispatch table more than logic, kept whole so it stays exhaustive.
#[allow(clippy::too_many_lines)]
pub fn run(command: Command, session: &mut Session, server: &Server) -> Option<Reply> {
    let now = now_ms();
    if !matches!(command, Command::Asking) {
        session.asking = false;
    }
    let result = match command {
        Command::CartAdd(cmd) => cart_add::apply(cmd, server, now),
        Command::CartSet(cmd) => cart_set::apply(cmd, server, now),
        Command::CartRemove(cmd) => cart_remove::apply(cmd, server, now),
        Command::CartGet(cmd) => Ok(cart_get::apply(cmd, server, now, session)),
        Command::CartClear(cmd) => cart_clear::apply(cmd, server, now),
        Command::CartMerge(cmd) => cart_merge::apply(cmd, server, now, session.take_handed()),
        Command::CartHandoff(cmd) => cart_handoff::hand_off(cmd, server, now),
        Command::CartHandoffDone(cmd) => Ok(cart_handoff::done(cmd, server, now)),
        Command::Asking => asking(session, server),
        Command::Migrate(_)
        | Command::Cluster(
            protocol::cmd::ClusterCommand::SetSlot(..)
            | protocol::cmd::ClusterCommand::Meet(..)
            | protocol::cmd::ClusterCommand::Forget(_)
            | protocol::cmd::ClusterCommand::Reset
            | protocol::cmd::ClusterCommand::Member(_)
            | protocol::cmd::ClusterCommand::Replicate(_),
        ) => session.slot_reply.take().unwrap_or_else(|| {
            Err(CommandError::err(
                "MIGRATE, CLUSTER SETSLOT and the CLUSTER membership subcommands cannot run inside MULTI",
            ))
        }),
        Command::CartImport(cmd) => cart_import(&cmd, server, now),
        Command::CartSave(cmd) => cart_save::apply(cmd, server, now),
        Command::CartRestore(cmd) => cart_restore::apply(cmd, server, now),
        Command::CatalogSet(cmd) => catalog::set(cmd, server, now),
        Command::CatalogGet(cmd) => Ok(catalog::get(cmd, server)),
        Command::CatalogDel(cmd) => Ok(catalog::del(cmd, server, now)),
        Command::StockSet(cmd) => catalog::stock_set(cmd, server, now),
        Command::PromoSet(cmd) => pricing::promo_set(cmd, server, now),
        Command::PromoGet(cmd) => pricing::promo_get(cmd, server),
        Command::PromoDel(cmd) => pricing::promo_del(cmd, server, now),
        Command::GiftCardSet(cmd) => {
            pricing::gift_card_set(cmd, server, now, session.take_gift_cards())
        }
        Command::GiftCardGet(cmd) => {
            pricing::gift_card_get(cmd, server, now, session.take_gift_cards())
        }
        Command::GiftCardDel(cmd) => {
            pricing::gift_card_del(cmd, server, now, session.take_gift_cards())
        }
        Command::CartPromo(cmd) => cart_promo::promo(cmd, server, now),
        Command::CartGiftCard(cmd) => {
            cart_promo::gift_card(cmd, server, now, session.take_gift_cards())
        }
        Command::CartCheckout(cmd) => {
            let prepared = session.take_gift_cards();
            cart_checkout::checkout(cmd, server, now, (session.upstream_stale, prepared))
        }
        Command::CartComplete(cmd) => {
            cart_checkout::complete(cmd, server, now, session.take_gift_cards())
        }
        Command::CartRelease(cmd) => cart_checkout::release(cmd, server, now),
        Command::Acl(args) => acl::run(args, session, server),
        Command::Multi => crate::transaction::multi(session),
        Command::Exec => crate::transaction::exec(session, server),
        Command::Discard => crate::transaction::discard(session),
        Command::Watch(keys) => crate::transaction::watch(keys, session, server),
        Command::Unwatch => Ok(crate::transaction::unwatch(session)),
        Command::Role => Ok(replication::role(server)),
        Command::Cluster(command) => cluster::run(command, server),
        Command::RefSync(command) => refsync::run(command, server, now),
        Command::GiftSync(command) => giftsync::run(command, server, now),
        Command::Wait { .. } => replication::wait(session, server),
        Command::ReadOnly => replication::read_only(true, session, server),
        Command::ReadWrite => replication::read_only(false, session, server),
        Command::ReplConf(args) => replication::replconf(&args, session),
        Command::Psync {
            replication_id,
            lsn,
        } => replication::psync(replication_id, lsn, session, server),
        Command::Subscribe(_)
        | Command::PSubscribe(_)
        | Command::Unsubscribe(_)
        | Command::PUnsubscribe(_)
        | Command::Publish(_)
        | Command::PubSub(_)
        | Command::Monitor => pubsub::run(command, session, server),
        Command::Slowlog(_)
        | Command::Latency(_)
        | Command::Debug(_)
        | Command::Memory(_)
        | Command::Object(_)
        | Command::ConfigSet(_)
        | Command::ConfigRewrite
        | Command::ConfigHelp => introspection::run(command, server, now),
        Command::Shutdown(shutdown) => {
            self::shutdown(&shutdown, session, server);
            return None;
        }
        Command::Ping(_)
        | Command::Echo(_)
        | Command::Hello(_)
        | Command::Auth { .. }
        | Command::Select(_)
        | Command::Quit
        | Command::Reset
        | Command::Client(_) => connection::run(command, session, server),
        Command::Exists(_)
        | Command::Del(_)
        | Command::Type(_)
        | Command::Ttl(_)
        | Command::Pttl(_)
        | Command::Scan(_)
        | Command::DbSize => Ok(keyspace::run(command, server, now)),
        Command::Info(_)
        | Command::ConfigGet(_)
        | Command::ConfigResetStat
        | Command::Command(_)
        | Command::Time => Ok(server::run(command, server)),
        Command::Save | Command::BgSave | Command::LastSave => snapshots::run(command, server),
    };
    Some(result.unwrap_or_else(Reply::Error))
}

/// `SHUTDOWN`: stops the server (a snapshot first with SAVE) and closes the connection.
fn shutdown(shutdown: &protocol::Shutdown, session: &mut Session, server: &Server) {
    tracing::info!(client = session.handle.id, "SHUTDOWN received");
    if let (Some(true), Some(durability)) = (shutdown.save, server.durability.get()) {
        durability
            .save_on_shutdown
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    server.shutdown.cancel();
    session.close = true;
}

/// A line's interned ids if both were ever seen; a line never seen cannot be in any cart.
fn known_line(names: &Names, line: &protocol::cmd::LineId) -> Option<LineKey> {
    Some(LineKey {
        product: names.get(&line.product)?,
        variant: names.get(&line.variant)?,
    })
}

fn no_item() -> CommandError {
    CommandError::new(ErrorCode::NoItem, "no such line in the cart")
}

/// The event of a command on one line: product, variant and, where it has one, a quantity
/// (its time is the change's). Serialized straight from borrowed fields (one allocation per
/// change: this runs for every add of a flash sale); the same JSON `store::event` would build.
fn line_event(kind: EventKind, line: &protocol::cmd::LineId, qty: Option<u32>) -> Event {
    #[derive(serde::Serialize)]
    struct LineDetail<'a> {
        product: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        qty: Option<u32>,
        variant: &'a str,
    }
    let product = String::from_utf8_lossy(&line.product);
    let variant = String::from_utf8_lossy(&line.variant);
    let detail = LineDetail {
        product: &product,
        qty,
        variant: &variant,
    };
    Event {
        kind,
        detail: serde_json::to_vec(&detail)
            .expect("a struct of strings and numbers always serializes")
            .into(),
    }
}

/// `ASKING`: the next command may use a key of a slot this node imports.
fn asking(session: &mut Session, server: &Server) -> Result<Reply, CommandError> {
    if server.cluster.is_none() {
        return Err(CommandError::err(
            "This instance has cluster support disabled",
        ));
    }
    session.asking = true;
    Ok(Reply::ok())
}

/// `CART.IMPORT key image [REPLACE]` (a source node's MIGRATE): routing let it in (the slot
/// is this node's, or it imports it and ASKING came first).
fn cart_import(
    cmd: &protocol::cmd::CartImport,
    server: &Server,
    now: u64,
) -> Result<Reply, CommandError> {
    match server
        .store
        .import_cart(&cmd.key, &cmd.image, cmd.replace, now)
    {
        Ok(true) => Ok(Reply::ok()),
        Ok(false) => Err(CommandError::new(
            ErrorCode::BusyKey,
            "Target key name already exists.",
        )),
        Err(error) => Err(CommandError::err(format!(
            "the cart's image does not read back: {error}"
        ))),
    }
}
