-- Failover (docs/CLUSTER.md "Failover"): who is the primary of each shard group, for how long,
-- and under which term. PostgreSQL's clock decides when a lease has lapsed.
--
-- Terms come from one sequence for the whole cluster, so a term is never given twice and a
-- later term is always higher, whichever shard group took it: the sink's guard on rows is
-- (term, lsn), which orders the writes of every primary a cart has had.
CREATE SEQUENCE cluster_terms;

CREATE TABLE cluster_leases (
    -- The shard group: its configured primary's cluster id.
    shard_group text        PRIMARY KEY,
    -- The node serving the group's slots under this lease.
    holder      text        NOT NULL,
    term        bigint      NOT NULL,
    expires_at  timestamptz NOT NULL,
    -- The last LSN the holder had when it took the lease (its history forks there from the
    -- term before); 0 for the group's first lease.
    since_lsn   bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL
);

-- What each node last reported of itself: a replica's acknowledged LSN decides which replica
-- takes a lapsed lease (the one holding the most).
CREATE TABLE cluster_members (
    node        text        PRIMARY KEY,
    shard_group text        NOT NULL,
    acked_lsn   bigint      NOT NULL,
    -- The term of the history it follows.
    term        bigint      NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- The term each row was written under: a row is replaced only by a later (term, lsn).
ALTER TABLE carts ADD COLUMN term bigint NOT NULL DEFAULT 0;
ALTER TABLE gift_cards ADD COLUMN term bigint NOT NULL DEFAULT 0;
-- The checkpoint's term: a new primary starts its group's checkpoint over under its own term.
ALTER TABLE sink_checkpoint ADD COLUMN term bigint NOT NULL DEFAULT 0;
-- Two primaries of one group may both have written an LSN (the old one's last records, which
-- the new one never had): an event is named by its term as well.
ALTER TABLE cart_events ADD COLUMN term bigint NOT NULL DEFAULT 0;
ALTER TABLE cart_events DROP CONSTRAINT cart_events_node_lsn_seq_key;
ALTER TABLE cart_events ADD CONSTRAINT cart_events_node_term_lsn_seq_key
    UNIQUE (node, term, lsn, seq);
