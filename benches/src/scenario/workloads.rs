//! What the shoppers do: the operation streams the scenarios feed to the closed loop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::closed::{now_ms, Workload};
use crate::target::{Model, Op};

/// The flash-sale product: every shopper adds this one.
pub const FLASH_PRODUCT: &str = "flash-tv-55";
/// Its variant.
pub const FLASH_VARIANT: &str = "black";
/// Its price in minor units.
pub const FLASH_PRICE: u64 = 49_900;

/// A shopper adding one flash-sale product to `cart`.
pub fn flash_add(cart: &str) -> Op<'_> {
    Op::Add {
        cart,
        product: FLASH_PRODUCT,
        variant: FLASH_VARIANT,
        qty: 1,
        price: FLASH_PRICE,
    }
}

/// The cart id of flash-sale shopper `n`.
pub fn flash_cart(n: u64) -> String {
    format!("fs{n}")
}

/// Flash sale: each operation is one shopper adding the product to their own cart; shoppers
/// are taken in turn from a pool (after the pool, they come back for one more).
pub struct FlashAdd {
    next: u64,
    step: u64,
    shoppers: u64,
}

impl FlashAdd {
    /// Connection `index` of `connections`, over `shoppers` carts.
    pub fn new(index: usize, connections: usize, shoppers: u64) -> FlashAdd {
        FlashAdd {
            next: index as u64,
            step: connections as u64,
            shoppers: shoppers.max(1),
        }
    }

    /// Appends the next add (also used by the open loop).
    pub fn push(&mut self, model: &Model, buf: &mut Vec<u8>) -> usize {
        let cart = self.next_cart();
        model.push(buf, &flash_add(&cart), now_ms())
    }

    /// The cart of the next add (the cluster loops route by it before writing the add).
    pub fn next_cart(&mut self) -> String {
        let cart = flash_cart(self.next % self.shoppers);
        self.next += self.step;
        cart
    }
}

impl Workload for FlashAdd {
    fn next(&mut self, model: &Model, buf: &mut Vec<u8>) -> Option<usize> {
        Some(self.push(model, buf))
    }
}

/// Products the everyday mix picks from.
const STEADY_PRODUCTS: u32 = 10_000;
/// Variants per product.
const VARIANTS: [&str; 3] = ["s", "m", "l"];

/// An operation with owned names, queued for a session.
#[derive(Debug, Clone)]
enum Planned {
    Add(String, u32, u32),
    Set(String, u32, u32),
    Remove(String, u32),
    Save(String, u32),
    View(String),
    Merge(String, String),
}

/// The everyday mix: sessions of about six operations. 60% are guests (`guest:` carts), the
/// others users with a long-lived cart; a session adds two products, views the cart, changes a
/// quantity, removes or saves a line half and a quarter of the time, views again, and 30% of
/// guest sessions end with a login that merges the guest cart into the user's.
pub struct Steady {
    rng: SmallRng,
    connection: usize,
    sessions: u64,
    users: u64,
    queue: VecDeque<Planned>,
}

impl Steady {
    /// Connection `index`, over a pool of `users` user carts.
    pub fn new(index: usize, users: u64) -> Steady {
        Steady {
            rng: SmallRng::seed_from_u64(0x5eed ^ index as u64),
            connection: index,
            sessions: 0,
            users: users.max(1),
            queue: VecDeque::new(),
        }
    }

    fn plan_session(&mut self) {
        self.sessions += 1;
        let guest = self.rng.random_bool(0.6);
        let cart = if guest {
            format!("guest:s{}-{}", self.connection, self.sessions)
        } else {
            format!("u{}", self.rng.random_range(0..self.users))
        };
        let first = self.rng.random_range(0..STEADY_PRODUCTS);
        let second = (first + 1 + self.rng.random_range(0..STEADY_PRODUCTS - 1)) % STEADY_PRODUCTS;
        let queue = &mut self.queue;
        queue.push_back(Planned::Add(cart.clone(), first, 1));
        queue.push_back(Planned::Add(
            cart.clone(),
            second,
            self.rng.random_range(1..=2),
        ));
        queue.push_back(Planned::View(cart.clone()));
        queue.push_back(Planned::Set(cart.clone(), first, 2));
        match self.rng.random_range(0..4) {
            0 | 1 => queue.push_back(Planned::Remove(cart.clone(), second)),
            2 => queue.push_back(Planned::Save(cart.clone(), second)),
            _ => {}
        }
        queue.push_back(Planned::View(cart.clone()));
        if guest && self.rng.random_bool(0.3) {
            let user = format!("u{}", self.rng.random_range(0..self.users));
            queue.push_back(Planned::Merge(cart, user));
        }
    }
}

