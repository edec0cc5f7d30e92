//! ACL users, as Redis has them (docs/SECURITY.md): the example users of the docs from
//! config.toml, NOPERM worded as Redis words it, ACL LOG and INFO counting denials and failed
//! AUTHs, ACL SETUSER/GETUSER/DELUSER/LIST/USERS/WHOAMI/CAT/SAVE/LOAD, and real clients
//! logging in with a user name: redis-cli `--user`, redis-py `username=`, ioredis.

use std::path::PathBuf;
use std::process::Command;

use cartd_tests::{client_libs, cmd, info, info_number, ok, redis_cli, run_script, text, w, Cartd};
use redis::aio::MultiplexedConnection;

/// The docs' example users (docs/SECURITY.md), as config.toml lines.
const USERS: &str = r#"[acl]
users = [
  "user storefront on >shop-secret ~cart:* +@cart -@checkout",
  "user catalog-feed on >feed-secret +catalog.set +catalog.del +stock.set +catalog.get",
  "user checkout on >pay-secret ~cart:* +@checkout +cart.get",
  "user ops on >ops-secret allkeys +@all",
]
"#;

fn config(extra: &str) -> String {
    format!("[server]\nrequirepass = \"root-secret\"\n{extra}\n{USERS}")
}

/// A connection logged in as `user`.
async fn as_user(cartd: &Cartd, user: &str, password: &str) -> MultiplexedConnection {
    let mut conn = cartd.client(false).await;
    ok(&mut conn, &["AUTH", user, password]).await;
    conn
}

#[tokio::test]
async fn each_user_runs_only_what_it_is_allowed() {
    let cartd = Cartd::start_async(&config("")).await;
    let mut shop = as_user(&cartd, "storefront", "shop-secret").await;
    ok(
        &mut shop,
        &w("CART.ADD cart:1 sku - 1 PRICE 100 CURRENCY USD"),
    )
    .await;
    assert_eq!(
        cmd(
            &mut shop,
            &w("CART.ADD other:1 sku - 1 PRICE 100 CURRENCY USD")
        )
        .await,
        Err("NOPERM No permissions to access a key".into())
    );
    assert_eq!(
        cmd(&mut shop, &w("CONFIG GET maxclients")).await,
        Err("NOPERM User storefront has no permissions to run the 'config' command".into())
    );
    assert_eq!(
        cmd(&mut shop, &w("CART.CHECKOUT cart:1")).await,
        Err("NOPERM User storefront has no permissions to run the 'cart.checkout' command".into())
    );
    assert_eq!(
        cmd(&mut shop, &w("CATALOG.SET p - 100 USD")).await,
        Err("NOPERM User storefront has no permissions to run the 'catalog.set' command".into())
    );
    // PING is @connection: not granted to storefront.
    assert!(cmd(&mut shop, &w("PING")).await.is_err());

    let mut feed = as_user(&cartd, "catalog-feed", "feed-secret").await;
    ok(&mut feed, &w("CATALOG.SET sku - 90 USD STOCK 5")).await;
    ok(&mut feed, &w("STOCK.SET sku - 4")).await;
    assert!(cmd(&mut feed, &w("CART.GET cart:1"))
        .await
        .unwrap_err()
        .starts_with("NOPERM"));

    let mut pay = as_user(&cartd, "checkout", "pay-secret").await;
    ok(&mut pay, &w("CART.CHECKOUT cart:1")).await;
    assert!(cmd(
        &mut pay,
        &w("CART.ADD cart:1 sku - 1 PRICE 100 CURRENCY USD")
    )
    .await
    .unwrap_err()
    .starts_with("NOPERM"));

    // Every user may ask who it is; only admins may change users.
    assert_eq!(text(&ok(&mut shop, &w("ACL WHOAMI")).await), "storefront");
    assert_eq!(
        cmd(&mut shop, &w("ACL SETUSER storefront +@all")).await,
        Err("NOPERM User storefront has no permissions to run the 'acl' command".into())
    );
    let mut ops = as_user(&cartd, "ops", "ops-secret").await;
    ok(&mut ops, &w("CONFIG GET maxclients")).await;
    assert_eq!(text(&ok(&mut ops, &w("ACL WHOAMI")).await), "ops");
    let stats = info(&mut ops, &["stats"]).await;
    assert_eq!(info_number(&stats, "acl_access_denied_cmd"), 7, "{stats}");
    assert_eq!(info_number(&stats, "acl_access_denied_key"), 1, "{stats}");
}

