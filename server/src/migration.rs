//! Moving slots between shard groups, as `redis-cli --cluster reshard` does it
//! (docs/CLUSTER.md "Resharding"): `CLUSTER SETSLOT slot IMPORTING|MIGRATING|NODE|STABLE`,
//! `ASKING` and `-ASK` while a slot moves, and `MIGRATE`, which sends each cart in cartd's image
//! format (`CART.IMPORT` on the target) and removes it here once the target has it.
//!
//! Who serves a moved slot is recorded in PostgreSQL (`cluster_slots`, which every node
//! follows with the leases) or, without it, in each told node's `data_dir/slot-moves`. A group
//! importing a slot first raises its lease's term, so the rows it writes for the slot's carts
//! order after the exporting group's.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use protocol::cmd::{Migrate, SetSlot};
use protocol::{CommandError, CommandSpec, ErrorCode, Reply};
use tracing::{info, warn};

use crate::peers::link::Link;
use crate::peers::wire::Value;
use crate::server::{now_ms, Server};

/// A slot this node is moving, and the other node (its layout index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Its carts come here from that node.
    Importing(usize),
    /// Its carts go from here to that node.
    Migrating(usize),
}

/// The slots being moved here or away, and the moves this node records without PostgreSQL.
#[derive(Default)]
pub struct Slots {
    open: Mutex<HashMap<u16, Open>>,
    any_open: AtomicBool,
    /// Without PostgreSQL: every move this node was told of (slot → shard group name).
    recorded: Mutex<BTreeMap<u16, String>>,
    /// With PostgreSQL: the term of each slot's move this node has put in its layout. A
    /// move read from PostgreSQL before a later one was made here must not undo it.
    applied: Mutex<HashMap<u16, u64>>,
}

/// The file of moves a node without PostgreSQL keeps.
const MOVES_FILE: &str = "slot-moves";

/// The file of the slots this node is importing or migrating (SETSLOT IMPORTING/MIGRATING),
/// so a restart mid-move keeps answering `-ASK` for the carts already moved.
const OPEN_FILE: &str = "slot-states";

impl Slots {
    /// Where `slot` is moving to from here, if it is.
    pub fn migrating_to(&self, slot: u16) -> Option<usize> {
        if !self.any_open.load(Ordering::Acquire) {
            return None;
        }
        match self.open.lock().get(&slot) {
            Some(Open::Migrating(to)) => Some(*to),
            _ => None,
        }
    }

    /// Whether `slot` is moving here.
    pub fn importing(&self, slot: u16) -> bool {
        self.any_open.load(Ordering::Acquire)
            && matches!(self.open.lock().get(&slot), Some(Open::Importing(_)))
    }

    /// Every slot being moved, in order (CLUSTER NODES shows them).
    pub fn open_slots(&self) -> Vec<(u16, Open)> {
        let mut open: Vec<(u16, Open)> = self.open.lock().iter().map(|(s, o)| (*s, *o)).collect();
        open.sort_by_key(|(slot, _)| *slot);
        open
    }

    fn set(&self, slot: u16, open: Option<Open>) {
        let mut slots = self.open.lock();
        match open {
            Some(open) => slots.insert(slot, open),
            None => slots.remove(&slot),
        };
        self.any_open.store(!slots.is_empty(), Ordering::Release);
    }
}

/// Which carts a cluster node may make ([`crate::store::Placement`]): those of the slots it
/// serves and is not moving away, and of those moving here (a replica's, of its primary's).
pub struct SlotPlacement {
    topology: std::sync::Arc<cluster::Topology>,
    slots: std::sync::Arc<Slots>,
}

impl SlotPlacement {
    /// The placement `topology` and `slots` give.
    pub fn new(
        topology: std::sync::Arc<cluster::Topology>,
        slots: std::sync::Arc<Slots>,
    ) -> SlotPlacement {
        SlotPlacement { topology, slots }
    }
}

impl crate::store::Placement for SlotPlacement {
    fn refuse_new(&self, key: &[u8]) -> Option<CommandError> {
        let slot = cluster::key_slot(key);
        let layout = self.topology.load();
        match layout.owner_index(slot) {
            Some(owner) if owner == layout.me => self
                .slots
                .migrating_to(slot)
                .map(|target| ask_to(&layout, slot, target)),
            Some(_) if self.slots.importing(slot) => None,
            Some(owner) if layout.myself().replica_of == Some(owner) => None,
            owner => Some(not_served_here(&layout, slot, owner)),
        }
    }
}

