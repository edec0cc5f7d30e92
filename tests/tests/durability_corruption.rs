//! A damaged log: a torn tail (the last write cut short, or zeros after it) is cut at start
//! with a warning saying what went, and nothing before it is lost; damage in the middle stops
//! the start with the file, the offset and what is still readable after it named, and
//! `--repair` drops only the unreadable record, keeping every readable one after it; damage
//! the snapshot covers costs nothing; a log directory or segment gone is refused.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use cartd_tests::{int, ok, view, Cartd};

/// Starts cartd, creates `cart:0` .. `cart:{n-1}` with one line each (one log record each),
/// and stops it gracefully so everything is written.
async fn cartd_with_carts(n: usize) -> Cartd {
    let mut cartd = Cartd::start_async("").await;
    let mut conn = cartd.client(false).await;
    for i in 0..n {
        let key = format!("cart:{i}");
        let args = [
            "CART.ADD", &key, "sku", "-", "1", "PRICE", "250", "CURRENCY", "USD",
        ];
        ok(&mut conn, &args).await;
    }
    drop(conn);
    assert!(cartd.stop_gracefully().success());
    cartd
}

/// The log segment files, oldest first.
fn segments(cartd: &Cartd) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(cartd.data_dir().join("wal"))
        .expect("the wal directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    files.sort();
    files
}

/// The newest segment that holds records (a graceful stop may leave none after it).
fn last_written_segment(cartd: &Cartd) -> PathBuf {
    segments(cartd)
        .into_iter()
        .rev()
        .find(|path| fs::metadata(path).expect("metadata").len() > 64)
        .expect("a segment with records")
}

async fn dbsize(cartd: &Cartd) -> i64 {
    let mut conn = cartd.client(false).await;
    int(&ok(&mut conn, &["DBSIZE"]).await)
}

/// The last record cut in half: cartd starts, says it cut a torn tail, and every cart but
/// the last one is there.
#[tokio::test]
async fn a_torn_last_record_is_cut_and_the_rest_is_kept() {
    let mut cartd = cartd_with_carts(40).await;
    let segment = last_written_segment(&cartd);
    let length = fs::metadata(&segment).expect("metadata").len();
    let file = OpenOptions::new().write(true).open(&segment).expect("open");
    file.set_len(length - 7).expect("truncate");
    cartd.restart();
    assert!(cartd.log().contains("torn tail"), "{}", cartd.log());
    assert_eq!(dbsize(&cartd).await, 39);
    let mut conn = cartd.client(false).await;
    assert_eq!(view(&mut conn, "cart:38").await["items"][0]["qty"], 1);
    assert!(view(&mut conn, "cart:39").await.is_null());
    // New writes after the cut land and survive another restart.
    ok(
        &mut conn,
        &[
            "CART.ADD", "cart:39", "sku", "-", "3", "PRICE", "1", "CURRENCY", "USD",
        ],
    )
    .await;
    drop(conn);
    cartd.stop_gracefully();
    cartd.restart();
    assert_eq!(dbsize(&cartd).await, 40);
}

/// Zeros after the last record (a file extended but never written) are a torn tail too.
#[tokio::test]
async fn zeros_after_the_last_record_are_cut() {
    let mut cartd = cartd_with_carts(10).await;
    let segment = last_written_segment(&cartd);
    let mut file = OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open");
    file.write_all(&[0; 4096]).expect("append zeros");
    drop(file);
    cartd.restart();
    assert!(cartd.log().contains("torn tail"), "{}", cartd.log());
    assert_eq!(dbsize(&cartd).await, 10);
}

/// A flipped byte in the middle of the log, with good records after it, stops the start
/// with a message naming the file, the offset and --repair; `--repair` cuts the log there and
/// keeps the carts from before the damage.
#[tokio::test]
async fn damage_in_the_middle_stops_the_start_until_repair() {
    let mut cartd = cartd_with_carts(100).await;
    let segment = last_written_segment(&cartd);
    let mut bytes = fs::read(&segment).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    fs::write(&segment, &bytes).expect("write");
    let (status, log) = cartd.start_refused();
    assert!(!status.success());
    let name = segment
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(log.contains(&name), "the file is named: {log}");
    assert!(
        log.contains("damaged at byte"),
        "the offset is named: {log}"
    );
    assert!(log.contains("--repair"), "the way out is named: {log}");
    assert!(
        log.contains("are still readable"),
        "what a repair keeps is named: {log}"
    );
    cartd.restart_with(&["--repair"]);
    assert_eq!(
        dbsize(&cartd).await,
        99,
        "only the damaged record's cart is lost; the readable ones after it are kept"
    );
    let mut conn = cartd.client(false).await;
    assert_eq!(view(&mut conn, "cart:0").await["items"][0]["qty"], 1);
    assert_eq!(view(&mut conn, "cart:99").await["items"][0]["qty"], 1);
    let text = cartd_tests::info(&mut conn, &["persistence"]).await;
    assert_eq!(
        cartd_tests::info_number(&text, "loading_repaired"),
        1,
        "{text}"
    );
    // The repaired state was snapshotted: a normal start now loads it without complaint.
    drop(conn);
    assert!(cartd.stop_gracefully().success());
    cartd.restart();
    assert_eq!(dbsize(&cartd).await, 99);
}

