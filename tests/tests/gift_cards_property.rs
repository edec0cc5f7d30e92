//! The gift card ledger under a random interleaving of everything that touches it: checkouts
//! (some with a one-second hold that runs out), completions and their retries, releases, DEL
//! of carts in checkout, waits past a hold, and restarts (kill -9 and graceful). After every
//! step each card's balance is exactly its first balance less what the acknowledged
//! completions spent (so nothing is spent twice and nothing is lost across a restart), what
//! it holds is what the checkouts in progress reserved, and no card has paid more than its
//! balance. The interleaving comes from a seeded generator (`CARTD_LEDGER_SEED` replays one);
//! the seed is in every failure message.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cartd_tests::{cmd, ok, resp3_to_json, w, Cartd};
use redis::aio::MultiplexedConnection;

/// The cards and their first balances.
const CARDS: [(&str, i64); 2] = [("G1", 10_000), ("G2", 3_000)];

/// Carts the steps pick from.
const CARTS: usize = 8;

/// Steps per seed.
const STEPS: usize = 220;

/// A checkout whose hold runs out after this long has certainly run out (its hold is 1 s,
/// counted from before its reply came).
const SHORT_HOLD_OVER: Duration = Duration::from_millis(1500);

/// A small deterministic generator (64-bit LCG, high bits).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// What the model knows of one cart.
#[derive(Debug, Clone)]
enum CartModel {
    /// Not there (never made, deleted, or completed).
    Gone,
    /// Has a line and maybe cards; not in checkout.
    Active,
    /// In checkout: its token, what it reserved on each card, and whether its hold is 1 s
    /// (then when its reply came).
    Frozen {
        token: String,
        reserved: HashMap<String, i64>,
        short_since: Option<Instant>,
    },
}

/// The model of the whole run.
struct Ledger {
    seed: u64,
    carts: Vec<CartModel>,
    /// Spent by acknowledged completions, per card.
    spent: HashMap<String, i64>,
    /// Completed checkouts (cart index, token) whose cart has not been made again since.
    completed: Vec<(usize, String)>,
    /// Reservations of short holds that ran out, per cart: a lapsed hold may still be counted
    /// in `held` until the cart is touched again, so they only widen the upper bound.
    lapsed: Vec<HashMap<String, i64>>,
    /// What the run did, so that it can be checked to have done it.
    tally: Tally,
}

/// Counts of the steps that matter, over a run.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    completions: u32,
    retries: u32,
    lapses: u32,
    releases: u32,
    deletes_in_checkout: u32,
}

fn key(index: usize) -> String {
    format!("cart:ledger{index}")
}

/// The error code of a refusal (its first word).
fn code(error: &str) -> &str {
    error.split_whitespace().next().unwrap_or("")
}

impl Ledger {
    fn context(&self, step: usize) -> String {
        format!("seed {} step {step}", self.seed)
    }

    /// Checks every card against the model.
    async fn check(&self, conn: &mut MultiplexedConnection, step: usize) {
        for (card, first) in CARDS {
            let view = resp3_to_json(&ok(conn, &["GIFTCARD.GET", card]).await);
            let spent = self.spent.get(card).copied().unwrap_or(0);
            let context = format!("{}: {card} {view}", self.context(step));
            assert!(spent <= first, "{context}: spent {spent} of {first}");
            assert_eq!(view["balance"], first - spent, "{context}: spent {spent}");
            let sum = |reservations: &mut dyn Iterator<Item = &HashMap<String, i64>>| -> i64 {
                reservations
                    .map(|reserved| reserved.get(card).copied().unwrap_or(0))
                    .sum()
            };
            let (long, short): (Vec<_>, Vec<_>) = self
                .carts
                .iter()
                .filter_map(|cart| match cart {
                    CartModel::Frozen {
                        reserved,
                        short_since,
                        ..
                    } => Some((reserved, short_since.is_some())),
                    _ => None,
                })
                .partition(|(_, short)| !short);
            let at_least = sum(&mut long.iter().map(|(reserved, _)| *reserved));
            let at_most = at_least
                + sum(&mut short.iter().map(|(reserved, _)| *reserved))
                + sum(&mut self.lapsed.iter());
            let held = view["held"].as_i64().unwrap_or(-1);
            assert!(
                (at_least..=at_most).contains(&held),
                "{context}: held {held}, checkouts in progress reserved {at_least}..={at_most}"
            );
            assert_eq!(
                view["available"].as_i64(),
                Some(first - spent - held),
                "{context}"
            );
        }
    }

