//! Code maps (`mappings/codes/*.yaml`): rows that say the same concept in several
//! code systems — platform category ⇄ SNOMED CT ⇄ Read v2 ⇄ dataset category. A column
//! may say which refset of the standard its codes are drawn from (`refsets.rs`).

use std::collections::{BTreeMap, HashMap};

use super::refsets::{BoundCode, Drawn, is_concept_id, not_a_concept_id};
use super::spec::{CodeEntry, CodeMapFile, RefsetBinding};

/// A per-row refset column's code for "drawn from no refset of the standard".
pub const NO_REFSET: &str = "none";

#[derive(Debug)]
pub struct CodeMap {
    pub name: String,
    pub columns: Vec<String>,
    /// Each column's code system URI, where it names one.
    pub systems: BTreeMap<String, String>,
    /// Each bound column's refset (whole column, or per row).
    pub refsets: BTreeMap<String, RefsetBinding>,
    entries: Vec<BTreeMap<String, CodeEntry>>,
    /// (column, code) → the entry holding it; None when several do (many-to-one rows
    /// are fine, but translating *from* such a code is ambiguous).
    index: HashMap<(String, String), Option<usize>>,
}

impl CodeMap {
    /// Builds the map; errors name the entry and column.
    pub fn build(file: CodeMapFile) -> Result<CodeMap, Vec<String>> {
        let mut errors = Vec::new();
        let mut index = HashMap::new();
        for (i, entry) in file.entries.iter().enumerate() {
            if entry.is_empty() {
                errors.push(format!("entries[{i}]: has no codes"));
            }
            for (column, code) in entry {
                if !file.columns.contains_key(column) {
                    errors.push(format!(
                        "entries[{i}].{column}: no such column (columns: {})",
                        file.columns.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                index
                    .entry((column.clone(), code.code.clone()))
                    .and_modify(|e| *e = None)
                    .or_insert(Some(i));
            }
        }
        errors.extend(check_bindings(&file));
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CodeMap {
            name: file.name,
            refsets: file
                .columns
                .iter()
                .filter_map(|(k, c)| c.refset.clone().map(|r| (k.clone(), r)))
                .collect(),
            systems: file
                .columns
                .iter()
                .filter_map(|(k, c)| c.system.clone().map(|s| (k.clone(), s)))
                .collect(),
            columns: file.columns.into_keys().collect(),
            entries: file.entries,
            index,
        })
    }

    pub fn has_column(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }

    /// Every row of every refset-bound column, with its code (if the row has one) and the
    /// refset it is drawn from. A per-row binding covers each row that names a refset
    /// or has a code in the column.
    pub fn bound_codes(&self) -> Vec<BoundCode<'_>> {
        let mut out = Vec::new();
        for (column, binding) in &self.refsets {
            for (row, entry) in self.entries.iter().enumerate() {
                let code = entry
                    .get(column)
                    .map(|c| (c.code.as_str(), c.display.as_str()));
                let drawn = match binding {
                    RefsetBinding::Whole(r) if code.is_some() => Drawn::From {
                        id: &r.id,
                        name: &r.name,
                    },
                    RefsetBinding::Whole(_) => continue,
                    RefsetBinding::PerRow(p) => match entry.get(&p.per_row) {
                        Some(r) if r.code == NO_REFSET => Drawn::None { why: &r.display },
                        Some(r) => Drawn::From {
                            id: &r.code,
                            name: &r.display,
                        },
                        None => continue,
                    },
                };
                out.push(BoundCode {
                    row,
                    column,
                    code,
                    drawn,
                });
            }
        }
        out
    }

    /// The whole row holding `code` in column `from`, when exactly one row does.
    pub fn row(&self, from: &str, code: &str) -> Option<&BTreeMap<String, CodeEntry>> {
        match self.index.get(&(from.to_string(), code.to_string())) {
            Some(Some(i)) => Some(&self.entries[*i]),
            _ => None,
        }
    }

    /// The entry in `to` for `code` in column `from`: Ok(None) when unmapped, Err when
    /// several rows hold `code` in `from` and disagree.
    pub fn lookup(&self, from: &str, code: &str, to: &str) -> Result<Option<&CodeEntry>, String> {
        match self.index.get(&(from.to_string(), code.to_string())) {
            None => Ok(None),
            Some(Some(i)) => Ok(self.entries[*i].get(to)),
            Some(None) => {
                let mut found = self
                    .entries
                    .iter()
                    .filter(|e| e.get(from).is_some_and(|c| c.code == code))
                    .filter_map(|e| e.get(to));
                let first = found.next();
                if found.all(|other| Some(other) == first) {
                    Ok(first)
                } else {
                    Err(format!(
                        "code {code} ({from}) is in several rows of code map {} with different {to} entries",
                        self.name
                    ))
                }
            }
        }
    }
}

/// A bound column's codes must be SNOMED CT concept ids; a per-row binding names an
/// existing column, and every row with a code in the bound column names its refset there
/// (an id, or `none` with the reason as its display).
fn check_bindings(file: &CodeMapFile) -> Vec<String> {
    let mut errors = Vec::new();
    for (column, spec) in &file.columns {
        let Some(binding) = &spec.refset else {
            continue;
        };
        let per_row = match binding {
            RefsetBinding::Whole(r) => {
                if !is_concept_id(&r.id) {
                    errors.push(format!(
                        "columns.{column}.refset.id: {}",
                        not_a_concept_id(&r.id)
                    ));
                }
                None
            }
            RefsetBinding::PerRow(p)
                if p.per_row == *column || !file.columns.contains_key(&p.per_row) =>
            {
                errors.push(format!(
                    "columns.{column}.refset.per_row: {:?} is not another column of the map",
                    p.per_row
                ));
                continue;
            }
            RefsetBinding::PerRow(p) => Some(p.per_row.as_str()),
        };
        for (i, entry) in file.entries.iter().enumerate() {
            if let Some(c) = entry.get(column)
                && !is_concept_id(&c.code)
            {
                errors.push(format!(
                    "entries[{i}].{column}: {}, so it cannot be drawn from a refset",
                    not_a_concept_id(&c.code)
                ));
            }
            let Some(per_row) = per_row else { continue };
            match entry.get(per_row) {
                None if entry.contains_key(column) => errors.push(format!(
                    "entries[{i}].{per_row}: the row has a {column} code, and column {column} \
                     takes its refset per row from column {per_row}: give the refset id, or \
                     code {NO_REFSET} with the reason as its display"
                )),
                Some(r) if r.code != NO_REFSET && !is_concept_id(&r.code) => errors.push(format!(
                    "entries[{i}].{per_row}: neither {NO_REFSET} nor a refset id: {}",
                    not_a_concept_id(&r.code)
                )),
                _ => {}
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> CodeMapFile {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn looks_up_both_ways_and_reports_gaps() {
        let m = CodeMap::build(file(
            "name: t\ncolumns: {snomed: {}, read2: {}}\nentries:\n\
             - snomed: {code: '871731000000106', display: Referral}\n  read2: {code: 8T09., display: Referral}\n\
             - snomed: {code: '871711000000103', display: Declined}\n",
        ))
        .unwrap();
        let code = |from, c, to| m.lookup(from, c, to).unwrap().map(|e| e.code.clone());
        assert_eq!(
            code("snomed", "871731000000106", "read2").as_deref(),
            Some("8T09.")
        );
        assert_eq!(
            code("read2", "8T09.", "snomed").as_deref(),
            Some("871731000000106")
        );
        assert_eq!(code("snomed", "871711000000103", "read2"), None);
        assert_eq!(code("snomed", "1", "read2"), None);
    }

    #[test]
    fn many_to_one_rows_translate_one_way_only() {
        let m = CodeMap::build(file(
            "name: t\ncolumns: {snomed: {}, need: {}}\nentries:\n\
             - snomed: {code: '1', display: A}\n  need: {code: n, display: N}\n\
             - snomed: {code: '2', display: B}\n  need: {code: n, display: N}\n",
        ))
        .unwrap();
        assert_eq!(m.lookup("snomed", "2", "need").unwrap().unwrap().code, "n");
        assert!(
            m.lookup("need", "n", "snomed")
                .unwrap_err()
                .contains("several rows")
        );
    }

    #[test]
    fn unknown_columns_are_refused() {
        let errs = CodeMap::build(file(
            "name: t\ncolumns: {snomed: {}}\nentries:\n- read2: {code: x, display: X}\n",
        ))
        .unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("entries[0].read2: no such column")),
            "{errs:?}"
        );
    }

    #[test]
    fn refset_bindings_are_checked_where_they_are_declared() {
        let errs = CodeMap::build(file(
            "name: t\ncolumns:\n  snomed: {refset: {id: '1373501000000104', name: N}}\n  \
             s2: {refset: {per_row: nowhere}}\n  s3: {refset: {per_row: r}}\n  r: {}\nentries:\n\
             - snomed: {code: '8T09.', display: Read code}\n\
             - s3: {code: '306238000', display: Social services}\n\
             - s3: {code: '390893007', display: Physical activity}\n  r: {code: '137351100000010', display: Typo}\n",
        ))
        .unwrap_err();
        let want = [
            "columns.snomed.refset.id: \"1373501000000104\" is not a SNOMED CT concept id",
            "entries[0].snomed: \"8T09.\" is not a SNOMED CT concept id",
            "columns.s2.refset.per_row: \"nowhere\" is not another column of the map",
            "entries[1].r: the row has a s3 code, and column s3 takes its refset per row from column r",
            "entries[2].r: neither none nor a refset id: \"137351100000010\" is not a SNOMED CT concept id",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e.starts_with(w)), "{w}\n{errs:#?}");
        }
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
    }

    #[test]
    fn bound_codes_list_each_row_with_its_refset() {
        let m = CodeMap::build(file(
            "name: t\ncolumns:\n  snomed: {refset: {per_row: r}}\n  r: {}\n  local: {}\nentries:\n\
             - snomed: {code: '871731000000106', display: Referral}\n  r: {code: none, display: An event}\n\
             - local: {code: closed, display: Closed}\n  r: {code: '1127601000000107', display: Outcomes}\n\
             - local: {code: contact, display: Contact}\n",
        ))
        .unwrap();
        let bound = m.bound_codes();
        assert_eq!(bound.len(), 2, "{bound:?}");
        assert_eq!(bound[0].code, Some(("871731000000106", "Referral")));
        assert_eq!(bound[0].drawn, Drawn::None { why: "An event" });
        assert_eq!((bound[1].row, bound[1].code), (1, None));
        assert_eq!(
            bound[1].drawn,
            Drawn::From {
                id: "1127601000000107",
                name: "Outcomes"
            }
        );
    }
}
