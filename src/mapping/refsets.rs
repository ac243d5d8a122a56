//! Refsets: which reference set of the standard a code map's column draws its codes from,
//! and, where a refset's members are published, the membership kept as data
//! (`mappings/refsets/*.yaml`). A code outside a published membership refuses the map at
//! start-up; a code whose refset has no membership here is reported by
//! `clw-gateway mapping test` as "refset membership not verified" and never fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::CodeMap;
use super::spec::RefsetFile;

/// What `mapping test` says when a refset's members are not kept here.
pub const NOT_VERIFIED: &str = "refset membership not verified";

/// A refset's published members, with where and which release they were read from.
#[derive(Debug)]
pub struct Refset {
    pub id: String,
    pub name: String,
    pub source: String,
    pub version: String,
    pub licence: String,
    /// The file it came from.
    pub path: PathBuf,
    members: BTreeSet<String>,
}

impl Refset {
    /// Builds one from its file; errors name the place.
    pub fn build(file: RefsetFile, path: &Path) -> Result<Refset, Vec<String>> {
        let mut errors = Vec::new();
        if !is_concept_id(&file.refset) {
            errors.push(format!("refset: {}", not_a_concept_id(&file.refset)));
        }
        let mut members = BTreeSet::new();
        for (i, code) in file.members.iter().enumerate() {
            if !is_concept_id(code) {
                errors.push(format!("members[{i}]: {}", not_a_concept_id(code)));
            } else if !members.insert(code.clone()) {
                errors.push(format!("members[{i}]: {code} is listed twice"));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Refset {
            id: file.refset,
            name: file.name,
            source: file.source,
            version: file.version,
            licence: file.licence,
            path: path.to_path_buf(),
            members,
        })
    }

    pub fn contains(&self, code: &str) -> bool {
        self.members.contains(code)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// The published memberships a mapping set knows, by refset id.
#[derive(Debug, Default)]
pub struct Refsets {
    by_id: BTreeMap<String, Arc<Refset>>,
}

impl Refsets {
    /// Adds one; a second file for the same refset is an error naming both.
    pub fn insert(&mut self, refset: Refset) -> Result<(), String> {
        if let Some(first) = self.by_id.get(&refset.id) {
            return Err(format!(
                "refset {} already has its members in {}: one file per refset",
                refset.id,
                first.path.display()
            ));
        }
        self.by_id.insert(refset.id.clone(), Arc::new(refset));
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Refset>> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Which refset a row's code in a bound column is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drawn<'a> {
    /// This refset (id, name: the binding's name, or the row's display for it).
    From { id: &'a str, name: &'a str },
    /// The row says its code is drawn from no refset of the standard, and why.
    None { why: &'a str },
}

/// One row of a bound column: its code (None when the row has no code in the column yet)
/// and the refset it is drawn from.
#[derive(Debug, Clone, Copy)]
pub struct BoundCode<'a> {
    pub row: usize,
    pub column: &'a str,
    pub code: Option<(&'a str, &'a str)>,
    pub drawn: Drawn<'a>,
}

/// Every code in `map` outside the published membership of its refset: one error each,
/// naming the code map, the row, the column and the refset.
pub fn check(map: &CodeMap, refsets: &Refsets) -> Vec<String> {
    let mut errors = Vec::new();
    for b in map.bound_codes() {
        let (Drawn::From { id, name }, Some((code, display))) = (b.drawn, b.code) else {
            continue;
        };
        if let Some(refset) = refsets.get(id)
            && !refset.contains(code)
        {
            errors.push(format!(
                "code map {}, entries[{}].{}: {code} ({display}) is not a member of refset {id} \
                 ({name}) as published in {} (release {}): use a member, or bind the column \
                 to the refset the code is drawn from",
                map.name,
                b.row,
                b.column,
                refset.path.display(),
                refset.version
            ));
        }
    }
    errors
}

/// The map, when none of its codes is outside a published membership ([`check`]).
pub fn checked(map: CodeMap, refsets: &Refsets) -> Result<CodeMap, Vec<String>> {
    match check(&map, refsets) {
        errors if errors.is_empty() => Ok(map),
        errors => Err(errors),
    }
}

/// What `mapping test` prints for one code map: per column and refset a summary line,
/// then, where the refset's members are not kept here, a line per code marking it
/// "refset membership not verified". Counts: (codes verified, codes not verified).
pub fn report(map: &CodeMap, refsets: &Refsets) -> (Vec<String>, usize, usize) {
    let bound = map.bound_codes();
    // (column, refset id or "none") → rows, in the order first seen.
    let mut groups: Vec<((&str, Drawn), Vec<BoundCode>)> = Vec::new();
    for b in &bound {
        let key = (b.column, b.drawn);
        let same = |k: &(&str, Drawn)| {
            k.0 == key.0
                && match (k.1, key.1) {
                    (Drawn::From { id: a, .. }, Drawn::From { id: b, .. }) => a == b,
                    (Drawn::None { .. }, Drawn::None { .. }) => true,
                    _ => false,
                }
        };
        match groups.iter_mut().find(|(k, _)| same(k)) {
            Some((_, rows)) => rows.push(*b),
            None => groups.push((key, vec![*b])),
        }
    }
    let (mut lines, mut verified, mut unverified) = (Vec::new(), 0, 0);
    for ((column, drawn), rows) in groups {
        let coded: Vec<&BoundCode> = rows.iter().filter(|b| b.code.is_some()).collect();
        let uncoded = rows.len() - coded.len();
        let where_ = format!("refset {}.{column}", map.name);
        let no_code = if uncoded > 0 {
            format!("; {uncoded} rows have no {column} code yet")
        } else {
            String::new()
        };
        match drawn {
            Drawn::None { .. } => lines.push(format!(
                "{where_}: {} codes say they are drawn from no refset of the standard \
                 (each row's reason is in the map){no_code}",
                coded.len()
            )),
            Drawn::From { id, name } => match refsets.get(id) {
                Some(r) => {
                    verified += coded.len();
                    lines.push(format!(
                        "{where_}: {} codes from {id} ({name}), every one a member as published \
                         in {} (release {}, {} members){no_code}",
                        coded.len(),
                        r.path.display(),
                        r.version,
                        r.len()
                    ));
                }
                None => {
                    unverified += coded.len();
                    lines.push(format!(
                        "{where_}: {} codes from {id} ({name}): {NOT_VERIFIED}, no membership \
                         for it in the mappings folder's refsets/ (docs/coding.md, \"Refsets\"){no_code}",
                        coded.len()
                    ));
                    for b in coded {
                        let (code, display) = b.code.unwrap_or_default();
                        lines.push(format!(
                            "  {NOT_VERIFIED}: {} entries[{}].{column} {code} ({display}), refset {id}",
                            map.name, b.row
                        ));
                    }
                }
            },
        }
    }
    (lines, verified, unverified)
}

/// A SNOMED CT concept id: 6 to 18 digits, no leading zero, a concept partition
/// (`00`, or `10` in an extension's namespace) and a valid Verhoeff check digit. This
/// catches a mistyped id; whether the concept exists, is active, or is in a refset needs
/// the UK Edition itself.
pub fn is_concept_id(id: &str) -> bool {
    (6..=18).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_digit())
        && !id.starts_with('0')
        && matches!(&id[id.len() - 3..id.len() - 1], "00" | "10")
        && verhoeff_valid(id)
}

pub fn not_a_concept_id(id: &str) -> String {
    format!(
        "{id:?} is not a SNOMED CT concept id (6 to 18 digits, a concept partition 00 or 10, \
         and a valid check digit)"
    )
}

/// The dihedral group D5's multiplication table.
const D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];

/// Verhoeff's position permutation: (0 1 5 8 9 4 2 7)(3 6), applied once per position.
const P1: [u8; 10] = [1, 5, 7, 6, 2, 8, 3, 0, 9, 4];

fn verhoeff_valid(digits: &str) -> bool {
    let mut check = 0u8;
    for (position, b) in digits.bytes().rev().enumerate() {
        let mut d = b - b'0';
        for _ in 0..position % 8 {
            d = P1[usize::from(d)];
        }
        check = D[usize::from(check)][usize::from(d)];
    }
    check == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::spec::CodeMapFile;

    fn map(yaml: &str) -> CodeMap {
        CodeMap::build(serde_yaml_ng::from_str::<CodeMapFile>(yaml).unwrap()).unwrap()
    }

    fn refsets(id: &str, members: &[&str]) -> Refsets {
        let file = RefsetFile {
            refset: id.into(),
            name: "Test refset".into(),
            description: None,
            source: "test".into(),
            version: "1.0.0_20250101".into(),
            licence: "test".into(),
            members: members.iter().map(|m| m.to_string()).collect(),
        };
        let mut r = Refsets::default();
        r.insert(Refset::build(file, Path::new("refsets/test.yaml")).unwrap())
            .unwrap();
        r
    }

    const NEEDS: &str = "name: needs\ncolumns:\n  snomed: {refset: {id: '1373501000000105', name: Needs}}\n  \
        platform: {}\nentries:\n\
        - snomed: {code: '422650009', display: Social isolation}\n  platform: {code: a, display: A}\n\
        - snomed: {code: '73595000', display: Stress}\n  platform: {code: b, display: B}\n";

    #[test]
    fn concept_ids_are_checked_by_form_partition_and_check_digit() {
        for ok in [
            "422650009",
            "73595000",
            "1373501000000105",
            "1127601000000107",
            "999002381000000108",
            "363787002",
            "195967001",
        ] {
            assert!(is_concept_id(ok), "{ok}");
        }
        for bad in [
            "422650008",        // check digit
            "1373501000000104", // check digit
            "42265",            // too short
            "0422650009",       // leading zero
            "422650019",        // partition 01: a description id
            "8T09.",
            "",
        ] {
            assert!(!is_concept_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_code_outside_a_published_membership_is_an_error_naming_map_row_column_and_refset() {
        let errors = check(&map(NEEDS), &refsets("1373501000000105", &["422650009"]));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "code map needs, entries[1].snomed: 73595000 (Stress) is not a member of refset \
                 1373501000000105 (Needs) as published in refsets/test.yaml (release 1.0.0_20250101)"
            ),
            "{}",
            errors[0]
        );
        let (lines, verified, unverified) = report(
            &map(NEEDS),
            &refsets("1373501000000105", &["422650009", "73595000"]),
        );
        assert_eq!((verified, unverified), (2, 0));
        assert!(lines[0].contains("every one a member"), "{lines:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
    }

    #[test]
    fn without_membership_each_code_is_marked_not_verified_and_nothing_fails() {
        let other = refsets("1127601000000107", &["422650009"]);
        assert!(check(&map(NEEDS), &other).is_empty());
        let (lines, verified, unverified) = report(&map(NEEDS), &other);
        assert_eq!((verified, unverified), (0, 2));
        assert!(
            lines[0].starts_with(
                "refset needs.snomed: 2 codes from 1373501000000105 (Needs): refset membership not verified"
            ),
            "{lines:?}"
        );
        assert_eq!(
            lines[1..],
            [
                "  refset membership not verified: needs entries[0].snomed 422650009 (Social isolation), refset 1373501000000105",
                "  refset membership not verified: needs entries[1].snomed 73595000 (Stress), refset 1373501000000105",
            ]
        );
    }

    #[test]
    fn per_row_bindings_group_by_refset_and_rows_may_say_none() {
        let m = map(
            "name: sp\ncolumns:\n  snomed: {refset: {per_row: refset}}\n  refset: {}\n  local: {}\nentries:\n\
             - snomed: {code: '871731000000106', display: Referral}\n  refset: {code: none, display: An event}\n\
             - snomed: {code: '306238000', display: Social services}\n  refset: {code: '1373511000000107', display: Support}\n\
             - local: {code: closed, display: Closed}\n  refset: {code: '1127601000000107', display: Outcomes}\n",
        );
        let support = refsets("1373511000000107", &["306238000"]);
        assert!(check(&m, &support).is_empty());
        let (lines, verified, unverified) = report(&m, &support);
        assert_eq!((verified, unverified), (1, 0), "{lines:?}");
        assert!(
            lines[0].contains("1 codes say they are drawn from no refset"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("1 codes from 1373511000000107 (Support), every one a member"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains(
                "0 codes from 1127601000000107 (Outcomes): refset membership not verified"
            ) && lines[2].ends_with("; 1 rows have no snomed code yet"),
            "{lines:?}"
        );
        let outside = refsets("1373511000000107", &["390893007"]);
        let errors = check(&m, &outside);
        assert!(
            errors[0].starts_with("code map sp, entries[1].snomed: 306238000 (Social services) is not a member of refset 1373511000000107 (Support)"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_membership_file_with_a_bad_or_repeated_member_is_refused_naming_the_place() {
        let file = |members: &[&str]| RefsetFile {
            refset: "1373501000000105".into(),
            name: "n".into(),
            description: None,
            source: "s".into(),
            version: "v".into(),
            licence: "l".into(),
            members: members.iter().map(|m| m.to_string()).collect(),
        };
        let errs =
            Refset::build(file(&["422650009", "42265", "422650009"]), Path::new("x")).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("members[1]: \"42265\" is not a SNOMED CT concept id"));
        assert_eq!(errs[1], "members[2]: 422650009 is listed twice");
        let mut r = refsets("1373501000000105", &[]);
        let again = Refset::build(file(&[]), Path::new("y")).unwrap();
        assert!(
            r.insert(again)
                .unwrap_err()
                .contains("already has its members in refsets/test.yaml")
        );
    }
}
