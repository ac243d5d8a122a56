//! Per-stage CPU cost of one referral (no broker, no network):
//! `cargo bench --bench stages`. Prints µs per referral for each stage.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use clw_gateway::intake::decode_referral;
use clw_gateway::mapping::MappingSet;

fn time<T>(name: &str, n: u32, mut f: impl FnMut() -> T) {
    for _ in 0..n / 10 {
        black_box(f());
    }
    let start = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!(
        "{name:<28} {per:>8.1} µs/referral  ({:>7.0}/s on one core)",
        1e6 / per
    );
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read(root.join("examples/referral-bundle.json")).unwrap();
    let set = MappingSet::load_configured(&root.join("mappings")).unwrap();
    let prsb = set.get("prsb-referral").unwrap().clone();
    let decoded = decode_referral(&body).unwrap();
    let canonical = serde_json::to_value(&decoded.referral).unwrap();
    let constants = BTreeMap::from([("message_id".to_string(), "m1".to_string())]);
    let payload = prsb.apply(&canonical, &constants).unwrap().document;
    let n = 5000;
    println!("body: {} bytes", body.len());
    time("parse JSON only", n, || {
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    });
    time("decode Bundle → Referral", n, || {
        decode_referral(&body).unwrap()
    });
    time("canonical JSON", n, || {
        serde_json::to_value(&decoded.referral).unwrap()
    });
    time("map + schema (prsb-referral)", n, || {
        prsb.apply(&canonical, &constants).unwrap()
    });
    time("serialise payload", n, || {
        serde_json::to_vec(&payload).unwrap()
    });
    time("all of the above", n, || {
        let d = decode_referral(&body).unwrap();
        let c = serde_json::to_value(&d.referral).unwrap();
        let p = prsb.apply(&c, &constants).unwrap();
        serde_json::to_vec(&p.document).unwrap()
    });
}
