//! The CSV destination on its own: atomic appends, no second row for a redelivery,
//! batch rollover, Excel-friendly encoding.

mod common;

use clw_gateway::deliver::Destination;
use common::*;
use serde_json::{Value, json};

fn sheet(dir: &std::path::Path, per: &str, batch_rows: usize) -> std::sync::Arc<Destination> {
    build_destination(
        "sheet",
        &format!(
            "kind = \"csv\"\ndir = {:?}\nmapping = \"csv-referral\"\nfile_per = {per:?}\n\
             batch_rows = {batch_rows}\nallow = [\"person_demographics\", \"gp_practice\", \"referral_details\"]\n",
            dir.display().to_string()
        ),
    )
}

async fn send(d: &Destination, id: &str, name: &str) {
    let fields: Vec<(String, Value)> = vec![
        ("Family name".into(), json!(name)),
        ("Phone".into(), json!("+44 113 496 0000")),
    ];
    send_payload(d, id, fields, json!({})).await.unwrap();
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut f: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    f.sort();
    f
}

#[tokio::test]
async fn a_redelivery_adds_no_row_and_cells_are_quoted_for_excel() {
    let dir = tempfile::tempdir().unwrap();
    let d = sheet(dir.path(), "day", 500);
    send(&d, "m-1", "O'Neil, Jr").await;
    send(&d, "m-1", "O'Neil, Jr").await;
    send(&d, "m-2", "Lee").await;
    let all = files(dir.path());
    assert_eq!(all.len(), 1, "one file for the day, no temp files left");
    assert_eq!(
        all[0],
        "\u{feff}Family name,Phone,Gateway reference\r\n\
         \"O'Neil, Jr\",'+44 113 496 0000,m-1\r\n\
         Lee,'+44 113 496 0000,m-2\r\n"
    );
}

#[tokio::test]
async fn batches_roll_over_after_batch_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = sheet(dir.path(), "batch", 2);
    for i in 0..5 {
        send(&d, &format!("m-{i}"), "X").await;
    }
    let rows: Vec<usize> = files(dir.path())
        .iter()
        .map(|f| f.matches("\r\n").count() - 1)
        .collect();
    assert_eq!(rows.iter().sum::<usize>(), 5);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|&n| n <= 2), "{rows:?}");
}
