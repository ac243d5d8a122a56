//! Code maps (`mappings/codes/*.yaml`): rows that say the same concept in several
//! code systems — platform category ⇄ SNOMED CT ⇄ Read v2 ⇄ dataset category.

use std::collections::{BTreeMap, HashMap};

use super::spec::{CodeEntry, CodeMapFile};

#[derive(Debug)]
pub struct CodeMap {
    pub name: String,
    pub columns: Vec<String>,
    /// Each column's code system URI, where it names one.
    pub systems: BTreeMap<String, String>,
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
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CodeMap {
            name: file.name,
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
}