    /// Gives a cart a line and cards (a new cart if it was gone).
    async fn fill(&mut self, conn: &mut MultiplexedConnection, rng: &mut Lcg, index: usize) {
        let key = key(index);
        if matches!(self.carts[index], CartModel::Gone) {
            self.completed.retain(|(cart, _)| *cart != index);
            self.lapsed[index].clear();
        }
        let price = (500 + rng.below(6_000)).to_string();
        let product = format!("p{}", rng.below(5));
        ok(
            conn,
            &[
                "CART.ADD", &key, &product, "-", "1", "PRICE", &price, "CURRENCY", "USD",
            ],
        )
        .await;
        for (card, _) in CARDS {
            if rng.below(3) == 0 {
                continue;
            }
            match cmd(conn, &["CART.GIFTCARD", &key, "ADD", card]).await {
                Ok(_) => {}
                // A card with nothing left to reserve is refused up front.
                Err(error) if code(&error) == "GIFTCARD" => {}
                Err(error) => panic!("{key} GIFTCARD ADD {card}: {error}"),
            }
        }
        self.carts[index] = CartModel::Active;
    }

    async fn check_out(&mut self, conn: &mut MultiplexedConnection, rng: &mut Lcg, index: usize) {
        let key = key(index);
        let short = rng.below(5) == 0;
        let mut args = vec!["CART.CHECKOUT", key.as_str()];
        if short {
            args.extend(["HOLD", "1"]);
        }
        let frozen = resp3_to_json(&ok(conn, &args).await);
        let mut reserved = HashMap::new();
        for used in frozen["gift_cards"].as_array().into_iter().flatten() {
            let applied = used["applied"].as_i64().unwrap_or(0);
            assert!(applied >= 0, "{frozen}");
            *reserved
                .entry(used["code"].as_str().unwrap_or_default().to_owned())
                .or_default() += applied;
        }
        let paid: i64 = reserved.values().sum();
        assert_eq!(
            frozen["totals"]["gift_card"].as_i64(),
            Some(paid),
            "{frozen}"
        );
        self.lapsed[index].clear();
        self.carts[index] = CartModel::Frozen {
            token: frozen["checkout_token"].as_str().unwrap().to_owned(),
            reserved,
            short_since: short.then(Instant::now),
        };
    }

    async fn complete(&mut self, conn: &mut MultiplexedConnection, index: usize, step: usize) {
        let CartModel::Frozen {
            token,
            reserved,
            short_since,
        } = self.carts[index].clone()
        else {
            return;
        };
        let key = key(index);
        let context = self.context(step);
        match cmd(conn, &["CART.COMPLETE", &key, &token]).await {
            Ok(_) => {
                assert!(
                    short_since.is_none_or(|since| since.elapsed() < SHORT_HOLD_OVER),
                    "{context}: {key} completed after its hold ran out"
                );
                for (card, amount) in reserved {
                    *self.spent.entry(card).or_default() += amount;
                }
                self.carts[index] = CartModel::Gone;
                self.completed.push((index, token));
                self.tally.completions += 1;
            }
            // Only a one-second hold may have run out.
            Err(error) if short_since.is_some() && matches!(code(&error), "TOKEN" | "GIFTCARD") => {
                self.lapsed[index] = reserved;
                self.carts[index] = CartModel::Active;
                self.tally.lapses += 1;
            }
            Err(error) => panic!("{context}: COMPLETE {key}: {error}"),
        }
    }

    /// A retried COMPLETE of a completed checkout: `+OK` again, spending nothing.
    async fn retry_complete(&mut self, conn: &mut MultiplexedConnection, rng: &mut Lcg) {
        if self.completed.is_empty() {
            return;
        }
        let pick = rng.below(self.completed.len() as u64) as usize;
        let (index, token) = self.completed[pick].clone();
        let key = key(index);
        ok(conn, &["CART.COMPLETE", &key, &token]).await;
        self.tally.retries += 1;
    }

    async fn release(&mut self, conn: &mut MultiplexedConnection, index: usize, step: usize) {
        let CartModel::Frozen {
            token, short_since, ..
        } = self.carts[index].clone()
        else {
            return;
        };
        let key = key(index);
        match cmd(conn, &["CART.RELEASE", &key, &token]).await {
            Ok(_) => {
                self.carts[index] = CartModel::Active;
                self.tally.releases += 1;
            }
            Err(error) if short_since.is_some() && code(&error) == "TOKEN" => {
                self.carts[index] = CartModel::Active;
            }
            Err(error) => panic!("{}: RELEASE {key}: {error}", self.context(step)),
        }
        self.lapsed[index].clear();
    }

