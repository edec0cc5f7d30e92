//! Micro-benchmarks of the command path without sockets: a request's arguments go through
//! `dispatch::execute` (parse, store, view) and the reply is encoded, exactly as a connection
//! does it, for the operations a flash sale and the everyday mix are made of. No write-ahead
//! log is attached, so these figures are the store's own cost; cartd-bench measures the whole.
//!
//! `cargo bench -p cartd-bench --bench store`

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use cartd_server::config::Config;
use cartd_server::dispatch::{admit, execute, Session};
use cartd_server::server::Server;
use criterion::{criterion_main, BatchSize, Criterion};
use protocol::Protocol;

/// A loaded server with no listener and no log.
fn server() -> Server {
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let server = Server::new(Config::default(), None, addr);
    server.loading.store(false, Ordering::Release);
    server
}

fn session(server: &Server) -> Session {
    let handle = server
        .clients
        .register(server.local_addr, server.local_addr, 16, &server.shutdown)
        .expect("a benchmark registers only a few clients");
    Session::new(handle, server)
}

fn args(parts: &[&str]) -> Vec<Bytes> {
    parts
        .iter()
        .map(|part| Bytes::copy_from_slice(part.as_bytes()))
        .collect()
}

/// Runs one request and encodes its reply; panics on an error reply (a broken benchmark).
fn run(server: &Server, session: &mut Session, request: Vec<Bytes>, out: &mut BytesMut) {
    let spec = match admit(&request, session, server) {
        Ok(spec) => spec,
        Err(refused) => panic!("the benchmark's request was refused: {:?}", refused.reply),
    };
    let executed = execute(request, spec, session, server);
    let reply = executed
        .reply
        .expect("no benchmarked command closes the connection");
    assert!(
        !reply.is_error(),
        "the benchmark's request failed: {reply:?}"
    );
    out.clear();
    reply.encode(Protocol::Resp2, out);
}

fn add_four_lines(server: &Server, session: &mut Session, key: &str, out: &mut BytesMut) {
    for (product, variant) in [("mug", "blue"), ("sock", "m"), ("tee", "l"), ("cap", "-")] {
        let request = args(&[
            "CART.ADD", key, product, variant, "1", "PRICE", "899", "CURRENCY", "USD",
        ]);
        run(server, session, request, out);
    }
}

fn flash_sale(c: &mut Criterion) {
    let server = server();
    let mut session = session(&server);
    let mut out = BytesMut::with_capacity(4096);
    let mut shopper = 0u64;
    c.bench_function("cart_add/new_cart_reply_version", |b| {
        b.iter(|| {
            shopper += 1;
            let key = format!("cart:fs{shopper}");
            let request = args(&[
                "CART.ADD",
                &key,
                "flash-tv-55",
                "black",
                "1",
                "PRICE",
                "49900",
                "CURRENCY",
                "USD",
                "REPLY",
                "VERSION",
            ]);
            run(&server, &mut session, request, &mut out);
        })
    });
}

fn everyday(c: &mut Criterion) {
    let server = server();
    let mut session = session(&server);
    let mut out = BytesMut::with_capacity(4096);
    add_four_lines(&server, &mut session, "cart:u1", &mut out);
    let mut qty = 1;
    c.bench_function("cart_set/4_lines_reply_version", |b| {
        b.iter(|| {
            qty = 3 - qty;
            let qty = qty.to_string();
            let request = args(&[
                "CART.SET", "cart:u1", "mug", "blue", &qty, "REPLY", "VERSION",
            ]);
            run(&server, &mut session, request, &mut out);
        })
    });
    c.bench_function("cart_get/4_lines_full_view", |b| {
        b.iter(|| {
            run(
                &server,
                &mut session,
                args(&["CART.GET", "cart:u1"]),
                &mut out,
            )
        })
    });
    c.bench_function("cart_get/4_lines_json", |b| {
        b.iter(|| {
            let request = args(&["CART.GET", "cart:u1", "FORMAT", "JSON"]);
            run(&server, &mut session, request, &mut out);
        })
    });
    // The same view with two promo codes applied: the pricing engine and the larger reply.
    add_four_lines(&server, &mut session, "cart:u2", &mut out);
    let percent = r#"{"kind":"percent","percent":10}"#;
    let fixed = r#"{"kind":"fixed","amount":300,"currency":"USD","stackable":true}"#;
    for (code, document) in [("TEN", percent), ("OFF", fixed)] {
        run(
            &server,
            &mut session,
            args(&["PROMO.SET", code, document]),
            &mut out,
        );
        let apply = args(&["CART.PROMO", "cart:u2", "ADD", code]);
        run(&server, &mut session, apply, &mut out);
    }
    c.bench_function("cart_get/4_lines_2_promotions", |b| {
        b.iter(|| {
            run(
                &server,
                &mut session,
                args(&["CART.GET", "cart:u2"]),
                &mut out,
            )
        })
    });
}

fn logins(c: &mut Criterion) {
    let server = server();
    let (mut setup_session, mut session) = (session(&server), session(&server));
    let (mut setup_out, mut out) = (BytesMut::new(), BytesMut::with_capacity(4096));
    let mut login = 0u64;
    c.bench_function("cart_merge/4_into_4_lines", |b| {
        b.iter_batched(
            || {
                login += 1;
                let (guest, user) = (format!("cart:guest:g{login}"), format!("cart:u{login}"));
                add_four_lines(&server, &mut setup_session, &guest, &mut setup_out);
                add_four_lines(&server, &mut setup_session, &user, &mut setup_out);
                (guest, user)
            },
            |(guest, user)| {
                let request = args(&["CART.MERGE", &guest, &user, "REPLY", "VERSION"]);
                run(&server, &mut session, request, &mut out);
            },
            BatchSize::SmallInput,
        )
    });
}

/// The group lives in a private module: criterion's macro makes an undocumented `pub fn`.
mod group {
    use super::{everyday, flash_sale, logins};
    criterion::criterion_group!(benches, flash_sale, everyday, logins);
}

criterion_main!(group::benches);
