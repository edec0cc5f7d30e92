-- What a gift card's owner remembers of the spends other nodes' checkouts made (docs/CLUSTER.md
-- "Gift cards"): [token, amount, until_ms] each, as the card's log image has them. A node
-- promoted over a lag window takes them back with the balance, so a spend the old primary
-- answered, whose answer was lost and that is sent again, is answered once, not taken again.
ALTER TABLE gift_cards ADD COLUMN peer_spent jsonb NOT NULL DEFAULT '[]'::jsonb;