/// Sets `slot`'s state and records every open slot in `data_dir/slot-states` (node ids, not
/// layout indexes), synced before the reply.
fn set_open(server: &Server, slot: u16, open: Option<Open>) -> Result<(), CommandError> {
    let layout = server.layout().expect("cluster mode");
    server.slots.set(slot, open);
    let text: String = server
        .slots
        .open_slots()
        .iter()
        .map(|(slot, open)| match open {
            Open::Importing(from) => format!("{slot} importing {}\n", layout.nodes[*from].id),
            Open::Migrating(to) => format!("{slot} migrating {}\n", layout.nodes[*to].id),
        })
        .collect();
    let path = server.config.server.data_dir.join(OPEN_FILE);
    crate::durability::replace_file(&path, &text).map_err(|error| {
        CommandError::err(format!(
            "cannot record the slot's state in {}: {error}",
            path.display()
        ))
    })
}

/// At a start: the slots that were open here, each kept only while the layout still agrees
/// (a migrating slot this node serves, an importing one another primary serves).
pub fn load_open(server: &Server) {
    let path = server.config.server.data_dir.join(OPEN_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let Some(layout) = server.layout() else {
        return;
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(slot), Some(state), Some(node)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let (Ok(slot), Some(node)) = (slot.parse::<u16>(), layout.index_of(node)) else {
            warn!(
                line,
                "a slot state in slot-states names no slot or node here; dropped"
            );
            continue;
        };
        let owner = layout.owner_index(slot);
        let open = match state {
            "importing" if owner != Some(layout.me) => Open::Importing(node),
            "migrating" if owner == Some(layout.me) => Open::Migrating(node),
            _ => {
                info!(
                    slot,
                    state, "a slot state from before the restart no longer applies"
                );
                continue;
            }
        };
        info!(slot, state, node = %layout.nodes[node].id, "slot state kept from before the restart");
        server.slots.set(slot, Some(open));
    }
}

/// Routing of a key of `slot`, which this node serves, while it moves away: served here if
/// every key of the request is here, `-ASK` to the target if none is, `-TRYAGAIN` if some are.
pub fn route_migrating(
    server: &Server,
    layout: &cluster::Layout,
    raw: &[Bytes],
    spec: &CommandSpec,
    slot: u16,
) -> Result<(), CommandError> {
    let keys = spec.all_key_positions(raw.len()).map(|at| &raw[at]);
    migrating_redirect(server, layout, slot, keys)
}

/// [`route_migrating`] for `keys`: all here (or the slot not moving), none, or some.
fn migrating_redirect<'a>(
    server: &Server,
    layout: &cluster::Layout,
    slot: u16,
    keys: impl Iterator<Item = &'a Bytes>,
) -> Result<(), CommandError> {
    let Some(target) = server.slots.migrating_to(slot) else {
        return Ok(());
    };
    let now = now_ms();
    let (mut here, mut gone) = (0usize, 0usize);
    for key in keys {
        match server.store.ttl_left_ms(key, now) {
            Some(_) => here += 1,
            None => gone += 1,
        }
    }
    match (here, gone) {
        (_, 0) => Ok(()),
        (0, _) => Err(ask_to(layout, slot, target)),
        _ => Err(CommandError::new(
            ErrorCode::TryAgain,
            "Multiple keys request during rehashing of slot",
        )),
    }
}

/// `-ASK slot host:port` of the node at layout index `target`.
fn ask_to(layout: &cluster::Layout, slot: u16, target: usize) -> CommandError {
    CommandError::new(
        ErrorCode::Ask,
        format!("{slot} {}", layout.nodes[target].addr()),
    )
}

/// A slot another node serves (`-MOVED` to it) or none does (`-CLUSTERDOWN`).
pub fn not_served_here(layout: &cluster::Layout, slot: u16, owner: Option<usize>) -> CommandError {
    match owner {
        Some(owner) => CommandError::new(
            ErrorCode::Moved,
            format!("{slot} {}", layout.nodes[owner].addr()),
        ),
        None => CommandError::new(ErrorCode::ClusterDown, "Hash slot not served"),
    }
}

