-- A log record may hold several changes applied together (a MERGE's two carts, a checkout's
-- cart and gift cards), each with its own event: an event is named by its node, the record's
-- LSN and its change's place in the record (seq, 0 for the first).
ALTER TABLE cart_events ADD COLUMN seq smallint NOT NULL DEFAULT 0;
ALTER TABLE cart_events DROP CONSTRAINT cart_events_node_lsn_key;
ALTER TABLE cart_events ADD CONSTRAINT cart_events_node_lsn_seq_key UNIQUE (node, lsn, seq);
