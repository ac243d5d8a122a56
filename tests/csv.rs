//! The CSV destination on its own: appends, no second row for a redelivery or after a
//! rollover, no torn file after a writer stopped mid-row, one writer at a time across
//! instances, Excel-friendly encoding.

mod common;

use std::sync::Arc;

use clw_gateway::deliver::Destination;
use clw_gateway::store::Store;
use common::*;
use serde_json::{Value, json};

fn sheet(dir: &std::path::Path, per: &str, batch_rows: usize) -> Arc<Destination> {
    build_destination(
        "sheet",
        &format!(
            "kind = \"csv\"\ndir = {:?}\nmapping = \"csv-referral\"\nfile_per = {per:?}\n\
             batch_rows = {batch_rows}\nallow = [\"person_demographics\", \"gp_practice\", \"referral_details\", \"referrer_details\"]\n",
            dir.display().to_string()
        ),
    )
}

async fn send(d: &Destination, store: &Store, id: &str, name: &str) {
    let fields: Vec<(String, Value)> = vec![
        ("Family name".into(), json!(name)),
        ("Phone".into(), json!("+44 113 496 0000")),
    ];
    send_payload(d, store, id, fields, json!({})).await.unwrap();
}

/// Every file's records (header first), read back with a CSV parser.
fn records(dir: &std::path::Path) -> Vec<Vec<Vec<String>>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap();
            assert!(bytes.starts_with("\u{feff}".as_bytes()), "BOM");
            assert!(bytes.ends_with(b"\r\n"), "{} ends mid-row", p.display());
            ::csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(&bytes[3..])
                .records()
                .map(|r| r.unwrap().iter().map(str::to_string).collect())
                .collect()
        })
        .collect()
}

fn references(dir: &std::path::Path) -> Vec<String> {
    let mut refs: Vec<String> = records(dir)
        .into_iter()
        .flat_map(|f| {
            let at = f[0].iter().position(|c| c == "Gateway reference").unwrap();
            f.into_iter().skip(1).map(move |r| r[at].clone())
        })
        .collect();
    refs.sort();
    refs
}

#[tokio::test]
async fn a_redelivery_adds_no_row_and_cells_are_quoted_for_excel() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _db) = temp_store().await;
    let d = sheet(dir.path(), "day", 500);
    send(&d, &store, "m-1", "O'Neil, Jr").await;
    send(&d, &store, "m-1", "O'Neil, Jr").await;
    send(&d, &store, "m-2", "Lee").await;
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one file for the day, nothing else");
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert_eq!(
        text,
        "\u{feff}Family name,Phone,Gateway reference,Gateway action\r\n\
         \"O'Neil, Jr\",'+44 113 496 0000,m-1,referral\r\n\
         Lee,'+44 113 496 0000,m-2,referral\r\n"
    );
}

#[tokio::test]
async fn batches_roll_over_and_a_redelivery_after_the_rollover_adds_no_second_row() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _db) = temp_store().await;
    let d = sheet(dir.path(), "batch", 2);
    for i in 0..5 {
        // A cell holding a line break must not throw the row count.
        send(&d, &store, &format!("m-{i}"), "two\r\nlines").await;
    }
    // m-0 went to the first batch file, long since full: still one row for it.
    send(&d, &store, "m-0", "two\r\nlines").await;
    let files = records(dir.path());
    let rows: Vec<usize> = files.iter().map(|f| f.len() - 1).collect();
    assert_eq!(rows, [2, 2, 1], "{rows:?}");
    assert_eq!(references(dir.path()), ["m-0", "m-1", "m-2", "m-3", "m-4"]);
    assert_eq!(files[0][1][0], "two\r\nlines");
}

#[tokio::test]
async fn a_row_cut_short_by_a_stopped_writer_is_removed_and_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _db) = temp_store().await;
    let d = sheet(dir.path(), "day", 500);
    send(&d, &store, "m-1", "Lee").await;
    // A writer stopped half way through m-2's row, before recording it.
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(&mut f, b"\"Half a ro").unwrap();
    drop(f);
    // m-2's retry, and m-3: the torn bytes are gone, each row is there once.
    send(&d, &store, "m-2", "Patel").await;
    send(&d, &store, "m-3", "Khan").await;
    assert_eq!(references(dir.path()), ["m-1", "m-2", "m-3"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("Half a ro"), "{text}");
}

/// Two gateway instances appending to one folder, sharing one store: every row once,
/// no interleaved bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_appending_at_once_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _db) = temp_store().await;
    let (a, b) = (sheet(dir.path(), "day", 500), sheet(dir.path(), "day", 500));
    let mut tasks = Vec::new();
    for i in 0..60 {
        for d in [a.clone(), b.clone()] {
            let store = store.clone();
            // Both instances get every message, as after a redelivery to the other.
            tasks.push(tokio::spawn(async move {
                send(&d, &store, &format!("m-{i:02}"), &"x".repeat(200)).await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let want: Vec<String> = (0..60).map(|i| format!("m-{i:02}")).collect();
    assert_eq!(references(dir.path()), want);
}
