//! Per-stage CPU cost of one referral (no broker, no network):
//! `cargo bench --bench stages`. Prints µs per referral for each stage.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use clw_gateway::deliver::{field_names, referral_payload};
use clw_gateway::intake::decode_referral;
use clw_gateway::schema::CompiledSchema;

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
    let schema = CompiledSchema::load(&root.join("schemas/prsb-referral.v1.schema.json")).unwrap();
    let decoded = decode_referral(&body).unwrap();
    let payload = referral_payload("m1", &decoded.referral);
    let n = 5000;
    println!("body: {} bytes", body.len());
    time("parse JSON only", n, || {
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    });
    time("decode Bundle → Referral", n, || {
        decode_referral(&body).unwrap()
    });
    time("build payload", n, || {
        referral_payload("m1", &decoded.referral)
    });
    time("validate payload schema", n, || {
        schema.check(&payload).unwrap()
    });
    time("audit field names", n, || field_names(&payload));
    time("serialise payload", n, || {
        serde_json::to_vec(&payload).unwrap()
    });
    time("all of the above", n, || {
        let d = decode_referral(&body).unwrap();
        let p = referral_payload("m1", &d.referral);
        schema.check(&p).unwrap();
        (field_names(&p), serde_json::to_vec(&p).unwrap())
    });
}
