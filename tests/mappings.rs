//! The mapping engine against the shipped mappings/ (golden fixtures) and against
//! deliberately broken mapping folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clw_gateway::cli::golden::run_fixtures;
use clw_gateway::mapping::MappingSet;
use serde_json::json;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch mappings folder: `files` are (relative path, contents).
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

const REASONS: &str = r#"
name: reasons
columns: {snomed: {}, platform: {}}
entries:
  - snomed: {code: "422650009", display: Social isolation}
    platform: {code: Loneliness, display: Loneliness}
"#;

/// Every essential canonical field, left out on purpose (these tests are about other things).
const OMIT_ALL: &str = "omits:\n  person_demographics.nhs_number: test\n  person_demographics.chi_number: test\n  \
    referral_details.reasons_for_referral.display: test\n  referral_details.reasons_for_referral.text: test\n  \
    referrer_details: test\n  gp_practice: test\n  risks: test\n";

fn mapping(fields: &str) -> String {
    mapping_omitting(fields, OMIT_ALL)
}

fn mapping_omitting(fields: &str, omits: &str) -> String {
    format!(
        "name: t\nversion: '1'\nflow: referral\ndirection: outbound\ninput: canonical-referral\n\
         output: {{format: form}}\nfields:\n{fields}{omits}"
    )
}

fn load(dir: &Path) -> Result<MappingSet, String> {
    MappingSet::load(dir).map_err(|e| e.reason())
}

fn load_err(dir: &Path) -> String {
    match load(dir) {
        Ok(_) => panic!("{} loaded, but should have been refused", dir.display()),
        Err(e) => e,
    }
}

#[test]
fn every_shipped_mapping_passes_its_golden_fixtures() {
    let set = MappingSet::load(&repo().join("mappings")).unwrap();
    let outcomes = run_fixtures(&set);
    let failures: Vec<_> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    assert!(failures.is_empty(), "{failures:#?}");
    for name in ["lamplight-referral", "charitylog-referral", "csv-referral"] {
        assert!(
            outcomes.iter().any(|o| o.mapping == name),
            "{name} has no fixtures"
        );
    }
}

#[test]
fn a_mapping_that_breaks_the_mapping_schema_is_refused_naming_file_and_place() {
    let bad = mapping("  - to: x\n    expr: a.b\n    transforms: [{date: 7}]\n")
        .replace("direction: outbound", "direction: sideways");
    let dir = folder(&[("codes/reasons.yaml", REASONS), ("referral/bad.yaml", &bad)]);
    let err = load_err(dir.path());
    assert!(err.contains("referral/bad.yaml"), "{err}");
    assert!(err.contains("/direction"), "{err}");
    assert!(err.contains("/fields/0/transforms/0"), "{err}");
}

#[test]
fn bad_fhirpath_unknown_code_maps_and_columns_are_refused_at_load() {
    let bad = mapping(
        "  - to: x\n    expr: a.where(\n\
         \x20 - to: y\n    expr: a\n    transforms: [{code: {map: nope, from: snomed, to: platform}}]\n\
         \x20 - to: z\n    expr: a\n    transforms: [{code: {map: reasons, from: snomed, to: read2}}]\n",
    );
    let dir = folder(&[("codes/reasons.yaml", REASONS), ("m.yaml", &bad)]);
    let err = load_err(dir.path());
    assert!(
        err.contains("fields[0] (x): expr \"a.where(\" does not parse"),
        "{err}"
    );
    assert!(
        err.contains("fields[1] (y): code map \"nope\" does not exist"),
        "{err}"
    );
    assert!(
        err.contains("fields[2] (z): code map reasons has no column \"read2\""),
        "{err}"
    );
}

#[test]
fn an_unmapped_code_fails_the_mapping_unless_it_falls_back() {
    let m = mapping(
        "  - to: strict\n    expr: referral_details.reasons_for_referral.code\n\
         \x20   transforms: [{code: {map: reasons, from: snomed, to: platform}}]\n\
         \x20 - to: lenient\n    expr: referral_details.reasons_for_referral.code\n\
         \x20   transforms: [{code: {map: reasons, from: snomed, to: platform, fallback: Other}}]\n",
    );
    let dir = folder(&[("codes/reasons.yaml", REASONS), ("m.yaml", &m)]);
    let set = load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let t = set.get("t").unwrap();
    let input = |code: &str| json!({"referral_details": {"reasons_for_referral": [{"system": "http://snomed.info/sct", "code": code}]}});
    let out = t.apply(&input("422650009"), &BTreeMap::new()).unwrap();
    assert_eq!(
        out.document,
        json!({"strict": "Loneliness", "lenient": "Loneliness"})
    );

    let errs = t.apply(&input("73595000"), &BTreeMap::new()).unwrap_err();
    assert_eq!(errs.len(), 1, "only the field without a fallback fails");
    assert_eq!(errs[0].field.as_deref(), Some("strict"));
    assert!(
        errs[0]
            .message
            .contains("code 73595000 (snomed) has no platform entry in code map reasons"),
        "{}",
        errs[0].message
    );
}

