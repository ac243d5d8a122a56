//! Property tests (proptest, stable toolchain): generated and mutated inputs through
//! FHIR intake, the envelope and AMQP headers, the mapping engine and its transforms,
//! CSV writing and the webhook signature check. Each must answer (Ok or a named error)
//! and never panic. Cases per property: PROPTEST_CASES (default 256); the counts run
//! and anything found are in docs/reliability.md.

use std::collections::BTreeMap;
use std::path::Path;

use clw_gateway::deliver::encode_row;
use clw_gateway::intake::decode_referral;
use clw_gateway::intake::envelope::{Envelope, check_message_id};
use clw_gateway::intake::json::check_shape;
use clw_gateway::mapping::MappingSet;
use clw_gateway::model::message_back::MessageBack;
use clw_gateway::secret::signing::{sign, verify};
use clw_gateway::sources::broker::headers;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn example_referral() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo("examples/referral-bundle.json")).unwrap())
        .unwrap()
}

fn mappings() -> &'static MappingSet {
    static SET: std::sync::OnceLock<MappingSet> = std::sync::OnceLock::new();
    SET.get_or_init(|| MappingSet::load_configured(&repo("mappings")).unwrap())
}

/// Any JSON value, nested a few levels, with the strings that trip parsers: dates,
/// codes, numbers as text, NHS-number-like digits, formula starts, unicode.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[0-9]{0,12}".prop_map(Value::String),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2}))?"
            .prop_map(Value::String),
        "[=+@-]?[a-zA-Z0-9 ,\"'\\r\\n]{0,16}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON pointers of every node of `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| pointers(x, format!("{at}/{i}"), out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            pointers(
                x,
                format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                out,
            )
        }),
        _ => {}
    }
}

/// `doc` with the node at a chosen place replaced (or removed, when `with` is None).
fn mutate(doc: &Value, at: &Index, with: Option<Value>) -> Value {
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let target = all[at.index(all.len())].clone();
    let mut out = doc.clone();
    if target.is_empty() {
        return with.unwrap_or(Value::Null);
    }
    let (parent, key) = target.rsplit_once('/').unwrap();
    let key = key.replace("~1", "/").replace("~0", "~");
    if let Some(p) = out.pointer_mut(parent) {
        match (p, with) {
            (Value::Object(o), Some(v)) => {
                o.insert(key, v);
            }
            (Value::Object(o), None) => {
                o.remove(&key);
            }
            (Value::Array(a), Some(v)) => {
                if let Ok(i) = key.parse::<usize>() {
                    a[i] = v;
                }
            }
            (Value::Array(a), None) => {
                if let Ok(i) = key.parse::<usize>() {
                    a.remove(i);
                }
            }
            _ => {}
        }
    }
    out
}

