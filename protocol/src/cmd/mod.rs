//! Typed commands: the command table (name, arity, flags, key positions, docs) and one parser
//! per command. `CART.SET` is `cart_set` everywhere: its parser lives in `cart_set.rs`.

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
mod connection;
pub mod docs;
mod giftsync;
mod introspection;
mod keyspace;
mod migrate;
mod options;
mod pricing;
mod pubsub;
mod refsync;
mod server;
mod table;

use std::hash::{DefaultHasher, Hash, Hasher};

use bytes::Bytes;

pub use cart_add::CartAdd;
pub use cart_checkout::{CartCheckout, CartComplete, CartRelease};
pub use cart_clear::CartClear;
pub use cart_get::CartGet;
pub use cart_handoff::{CartHandoff, CartHandoffDone};
pub use cart_merge::{CartMerge, MergeQty};
pub use cart_promo::{CartGiftCard, CartPromo, CodeAction};
pub use cart_remove::{CartRemove, LineList};
pub use cart_restore::CartRestore;
pub use cart_save::CartSave;
pub use cart_set::CartSet;
pub use catalog::{CatalogDel, CatalogGet, CatalogSet, StockSet};
pub use connection::{ClientCommand, ClientKill, ClientReply, Hello, Tracking};
pub use giftsync::GiftSync;
pub use introspection::{
    DebugCommand, LatencyCommand, MemoryCommand, ObjectCommand, SlowlogCommand, SLOWLOG_GET_DEFAULT,
};
pub use keyspace::Scan;
pub use migrate::{CartImport, Migrate};
pub use options::{Currency, Format, LineId, MutationOptions, ReplyMode};
pub use pricing::{GiftCardDel, GiftCardGet, GiftCardSet, PromoDel, PromoGet, PromoSet};
pub use pubsub::{PubSubCommand, Publish};
pub use refsync::{RefSync, RefSyncChange};
pub use server::{wait_arguments, ClusterCommand, FailoverMode, SetSlot};
pub use server::{CommandCommand, Shutdown};
pub use table::{CommandId, CommandSpec, Keys, COMMANDS};

use crate::args::Args;
use crate::error::CommandError;

