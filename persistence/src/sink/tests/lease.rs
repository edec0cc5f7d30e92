//! Fencing across a failover: once a replica takes a shard group's lease, no transaction of
//! the old term commits, the new term's rows replace the old ones whatever their LSNs, and
//! the old term's last carts are there to be taken back (the lag window).

use super::support::*;
use super::writer::{start, stop};
use crate::sink::lease::{self, Renewal};
use crate::sink::{checkpoint_at, load_carts_written_after, Term};

/// The old primary's sink stops at the take-over (nothing of its later records reaches
/// PostgreSQL), its renewal is refused, and the new primary's sink writes LSNs the old one
/// had already used.
#[tokio::test]
async fn after_a_take_over_the_old_term_writes_nothing_and_the_new_one_wins() {
    let (db, pool) = TestDb::create().await;
    let first = lease::claim_first(&pool, "n1", "n1", 60_000)
        .await
        .expect("the first lease");
    assert_eq!((first.holder.as_str(), first.since_lsn), ("n1", 0));
    let old_source = VecSource::default();
    old_source.push([
        add(1, b"cart:a", 1),
        add(2, b"cart:a", 2),
        add(3, b"cart:b", 1),
    ]);
    let (old, old_cancel) = start(&pool, &old_source, |options| {
        options.term = Term {
            term: first.term,
            leased: true,
        };
    });
    wait_for_checkpoint(&old, 3).await;
    // n2 had LSN 2 when it took over (a planned hand-over: the lease has not lapsed).
    let taken = lease::take_over(
        &pool,
        "n1",
        "n2",
        first.term,
        true,
        60_000,
        lease::Fork::at(2),
    )
    .await
    .expect("the statement")
    .expect("taken");
    assert!(taken.term > first.term);
    assert_eq!(taken.checkpoint, (first.term, 3));
    assert_eq!(checkpoint_at(&pool, "n1").await.unwrap(), (taken.term, 2));
    // Taking it again at the old term is refused, and so is the old holder's renewal.
    let again = lease::take_over(
        &pool,
        "n1",
        "n3",
        first.term,
        true,
        60_000,
        lease::Fork::at(9),
    )
    .await;
    assert_eq!(again.expect("the statement"), None);
    let renewal = lease::renew(&pool, "n1", "n1", first.term, 60_000)
        .await
        .expect("the statement");
    assert!(matches!(renewal, Renewal::Lost(Some(ref now)) if now.holder == "n2"));
    // The old primary goes on writing: its sink is fenced and stops.
    old_source.push([add(4, b"cart:c", 1)]);
    wait_for(&old, "the old sink to be fenced", |handle| {
        handle
            .stats
            .last_error()
            .is_some_and(|error| error.contains("another node took the group over"))
    })
    .await;
    stop(old, old_cancel).await;
    assert!(
        !carts(&pool).await.iter().any(|(key, _, _)| key == "cart:c"),
        "nothing of the old term after the take-over"
    );
    // The lag window: what the old term wrote past n2's LSN 2.
    let window = load_carts_written_after(&pool, first.term, 2)
        .await
        .unwrap();
    let keys: Vec<&[u8]> = window.iter().map(|(key, _)| &key[..]).collect();
    assert_eq!(keys, vec![&b"cart:b"[..]]);
    assert_the_new_term_wins(&pool, taken.term).await;
    db.drop(pool).await;
}

/// The new primary writes LSN 3 again, for another cart version: its `term` wins.
async fn assert_the_new_term_wins(pool: &sqlx::PgPool, term: u64) {
    let new_source = VecSource::default();
    new_source.push([add(3, b"cart:b", 7)]);
    let (new, new_cancel) = start(pool, &new_source, |options| {
        options.term = Term { term, leased: true };
    });
    wait_for_checkpoint(&new, 3).await;
    stop(new, new_cancel).await;
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT version, term FROM carts WHERE key = 'cart:b'")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(rows, vec![(7, i64::try_from(term).unwrap())]);
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cart_events WHERE node = 'n1' AND lsn = 3")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(events, 2, "LSN 3 of each term is its own event");
}

