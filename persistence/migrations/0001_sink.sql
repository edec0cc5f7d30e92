-- The PostgreSQL sink's schema: the latest state of each cart, the event stream, and how far
-- each node's sink has got. Written by cartd-persistence (src/sink/); read by restore, cleanup
-- and whoever analyses carts.
--
-- Cart keys are bytes in cartd. A key that is UTF-8 without NUL and does not start with `\x` is
-- stored as it is; any other key is stored as `\x` followed by the lowercase hex of its bytes.
--
-- Times are timestamptz, converted from and to Unix milliseconds by the two functions below;
-- the largest bigint means "never" and is stored as 'infinity'.

CREATE FUNCTION cartd_ms_to_ts(ms bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN ms = 9223372036854775807 THEN 'infinity'::timestamptz
        WHEN ms = -9223372036854775808 THEN '-infinity'::timestamptz
        ELSE to_timestamp(ms::float8 / 1000)
    END
$$;

CREATE FUNCTION cartd_ts_to_ms(ts timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN ts = 'infinity'::timestamptz THEN 9223372036854775807
        WHEN ts = '-infinity'::timestamptz THEN -9223372036854775808
        ELSE round(extract(epoch FROM ts) * 1000)::bigint
    END
$$;

-- One row per cart, as of the record (lsn) that last wrote it. A row is only ever replaced by
-- a record with a higher LSN.
CREATE TABLE carts (
    key         text        PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('user', 'guest')),
    user_id     text,
    currency    text        NOT NULL,
    items       jsonb       NOT NULL,
    saved       jsonb       NOT NULL,
    unavailable jsonb       NOT NULL,
    metadata    jsonb       NOT NULL,
    version     bigint      NOT NULL,
    lsn         bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- Restore loads the carts that have not expired; cleanup deletes the long idle ones.
CREATE INDEX carts_expires_at ON carts (expires_at);
CREATE INDEX carts_updated_at ON carts (updated_at);

-- Every logged change, once: (node, lsn) names the record that caused it.
CREATE TABLE cart_events (
    id       bigserial   PRIMARY KEY,
    node     text        NOT NULL,
    lsn      bigint      NOT NULL,
    cart_key text        NOT NULL,
    kind     text        NOT NULL,
    payload  jsonb       NOT NULL,
    at       timestamptz NOT NULL,
    UNIQUE (node, lsn)
);

CREATE INDEX cart_events_cart_key_at ON cart_events (cart_key, at);
-- Cleanup deletes by age; events arrive roughly in time order, so a BRIN index is small and
-- costs inserts next to nothing.
CREATE INDEX cart_events_at ON cart_events USING brin (at);

-- How far each node's sink has applied its log. Moves in the same transaction as the rows.
CREATE TABLE sink_checkpoint (
    node       text        PRIMARY KEY,
    lsn        bigint      NOT NULL,
    updated_at timestamptz NOT NULL
);

-- The cleanup job's last run, so a node can tell whether one is due.
CREATE TABLE sink_cleanup (
    name           text        PRIMARY KEY,
    last_run_at    timestamptz NOT NULL,
    carts_deleted  bigint      NOT NULL,
    events_deleted bigint      NOT NULL
);