/// At EXEC, alone ([`crate::store::Store::transaction`]): where the transaction's slot went
/// since its commands were queued, as Redis redirects the EXEC itself (and discards the
/// transaction): `-MOVED` if another node serves the slot now, `-ASK` if it is moving away
/// and none of the queued keys is here any more, `-TRYAGAIN` if only some are. `None`: it
/// runs here.
pub fn exec_redirect(
    server: &Server,
    transaction: &crate::transaction::Transaction,
) -> Option<CommandError> {
    let slot = transaction.slot?;
    let layout = server.layout()?;
    match layout.owner_index(slot) {
        Some(owner) if owner == layout.me => {}
        _ if server.slots.importing(slot) => return None,
        owner => return Some(not_served_here(&layout, slot, owner)),
    }
    let keys = transaction.queued.iter().flat_map(|(raw, spec)| {
        spec.iter()
            .flat_map(move |spec| spec.all_key_positions(raw.len()).map(move |at| &raw[at]))
    });
    migrating_redirect(server, &layout, slot, keys).err()
}

/// The requests whose work here waits on other nodes or PostgreSQL (a pre-step): MIGRATE,
/// CLUSTER SETSLOT and the membership subcommands (`crate::membership`).
pub fn needs_pre_step(raw: &[Bytes], spec: &CommandSpec) -> bool {
    spec.id == protocol::CommandId::Migrate
        || (spec.id == protocol::CommandId::Cluster
            && (raw
                .get(1)
                .is_some_and(|sub| sub.eq_ignore_ascii_case(b"SETSLOT"))
                || crate::membership::needs_pre_step(raw)))
}

/// Runs MIGRATE, CLUSTER SETSLOT or a membership subcommand (`raw`), whose reply the command
/// then gives.
pub async fn run(server: &std::sync::Arc<Server>, raw: Vec<Bytes>) -> Result<Reply, CommandError> {
    match protocol::Command::parse(raw)? {
        protocol::Command::Migrate(migrate) => run_migrate(server, &migrate).await,
        protocol::Command::Cluster(protocol::cmd::ClusterCommand::SetSlot(slot, action)) => {
            set_slot(server, slot, action).await
        }
        protocol::Command::Cluster(other) => crate::membership::run(server, other).await,
        _ => Err(CommandError::err("not a slot command")),
    }
}

/// The layout index of the node named `id`, which must be a primary.
fn primary_named(layout: &cluster::Layout, id: &[u8]) -> Result<usize, CommandError> {
    let id = String::from_utf8_lossy(id);
    let at = layout
        .index_of(&id)
        .ok_or_else(|| CommandError::err(format!("I don't know about node {id}")))?;
    if layout.nodes[at].replica_of.is_some() {
        return Err(CommandError::err("Target node is not a master"));
    }
    Ok(at)
}

/// `CLUSTER SETSLOT`, with Redis's errors.
async fn set_slot(server: &Server, slot: u16, action: SetSlot) -> Result<Reply, CommandError> {
    let layout = server
        .layout()
        .ok_or_else(|| CommandError::err("This instance has cluster support disabled"))?;
    if layout.myself().replica_of.is_some() {
        return Err(CommandError::err("Please use SETSLOT only with masters."));
    }
    let owner = layout.owner_index(slot);
    match action {
        SetSlot::Importing(from) => {
            let from = primary_named(&layout, &from)?;
            if owner == Some(layout.me) {
                return Err(CommandError::err(format!(
                    "I'm already the owner of hash slot {slot}"
                )));
            }
            if layout.myself().epoch <= layout.nodes[from].epoch {
                raise_term(server, "for a slot it imports").await?;
            }
            set_open(server, slot, Some(Open::Importing(from)))?;
        }
        SetSlot::Migrating(to) => {
            let to = primary_named(&layout, &to)?;
            if owner != Some(layout.me) {
                return Err(CommandError::err(format!(
                    "I'm not the owner of hash slot {slot}"
                )));
            }
            crate::slot_cards::unseal(server, slot).await?;
            set_open(server, slot, Some(Open::Migrating(to)))?;
        }
        SetSlot::Stable => {
            crate::slot_cards::unseal(server, slot).await?;
            set_open(server, slot, None)?;
            crate::slot_cards::drop_stopped_import(server, slot);
        }
        SetSlot::Node(node) => {
            let node = primary_named(&layout, &node)?;
            let holds = !server.store.keys_in_slot(slot, 1, now_ms()).is_empty();
            if owner == Some(layout.me) && node != layout.me && holds {
                return Err(CommandError::err(format!(
                    "Can't assign hashslot {slot} to a different node while I still hold keys \
                     for this hash slot."
                )));
            }
            let mut handed = None;
            match owner {
                Some(owner) if node == layout.me && owner != layout.me => {
                    let term = crate::slot_cards::take_over(server, slot, owner).await?;
                    let from = layout.group_name(layout.nodes[owner].group);
                    handed = term.map(|term| (from, term));
                }
                Some(owner) if owner == layout.me && node != layout.me => {
                    crate::slot_cards::refuse_unsealed(server, slot, &layout.nodes[node].id)?;
                }
                _ => {}
            }
            let group = layout.nodes[node].group;
            let term = record_move(server, slot, layout.group_name(group), handed).await?;
            {
                let mut applied = server.slots.applied.lock();
                let known = applied.entry(slot).or_insert(0);
                *known = (*known).max(term);
                move_slots(server, &[(slot, group)]);
            }
            set_open(server, slot, None)?;
        }
    }
    Ok(Reply::ok())
}