/// One parsed request.
#[derive(Debug, PartialEq)]
#[allow(missing_docs)] // each variant is its command, documented on its struct or in the table
pub enum Command {
    CartAdd(CartAdd),
    CartSet(CartSet),
    CartRemove(CartRemove),
    CartGet(CartGet),
    CartClear(CartClear),
    CartMerge(CartMerge),
    CartSave(CartSave),
    CartRestore(CartRestore),
    CartPromo(CartPromo),
    CartGiftCard(CartGiftCard),
    CartCheckout(CartCheckout),
    CartComplete(CartComplete),
    CartRelease(CartRelease),
    CatalogSet(CatalogSet),
    CatalogGet(CatalogGet),
    CatalogDel(CatalogDel),
    StockSet(StockSet),
    PromoSet(PromoSet),
    PromoGet(PromoGet),
    PromoDel(PromoDel),
    GiftCardSet(GiftCardSet),
    GiftCardGet(GiftCardGet),
    GiftCardDel(GiftCardDel),
    Ping(Option<Bytes>),
    Echo(Bytes),
    Hello(Hello),
    Auth {
        user: Option<Bytes>,
        password: Bytes,
    },
    Select(i64),
    Quit,
    Reset,
    Client(ClientCommand),
    /// `ACL subcommand ...`: its words after ACL (the server parses them).
    Acl(Vec<Bytes>),
    Command(CommandCommand),
    Info(Vec<String>),
    ConfigGet(Vec<Bytes>),
    ConfigResetStat,
    DbSize,
    Exists(Vec<Bytes>),
    Del(Vec<Bytes>),
    Type(Bytes),
    Ttl(Bytes),
    Pttl(Bytes),
    Scan(Scan),
    Time,
    /// `SAVE`.
    Save,
    /// `BGSAVE [SCHEDULE]`.
    BgSave,
    /// `LASTSAVE`.
    LastSave,
    Shutdown(Shutdown),
    /// `MULTI`.
    Multi,
    /// `EXEC`.
    Exec,
    /// `DISCARD`.
    Discard,
    /// `WATCH key [key ...]`.
    Watch(Vec<Bytes>),
    /// `UNWATCH`.
    Unwatch,
    /// `ROLE`.
    Role,
    /// `SLOWLOG ...`.
    Slowlog(SlowlogCommand),
    /// `LATENCY ...`.
    Latency(LatencyCommand),
    /// `DEBUG ...` (DIGEST-VALUE and HELP only).
    Debug(DebugCommand),
    /// `MEMORY ...`.
    Memory(MemoryCommand),
    /// `OBJECT ...`.
    Object(ObjectCommand),
    /// `CONFIG SET parameter value [parameter value ...]`, the pairs in order.
    ConfigSet(Vec<(Bytes, Bytes)>),
    /// `CONFIG REWRITE`.
    ConfigRewrite,
    /// `CONFIG HELP`.
    ConfigHelp,
    /// `SUBSCRIBE channel [channel ...]`.
    Subscribe(Vec<Bytes>),
    /// `UNSUBSCRIBE [channel ...]` (none: every channel).
    Unsubscribe(Vec<Bytes>),
    /// `PSUBSCRIBE pattern [pattern ...]`.
    PSubscribe(Vec<Bytes>),
    /// `PUNSUBSCRIBE [pattern ...]` (none: every pattern).
    PUnsubscribe(Vec<Bytes>),
    Publish(Publish),
    PubSub(PubSubCommand),
    /// `MONITOR`.
    Monitor,
    Cluster(ClusterCommand),
    RefSync(RefSync),
    /// `GIFTSYNC`, between cluster primaries.
    GiftSync(GiftSync),
    /// `WAIT numreplicas timeout_ms`.
    Wait {
        /// Replicas to wait for.
        replicas: u64,
        /// How long, milliseconds; 0: no bound.
        timeout_ms: u64,
    },
    /// `READONLY`.
    ReadOnly,
    /// `READWRITE`.
    ReadWrite,
    /// `REPLCONF option value [option value ...]`.
    ReplConf(Vec<Bytes>),
    /// `PSYNC replicationid lsn`: `?` and 0 ask for a full synchronization.
    Psync {
        /// The history the replica's log belongs to, as its primary named it.
        replication_id: Bytes,
        /// The last LSN the replica has.
        lsn: u64,
    },
    /// `CART.HANDOFF guest_key user_key` (between cluster nodes).
    CartHandoff(CartHandoff),
    /// `CART.HANDOFF.DONE guest_key id` (between cluster nodes).
    CartHandoffDone(CartHandoffDone),
    /// `ASKING`.
    Asking,
    /// `MIGRATE`.
    Migrate(Migrate),
    /// `CART.IMPORT`.
    CartImport(CartImport),
}

impl Command {
    /// Parses a request (`raw[0]` is the command name). The table's arity is checked first, so
    /// every parser sees at least its fixed arguments.
    pub fn parse(raw: Vec<Bytes>) -> Result<Command, CommandError> {
        let Some(name) = raw.first() else {
            return Err(CommandError::err("empty command"));
        };
        let Some(spec) = CommandSpec::lookup(name) else {
            return Err(unknown_command(&raw));
        };
        if !spec.arity_allows(raw.len()) {
            return Err(CommandError::arity(spec.name));
        }
        // Only a request carrying a token needs its fingerprint; hashing every add is waste.
        let idempotent = raw[1..]
            .iter()
            .any(|arg| arg.eq_ignore_ascii_case(b"IDEMPOTENCY"));
        let fingerprint = if idempotent {
            fingerprint(spec, &raw[1..])
        } else {
            0
        };
        let mut args = Args::new(raw.into_iter().skip(1).collect());
        let command = parse_known(spec.id, &mut args)?;
        args.finish()?;
        Ok(command.with_fingerprint(fingerprint))
    }