fn product_name(product: u32) -> String {
    format!("sku-{product}")
}

fn variant_of(product: u32) -> &'static str {
    VARIANTS[product as usize % VARIANTS.len()]
}

fn price_of(product: u32) -> u64 {
    499 + u64::from(product % 200) * 100
}

impl Workload for Steady {
    fn next(&mut self, model: &Model, buf: &mut Vec<u8>) -> Option<usize> {
        if self.queue.is_empty() {
            self.plan_session();
        }
        let planned = self.queue.pop_front().expect("a session was just planned");
        let now = now_ms();
        let replies = match &planned {
            Planned::Add(cart, product, qty) => {
                let name = product_name(*product);
                let op = Op::Add {
                    cart,
                    product: &name,
                    variant: variant_of(*product),
                    qty: *qty,
                    price: price_of(*product),
                };
                model.push(buf, &op, now)
            }
            Planned::Set(cart, product, qty) => {
                let name = product_name(*product);
                let op = Op::SetQty {
                    cart,
                    product: &name,
                    variant: variant_of(*product),
                    qty: *qty,
                };
                model.push(buf, &op, now)
            }
            Planned::Remove(cart, product) | Planned::Save(cart, product) => {
                let name = product_name(*product);
                let (product, variant) = (name.as_str(), variant_of(*product));
                let op = match planned {
                    Planned::Remove(..) => Op::Remove {
                        cart,
                        product,
                        variant,
                    },
                    _ => Op::Save {
                        cart,
                        product,
                        variant,
                    },
                };
                model.push(buf, &op, now)
            }
            Planned::View(cart) => model.push(buf, &Op::View { cart }, now),
            Planned::Merge(guest, user) => model.push(buf, &Op::Merge { guest, user }, now),
        };
        Some(replies)
    }
}

/// Lines per cart in the memory scenario and the merge storm's carts.
pub const LINES_PER_CART: u64 = 4;

/// Loads carts of [`LINES_PER_CART`] lines: operation `i` of a shared counter adds line
/// `i % 4` of cart `i / 4`, until `total` carts are full. Cart `n`'s line `l` is product
/// number `l + shift` of that cart's series, so two loads with shifts 0 and 2 give carts `n`
/// two lines in common.
pub struct LoadCarts {
    next: Arc<AtomicU64>,
    total_ops: u64,
    prefix: &'static str,
    shift: u64,
}

impl LoadCarts {
    /// Shared by every connection of one load: carts `{prefix}{n}` for n in 0..carts.
    pub fn new(next: Arc<AtomicU64>, carts: u64, prefix: &'static str, shift: u64) -> LoadCarts {
        LoadCarts {
            next,
            total_ops: carts * LINES_PER_CART,
            prefix,
            shift,
        }
    }
}

impl Workload for LoadCarts {
    fn next(&mut self, model: &Model, buf: &mut Vec<u8>) -> Option<usize> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        if index >= self.total_ops {
            return None;
        }
        let (cart, line) = (index / LINES_PER_CART, index % LINES_PER_CART);
        let product =
            ((cart * 7 + (line + self.shift) * 1_009) % u64::from(STEADY_PRODUCTS)) as u32;
        let id = format!("{}{cart}", self.prefix);
        let name = product_name(product);
        let op = Op::Add {
            cart: &id,
            product: &name,
            variant: variant_of(product),
            qty: 1 + (line as u32 % 2),
            price: price_of(product),
        };
        Some(model.push(buf, &op, now_ms()))
    }
}

/// The merge storm: login `i` of a shared counter merges guest cart `guest:ms{i}` into user
/// cart `msu{i}` (both loaded beforehand with [`LoadCarts`]).
pub struct Logins {
    next: Arc<AtomicU64>,
    logins: u64,
}

/// Prefix of the merge storm's guest carts.
pub const STORM_GUEST_PREFIX: &str = "guest:ms";
/// Prefix of the merge storm's user carts.
pub const STORM_USER_PREFIX: &str = "msu";

impl Logins {
    /// Shared by every connection of the storm.
    pub fn new(next: Arc<AtomicU64>, logins: u64) -> Logins {
        Logins { next, logins }
    }
}

impl Workload for Logins {
    fn next(&mut self, model: &Model, buf: &mut Vec<u8>) -> Option<usize> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        if index >= self.logins {
            return None;
        }
        let guest = format!("{STORM_GUEST_PREFIX}{index}");
        let user = format!("{STORM_USER_PREFIX}{index}");
        let op = Op::Merge {
            guest: &guest,
            user: &user,
        };
        Some(model.push(buf, &op, now_ms()))
    }
}
