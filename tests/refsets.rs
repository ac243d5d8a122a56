//! Code maps bound to the standard's refsets, through `clw-gateway mapping test` as an
//! operator runs it: a code outside a refset's published membership (kept in the
//! mappings folder's refsets/) fails; a code whose refset has no membership there is
//! marked "refset membership not verified" and does not fail.

use std::path::Path;
use std::process::{Command, Output};

fn mapping_test(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clw-gateway"))
        .args(["mapping", "test", "--dir"])
        .arg(dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CLW_CONFIG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A scratch mappings folder: `files` are (relative path, contents).
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (rel, body) in files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    dir
}

const NEEDS_MAP: &str = r#"
name: needs
columns:
  snomed:
    system: "http://snomed.info/sct"
    refset: {id: "1373501000000105", name: "Social prescribing needs and concerns simple reference set"}
  platform: {}
entries:
  - snomed: {code: "422650009", display: "Social isolation"}
    platform: {code: "Loneliness and isolation", display: "Loneliness and isolation"}
  - snomed: {code: "73595000", display: "Stress"}
    platform: {code: "Mental wellbeing", display: "Mental wellbeing"}
"#;

fn membership(members: &[&str]) -> String {
    format!(
        "refset: \"1373501000000105\"\nname: Social prescribing needs and concerns simple reference set\n\
         source: test fixture, not a published list\nversion: \"0.0.0_20250101\"\nlicence: test data\n\
         members: [{}]\n",
        members
            .iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[test]
fn a_code_outside_a_published_membership_fails_mapping_test_naming_map_row_column_and_refset() {
    let dir = folder(&[
        ("codes/needs.yaml", NEEDS_MAP),
        ("refsets/needs.yaml", &membership(&["422650009"])),
    ]);
    let o = mapping_test(dir.path());
    assert!(!o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(
            "needs.yaml: code map needs, entries[1].snomed: 73595000 (Stress) is not a member of \
             refset 1373501000000105 (Social prescribing needs and concerns simple reference set) \
             as published in"
        ),
        "{out}"
    );
    assert!(
        !out.contains("422650009 (Social isolation) is not"),
        "{out}"
    );

    // With the code in the membership, the same folder passes and says it is verified.
    let dir = folder(&[
        ("codes/needs.yaml", NEEDS_MAP),
        (
            "refsets/needs.yaml",
            &membership(&["422650009", "73595000"]),
        ),
    ]);
    let o = mapping_test(dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("refset needs.snomed: 2 codes from 1373501000000105 (Social prescribing needs and concerns simple reference set), every one a member as published in"),
        "{out}"
    );
    assert!(
        // (The built-in social-prescribing map's codes are counted as not verified.)
        out.contains("refsets: 1 memberships kept, 2 codes verified as members, "),
        "{out}"
    );
}

#[test]
fn a_built_in_code_map_is_checked_against_the_folders_membership_too() {
    // No social-prescribing.yaml here: the built-in one is used, and its onward
    // referrals are bound to support offered. A membership without them refuses it.
    let support = "refset: \"1373511000000107\"\nname: Social prescribing support offered simple reference set\n\
        source: test fixture\nversion: \"0\"\nlicence: test data\nmembers: [\"390893007\"]\n";
    let dir = folder(&[("refsets/support.yaml", support)]);
    let o = mapping_test(dir.path());
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(
            "built-in code map social-prescribing: code map social-prescribing, entries[13].snomed: \
             306238000 (Referral to social services) is not a member of refset 1373511000000107"
        ),
        "{}",
        text(&o)
    );
}

#[test]
fn unverified_codes_are_marked_and_do_not_fail() {
    let dir = folder(&[("codes/needs.yaml", NEEDS_MAP)]);
    let o = mapping_test(dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    for line in [
        "refset needs.snomed: 2 codes from 1373501000000105 (Social prescribing needs and concerns simple reference set): refset membership not verified",
        "  refset membership not verified: needs entries[0].snomed 422650009 (Social isolation), refset 1373501000000105",
        "  refset membership not verified: needs entries[1].snomed 73595000 (Stress), refset 1373501000000105",
    ] {
        assert!(out.lines().any(|l| l.starts_with(line)), "{line}\n{out}");
    }
}

#[test]
fn the_shipped_maps_are_bound_and_every_bound_code_is_marked_unverified() {
    // The shipped code maps alone (the mappings beside them have their own tests).
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/codes");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("codes")).unwrap();
    for f in std::fs::read_dir(&shipped).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join("codes").join(f.file_name().unwrap())).unwrap();
    }
    let o = mapping_test(dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    for summary in [
        "refset referral-reasons.snomed: 7 codes from 1373501000000105 (Social prescribing needs and concerns simple reference set): refset membership not verified",
        "refset read2-reasons.snomed: 3 codes from 1373501000000105",
        "refset social-prescribing.snomed: 4 codes say they are drawn from no refset",
        "refset social-prescribing.snomed: 12 codes from 1373511000000107 (Social prescribing support offered simple reference set): refset membership not verified",
        "refset social-prescribing.snomed: 0 codes from 1127601000000107 (Healthcare matters simple reference set): refset membership not verified",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(summary)),
            "{summary}\n{out}"
        );
    }
    // Every SNOMED code of a bound row is listed, by row.
    for line in [
        "  refset membership not verified: referral-reasons entries[0].snomed 422650009 (Social isolation), refset 1373501000000105",
        "  refset membership not verified: social-prescribing entries[2].snomed 390893007 (Referral to physical activity programme), refset 1373511000000107",
    ] {
        assert!(out.lines().any(|l| l == line), "{line}\n{out}");
    }
    assert!(
        out.contains("refsets: 0 memberships kept, 0 codes verified as members, 22 codes refset membership not verified"),
        "{out}"
    );
}

#[test]
fn a_broken_membership_file_is_refused_at_load_naming_file_and_place() {
    let dir = folder(&[
        ("codes/needs.yaml", NEEDS_MAP),
        (
            "refsets/needs.yaml",
            "refset: \"1373501000000105\"\nname: n\nsource: s\nversion: v\nlicence: l\nmembers: [\"422650008\"]\n",
        ),
    ]);
    let o = mapping_test(dir.path());
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("needs.yaml: members[0]: \"422650008\" is not a SNOMED CT concept id"),
        "{}",
        text(&o)
    );
    let dir = folder(&[(
        "refsets/needs.yaml",
        "refset: \"1373501000000105\"\nname: n\nsource: s\nmembers: []\n",
    )]);
    let o = mapping_test(dir.path());
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("refsets/needs.yaml: /: "), "{}", text(&o));
}
