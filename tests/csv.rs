//! The CSV destination on its own: atomic appends, no second row for a redelivery,
//! batch rollover, Excel-friendly encoding.

use clw_gateway::config::{CsvConfig, FilePer};
use clw_gateway::deliver::{CsvDestination, DeliveryRequest};
use serde_json::{Value, json};

fn sheet(dir: &std::path::Path, per: FilePer, batch_rows: usize) -> CsvDestination {
    CsvDestination::new(
        "sheet",
        &CsvConfig {
            dir: dir.to_path_buf(),
            mapping: "csv-referral".into(),
            file_prefix: "referrals".into(),
            file_per: per,
            batch_rows,
            agreement: None,
            allow: Vec::new(),
            constants: Default::default(),
        },
    )
    .unwrap()
}

async fn send(d: &CsvDestination, id: &str, name: &str) {
    let fields: Vec<(String, Value)> = vec![
        ("Family name".into(), json!(name)),
        ("Phone".into(), json!("+44 113 496 0000")),
    ];
    let payload = json!({});
    d.deliver(&DeliveryRequest {
        message_id: id,
        idempotency_key: "k",
        payload: &payload,
        fields: &fields,
        person: &[],
    })
    .await
    .unwrap();
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
    let d = sheet(dir.path(), FilePer::Day, 500);
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
    let d = sheet(dir.path(), FilePer::Batch, 2);
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