#[test]
fn a_mapping_reading_outside_its_destinations_allow_list_is_refused_naming_both() {
    let set = MappingSet::load(&repo().join("mappings")).unwrap();
    let csv = set.get("csv-referral").unwrap();
    let allowed: Vec<String> = [
        "referral_details",
        "gp_practice",
        "person_demographics.name",
    ]
    .map(String::from)
    .to_vec();
    let err = csv.check_allowed("sheet", &allowed).unwrap_err().reason();
    assert!(
        err.starts_with("destinations.sheet.allow: mapping csv-referral"),
        "{err}"
    );
    assert!(
        err.contains("field \"NHS number\" reads person_demographics.nhs_number"),
        "{err}"
    );
    assert!(
        err.contains("field \"Phone\" reads person_demographics.telecom.system"),
        "{err}"
    );
    assert!(!err.contains("Family name"), "{err}");

    let everything: Vec<String> = [
        "referral_details",
        "gp_practice",
        "person_demographics",
        "referrer_details",
    ]
    .map(String::from)
    .to_vec();
    csv.check_allowed("sheet", &everything).unwrap();
}

#[test]
fn flat_outputs_refuse_many_values_and_json_outputs_nest() {
    let m = mapping("  - to: given\n    expr: person_demographics.name.given\n");
    let j = mapping("  - to: person.given\n    expr: person_demographics.name.given\n  - to: person.family\n    expr: person_demographics.name.family\n")
        .replace("name: t", "name: j")
        .replace("format: form", "format: json");
    let dir = folder(&[("m.yaml", &m), ("j.yaml", &j)]);
    let set = load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let input =
        json!({"person_demographics": {"name": {"given": ["Ann", "Marie"], "family": "Lee"}}});
    let errs = set
        .get("t")
        .unwrap()
        .apply(&input, &BTreeMap::new())
        .unwrap_err();
    assert!(
        errs[0].reason().contains("gave 2 values for a flat"),
        "{}",
        errs[0].reason()
    );
    let out = set
        .get("j")
        .unwrap()
        .apply(&input, &BTreeMap::new())
        .unwrap();
    assert_eq!(
        out.document,
        json!({"person": {"given": ["Ann", "Marie"], "family": "Lee"}})
    );
}

