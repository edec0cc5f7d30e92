-- Resharding (docs/CLUSTER.md "Resharding"): the slots served by another shard group than
-- config.toml gives them, one row per moved slot. Every node follows this table as it follows
-- the leases. The term is taken from the lease sequence when the move is recorded.
CREATE TABLE cluster_slots (
    slot        integer     PRIMARY KEY CHECK (slot BETWEEN 0 AND 16383),
    shard_group text        NOT NULL,
    term        bigint      NOT NULL,
    updated_at  timestamptz NOT NULL
);