/// A cart moved to another shard group with its slot (MIGRATE) leaves its row alone: the
/// importing group writes it from then on; a delete still deletes.
#[tokio::test]
async fn a_moved_cart_keeps_its_row() {
    let (db, pool) = TestDb::create().await;
    let source = VecSource::default();
    source.push([add(1, b"cart:moved", 1), add(2, b"cart:gone", 1)]);
    let (handle, cancel) = start(&pool, &source, |_| {});
    wait_for_checkpoint(&handle, 2).await;
    source.push([
        tombstone(3, b"cart:moved", 1, crate::record::TombstoneReason::Moved),
        tombstone(4, b"cart:gone", 1, crate::record::TombstoneReason::Deleted),
    ]);
    wait_for_checkpoint(&handle, 4).await;
    stop(handle, cancel).await;
    let keys: Vec<String> = carts(&pool)
        .await
        .into_iter()
        .map(|(key, _, _)| key)
        .collect();
    assert_eq!(keys, vec!["cart:moved".to_owned()]);
    db.drop(pool).await;
}

/// A session that went silent inside a transaction holding the group's lease row (a primary
/// cut off from PostgreSQL mid-batch: its sink's share lock) is ended by PostgreSQL after
/// `IDLE_IN_TRANSACTION_MS`, so a replica's take-over gets the row. Before (83876f4) the
/// take-over waited on the lock for as long as PostgreSQL kept the dead session, and the
/// failover never happened (cluster_partition.rs failed now and then under load).
#[tokio::test]
async fn a_silent_session_holding_the_lease_row_does_not_block_a_take_over() {
    let (_db, pool) = TestDb::create().await;
    let first = lease::claim_first(&pool, "n1", "n1", 100)
        .await
        .expect("the first lease");
    let mut silent = pool.begin().await.expect("a transaction");
    sqlx::query("SELECT term FROM cluster_leases WHERE shard_group = 'n1' FOR SHARE")
        .execute(&mut *silent)
        .await
        .expect("the share lock");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await; // The lease lapses.
    let taking = lease::take_over(
        &pool,
        "n1",
        "n2",
        first.term,
        false,
        3_000,
        lease::Fork::at(0),
    );
    let taken = tokio::time::timeout(std::time::Duration::from_secs(20), taking)
        .await
        .expect("the take-over is not blocked for good")
        .expect("the statement")
        .expect("taken");
    assert!(taken.term > first.term);
    assert!(
        silent.commit().await.is_err(),
        "PostgreSQL ended the silent session"
    );
}

/// A slot's move is recorded against the term its old owner handed the slot's gift cards
/// over at, and refused once a replica took that group's lease since (the replica never saw
/// the seal: it decides the cards as it had them); a move without that condition is recorded.
#[tokio::test]
async fn a_slot_move_handed_over_under_a_term_taken_over_since_is_refused() {
    let (_db, pool) = TestDb::create().await;
    let first = lease::claim_first(&pool, "n1", "n1", 60_000)
        .await
        .expect("the first lease");
    let recorded = lease::record_slot_move(&pool, 7, "n2", Some(("n1", first.term)))
        .await
        .expect("the statement");
    assert!(recorded.is_some_and(|term| term > first.term));
    let taken = lease::take_over(
        &pool,
        "n1",
        "n3",
        first.term,
        true,
        60_000,
        lease::Fork::at(0),
    )
    .await
    .expect("the statement")
    .expect("taken");
    let refused = lease::record_slot_move(&pool, 8, "n2", Some(("n1", first.term)))
        .await
        .expect("the statement");
    assert_eq!(refused, None, "n1 is at term {} now", taken.term);
    let moves = lease::slot_moves(&pool).await.expect("the moves");
    assert!(
        moves.iter().all(|(slot, _, _)| *slot != 8),
        "slot 8 not recorded: {moves:?}"
    );
    let recorded = lease::record_slot_move(&pool, 8, "n2", Some(("n1", taken.term)))
        .await
        .expect("the statement");
    assert!(recorded.is_some());
    assert!(lease::record_slot_move(&pool, 9, "n2", None)
        .await
        .expect("the statement")
        .is_some());
}