/// Every expression in every shipped mapping gives the same result by the fast path
/// and by the general evaluator, on every fixture input.
#[test]
fn fast_path_and_general_evaluator_agree_on_every_shipped_expression() {
    let set = MappingSet::load(&repo().join("mappings")).unwrap();
    let mut checked = 0;
    for m in set.iter() {
        let base = m.path.parent().unwrap();
        for fx in &m.fixtures {
            let input = clw_gateway::cli::golden::load_input(m, &base.join(&fx.input)).unwrap();
            let prepared = clw_gateway::mapping::Input::new(&input, &fx.constants);
            for (to, e) in m.expressions() {
                assert_eq!(
                    e.eval(&prepared).unwrap(),
                    e.eval_general(&prepared).unwrap(),
                    "{} {to}: {}",
                    m.name,
                    e.source
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} checked");
}

/// Without a mappings folder (the embedded default run from anywhere) the built-in
/// prsb-referral mapping renders the same payload as the repository's file: its golden
/// fixture.
#[test]
fn the_built_in_prsb_mapping_renders_the_golden_payload_without_a_mappings_folder() {
    let empty = tempfile::tempdir().unwrap();
    let set = MappingSet::load_configured(&empty.path().join("absent")).unwrap();
    let m = set.get("prsb-referral").expect("built in");
    assert!(
        m.schema.is_some(),
        "the built-in mapping checks its output schema"
    );
    let body = std::fs::read(repo().join("examples/referral-bundle.json")).unwrap();
    let referral = clw_gateway::intake::decode_referral(&body)
        .unwrap()
        .referral;
    let canonical = serde_json::to_value(&referral).unwrap();
    let mut c = BTreeMap::new();
    c.insert("message_id".to_string(), "msg-0001".to_string());
    let mapped = m.apply(&canonical, &c).unwrap().document;
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo().join("mappings/referral/fixtures/prsb-referral.expected.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(mapped, golden);
}

/// A referral mapping must map or knowingly leave out each essential canonical field:
/// a new mapping cannot drop the reason, the patient's identity, the referrer or the
/// practice by accident.
#[test]
fn a_mapping_that_silently_drops_an_essential_field_is_refused_at_load() {
    let fields = "  - {to: surname, expr: person_demographics.name.family}\n  \
                  - {to: need, expr: referral_details.reasons_for_referral.code}\n";
    let dir = folder(&[("m.yaml", &mapping_omitting(fields, ""))]);
    let e = load_err(dir.path());
    for missing in [
        "person_demographics.nhs_number",
        "person_demographics.chi_number",
        "referral_details.reasons_for_referral.text",
        "referral_details.reasons_for_referral.display",
        "referrer_details",
        "gp_practice",
        "risks",
    ] {
        assert!(
            e.contains(&format!("no field carries {missing} (")),
            "{missing}: {e}"
        );
    }
    // Left out knowingly, with the reason: accepted.
    let dir = folder(&[("m.yaml", &mapping_omitting(fields, OMIT_ALL))]);
    load(dir.path()).unwrap();
    // Omitting what it reads, or something that is not essential: refused.
    let odd = format!("{OMIT_ALL}  person_demographics.name: test\n");
    let dir = folder(&[(
        "m.yaml",
        &mapping_omitting(
            "  - {to: nhs, expr: person_demographics.nhs_number}\n",
            &odd,
        ),
    )]);
    let e = load_err(dir.path());
    assert!(
        e.contains("omits.person_demographics.nhs_number: the mapping reads it"),
        "{e}"
    );
    assert!(
        e.contains("omits.person_demographics.name: not an essential field"),
        "{e}"
    );
}

/// Text-only reasons and a CHI patient through every shipped referral mapping: the
/// reason's text arrives unless the mapping omits it (and says why), and a CHI number
/// never sits under an NHS-number field.
#[test]
fn text_only_reasons_and_chi_patients_survive_every_shipped_mapping() {
    let set = MappingSet::load(&repo().join("mappings")).unwrap();
    let fixtures = repo().join("mappings/referral/fixtures");
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(fixtures.join(name)).unwrap()).unwrap()
    };
    let (text_only, chi) = (
        read("text-only-reason.canonical.json"),
        read("chi-patient.canonical.json"),
    );
    let constants: BTreeMap<String, String> = [
        ("referrer", "1042"),
        ("workareaid", "7"),
        ("org_type_id", "3"),
        ("message_id", "m-1"),
        ("chi_system", "https://fhir.nhs.uk/Id/chi-number"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    let mut checked = 0;
    for m in set.iter().filter(|m| {
        m.flow == clw_gateway::mapping::spec::Flow::Referral
            && m.input == clw_gateway::mapping::spec::InputKind::CanonicalReferral
    }) {
        let omits_text = m
            .omits
            .contains_key("referral_details.reasons_for_referral.text");
        let out = m
            .apply(&text_only, &constants)
            .unwrap()
            .document
            .to_string();
        assert_eq!(
            out.contains("Lonely since her husband died"),
            !omits_text,
            "{}: {out}",
            m.name
        );
        let out = m.apply(&chi, &constants).unwrap();
        let omits_chi = m.omits.contains_key("person_demographics.chi_number");
        assert_eq!(
            out.document.to_string().contains("0402568877"),
            !omits_chi,
            "{}",
            m.name
        );
        for (field, value) in &out.fields {
            if field.to_lowercase().contains("nhs") {
                assert!(
                    !value.to_string().contains("0402568877"),
                    "{}: {field}",
                    m.name
                );
            }
        }
        // Each shipped mapping proves what it carries in its own golden fixtures too.
        for (case, omitted) in [("text-only-reason", omits_text), ("chi-patient", omits_chi)] {
            assert!(
                omitted
                    || m.fixtures
                        .iter()
                        .any(|f| f.input.to_string_lossy().contains(case)),
                "{} has no {case} fixture",
                m.name
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 8);
}
