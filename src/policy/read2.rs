//! Reasons for referral coded in Read v2 (Scottish practices on Vision, EMIS in Scotland):
//! the SNOMED CT code of the same published clinical code set is added beside each, from
//! code map `read2-reasons` (mapped by set membership; docs/coding.md). The Read v2 reason
//! is always kept as sent; a code the map does not hold is kept and never guessed.

use crate::mapping::CodeMap;
use crate::model::Coded;

/// The code map this reads.
pub const READ2_REASONS: &str = "read2-reasons";

/// Read v2 as the UK names it (`http://read.info/readv2`, also with a trailing slash), as
/// HL7's terminology names it (retired), and by its OID.
const READ2_SYSTEMS: [&str; 3] = [
    "http://read.info/readv2",
    "http://terminology.hl7.org/CodeSystem/rcV2",
    "urn:oid:2.16.840.1.113883.6.29",
];

/// Used when the map's `snomed` column names no system.
const SNOMED_SYSTEM: &str = "http://snomed.info/sct";

/// Whether `system` is Read v2.
pub fn is_read2(system: Option<&str>) -> bool {
    system.is_some_and(|s| {
        let s = s.strip_suffix('/').unwrap_or(s);
        READ2_SYSTEMS.contains(&s)
    })
}

/// The codes a Read v2 code is looked up by: as sent, then — for a 7-character code
/// ending in the preferred term id `00` (`1B1K.00`) — its 5-character concept code.
/// Other term ids (synonyms) are not shortened: a synonym may mean something else.
fn candidates(code: &str) -> Vec<&str> {
    let mut out = vec![code];
    if code.len() == 7 && code.is_ascii() && code.ends_with("00") {
        out.push(&code[..5]);
    }
    out
}

/// What the map says for one Read v2 code.
enum Found {
    /// The row's Read v2 code, its SNOMED code and display, how it was mapped, its set.
    Coded {
        read2: String,
        snomed: String,
        display: String,
        mapped: Option<String>,
        set: Option<String>,
    },
    /// Several rows hold the code with different SNOMED codes.
    Ambiguous,
    Unknown,
}

fn find(code: &str, map: &CodeMap) -> Found {
    for c in candidates(code) {
        match map.lookup("read2", c, "snomed") {
            Ok(Some(s)) => {
                let other = |column: &str| {
                    map.lookup("read2", c, column)
                        .ok()
                        .flatten()
                        .map(|e| e.code.clone())
                };
                return Found::Coded {
                    read2: c.to_string(),
                    snomed: s.code.clone(),
                    display: s.display.clone(),
                    mapped: other("mapped"),
                    set: other("set"),
                };
            }
            Ok(None) => {}
            Err(_) => return Found::Ambiguous,
        }
    }
    Found::Unknown
}

