-- Reference data cartd owns, streamed like carts: each row as of the record (lsn) that last
-- wrote it, only ever replaced by a record with a higher LSN, and the checkpoint moving in the
-- same transaction: exactly once. Restored from here into a node whose data directory is lost.

-- The cart exactly as cartd holds it (its image), beside the readable columns: a restore takes
-- it back whole, a checkout in progress included. NULL in rows written before this column.
ALTER TABLE carts ADD COLUMN image bytea;

-- Catalog entries pushed with CATALOG.SET / STOCK.SET (what the upstream services answer is a
-- cache and is not streamed). Keys are stored like cart keys (text, or \x and hex).
CREATE TABLE catalog (
    product    text        NOT NULL,
    variant    text        NOT NULL,
    price      bigint,
    currency   text,
    stock      bigint,
    max_qty    integer,
    updated_at timestamptz NOT NULL,
    lsn        bigint      NOT NULL,
    PRIMARY KEY (product, variant)
);

-- Promotions, as their canonical PROMO.GET document.
CREATE TABLE promotions (
    code       text        PRIMARY KEY,
    document   jsonb       NOT NULL,
    automatic  boolean     NOT NULL,
    updated_at timestamptz NOT NULL,
    lsn        bigint      NOT NULL
);

-- Gift card balances, after every spend (CART.COMPLETE) and every GIFTCARD.SET.
CREATE TABLE gift_cards (
    code       text        PRIMARY KEY,
    balance    bigint      NOT NULL,
    currency   text        NOT NULL,
    updated_at timestamptz NOT NULL,
    lsn        bigint      NOT NULL
);