    async fn delete(&mut self, conn: &mut MultiplexedConnection, index: usize) {
        ok(conn, &["DEL", &key(index)]).await;
        if matches!(self.carts[index], CartModel::Frozen { .. }) {
            self.tally.deletes_in_checkout += 1;
        }
        self.carts[index] = CartModel::Gone;
        self.lapsed[index].clear();
    }

    /// Short holds now certainly over: moved to `lapsed`.
    fn note_lapsed_holds(&mut self) {
        for (index, cart) in self.carts.iter_mut().enumerate() {
            if let CartModel::Frozen {
                reserved,
                short_since: Some(since),
                ..
            } = cart
            {
                if since.elapsed() >= SHORT_HOLD_OVER {
                    self.lapsed[index] = std::mem::take(reserved);
                    *cart = CartModel::Active;
                    self.tally.lapses += 1;
                }
            }
        }
    }
}

async fn run_seed(seed: u64) -> Tally {
    let mut cartd = Cartd::start_async("[persistence]\nappendfsync = \"everysec\"\n").await;
    let mut conn = cartd.client(true).await;
    for (card, balance) in CARDS {
        ok(&mut conn, &w(&format!("GIFTCARD.SET {card} {balance} USD"))).await;
    }
    let mut rng = Lcg(seed);
    let mut ledger = Ledger {
        seed,
        carts: vec![CartModel::Gone; CARTS],
        spent: HashMap::new(),
        completed: Vec::new(),
        lapsed: vec![HashMap::new(); CARTS],
        tally: Tally::default(),
    };
    let mut restarts = 0;
    let mut waits = 0;
    for step in 0..STEPS {
        let index = rng.below(CARTS as u64) as usize;
        match (rng.below(100), &ledger.carts[index]) {
            (0..=2, _) if restarts < 5 => {
                if restarts % 2 == 0 {
                    cartd.kill();
                } else {
                    assert!(cartd.stop_gracefully().success(), "{}", cartd.log());
                }
                cartd.restart();
                conn = cartd.client(true).await;
                restarts += 1;
            }
            (3..=4, _) if waits < 3 => {
                tokio::time::sleep(SHORT_HOLD_OVER).await;
                waits += 1;
            }
            (5..=14, _) => ledger.retry_complete(&mut conn, &mut rng).await,
            (15..=22, CartModel::Frozen { .. } | CartModel::Active) => {
                ledger.delete(&mut conn, index).await;
            }
            (_, CartModel::Gone) => ledger.fill(&mut conn, &mut rng, index).await,
            (23..=59, CartModel::Active) => ledger.check_out(&mut conn, &mut rng, index).await,
            (_, CartModel::Active) => ledger.fill(&mut conn, &mut rng, index).await,
            (23..=74, CartModel::Frozen { .. }) => ledger.complete(&mut conn, index, step).await,
            (_, CartModel::Frozen { .. }) => ledger.release(&mut conn, index, step).await,
        }
        ledger.note_lapsed_holds();
        ledger.check(&mut conn, step).await;
    }
    let spent: i64 = ledger.spent.values().sum();
    assert!(
        spent > 0 && restarts >= 3,
        "seed {seed}: the run must spend and restart (spent {spent}, {restarts} restarts)"
    );
    ledger.tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_interleaving_spends_a_card_beyond_its_balance() {
    let seeds: Vec<u64> = match std::env::var("CARTD_LEDGER_SEED") {
        Ok(seed) => vec![seed.parse().expect("CARTD_LEDGER_SEED is a number")],
        Err(_) => vec![1, 2, 3],
    };
    let mut total = Tally::default();
    for seed in seeds {
        let tally = run_seed(seed).await;
        eprintln!("seed {seed}: {tally:?}");
        total.completions += tally.completions;
        total.retries += tally.retries;
        total.lapses += tally.lapses;
        total.releases += tally.releases;
        total.deletes_in_checkout += tally.deletes_in_checkout;
    }
    assert!(
        total.completions > 0
            && total.retries > 0
            && total.lapses > 0
            && total.releases > 0
            && total.deletes_in_checkout > 0,
        "every kind of step must have happened: {total:?}"
    );
}