/// With PostgreSQL, before a slot's carts come here (or its gift cards come back): this
/// group's term goes above every term given so far (the other group's included), the sink
/// following under it. `why` is logged.
pub async fn raise_term(server: &Server, why: &str) -> Result<(), CommandError> {
    let Some(postgres) = server.durable().postgres.as_ref() else {
        return Ok(());
    };
    if !server.failover.leased() {
        return Ok(());
    }
    let layout = server.layout().expect("cluster mode");
    let group = layout.group_name(layout.myself().group).to_owned();
    let me = layout.myself().id.clone();
    let unavailable = |error: String| {
        CommandError::new(
            ErrorCode::TryAgain,
            format!("cannot raise this group's term in PostgreSQL: {error}"),
        )
    };
    postgres.stop_sink().await;
    let raised = persistence::sink::lease::raise_term(
        postgres.lease_pool(),
        &group,
        &me,
        server.failover.term(),
    )
    .await
    .map_err(|error| error.to_string());
    let term = match raised {
        Ok(Some(term)) => term,
        Ok(None) => {
            postgres.start_sink(server, server.failover.term(), true);
            return Err(unavailable("the lease is not this node's".into()));
        }
        Err(error) => {
            postgres.start_sink(server, server.failover.term(), true);
            return Err(unavailable(error));
        }
    };
    server.failover.set_term(term);
    crate::failover::record_history_term(&server.config.server.data_dir, term);
    let topology = server.cluster.as_ref().expect("cluster mode");
    topology.update(|layout| layout.with_primary(layout.myself().group, layout.me, term));
    crate::role_record::record_current(server);
    postgres.start_sink(server, term, true);
    info!(term, "this group's term is raised {why}");
    Ok(())
}

/// Records that `group` serves `slot`: in PostgreSQL (the move's term), or in this node's
/// `slot-moves` (term 0). `handed`: the group that served it and the term its gift cards were
/// handed over at, which must still be that group's (else a replica took over since, with the
/// cards as they were before the seal: `-TRYAGAIN`, and the move is run again).
async fn record_move(
    server: &Server,
    slot: u16,
    group: &str,
    handed: Option<(&str, u64)>,
) -> Result<u64, CommandError> {
    if let Some(postgres) = server.durable().postgres.as_ref() {
        let pool = postgres.lease_pool();
        let recorded = persistence::sink::lease::record_slot_move(pool, slot, group, handed)
            .await
            .map_err(|error| {
                CommandError::new(
                    ErrorCode::TryAgain,
                    format!("cannot record the slot's owner in PostgreSQL: {error}"),
                )
            })?;
        return recorded.ok_or_else(|| {
            CommandError::new(
                ErrorCode::TryAgain,
                format!(
                    "the primary that handed over hash slot {slot}'s gift cards is not its \
                     group's any more (a failover): set the slot's node again"
                ),
            )
        });
    }
    let mut recorded = server.slots.recorded.lock();
    recorded.insert(slot, group.to_owned());
    let text: String = recorded
        .iter()
        .map(|(slot, group)| format!("{slot} {group}\n"))
        .collect();
    drop(recorded);
    let path = server.config.server.data_dir.join(MOVES_FILE);
    crate::durability::replace_file(&path, &text).map_err(|error| {
        CommandError::err(format!(
            "cannot record the move in {}: {error}",
            path.display()
        ))
    })?;
    Ok(0)
}