#[tokio::test]
async fn failed_auth_and_denials_are_in_the_acl_log() {
    let cartd = Cartd::start_async(&config("")).await;
    let mut conn = cartd.client(false).await;
    assert_eq!(
        cmd(&mut conn, &w("AUTH storefront wrong")).await,
        Err("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    assert_eq!(
        cmd(&mut conn, &w("AUTH nobody wrong")).await,
        Err("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    ok(&mut conn, &w("AUTH storefront shop-secret")).await;
    let _ = cmd(&mut conn, &w("CART.GET secret:1")).await;
    let mut ops = as_user(&cartd, "ops", "ops-secret").await;
    let log = ok(&mut ops, &w("ACL LOG")).await;
    let entries = cartd_tests::array(&log);
    assert_eq!(entries.len(), 3, "{log:?}");
    let newest: Vec<(String, redis::Value)> = cartd_tests::pairs(&entries[0]);
    let field = |entry: &[(String, redis::Value)], name: &str| {
        entry
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("no {name} in {entry:?}"))
    };
    assert_eq!(text(&field(&newest, "reason")), "key");
    assert_eq!(text(&field(&newest, "object")), "secret:1");
    assert_eq!(text(&field(&newest, "username")), "storefront");
    let oldest = cartd_tests::pairs(&entries[2]);
    assert_eq!(text(&field(&oldest, "reason")), "auth");
    assert_eq!(text(&field(&oldest, "object")), "AUTH");
    let stats = info(&mut ops, &["stats"]).await;
    assert_eq!(info_number(&stats, "acl_access_denied_auth"), 2);
    ok(&mut ops, &w("ACL LOG RESET")).await;
    assert!(cartd_tests::array(&ok(&mut ops, &w("ACL LOG")).await).is_empty());
}

#[tokio::test]
async fn acl_commands_manage_users_and_persist_them() {
    let dir = tempfile::tempdir().unwrap();
    let aclfile: PathBuf = dir.path().join("users.acl");
    let extra = format!("[acl]\naclfile = \"{}\"\n", aclfile.display());
    let mut cartd = Cartd::start_async(&format!("[server]\nrequirepass = \"root\"\n{extra}")).await;
    let mut root = as_user(&cartd, "default", "root").await;
    ok(
        &mut root,
        &w("ACL SETUSER reader on >r1 ~cart:* +@read +cart.get +ping"),
    )
    .await;
    assert_eq!(
        cmd(&mut root, &w("ACL SETUSER reader +nosuchcommand")).await,
        Err("ERR Error in ACL SETUSER modifier '+nosuchcommand': Unknown command or category name in ACL".into())
    );
    let users = format!("{:?}", ok(&mut root, &w("ACL USERS")).await);
    assert!(
        users.contains("default") && users.contains("reader"),
        "{users}"
    );
    let list = format!("{:?}", ok(&mut root, &w("ACL LIST")).await);
    assert!(list.contains("user reader on #"), "{list}");
    let got = format!("{:?}", ok(&mut root, &w("ACL GETUSER reader")).await);
    assert!(
        got.contains("~cart:*") && got.contains("+cart.get"),
        "{got}"
    );
    let cat = format!("{:?}", ok(&mut root, &w("ACL CAT cart")).await);
    assert!(
        cat.contains("cart.add") && !cat.contains("catalog.set"),
        "{cat}"
    );
    let mut reader = as_user(&cartd, "reader", "r1").await;
    assert_eq!(text(&ok(&mut reader, &w("PING")).await), "PONG");
    assert!(cmd(
        &mut reader,
        &w("CART.ADD cart:1 sku - 1 PRICE 1 CURRENCY USD")
    )
    .await
    .is_err());
    ok(&mut root, &w("ACL SAVE")).await;
    let saved = std::fs::read_to_string(&aclfile).unwrap();
    assert!(saved.contains("user reader on #"), "{saved}");
    // Deleting the user closes its connections; after a restart ACL LOAD brings it back.
    assert_eq!(
        cmd(&mut root, &w("ACL DELUSER reader nobody")).await,
        Ok(redis::Value::Int(1))
    );
    assert!(cmd(&mut reader, &w("PING")).await.is_err());
    assert_eq!(
        cmd(&mut root, &w("ACL DELUSER default")).await,
        Err("ERR The 'default' user cannot be removed".into())
    );
    drop(root);
    assert!(cartd.stop_gracefully().success());
    cartd.restart();
    let mut reader = as_user(&cartd, "reader", "r1").await;
    assert_eq!(text(&ok(&mut reader, &w("PING")).await), "PONG");
}

/// redis-py with `username=` over RESP3 (it sends HELLO 3 AUTH user pass).
const REDIS_PY_LOGIN: &str = r#"
import json, sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), username="storefront", password="shop-secret", decode_responses=True, protocol=3)
v = r.execute_command("CART.ADD", "cart:py", "sku", "-", "2", "PRICE", "5", "CURRENCY", "USD", "REPLY", "VERSION")
try:
    r.execute_command("CONFIG", "GET", "maxclients")
    denied = ""