    /// The command's table row.
    // One arm per command, kept whole so the match stays exhaustive.
    #[allow(clippy::too_many_lines)]
    pub fn id(&self) -> CommandId {
        match self {
            Command::CartAdd(_) => CommandId::CartAdd,
            Command::CartSet(_) => CommandId::CartSet,
            Command::CartRemove(_) => CommandId::CartRemove,
            Command::CartGet(_) => CommandId::CartGet,
            Command::CartClear(_) => CommandId::CartClear,
            Command::CartMerge(_) => CommandId::CartMerge,
            Command::CartSave(_) => CommandId::CartSave,
            Command::CartRestore(_) => CommandId::CartRestore,
            Command::CartPromo(_) => CommandId::CartPromo,
            Command::CartGiftCard(_) => CommandId::CartGiftCard,
            Command::CartCheckout(_) => CommandId::CartCheckout,
            Command::CartComplete(_) => CommandId::CartComplete,
            Command::CartRelease(_) => CommandId::CartRelease,
            Command::CatalogSet(_) => CommandId::CatalogSet,
            Command::CatalogGet(_) => CommandId::CatalogGet,
            Command::CatalogDel(_) => CommandId::CatalogDel,
            Command::StockSet(_) => CommandId::StockSet,
            Command::PromoSet(_) => CommandId::PromoSet,
            Command::PromoGet(_) => CommandId::PromoGet,
            Command::PromoDel(_) => CommandId::PromoDel,
            Command::GiftCardSet(_) => CommandId::GiftCardSet,
            Command::GiftCardGet(_) => CommandId::GiftCardGet,
            Command::GiftCardDel(_) => CommandId::GiftCardDel,
            Command::Ping(_) => CommandId::Ping,
            Command::Echo(_) => CommandId::Echo,
            Command::Hello(_) => CommandId::Hello,
            Command::Auth { .. } => CommandId::Auth,
            Command::Select(_) => CommandId::Select,
            Command::Quit => CommandId::Quit,
            Command::Reset => CommandId::Reset,
            Command::Client(_) => CommandId::Client,
            Command::Acl(_) => CommandId::Acl,
            Command::Multi => CommandId::Multi,
            Command::Exec => CommandId::Exec,
            Command::Discard => CommandId::Discard,
            Command::Watch(_) => CommandId::Watch,
            Command::Unwatch => CommandId::Unwatch,
            Command::Role => CommandId::Role,
            Command::Slowlog(_) => CommandId::Slowlog,
            Command::Latency(_) => CommandId::Latency,
            Command::Debug(_) => CommandId::Debug,
            Command::Memory(_) => CommandId::Memory,
            Command::Object(_) => CommandId::Object,
            Command::Subscribe(_) => CommandId::Subscribe,
            Command::Unsubscribe(_) => CommandId::Unsubscribe,
            Command::PSubscribe(_) => CommandId::PSubscribe,
            Command::PUnsubscribe(_) => CommandId::PUnsubscribe,
            Command::Publish(_) => CommandId::Publish,
            Command::PubSub(_) => CommandId::PubSub,
            Command::Monitor => CommandId::Monitor,
            Command::Cluster(_) => CommandId::Cluster,
            Command::RefSync(_) => CommandId::RefSync,
            Command::GiftSync(_) => CommandId::GiftSync,
            Command::Wait { .. } => CommandId::Wait,
            Command::ReadOnly => CommandId::ReadOnly,
            Command::ReadWrite => CommandId::ReadWrite,
            Command::ReplConf(_) => CommandId::ReplConf,
            Command::Psync { .. } => CommandId::Psync,
            Command::CartHandoff(_) => CommandId::CartHandoff,
            Command::CartHandoffDone(_) => CommandId::CartHandoffDone,
            Command::Asking => CommandId::Asking,
            Command::Migrate(_) => CommandId::Migrate,
            Command::CartImport(_) => CommandId::CartImport,
            Command::Command(_) => CommandId::Command,
            Command::Info(_) => CommandId::Info,
            Command::ConfigGet(_)
            | Command::ConfigResetStat
            | Command::ConfigSet(_)
            | Command::ConfigRewrite
            | Command::ConfigHelp => CommandId::Config,
            Command::DbSize => CommandId::DbSize,
            Command::Exists(_) => CommandId::Exists,
            Command::Del(_) => CommandId::Del,
            Command::Type(_) => CommandId::Type,
            Command::Ttl(_) => CommandId::Ttl,
            Command::Pttl(_) => CommandId::Pttl,
            Command::Scan(_) => CommandId::Scan,
            Command::Time => CommandId::Time,
            Command::Save => CommandId::Save,
            Command::BgSave => CommandId::BgSave,
            Command::LastSave => CommandId::LastSave,
            Command::Shutdown(_) => CommandId::Shutdown,
        }
    }