/// Adds, right after each Read v2 reason, a SNOMED CT reason of the same clinical code set
/// (`system` SNOMED CT, the map's code and display, no `text`), keeping the Read v2 reason
/// as it is. Unknown Read v2 codes, Read v2 reasons without a code and reasons in other
/// systems are left as they are. A SNOMED code already among the reasons is not added
/// again (so running twice changes nothing).
///
/// Returns notes for the audit: field names (`reasons_for_referral[i]`, positions as
/// sent), the map's own codes and reasons — never a display, a text or a code the map
/// does not hold.
pub fn code_reasons(reasons: &mut Vec<Coded>, map: &CodeMap) -> Vec<String> {
    if !reasons.iter().any(|r| is_read2(r.system.as_deref())) {
        return Vec::new();
    }
    let snomed_system = map
        .systems
        .get("snomed")
        .cloned()
        .unwrap_or_else(|| SNOMED_SYSTEM.to_string());
    let present = |list: &[Coded], code: &str| {
        list.iter().any(|r| {
            r.system.as_deref() == Some(snomed_system.as_str()) && r.code.as_deref() == Some(code)
        })
    };
    let sent = std::mem::take(reasons);
    let mut notes = Vec::new();
    let mut added = Vec::new();
    for (i, reason) in sent.iter().enumerate() {
        reasons.push(reason.clone());
        if !is_read2(reason.system.as_deref()) {
            continue;
        }
        let field = format!("reasons_for_referral[{i}]");
        let Some(code) = reason.code.as_deref() else {
            notes.push(format!("{field}: Read v2 reason has no code; kept as sent"));
            continue;
        };
        match find(code, map) {
            Found::Coded {
                read2,
                snomed,
                display,
                mapped,
                set,
            } => {
                if present(&sent, &snomed) || present(&added, &snomed) {
                    notes.push(format!(
                        "{field}: Read v2 {read2}: SNOMED CT {snomed} is already among the \
                         reasons; not added again"
                    ));
                    continue;
                }
                let how = match mapped.as_deref() {
                    Some("set-membership") => "by set membership".to_string(),
                    Some(other) => format!("by {other}"),
                    None => format!("by code map {}", map.name),
                };
                let set = set.map(|s| format!(" (set {s})")).unwrap_or_default();
                notes.push(format!(
                    "{field}: Read v2 {read2} coded to SNOMED CT {snomed} {how}{set}"
                ));
                let coded = Coded {
                    system: Some(snomed_system.clone()),
                    code: Some(snomed),
                    display: Some(display),
                    text: None,
                };
                added.push(coded.clone());
                reasons.push(coded);
            }
            Found::Ambiguous => notes.push(format!(
                "{field}: Read v2 code is in several rows of {} with different SNOMED codes; \
                 kept as sent",
                map.name
            )),
            Found::Unknown => notes.push(format!(
                "{field}: Read v2 code not in {}; kept as sent",
                map.name
            )),
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::mapping::MappingSet;
    use crate::mapping::spec::CodeMapFile;

    const MAP: &str = r#"
name: read2-reasons
columns:
  read2: {system: "http://read.info/readv2"}
  snomed: {system: "http://snomed.info/sct"}
  mapped: {}
  set: {}
  source: {}
entries:
  - read2: {code: "1B1K.", display: "Lonely"}
    snomed: {code: "267076002", display: "Feeling lonely"}
    mapped: {code: "set-membership", display: "Same set"}
    set: {code: "efi-social-vulnerability/1", display: "Social vulnerability"}
    source: {code: "gm-sde:shared/clinical-code-sets/patient/efi-social-vulnerability/1", display: "lists"}
  - read2: {code: "X0001", display: "One"}
    snomed: {code: "1", display: "One"}
  - read2: {code: "X0001", display: "One"}
    snomed: {code: "2", display: "Two"}
"#;

    fn map() -> CodeMap {
        CodeMap::build(serde_yaml_ng::from_str::<CodeMapFile>(MAP).unwrap()).unwrap()
    }

    fn coded(system: &str, code: &str, display: &str) -> Coded {
        Coded {
            system: Some(system.into()),
            code: Some(code.into()),
            display: Some(display.into()),
            text: Some("free text the referrer wrote".into()),
        }
    }

    fn shipped() -> MappingSet {
        MappingSet::load_configured(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"))
            .unwrap()
    }

    #[test]
    fn a_known_code_gets_its_snomed_code_right_after_it() {
        let lonely = coded("http://read.info/readv2", "1B1K.", "Lonely");
        let other = coded("http://snomed.info/sct", "73595000", "Stress");
        let mut reasons = vec![other.clone(), lonely.clone()];
        let notes = code_reasons(&mut reasons, &map());
        assert_eq!(
            reasons,
            vec![
                other,
                lonely,
                Coded {
                    system: Some("http://snomed.info/sct".into()),
                    code: Some("267076002".into()),
                    display: Some("Feeling lonely".into()),
                    text: None,
                },
            ]
        );
        assert_eq!(
            notes,
            vec![
                "reasons_for_referral[1]: Read v2 1B1K. coded to SNOMED CT 267076002 by set \
                 membership (set efi-social-vulnerability/1)"
            ]
        );
    }

    #[test]
    fn an_unknown_code_is_kept_as_sent_and_not_named() {
        let unknown = coded("http://read.info/readv2", "zzzz.", "Something");
        let no_code = Coded {
            code: None,
            ..unknown.clone()
        };
        let mut reasons = vec![unknown.clone(), no_code.clone()];
        let notes = code_reasons(&mut reasons, &map());
        assert_eq!(reasons, vec![unknown, no_code]);
        assert_eq!(
            notes,
            vec![
                "reasons_for_referral[0]: Read v2 code not in read2-reasons; kept as sent",
                "reasons_for_referral[1]: Read v2 reason has no code; kept as sent",
            ]
        );
    }

    #[test]
    fn reasons_in_other_systems_are_untouched() {
        let mut reasons = vec![
            coded("http://snomed.info/sct", "1B1K.", "Lonely"),
            coded("http://read.info/ctv3", "1B1K.", "Lonely"),
            Coded {
                text: Some("text only".into()),
                ..Default::default()
            },
        ];
        let before = reasons.clone();
        assert!(code_reasons(&mut reasons, &map()).is_empty());
        assert_eq!(reasons, before);
    }

    #[test]
    fn read_v2_variants_and_the_preferred_term_id_are_read_but_synonyms_are_not_guessed() {
        for system in [
            "http://read.info/readv2/",
            "http://terminology.hl7.org/CodeSystem/rcV2",
            "urn:oid:2.16.840.1.113883.6.29",
        ] {
            let mut reasons = vec![coded(system, "1B1K.00", "Lonely")];
            let notes = code_reasons(&mut reasons, &map());
            assert_eq!(reasons.len(), 2, "{system}");
            assert_eq!(reasons[0].code.as_deref(), Some("1B1K.00"));
            assert_eq!(reasons[1].code.as_deref(), Some("267076002"));
            assert!(notes[0].contains("Read v2 1B1K. coded"), "{notes:?}");
        }
        // A synonym's term id, another case, a bare code: not in the map, not guessed.
        for code in ["1B1K.12", "1b1k.", "1B1K"] {
            let mut reasons = vec![coded("http://read.info/readv2", code, "Lonely")];
            let notes = code_reasons(&mut reasons, &map());
            assert_eq!(reasons.len(), 1, "{code}");
            assert!(notes[0].ends_with("kept as sent"), "{notes:?}");
        }
    }

    #[test]
    fn ambiguous_rows_are_not_guessed_and_nothing_is_added_twice() {
        let mut reasons = vec![coded("http://read.info/readv2", "X0001", "One")];
        let notes = code_reasons(&mut reasons, &map());
        assert_eq!(reasons.len(), 1);
        assert!(notes[0].contains("several rows"), "{notes:?}");

        let mut reasons = vec![coded("http://read.info/readv2", "1B1K.", "Lonely")];
        code_reasons(&mut reasons, &map());
        let once = reasons.clone();
        let notes = code_reasons(&mut reasons, &map());
        assert_eq!(reasons, once, "a second run adds nothing");
        assert!(notes[0].contains("already among the reasons"), "{notes:?}");
    }

    #[test]
    fn notes_carry_no_display_or_text() {
        let mut reasons = vec![
            coded("http://read.info/readv2", "1B1K.", "Lonely"),
            coded("http://read.info/readv2", "ABCDE", "Patient's own words"),
        ];
        let notes = code_reasons(&mut reasons, &map());
        for note in &notes {
            for secret in [
                "Lonely",
                "Feeling lonely",
                "free text",
                "own words",
                "ABCDE",
            ] {
                assert!(!note.contains(secret), "{note}");
            }
        }
    }

    /// The shipped map loads, every row names its set, how it was mapped and its source,
    /// and every SNOMED code it adds has a need category in referral-reasons.
    #[test]
    fn the_shipped_map_loads_and_every_row_has_its_source() {
        let set = shipped();
        let map = &set.codes[READ2_REASONS];
        let reasons = &set.codes["referral-reasons"];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/codes/read2-reasons.yaml");
        let file: CodeMapFile =
            serde_yaml_ng::from_str(&std::fs::read_to_string(dir).unwrap()).unwrap();
        assert!(!file.entries.is_empty());
        for (i, row) in file.entries.iter().enumerate() {
            let col = |c: &str| {
                row.get(c)
                    .unwrap_or_else(|| panic!("entries[{i}] has no {c}"))
            };
            let read2 = &col("read2").code;
            assert_eq!(col("mapped").code, "set-membership", "entries[{i}]");
            assert!(!col("set").code.is_empty(), "entries[{i}]");
            assert!(
                col("source")
                    .code
                    .starts_with("gm-sde:shared/clinical-code-sets/"),
                "entries[{i}]"
            );
            let snomed = &col("snomed").code;
            assert!(
                reasons
                    .lookup("snomed", snomed, "platform")
                    .unwrap()
                    .is_some(),
                "entries[{i}]: SNOMED {snomed} has no need category in referral-reasons"
            );
            // Through the function, as the referral front will call it.
            let mut list = vec![coded("http://read.info/readv2", read2, "x")];
            let notes = code_reasons(&mut list, map);
            assert_eq!(list.len(), 2, "entries[{i}]: {notes:?}");
            assert_eq!(list[1].code.as_deref(), Some(snomed.as_str()));
            assert!(notes[0].contains("by set membership"), "{notes:?}");
        }
    }

    /// Every row of the social-prescribing map says where its Read v2 code comes from, or
    /// that none is published; a row with Read v2 names a gm-sde set.
    #[test]
    fn every_social_prescribing_row_says_where_its_read_v2_comes_from() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/codes/social-prescribing.yaml");
        let file: CodeMapFile =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for (i, row) in file.entries.iter().enumerate() {
            let source = &row
                .get("read2_source")
                .unwrap_or_else(|| panic!("entries[{i}] has no read2_source"))
                .code;
            match (row.get("snomed"), row.get("read2")) {
                (_, Some(_)) => assert!(
                    source.starts_with("gm-sde:shared/clinical-code-sets/"),
                    "entries[{i}]: {source}"
                ),
                (Some(_), None) => assert_eq!(source, "none-published", "entries[{i}]"),
                (None, None) => assert_eq!(source, "no-snomed-code", "entries[{i}]"),
            }
        }
        assert!(shipped().codes.contains_key("social-prescribing"));
    }
}