/// Adds `cart:{from}` .. `cart:{to - 1}` (one line each, one record each), pipelined.
async fn add_many(cartd: &Cartd, from: usize, to: usize) {
    let mut conn = cartd.client(false).await;
    for chunk_start in (from..to).step_by(1000) {
        let mut pipe = redis::pipe();
        for i in chunk_start..to.min(chunk_start + 1000) {
            pipe.cmd("CART.ADD")
                .arg(format!("cart:{i}"))
                .arg("sku")
                .arg("-")
                .arg(1)
                .arg("PRICE")
                .arg(250)
                .arg("CURRENCY")
                .arg("USD")
                .arg("REPLY")
                .arg("NONE")
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("the adds");
    }
}

/// 1 MB segments, a snapshot at LSN 20,000, 40,000 carts: a flipped byte in a record the
/// snapshot covers used to stop the start, and --repair then deleted the later segments (20,000
/// intact carts gone). Now the start goes on, stepping over it, and every cart is there.
#[tokio::test]
async fn damage_the_snapshot_covers_costs_nothing() {
    let config =
        "[persistence]\nwal_segment_mb = 1\nsnapshot_every_changes = 0\nsnapshot_every_s = 0\n";
    let mut cartd = Cartd::start_async(config).await;
    add_many(&cartd, 0, 20_000).await;
    let mut conn = cartd.client(false).await;
    ok(&mut conn, &["SAVE"]).await;
    drop(conn);
    add_many(&cartd, 20_000, 40_000).await;
    assert!(cartd.stop_gracefully().success());
    // The snapshot let the segments wholly before it go; the oldest left straddles LSN
    // 20,000: its first record is one the snapshot covers.
    let first = segments(&cartd).into_iter().next().expect("a segment");
    let name = first
        .file_stem()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    let first_lsn: u64 = name.parse().expect("named by its first LSN");
    assert!(first_lsn <= 20_000, "{name}");
    assert!(segments(&cartd).len() >= 3, "{:?}", segments(&cartd));
    let mut bytes = fs::read(&first).expect("read");
    bytes[32 + 12] ^= 0x5a; // inside the segment's first record
    fs::write(&first, &bytes).expect("write");
    cartd.restart();
    assert_eq!(dbsize(&cartd).await, 40_000, "{}", cartd.log());
}

/// A last segment truncated by 2,000 records used to be reported as a few bytes of torn tail;
/// the report now says how many records that had been written are gone, and INFO too.
#[tokio::test]
async fn a_truncated_log_says_how_many_records_it_lost() {
    let mut cartd = Cartd::start_async("").await;
    add_many(&cartd, 0, 3000).await;
    assert!(cartd.stop_gracefully().success());
    let segment = last_written_segment(&cartd);
    let length = fs::metadata(&segment).expect("metadata").len();
    // Records here are 80-odd bytes each: this cuts about 2,000 and leaves a torn one.
    let cut = length - (length - 100) * 2 / 3;
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open")
        .set_len(cut)
        .expect("truncate");
    cartd.restart();
    let kept = dbsize(&cartd).await as u64;
    assert!((500..2500).contains(&kept), "{kept}");
    let mut conn = cartd.client(false).await;
    let text = cartd_tests::info(&mut conn, &["persistence"]).await;
    assert_eq!(
        cartd_tests::info_number(&text, "loading_lost_records"),
        3000 - kept,
        "{text}"
    );
    assert!(
        cartd_tests::info_number(&text, "loading_torn_bytes_cut") > 0,
        "{text}"
    );
    let log = cartd.log();
    assert!(
        log.contains("they are lost") && log.contains(&format!("records={}", 3000 - kept)),
        "{log}"
    );
}

/// A deleted log directory used to start silently with only what the snapshot held. It is
/// refused, saying what is missing; --repair goes on from the snapshot alone.
#[tokio::test]
async fn a_deleted_log_directory_is_refused() {
    let mut cartd = cartd_with_carts(10).await;
    cartd.restart();
    let mut conn = cartd.client(false).await;
    ok(&mut conn, &["SAVE"]).await;
    ok(
        &mut conn,
        &[
            "CART.ADD",
            "cart:late",
            "sku",
            "-",
            "1",
            "PRICE",
            "1",
            "CURRENCY",
            "USD",
        ],
    )
    .await;
    drop(conn);
    assert!(cartd.stop_gracefully().success());
    fs::remove_dir_all(cartd.data_dir().join("wal")).expect("delete the log");
    let (_, log) = cartd.start_refused();
    assert!(
        log.contains("is missing") && log.contains("--repair"),
        "{log}"
    );
    cartd.restart_with(&["--repair"]);
    assert_eq!(
        dbsize(&cartd).await,
        10,
        "the snapshot's carts; cart:late was in the log"
    );
}
