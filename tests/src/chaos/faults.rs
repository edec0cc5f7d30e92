//! The faults the chaos harness injects into a [`ChaosCluster`] under a [`Load`], each
//! returning what it did and when (on the load's clock), so `check` can say how long a shard
//! group had no primary after each kill.

use std::time::Duration;

use super::load::Load;
use super::{ChaosCluster, Nodes};

/// How long PostgreSQL stays cut off: past three leases (3 s each by default).
pub const POSTGRES_CUT: Duration = Duration::from_secs(10);

/// How long a new primary takes writes alone before it is killed too.
const ALONE: Duration = Duration::from_secs(1);

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of a group's primary; its replica takes over; the killed node rejoins.
    KillPrimary,
    /// kill -9 of a group's primary, then of the replica that took over (the group has no
    /// live member); the first is started again and takes over, then the second rejoins.
    KillPrimaryTwice,
    /// Every node cut off PostgreSQL for [`POSTGRES_CUT`].
    CutPostgres,
    /// kill -9 of every node, every node started again at once.
    RestartAll,
    /// A group's primary cut off PostgreSQL and its replicas (its clients still reach it)
    /// until a replica takes writes, then mended; only where [`Nodes::PARTITIONS`].
    PartitionPrimary,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 5] = [
        Fault::KillPrimary,
        Fault::KillPrimaryTwice,
        Fault::CutPostgres,
        Fault::RestartAll,
        Fault::PartitionPrimary,
    ];
}

/// A primary partitioned and replaced.
#[derive(Debug, Clone)]
pub struct Partitioned {
    /// Its shard group.
    pub group: usize,
    /// The partitioned primary.
    pub old: u16,
    /// The replica that took over.
    pub new: u16,
    /// When it was cut off (load clock).
    pub at: Duration,
    /// When the harness had seen the new primary take a write (load clock).
    pub new_seen_at: Duration,
}

/// A node killed.
#[derive(Debug, Clone)]
pub struct Kill {
    /// Its shard group.
    pub group: usize,
    /// The node (0-based).
    pub node: u16,
    /// When (load clock).
    pub at: Duration,
    /// Whether it was its group's primary with a live replica to take over (a failover).
    pub failover: bool,
}

/// What a fault did.
#[derive(Debug, Clone, Default)]
pub struct Injected {
    /// The nodes killed.
    pub kills: Vec<Kill>,
    /// PostgreSQL cut off from every node, from and to (load clock).
    pub postgres_cut: Option<(Duration, Duration)>,
    /// The primary partitioned.
    pub partition: Option<Partitioned>,
}

/// Injects `fault` (on `group`, for the kills) and waits until the cluster serves every slot
/// again with every node back.
pub async fn inject<N: Nodes>(
    chaos: &ChaosCluster<N>,
    load: &Load,
    fault: Fault,
    group: usize,
) -> Injected {
    match fault {
        Fault::KillPrimary => kill_primary(chaos, load, group).await,
        Fault::KillPrimaryTwice => kill_primary_twice(chaos, load, group).await,
        Fault::CutPostgres => cut_postgres(chaos, load).await,
        Fault::RestartAll => restart_all(chaos, load).await,
        Fault::PartitionPrimary => partition_primary(chaos, load, group).await,
    }
}

async fn kill_primary<N: Nodes>(chaos: &ChaosCluster<N>, load: &Load, group: usize) -> Injected {
    let primary = chaos.primary_of(group).await;
    let at = load.elapsed();
    chaos.kill9(primary);
    chaos.until_writable(group, Some(primary)).await;
    chaos.restart(primary);
    chaos.until_following(primary).await;
    Injected {
        kills: vec![Kill {
            group,
            node: primary,
            at,
            failover: true,
        }],
        ..Injected::default()
    }
}

async fn kill_primary_twice<N: Nodes>(
    chaos: &ChaosCluster<N>,
    load: &Load,
    group: usize,
) -> Injected {
    let first = chaos.primary_of(group).await;
    let first_at = load.elapsed();
    chaos.kill9(first);
    let second = chaos.until_writable(group, Some(first)).await;
    tokio::time::sleep(ALONE).await;
    let second_at = load.elapsed();
    chaos.kill9(second);
    tokio::time::sleep(ALONE).await;
    chaos.restart(first);
    chaos.until_writable(group, Some(second)).await;
    chaos.restart(second);
    chaos.until_following(second).await;
    let kill = |node, at, failover| Kill {
        group,
        node,
        at,
        failover,
    };
    Injected {
        kills: vec![kill(first, first_at, true), kill(second, second_at, false)],
        ..Injected::default()
    }
}

async fn cut_postgres<N: Nodes>(chaos: &ChaosCluster<N>, load: &Load) -> Injected {
    let from = load.elapsed();
    chaos.cut_postgres();
    tokio::time::sleep(POSTGRES_CUT).await;
    let to = load.elapsed();
    chaos.mend_postgres();
    Injected {
        kills: Vec::new(),
        postgres_cut: Some((from, to)),
        ..Injected::default()
    }
}

async fn restart_all<N: Nodes>(chaos: &ChaosCluster<N>, load: &Load) -> Injected {
    let mut kills = Vec::new();
    for node in 0..chaos.groups.nodes {
        kills.push(Kill {
            group: chaos.groups.of_node(node),
            node,
            at: load.elapsed(),
            failover: false,
        });
    }
    chaos.restart_all();
    for group in 0..usize::from(chaos.groups.primaries) {
        chaos.until_writable(group, None).await;
    }
    Injected {
        kills,
        ..Injected::default()
    }
}

async fn partition_primary<N: Nodes>(
    chaos: &ChaosCluster<N>,
    load: &Load,
    group: usize,
) -> Injected {
    let old = chaos.primary_of(group).await;
    let replicas: Vec<u16> = chaos
        .groups
        .members(group)
        .into_iter()
        .filter(|&node| node != old)
        .collect();
    let at = load.elapsed();
    chaos.partition(old, &replicas, true);
    let new = chaos.until_writable(group, Some(old)).await;
    let new_seen_at = load.elapsed();
    chaos.partition(old, &replicas, false);
    chaos.until_following(old).await;
    Injected {
        partition: Some(Partitioned {
            group,
            old,
            new,
            at,
            new_seen_at,
        }),
        ..Injected::default()
    }
}