fn config() -> ProptestConfig {
    // PROPTEST_CASES overrides; a failure's seed is kept in tests/properties.proptest-regressions.
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(256),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes: refused with a reason, never a panic.
    #[test]
    fn intake_answers_any_bytes(body in prop::collection::vec(any::<u8>(), 0..4096)) {
        if let Err(e) = decode_referral(&body) {
            prop_assert!(!e.reason().is_empty());
        }
    }

    /// The example referral with any one node replaced by anything, or removed: decoded,
    /// or refused naming the field; what decodes maps through every referral mapping
    /// (errors name fields) without a panic.
    #[test]
    fn intake_and_mappings_answer_any_mutated_referral(
        at in any::<Index>(),
        with in prop::option::weighted(0.9, any_json()),
        second in any::<Index>(),
        with2 in any_json(),
    ) {
        let doc = mutate(&mutate(&example_referral(), &at, with), &second, Some(with2));
        let body = serde_json::to_vec(&doc).unwrap();
        match decode_referral(&body) {
            Err(e) => prop_assert!(e.field.is_some() || !e.reason().is_empty()),
            Ok(decoded) => {
                let canonical = serde_json::to_value(&decoded.referral).unwrap();
                for m in mappings().iter() {
                    if let Err(errors) = m.apply(&canonical, &BTreeMap::new()) {
                        for e in errors {
                            prop_assert!(!e.reason().is_empty());
                        }
                    }
                }
            }
        }
    }

    /// Any JSON document at all through every mapping: an output that passes its schema,
    /// or named errors.
    #[test]
    fn every_mapping_answers_any_document(doc in any_json()) {
        for m in mappings().iter() {
            let _ = m.apply(&doc, &BTreeMap::new());
        }
    }

    /// Message-back fixtures mutated anywhere: the event model and its checks answer.
    #[test]
    fn message_back_events_answer_any_mutation(
        at in any::<Index>(),
        with in prop::option::weighted(0.9, any_json()),
    ) {
        let fixture: Value = serde_json::from_str(
            &std::fs::read_to_string(repo("mappings/message-back/fixtures/contact.event.json")).unwrap(),
        ).unwrap();
        let doc = mutate(&fixture, &at, with);
        for m in mappings().iter() {
            let _ = m.apply(&doc, &BTreeMap::new());
        }
        if let Ok(ev) = serde_json::from_value::<MessageBack>(doc) {
            let _ = ev.check();
        }
    }

    /// Nesting past the limit is refused before anything is built, at any depth.
    #[test]
    fn deep_nesting_is_refused_before_parsing(depth in 1usize..20_000, array in any::<bool>()) {
        let (open, close) = if array { ("[", "]") } else { ("{\"a\":", "}") };
        let mut body = open.repeat(depth);
        body.push('1');
        body.push_str(&close.repeat(depth));
        let r = check_shape(body.as_bytes());
        prop_assert_eq!(r.is_ok(), depth <= 32, "depth {}", depth);
    }

    /// The CloudEvents envelope from any headers: an envelope or a named refusal; an id
    /// it accepts is one `check_message_id` accepts.
    #[test]
    fn envelope_answers_any_headers(
        pairs in prop::collection::vec(
            (prop_oneof![
                Just("ce-id".to_string()), Just("ce-type".to_string()),
                Just("ce-specversion".to_string()), Just("ce-source".to_string()),
                Just("x-clw-attempt".to_string()), "[a-z-]{1,12}",
            ], any::<String>()),
            0..8,
        ),
        content_type in prop::option::of(any::<String>()),
    ) {
        let headers: BTreeMap<String, String> = pairs.into_iter().collect();
        if let Ok(env) = Envelope::from_headers(&headers, content_type.as_deref())
            && let Some(id) = env.id
        {
            prop_assert!(check_message_id(&id, "ce-id").is_ok());
        }
    }

    /// Message ids: accepted only when 1 to 128 characters of the allowed set.
    #[test]
    fn message_ids_are_checked(id in any::<String>()) {
        let ok = check_message_id(&id, "ce-id").is_ok();
        if ok {
            prop_assert!(!id.is_empty() && id.len() <= 128);
        }
    }

    /// AMQP header tables of any value types become string headers without a panic.
    #[test]
    fn amqp_headers_answer_any_table(
        entries in prop::collection::vec(("[a-z-]{1,16}", prop_oneof![
            any::<String>().prop_map(|s| AMQPValue::LongString(LongString::from(s.as_str()))),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            any::<i32>().prop_map(AMQPValue::LongInt),
            any::<bool>().prop_map(AMQPValue::Boolean),
            any::<f64>().prop_map(AMQPValue::Double),
            Just(AMQPValue::Void),
        ]), 0..12),
    ) {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert(ShortString::from(k.as_str()), v);
        }
        let h = headers::from_table(Some(&t));
        let back = headers::to_table(&h);
        prop_assert_eq!(headers::from_table(Some(&back)), h);
    }

    /// A CSV row reads back as exactly its cells, one record, with any cell a
    /// spreadsheet would run as a formula turned into text.
    #[test]
    fn csv_rows_read_back_as_their_cells(cells in prop::collection::vec(any::<String>(), 1..8)) {
        let bytes = encode_row(&cells).unwrap();
        prop_assert!(bytes.ends_with(b"\r\n"));
        let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes.as_slice());
        let records: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        prop_assert_eq!(records.len(), 1);
        let read: Vec<&str> = records[0].iter().collect();
        prop_assert_eq!(read.len(), cells.len());
        for (got, sent) in read.iter().zip(&cells) {
            if sent.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                prop_assert_eq!(*got, format!("'{sent}"));
            } else {
                prop_assert_eq!(*got, sent.as_str());
            }
        }
    }

    /// A signature verifies with its secret and timestamp; any change to the body, the
    /// timestamp or the secret breaks it; any header text is answered, not a panic.
    #[test]
    fn signatures_verify_and_any_change_breaks_them(
        secret in prop::collection::vec(any::<u8>(), 1..64),
        other in prop::collection::vec(any::<u8>(), 1..64),
        body in prop::collection::vec(any::<u8>(), 0..512),
        flip in any::<Index>(),
        ts in 1_000_000_000i64..4_000_000_000,
        junk_ts in any::<String>(),
        junk_sig in any::<String>(),
    ) {
        let sig = sign(&secret, ts, &body);
        prop_assert_eq!(verify(&[&secret], Some(&ts.to_string()), Some(&sig), &body, ts, 300), Ok(ts));
        if !body.is_empty() {
            let mut changed = body.clone();
            let i = flip.index(changed.len());
            changed[i] ^= 0x01;
            prop_assert!(verify(&[&secret], Some(&ts.to_string()), Some(&sig), &changed, ts, 300).is_err());
        }
        prop_assert!(verify(&[&secret], Some(&(ts + 1).to_string()), Some(&sig), &body, ts, 300).is_err());
        if other != secret {
            prop_assert!(verify(&[&other], Some(&ts.to_string()), Some(&sig), &body, ts, 300).is_err());
        }
        let _ = verify(&[&secret], Some(&junk_ts), Some(&junk_sig), &body, ts, 300);
    }
}