/// Puts `moves` (slot, group index) in this node's layout; whether anything changed.
pub fn move_slots(server: &Server, moves: &[(u16, usize)]) -> bool {
    let Some(topology) = &server.cluster else {
        return false;
    };
    let changed = topology.update(|layout| {
        let changed: Vec<(u16, usize)> = moves
            .iter()
            .copied()
            .filter(|&(slot, group)| layout.group_of_slot(slot) != Some(group))
            .collect();
        (!changed.is_empty()).then(|| layout.with_slot_groups(&changed))
    });
    if changed {
        crate::slot_cards::drop_moved(server);
    }
    changed
}

/// Puts recorded moves (slot, group name) in the layout; names no group knows are skipped.
pub fn apply_moves(server: &Server, moves: &[(u16, String)]) -> bool {
    let Some(layout) = server.layout() else {
        return false;
    };
    let moves: Vec<(u16, usize)> = moves
        .iter()
        .filter_map(|(slot, group)| Some((*slot, layout.group_named(group)?)))
        .collect();
    move_slots(server, &moves)
}

/// Puts PostgreSQL's moves in the layout, each only if it is later than the move of its slot
/// this node has (a SETSLOT NODE made here while the rows were read stays).
pub fn apply_recorded_moves(server: &Server, moves: &[persistence::sink::lease::SlotMove]) -> bool {
    let mut applied = server.slots.applied.lock();
    let newer: Vec<(u16, String)> = moves
        .iter()
        .filter(|(slot, _, term)| applied.get(slot).is_none_or(|known| term > known))
        .map(|(slot, group, _)| (*slot, group.clone()))
        .collect();
    for (slot, _, term) in moves {
        let known = applied.entry(*slot).or_insert(0);
        *known = (*known).max(*term);
    }
    apply_moves(server, &newer)
}

