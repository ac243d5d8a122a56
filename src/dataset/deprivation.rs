//! A deprivation decile from a postcode, through lookup files the operator supplies.
//!
//! Each [`LookupTable`] is two published CSV files: postcode → small area (a Scottish
//! data zone, an English LSOA) and area → decile (SIMD in Scotland, IMD in England). The
//! column names are configured, as every publisher names them differently, e.g.
//!
//! | file | postcode / area column | area / decile column |
//! |---|---|---|
//! | NRS Scottish Postcode Directory | `Postcode` / `DataZone2011Code` | |
//! | SIMD 2020v2 | | `Data_Zone` / `SIMD2020v2_Decile` |
//! | ONS postcode → LSOA lookup | `pcds` / `lsoa11cd` | |
//! | English IoD 2019, File 7 | | `LSOA code (2011)` / `Index of Multiple Deprivation (IMD) Decile (where 1 is most deprived 10% of LSOAs)` |
//!
//! Tables are tried in order: the first whose postcode file has the postcode *and* whose
//! decile file has its area gives the decile. So a UK-wide ONS file with the English IMD
//! first, then the Scottish files, gives IMD for England and SIMD for Scotland.
//!
//! Memory: postcodes are kept as sorted `u64` keys (the normalised postcode's bytes
//! packed into one integer) beside a `u32` area id, areas interned to those ids with one
//! decile byte each: 12 bytes a postcode. A full UK postcode file (about 1.7 million live
//! postcodes; 2.7 million with terminated ones) takes about 20 MB (32 MB), against about
//! 200 MB (320 MB) as a `HashMap<String, String>` of owned strings (two heap blocks and a
//! 48-byte entry a row). Loading needs 16 bytes a row more while the rows are sorted.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{GatewayError, Result};

/// Where the tables are in the configuration (errors name `<this>.tables[i].<field>`).
pub const CONFIG_KEY: &str = "dataset.deprivation";

/// The lookup tables, tried in order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprivationConfig {
    pub tables: Vec<LookupTable>,
}

/// One index's two files and the columns read from each.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupTable {
    /// The index's name in the dataset: "simd", "imd" or any other.
    pub index: String,
    /// The postcode → area file.
    pub postcodes: PathBuf,
    pub postcode_column: String,
    pub area_column: String,
    /// The area → decile file.
    pub deciles: PathBuf,
    pub decile_area_column: String,
    pub decile_column: String,
}

/// A postcode's decile (1 most deprived … 10 least) on one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decile {
    pub index: String,
    pub decile: u8,
}

/// The loaded tables.
pub struct Deprivation {
    tables: Vec<Table>,
}

struct Table {
    index: String,
    /// Packed postcodes ([`pack`]), sorted, each once.
    postcodes: Vec<u64>,
    /// The area id of each postcode.
    areas: Vec<u32>,
    /// The decile of each area id; 0 when the decile file does not have the area.
    deciles: Vec<u8>,
}

impl fmt::Debug for Deprivation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for t in &self.tables {
            list.entry(&format_args!(
                "{}: {} postcodes",
                t.index,
                t.postcodes.len()
            ));
        }
        list.finish()
    }
}

/// A postcode as a key: its letters and digits upper-cased, white space removed, one
/// byte each from the top of a `u64` (no byte is zero, so no two postcodes share a key).
/// None for anything else, or for more than eight characters (the longest postcode has
/// seven).
fn pack(postcode: &str) -> Option<u64> {
    let mut key = 0u64;
    let mut n = 0u32;
    for c in postcode.chars().filter(|c| !c.is_whitespace()) {
        if !c.is_ascii_alphanumeric() || n == 8 {
            return None;
        }
        key = (key << 8) | u64::from(c.to_ascii_uppercase() as u8);
        n += 1;
    }
    (n > 0).then(|| key << (8 * (8 - n)))
}

impl Deprivation {
    /// Reads every table's files. Errors name the configuration key, the file, and the
    /// column or line: a missing column, a decile that is not 1 to 10, a postcode or an
    /// area given two different values, a decile file none of whose areas are in its
    /// postcode file (two different geographies, e.g. 2011 and 2021 LSOAs).
    pub fn load(config: &DeprivationConfig) -> Result<Deprivation> {
        if config.tables.is_empty() {
            return Err(GatewayError::config(
                format!("{CONFIG_KEY}.tables"),
                "names no lookup table",
            ));
        }
        let tables = config
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| load_table(&format!("{CONFIG_KEY}.tables[{i}]"), t))
            .collect::<Result<_>>()?;
        Ok(Deprivation { tables })
    }

    /// The decile of the first table that knows `postcode` (any case and spacing), or
    /// None.
    pub fn lookup(&self, postcode: &str) -> Option<Decile> {
        let key = pack(postcode)?;
        self.tables.iter().find_map(|t| {
            let i = t.postcodes.binary_search(&key).ok()?;
            let area = usize::try_from(*t.areas.get(i)?).ok()?;
            let decile = *t.deciles.get(area)?;
            (decile != 0).then(|| Decile {
                index: t.index.clone(),
                decile,
            })
        })
    }
}