except redis.exceptions.NoPermissionError as error:
    denied = str(error)
print(json.dumps({"version": v, "denied": denied}))
"#;

/// ioredis with `username`.
const IOREDIS_LOGIN: &str = r#"
const Redis = require("ioredis");
const r = new Redis({ port: Number(process.argv[1]), username: "storefront", password: "shop-secret" });
(async () => {
  const v = await r.call("CART.ADD", "cart:node", "sku", "-", "3", "PRICE", "5", "CURRENCY", "USD", "REPLY", "VERSION");
  let denied = "";
  try { await r.call("CONFIG", "GET", "maxclients"); } catch (e) { denied = e.message; }
  console.log(JSON.stringify({ version: v, denied }));
  r.disconnect();
})();
"#;

/// redis-cli `--user`, redis-py `username=` and ioredis `username` log in as a user.
#[tokio::test]
async fn real_clients_log_in_with_a_user_name() {
    let cartd = Cartd::start_async(&config("")).await;
    let port = cartd.port().to_string();
    if let Some(cli) = redis_cli() {
        let output = Command::new(cli)
            .args([
                "-p",
                &port,
                "--user",
                "storefront",
                "--pass",
                "shop-secret",
                "--no-auth-warning",
                "CART.ADD",
                "cart:cli",
                "sku",
                "-",
                "1",
                "PRICE",
                "5",
                "CURRENCY",
                "USD",
                "REPLY",
                "VERSION",
            ])
            .output()
            .expect("run redis-cli");
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1");
    }
    let libs = client_libs();
    let out = run_script(
        "python3",
        &["-c", REDIS_PY_LOGIN, &port],
        ("PYTHONPATH", libs.join("python")),
    );
    assert_eq!(out["version"], 1);
    assert!(
        out["denied"]
            .as_str()
            .unwrap()
            .contains("has no permissions to run the 'config' command"),
        "{out}"
    );
    let out = run_script(
        "node",
        &["-e", IOREDIS_LOGIN, &port],
        ("NODE_PATH", libs.join("node").join("node_modules")),
    );
    assert_eq!(out["version"], 1);
    assert!(
        out["denied"].as_str().unwrap().starts_with("NOPERM"),
        "{out}"
    );
}

/// `--aclfile F` as redis-server takes it: its users are loaded at start.
#[tokio::test]
async fn the_aclfile_flag_loads_users() {
    let dir = tempfile::tempdir().unwrap();
    let aclfile = dir.path().join("users.acl");
    std::fs::write(&aclfile, "user flagged on >f1 ~cart:* +@cart\n").unwrap();
    let mut cartd = Cartd::start_async("[server]\nrequirepass = \"root\"\n").await;
    cartd.restart_with(&["--aclfile", aclfile.to_str().unwrap()]);
    let mut conn = as_user(&cartd, "flagged", "f1").await;
    ok(
        &mut conn,
        &w("CART.ADD cart:1 sku - 1 PRICE 1 CURRENCY USD"),
    )
    .await;
}
