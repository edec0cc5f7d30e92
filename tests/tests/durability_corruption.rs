//! A damaged log: a torn tail (the last write cut short, or zeros after it) is cut at start
//! with a warning and nothing before it is lost; damage in the middle stops the start with
//! the file and offset named, and `--repair` cuts the log there.

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
    cartd.restart_with(&["--repair"]);
    let kept = dbsize(&cartd).await;
    assert!((1..100).contains(&kept), "{kept} carts kept after the cut");
    let mut conn = cartd.client(false).await;
    assert_eq!(view(&mut conn, "cart:0").await["items"][0]["qty"], 1);
    assert!(view(&mut conn, "cart:99").await.is_null());
}