/// A file being read, for errors naming its configuration key and path.
#[derive(Clone, Copy)]
struct Source<'a> {
    key: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    fn error(self, message: impl fmt::Display) -> GatewayError {
        GatewayError::config(self.key, format!("{}: {message}", self.path.display()))
    }

    /// An error about one line's value in `column`, which it never quotes.
    fn at(self, line: u32, column: &str, why: &str) -> GatewayError {
        self.error(format_args!("line {line}: column {column:?} {why}"))
    }

    /// The reader, and the positions of the two columns headed `names` (surrounding
    /// blanks and a byte-order mark ignored).
    fn open(self, names: [&str; 2]) -> Result<(csv::Reader<std::fs::File>, [usize; 2])> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(self.path)
            .map_err(|e| self.error(e))?;
        let headers = reader.byte_headers().map_err(|e| self.error(e))?;
        let clean = |h: &[u8]| -> Vec<u8> {
            h.strip_prefix(b"\xef\xbb\xbf")
                .unwrap_or(h)
                .trim_ascii()
                .to_vec()
        };
        let position = |name: &str| {
            let at = headers.iter().position(|h| clean(h) == name.as_bytes());
            at.ok_or_else(|| {
                let mut has: Vec<String> = (headers.iter().take(12))
                    .map(|h| format!("{:?}", String::from_utf8_lossy(&clean(h))))
                    .collect();
                if headers.len() > 12 {
                    has.push("…".into());
                }
                let has = has.join(", ");
                self.error(format_args!("has no column {name:?} (its header: {has})"))
            })
        };
        let at = [position(names[0])?, position(names[1])?];
        Ok((reader, at))
    }

    /// Each row's line and its values in the columns `at`, trimmed (empty when the row
    /// is short), until the end or `each` refuses one. How many rows there were.
    fn rows(
        self,
        reader: &mut csv::Reader<std::fs::File>,
        at: [usize; 2],
        mut each: impl FnMut(u32, [&[u8]; 2]) -> Result<()>,
    ) -> Result<usize> {
        let mut record = csv::ByteRecord::new();
        let mut rows = 0;
        while reader
            .read_byte_record(&mut record)
            .map_err(|e| self.error(e))?
        {
            let line = record.position().map_or(0, |p| p.line());
            let line = u32::try_from(line).unwrap_or(u32::MAX);
            let field = |i: usize| record.get(i).unwrap_or_default().trim_ascii();
            each(line, [field(at[0]), field(at[1])])?;
            rows += 1;
        }
        Ok(rows)
    }
}

fn load_table(key: &str, t: &LookupTable) -> Result<Table> {
    if t.index.trim().is_empty() {
        return Err(GatewayError::config(format!("{key}.index"), "is empty"));
    }
    let mut ids: HashMap<Box<str>, u32> = HashMap::new();
    let (postcodes, areas) = read_postcodes(&format!("{key}.postcodes"), t, &mut ids)?;
    Ok(Table {
        index: t.index.clone(),
        deciles: read_deciles(&format!("{key}.deciles"), t, &ids)?,
        postcodes,
        areas,
    })
}

