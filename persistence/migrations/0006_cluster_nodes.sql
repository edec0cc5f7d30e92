-- Adding and removing nodes (docs/CLUSTER.md "Adding and removing nodes"): the nodes met or
-- changed at run time (CLUSTER MEET, CLUSTER REPLICATE) and those forgotten (CLUSTER FORGET),
-- one row per node, its config.toml entry as TOML text. Every node of a cluster follows this
-- table with the leases, so one that was down when a node joined learns of it.
CREATE TABLE cluster_nodes (
    node        text        PRIMARY KEY,
    entry       text        NOT NULL,
    forgotten   boolean     NOT NULL,
    updated_at  timestamptz NOT NULL
);