/// At the start of a node without PostgreSQL: the moves it recorded.
pub fn load_recorded(server: &Server) {
    let path = server.config.server.data_dir.join(MOVES_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let moves: Vec<(u16, String)> = text
        .lines()
        .filter_map(|line| {
            let (slot, group) = line.split_once(' ')?;
            Some((slot.parse().ok()?, group.trim().to_owned()))
        })
        .collect();
    *server.slots.recorded.lock() = moves.iter().cloned().collect();
    apply_moves(server, &moves);
}

/// `MIGRATE`: each cart is sent (`CART.IMPORT`, pipelined, after `ASKING`) and, once the
/// target has it, removed here if it has not changed since (else sent again); `+NOKEY` when
/// none of the keys is here.
async fn run_migrate(server: &Server, migrate: &Migrate) -> Result<Reply, CommandError> {
    let now = now_ms();
    let addr = format!("{}:{}", migrate.host, migrate.port);
    let timeout = Duration::from_millis(migrate.timeout_ms);
    let mut link = tokio::time::timeout(
        timeout,
        Target::connect(&addr, migrate.auth.as_ref(), timeout),
    )
    .await
    .map_err(|_| io_error("connect timed out".into()))?
    .map_err(io_error)?;
    let mut pending: Vec<&Bytes> = migrate.keys.iter().collect();
    // While a slot moves, a cart this node still holds is the one that counts: a copy the
    // target has is left from a MIGRATE that did not finish, and is replaced. So is one sent
    // again because it changed meanwhile.
    let moving = pending
        .iter()
        .all(|key| server.slots.migrating_to(cluster::key_slot(key)).is_some());
    let mut replace = migrate.replace || moving;
    let mut sent_any = false;
    for round in 0..5 {
        let (carts, vanished): (Vec<_>, Vec<_>) = pending
            .iter()
            .map(|key| (*key, server.store.export_cart(key, now_ms())))
            .partition(|(_, cart)| cart.is_some());
        if round > 0 && !vanished.is_empty() {
            // Sent, then deleted here before it could be removed: not on the target either.
            let keys: Vec<&Bytes> = vanished.iter().map(|(key, _)| *key).collect();
            tokio::time::timeout(timeout, link.delete(&keys))
                .await
                .map_err(|_| io_error("the target did not answer in time".into()))?
                .map_err(io_error)?;
        }
        let carts: Vec<(&Bytes, Vec<u8>, u64)> = carts
            .into_iter()
            .filter_map(|(key, cart)| cart.map(|(image, version)| (key, image, version)))
            .collect();
        if carts.is_empty() {
            return Ok(if sent_any {
                Reply::ok()
            } else {
                Reply::Simple("NOKEY".into())
            });
        }
        sent_any = true;
        let replies = tokio::time::timeout(timeout, link.import(&carts, replace))
            .await
            .map_err(|_| io_error("the target did not answer in time".into()))?
            .map_err(io_error)?;
        check_imports(&replies)?;
        pending = carts
            .iter()
            .filter(|(key, _, version)| {
                !migrate.copy && !server.store.remove_moved(key, *version, &addr, now)
            })
            .map(|(key, _, _)| *key)
            .collect();
        if pending.is_empty() {
            return Ok(Reply::ok());
        }
        // Written to since it was sent: send it again over what the target has.
        replace = true;
        warn!(
            carts = pending.len(),
            "carts changed while they were sent; sent again"
        );
    }
    Err(CommandError::new(
        ErrorCode::TryAgain,
        format!(
            "{} carts kept changing while they were sent; run MIGRATE again",
            pending.len()
        ),
    ))
}

/// Redis's MIGRATE error for a target that failed or did not answer.
fn io_error(error: String) -> CommandError {
    CommandError::err(format!(
        "IOERR error or timeout writing to target instance: {error}"
    ))
}

/// The target's replies to CART.IMPORT: all taken, or the first refusal as MIGRATE's error.
fn check_imports(replies: &[Value]) -> Result<(), CommandError> {
    for reply in replies {
        match reply {
            Value::Simple(_) | Value::Integer(_) => {}
            Value::Error(error) if error.starts_with("BUSYKEY") => {
                return Err(CommandError::new(
                    ErrorCode::BusyKey,
                    "Target key name already exists.",
                ));
            }
            other => {
                return Err(CommandError::err(format!(
                    "Target instance replied with error: {other:?}"
                )))
            }
        }
    }
    Ok(())
}

/// A connection to a MIGRATE's target.
struct Target {
    link: Link,
}

impl Target {
    /// Connects within `timeout` (every later write and reply has as long), and
    /// authenticates with MIGRATE's `AUTH`/`AUTH2`, or else with the nodes' shared password.
    async fn connect(
        addr: &str,
        auth: Option<&(Option<String>, String)>,
        timeout: Duration,
    ) -> Result<Target, String> {
        let credentials = match auth {
            Some((user, password)) => Some((user.as_deref(), password.as_str())),
            None => crate::peers::shared_password().map(|password| (None, password)),
        };
        let link = Link::connect_as(addr, credentials, timeout).await?;
        Ok(Target { link })
    }

    /// `ASKING` and `CART.IMPORT key image [REPLACE]` for each cart, pipelined; the imports'
    /// replies.
    async fn import(
        &mut self,
        carts: &[(&Bytes, Vec<u8>, u64)],
        replace: bool,
    ) -> Result<Vec<Value>, String> {
        let mut requests: Vec<Vec<&[u8]>> = Vec::with_capacity(carts.len() * 2);
        for (key, image, _) in carts {
            requests.push(vec![b"ASKING"]);
            let mut words: Vec<&[u8]> = vec![b"CART.IMPORT", key, image];
            if replace {
                words.push(b"REPLACE");
            }
            requests.push(words);
        }
        let replies = self.link.calls(&requests).await?;
        Ok(replies.into_iter().skip(1).step_by(2).collect())
    }

    /// `ASKING` and `DEL key` for each of `keys`, pipelined.
    async fn delete(&mut self, keys: &[&Bytes]) -> Result<(), String> {
        let mut requests: Vec<Vec<&[u8]>> = Vec::with_capacity(keys.len() * 2);
        for key in keys {
            requests.push(vec![b"ASKING"]);
            requests.push(vec![b"DEL", key]);
        }
        self.link.calls(&requests).await.map(|_| ())
    }
}