/// The postcode file: sorted keys and their area ids, each area interned in `ids`. A row
/// with no area (a terminated or non-geographic postcode in the ONS files) is left out.
fn read_postcodes(
    key: &str,
    t: &LookupTable,
    ids: &mut HashMap<Box<str>, u32>,
) -> Result<(Vec<u64>, Vec<u32>)> {
    let src = Source {
        key,
        path: &t.postcodes,
    };
    let (mut reader, at) = src.open([&t.postcode_column, &t.area_column])?;
    // (postcode, area id, line): 16 bytes a row until sorted.
    let mut rows: Vec<(u64, u32, u32)> = Vec::new();
    let read = src.rows(&mut reader, at, |line, [postcode, area]| {
        if area.is_empty() {
            return Ok(());
        }
        let postcode = std::str::from_utf8(postcode).ok().and_then(pack);
        let postcode =
            postcode.ok_or_else(|| src.at(line, &t.postcode_column, "is not a postcode"))?;
        let area =
            std::str::from_utf8(area).map_err(|_| src.at(line, &t.area_column, "is not UTF-8"))?;
        let id = match ids.get(area) {
            Some(id) => *id,
            None => {
                let id = u32::try_from(ids.len())
                    .map_err(|_| src.at(line, &t.area_column, "has too many areas"))?;
                ids.insert(area.into(), id);
                id
            }
        };
        rows.push((postcode, id, line));
        Ok(())
    })?;
    if read == 0 {
        return Err(src.error("has no rows under its header"));
    }
    rows.sort_unstable();
    let conflict = rows
        .windows(2)
        .find(|w| w[0].0 == w[1].0 && w[0].1 != w[1].1);
    if let Some(w) = conflict {
        let (a, b) = (w[0].2.min(w[1].2), w[0].2.max(w[1].2));
        return Err(src.error(format_args!(
            "lines {a} and {b} give one postcode two different areas"
        )));
    }
    rows.dedup_by_key(|r| r.0);
    Ok(rows.into_iter().map(|(p, area, _)| (p, area)).unzip())
}