    fn with_fingerprint(mut self, fingerprint: u64) -> Command {
        if let Some(mutation) = self.mutation_mut() {
            mutation.fingerprint = fingerprint;
        }
        self
    }

    fn mutation_mut(&mut self) -> Option<&mut MutationOptions> {
        match self {
            Command::CartAdd(cmd) => Some(&mut cmd.mutation),
            Command::CartSet(cmd) => Some(&mut cmd.mutation),
            Command::CartRemove(cmd) => Some(&mut cmd.mutation),
            Command::CartClear(cmd) => Some(&mut cmd.mutation),
            Command::CartMerge(cmd) => Some(&mut cmd.mutation),
            Command::CartSave(cmd) => Some(&mut cmd.mutation),
            Command::CartRestore(cmd) => Some(&mut cmd.mutation),
            Command::CartPromo(cmd) => Some(&mut cmd.mutation),
            Command::CartGiftCard(cmd) => Some(&mut cmd.mutation),
            Command::CartCheckout(cmd) => Some(&mut cmd.mutation),
            Command::CartComplete(cmd) => Some(&mut cmd.mutation),
            Command::CartRelease(cmd) => Some(&mut cmd.mutation),
            _ => None,
        }
    }
}

// One arm per command: a table more than logic, and the match keeps it exhaustive.
#[allow(clippy::too_many_lines)]
fn parse_known(id: CommandId, args: &mut Args) -> Result<Command, CommandError> {
    Ok(match id {
        CommandId::CartAdd => Command::CartAdd(CartAdd::parse(args)?),
        CommandId::CartSet => Command::CartSet(CartSet::parse(args)?),
        CommandId::CartRemove => Command::CartRemove(CartRemove::parse(args)?),
        CommandId::CartGet => Command::CartGet(CartGet::parse(args)?),
        CommandId::CartClear => Command::CartClear(CartClear::parse(args)?),
        CommandId::CartMerge => Command::CartMerge(CartMerge::parse(args)?),
        CommandId::CartSave => Command::CartSave(CartSave::parse(args)?),
        CommandId::CartRestore => Command::CartRestore(CartRestore::parse(args)?),
        CommandId::CartPromo => Command::CartPromo(CartPromo::parse(args)?),
        CommandId::CartGiftCard => Command::CartGiftCard(CartGiftCard::parse(args)?),
        CommandId::CartCheckout => Command::CartCheckout(CartCheckout::parse(args)?),
        CommandId::CartComplete => Command::CartComplete(CartComplete::parse(args)?),
        CommandId::CartRelease => Command::CartRelease(CartRelease::parse(args)?),
        CommandId::CatalogSet => Command::CatalogSet(CatalogSet::parse(args)?),
        CommandId::CatalogGet => Command::CatalogGet(CatalogGet::parse(args)?),
        CommandId::CatalogDel => Command::CatalogDel(CatalogDel::parse(args)?),
        CommandId::StockSet => Command::StockSet(StockSet::parse(args)?),
        CommandId::PromoSet => Command::PromoSet(PromoSet::parse(args)?),
        CommandId::PromoGet => Command::PromoGet(PromoGet::parse(args)?),
        CommandId::PromoDel => Command::PromoDel(PromoDel::parse(args)?),
        CommandId::GiftCardSet => Command::GiftCardSet(GiftCardSet::parse(args)?),
        CommandId::GiftCardGet => Command::GiftCardGet(GiftCardGet::parse(args)?),
        CommandId::GiftCardDel => Command::GiftCardDel(GiftCardDel::parse(args)?),
        CommandId::Ping => Command::Ping(args.next_if_any()),
        CommandId::Echo => Command::Echo(args.next_bytes()?),
        CommandId::Hello => Command::Hello(Hello::parse(args)?),
        CommandId::Auth => connection::parse_auth(args)?,
        CommandId::Select => Command::Select(args.next_i64()?),
        CommandId::Quit => {
            args.rest(); // Redis ignores QUIT's arguments.
            Command::Quit
        }
        CommandId::Reset => Command::Reset,
        CommandId::Client => Command::Client(ClientCommand::parse(args)?),
        CommandId::Command => Command::Command(CommandCommand::parse(args)?),
        CommandId::Info => Command::Info(server::parse_info(args)),
        CommandId::Config => server::parse_config(args)?,
        CommandId::DbSize => Command::DbSize,
        CommandId::Exists => Command::Exists(keyspace::parse_keys(args)?),
        CommandId::Del => Command::Del(keyspace::parse_keys(args)?),
        CommandId::Type => Command::Type(args.next_bytes()?),
        CommandId::Ttl => Command::Ttl(args.next_bytes()?),
        CommandId::Pttl => Command::Pttl(args.next_bytes()?),
        CommandId::Scan => Command::Scan(Scan::parse(args)?),
        CommandId::Time => Command::Time,
        CommandId::Save => Command::Save,
        CommandId::BgSave => {
            if let Some(option) = args.next_if_any() {
                if !option.eq_ignore_ascii_case(b"SCHEDULE") {
                    return Err(CommandError::syntax());
                }
            }
            Command::BgSave
        }
        CommandId::LastSave => Command::LastSave,
        CommandId::Acl => Command::Acl(args.rest()),
        CommandId::Multi => Command::Multi,
        CommandId::Exec => Command::Exec,
        CommandId::Discard => Command::Discard,
        CommandId::Watch => Command::Watch(args.rest()),
        CommandId::Unwatch => Command::Unwatch,
        CommandId::Role => Command::Role,
        CommandId::Slowlog => Command::Slowlog(SlowlogCommand::parse(args)?),
        CommandId::Latency => Command::Latency(LatencyCommand::parse(args)?),
        CommandId::Debug => Command::Debug(DebugCommand::parse(args)?),
        CommandId::Memory => Command::Memory(MemoryCommand::parse(args)?),
        CommandId::Object => Command::Object(ObjectCommand::parse(args)?),
        CommandId::Subscribe
        | CommandId::Unsubscribe
        | CommandId::PSubscribe
        | CommandId::PUnsubscribe
        | CommandId::Publish
        | CommandId::PubSub
        | CommandId::Monitor => pubsub::parse(id, args)?,
        CommandId::Cluster => Command::Cluster(ClusterCommand::parse(args)?),
        CommandId::RefSync => Command::RefSync(RefSync::parse(args)?),
        CommandId::GiftSync => Command::GiftSync(GiftSync::parse(args)?),
        CommandId::Wait => server::parse_wait(args)?,
        CommandId::ReadOnly => Command::ReadOnly,
        CommandId::ReadWrite => Command::ReadWrite,
        CommandId::ReplConf => Command::ReplConf(args.rest()),
        CommandId::Psync => server::parse_psync(args)?,
        CommandId::CartHandoff => Command::CartHandoff(CartHandoff::parse(args)?),
        CommandId::CartHandoffDone => Command::CartHandoffDone(CartHandoffDone::parse(args)?),
        CommandId::Asking => Command::Asking,
        CommandId::Migrate => Command::Migrate(Migrate::parse(args)?),
        CommandId::CartImport => Command::CartImport(CartImport::parse(args)?),
        CommandId::Shutdown => Command::Shutdown(Shutdown::parse(args)?),
    })
}

/// The idempotency fingerprint: the command name (case-folded) and every argument, so the same
/// token with other arguments is told apart.
fn fingerprint(spec: &CommandSpec, args: &[Bytes]) -> u64 {
    let mut hasher = DefaultHasher::new();
    spec.name.hash(&mut hasher);
    args.hash(&mut hasher);
    hasher.finish()
}

fn unknown_command(raw: &[Bytes]) -> CommandError {
    let name = String::from_utf8_lossy(&raw[0]);
    let mut shown: String = raw[1..]
        .iter()
        .take(8)
        .map(|arg| {
            format!(
                "'{}' ",
                String::from_utf8_lossy(arg)
                    .chars()
                    .take(64)
                    .collect::<String>()
            )
        })
        .collect();
    // Bounded in bytes, cut between characters.
    shown.truncate(shown.floor_char_boundary(512));
    let name: String = name.chars().take(128).collect();
    CommandError::err(format!(
        "unknown command '{name}', with args beginning with: {shown}"
    ))
}

#[cfg(test)]
mod tests;