/// The decile file: the decile of each area id in `ids` (0 for an area it lacks).
fn read_deciles(key: &str, t: &LookupTable, ids: &HashMap<Box<str>, u32>) -> Result<Vec<u8>> {
    let src = Source {
        key,
        path: &t.deciles,
    };
    let (mut reader, at) = src.open([&t.decile_area_column, &t.decile_column])?;
    // Each area's decile, and the line it came from (to name both lines of a conflict).
    let mut deciles = vec![(0u8, 0u32); ids.len()];
    src.rows(&mut reader, at, |line, [area, decile]| {
        if area.is_empty() {
            return Err(src.at(line, &t.decile_area_column, "is empty"));
        }
        let decile = std::str::from_utf8(decile)
            .ok()
            .and_then(|d| d.parse().ok());
        let decile = decile
            .filter(|d| (1..=10).contains(d))
            .ok_or_else(|| src.at(line, &t.decile_column, "is not a decile from 1 to 10"))?;
        let area = std::str::from_utf8(area)
            .map_err(|_| src.at(line, &t.decile_area_column, "is not UTF-8"))?;
        let id = ids.get(area).and_then(|id| usize::try_from(*id).ok());
        // An area none of this table's postcodes is in has no slot.
        match id.and_then(|id| deciles.get_mut(id)) {
            Some(slot) if slot.0 == 0 => *slot = (decile, line),
            Some(slot) if slot.0 != decile => {
                let why = format!("differs from line {} for the same area", slot.1);
                return Err(src.at(line, &t.decile_column, &why));
            }
            _ => {}
        }
        Ok(())
    })?;
    if deciles.iter().all(|d| d.0 == 0) {
        return Err(src.error(format_args!(
            "none of its areas is an area of {} (are both files of the same geography, \
             e.g. 2011 LSOAs or data zones?)",
            t.postcodes.display()
        )));
    }
    Ok(deciles.into_iter().map(|d| d.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deprivation")
    }

    /// The fixtures as an operator would configure them: the UK-wide ONS file with the
    /// English IMD first, then the Scottish files.
    fn fixture_config() -> DeprivationConfig {
        let toml = format!(
            r#"
            [[tables]]
            index = "imd"
            postcodes = "{dir}/imd-postcodes.csv"
            postcode_column = "pcds"
            area_column = "lsoa11cd"
            deciles = "{dir}/imd-deciles.csv"
            decile_area_column = "LSOA code (2011)"
            decile_column = "Index of Multiple Deprivation (IMD) Decile (where 1 is most deprived 10% of LSOAs)"

            [[tables]]
            index = "simd"
            postcodes = "{dir}/simd-postcodes.csv"
            postcode_column = "Postcode"
            area_column = "DataZone2011Code"
            deciles = "{dir}/simd-deciles.csv"
            decile_area_column = "Data_Zone"
            decile_column = "SIMD2020v2_Decile"
            "#,
            dir = fixtures().display()
        );
        toml::from_str(&toml).unwrap()
    }

    fn decile(index: &str, decile: u8) -> Option<Decile> {
        Some(Decile {
            index: index.into(),
            decile,
        })
    }

    #[test]
    fn lookups_through_the_fixtures() {
        let d = Deprivation::load(&fixture_config()).unwrap();
        assert_eq!(d.lookup("ZZ2 1AA"), decile("imd", 1));
        assert_eq!(d.lookup("zz22aa"), decile("imd", 7));
        assert_eq!(d.lookup("  zZ2   1Ab\t"), decile("imd", 1));
        // Not in the ONS file: Scotland's.
        assert_eq!(d.lookup("ZZ1 1AA"), decile("simd", 1));
        assert_eq!(d.lookup("zz1 2aa"), decile("simd", 6));
        // In the ONS file, but its data zone has no IMD decile: falls through to SIMD.
        assert_eq!(d.lookup("ZZ99ZZ"), decile("simd", 10));
        assert_eq!(format!("{d:?}"), "[imd: 4 postcodes, simd: 4 postcodes]");
    }

    #[test]
    fn unknown_and_garbage_postcodes_are_none() {
        let d = Deprivation::load(&fixture_config()).unwrap();
        // ZZ3 1AA has no LSOA in the ONS file (terminated): left out.
        let none = "ZZ3 1AA|ZZ8 8ZZ|ZZ1 1A|ZZ1 1AAA||   |ZZ1-1AA|ZZ1 1ÀA|ZZ11AAZZ11AA|S01ZZ001";
        for none in none.split('|') {
            assert_eq!(d.lookup(none), None, "{none:?}");
        }
    }

    #[test]
    fn postcodes_pack_to_distinct_keys() {
        assert_eq!(pack("zz1 1aa"), pack("ZZ11AA"));
        assert_eq!(pack("ZZ1\t1AA "), pack("ZZ11AA"));
        let keys: std::collections::HashSet<_> = ["A1", "A10", "A100", "A1A", "1A", "AB10AA"]
            .map(pack)
            .into_iter()
            .collect();
        assert_eq!(keys.len(), 6);
        assert!(pack("ABCD1234").is_some());
        for none in ["", " ", "ABCD12345", "AB1_1AA", "AB1\u{0}1AA"] {
            assert_eq!(pack(none), None, "{none:?}");
        }
    }

    /// Two small files in `dir` with plain column names.
    fn table(dir: &Path, postcodes: &str, deciles: &str) -> DeprivationConfig {
        std::fs::write(dir.join("p.csv"), postcodes).unwrap();
        std::fs::write(dir.join("d.csv"), deciles).unwrap();
        DeprivationConfig {
            tables: vec![LookupTable {
                index: "test".into(),
                postcodes: dir.join("p.csv"),
                postcode_column: "pc".into(),
                area_column: "area".into(),
                deciles: dir.join("d.csv"),
                decile_area_column: "area".into(),
                decile_column: "decile".into(),
            }],
        }
    }

    const POSTCODES: &str = "pc,area\nZZ1 1AA,A1\nZZ1 1AB,A2\n";
    const DECILES: &str = "area,decile\nA1,3\nA2,4\n";

    fn load_error(postcodes: &str, deciles: &str) -> GatewayError {
        let dir = tempfile::tempdir().unwrap();
        Deprivation::load(&table(dir.path(), postcodes, deciles)).unwrap_err()
    }

    #[test]
    fn a_missing_column_is_named_with_its_file() {
        let e = load_error("pc,zone\nZZ1 1AA,A1\n", DECILES);
        assert_eq!(
            e.field.as_deref(),
            Some("dataset.deprivation.tables[0].postcodes")
        );
        assert!(
            e.message.contains("p.csv: has no column \"area\""),
            "{}",
            e.message
        );
        assert!(e.message.contains("\"pc\", \"zone\""), "{}", e.message);
        let e = load_error(POSTCODES, "area,rank\nA1,3\n");
        assert_eq!(
            e.field.as_deref(),
            Some("dataset.deprivation.tables[0].deciles")
        );
        assert!(
            e.message.contains("d.csv: has no column \"decile\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_bad_decile_is_named_with_its_line() {
        for bad in ["0", "11", "x", "", "-1", "3.5", "256"] {
            let e = load_error(POSTCODES, &format!("area,decile\nA1,3\nA2,{bad}\n"));
            assert_eq!(
                e.field.as_deref(),
                Some("dataset.deprivation.tables[0].deciles")
            );
            assert!(
                e.message
                    .contains("d.csv: line 3: column \"decile\" is not a decile"),
                "{bad:?}: {}",
                e.message
            );
        }
        // A row short of the column is a missing decile.
        let e = load_error(POSTCODES, "area,decile\nA1\n");
        assert!(e.message.contains("line 2"), "{}", e.message);
    }

    #[test]
    fn conflicting_duplicates_are_refused_by_line() {
        let e = load_error("pc,area\nZZ1 1AA,A1\nZZ1 1AB,A2\nzz11aa,A2\n", DECILES);
        assert!(
            e.message
                .contains("lines 2 and 4 give one postcode two different areas"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("ZZ1"), "quotes the postcode");
        let e = load_error(POSTCODES, "area,decile\nA1,3\nA2,4\nA1,5\n");
        assert!(e.message.contains("line 4"), "{}", e.message);
        assert!(e.message.contains("differs from line 2"), "{}", e.message);
        // The same value twice is no conflict.
        let dir = tempfile::tempdir().unwrap();
        let twice = table(
            dir.path(),
            "pc,area\nZZ1 1AA,A1\nZZ1 1AA,A1\n",
            "area,decile\nA1,3\nA1,3\n",
        );
        let d = Deprivation::load(&twice).unwrap();
        assert_eq!(d.lookup("ZZ11AA"), decile("test", 3));
    }

    #[test]
    fn other_file_problems_are_named() {
        // A postcode that cannot be one.
        let e = load_error("pc,area\nZZ1 1AA,A1\nNOT A POSTCODE,A2\n", DECILES);
        assert!(
            e.message
                .contains("line 3: column \"pc\" is not a postcode"),
            "{e:?}"
        );
        // No rows; no area in common (two geographies); an empty area code.
        let e = load_error("pc,area\n", DECILES);
        assert!(e.message.contains("has no rows"), "{}", e.message);
        let e = load_error(POSTCODES, "area,decile\nB1,3\n");
        assert!(e.message.contains("none of its areas"), "{}", e.message);
        let e = load_error(POSTCODES, "area,decile\nA1,3\n,4\n");
        assert!(
            e.message.contains("line 3: column \"area\" is empty"),
            "{}",
            e.message
        );
        // A missing file.
        let dir = tempfile::tempdir().unwrap();
        let mut config = table(dir.path(), POSTCODES, DECILES);
        config.tables[0].deciles = dir.path().join("absent.csv");
        let e = Deprivation::load(&config).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("dataset.deprivation.tables[0].deciles")
        );
        assert!(e.message.contains("absent.csv"), "{}", e.message);
        // No tables, an unnamed index, an unknown setting.
        let e = Deprivation::load(&DeprivationConfig { tables: vec![] }).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("dataset.deprivation.tables"));
        config.tables[0].index = " ".into();
        let e = Deprivation::load(&config).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("dataset.deprivation.tables[0].index")
        );
        let unknown = "[[tables]]\nindex = \"x\"\nsheet = 1\n";
        assert!(toml::from_str::<DeprivationConfig>(unknown).is_err());
    }

    #[test]
    fn byte_order_marks_blanks_and_areas_without_deciles() {
        let dir = tempfile::tempdir().unwrap();
        let config = table(
            dir.path(),
            "\u{feff}pc , area\nZZ1 1AA, A1 \nZZ1 1AB,\nZZ1 1AC,A9\n",
            "\u{feff}area,decile\nA1, 10\n",
        );
        let d = Deprivation::load(&config).unwrap();
        assert_eq!(d.lookup("ZZ1 1AA"), decile("test", 10));
        assert_eq!(d.lookup("ZZ1 1AB"), None);
        assert_eq!(d.lookup("ZZ1 1AC"), None);
    }

    /// Twenty thousand postcodes in a shuffled order, every one found with its decile.
    #[test]
    fn many_postcodes() {
        // Z0 0AA … Z19 9JJ: i's digits, the last two as letters.
        let code = |i: u32| {
            let letter = |n: u32| char::from(b'A' + u8::try_from(n % 10).unwrap());
            format!(
                "Z{} {}{}{}",
                i / 1000,
                i / 100 % 10,
                letter(i / 10),
                letter(i)
            )
        };
        let mut postcodes = String::from("pc,area\n");
        let mut deciles = String::from("area,decile\n");
        for i in (0..20_000u32).map(|i| (i * 7919) % 20_000) {
            postcodes.push_str(&format!("{},A{}\n", code(i), i % 500));
        }
        for a in 0..500 {
            deciles.push_str(&format!("A{a},{}\n", a % 10 + 1));
        }
        let dir = tempfile::tempdir().unwrap();
        let d = Deprivation::load(&table(dir.path(), &postcodes, &deciles)).unwrap();
        for i in 0..20_000u32 {
            let want = u8::try_from(i % 500 % 10 + 1).unwrap();
            assert_eq!(d.lookup(&code(i)), decile("test", want), "{}", code(i));
        }
    }
}
