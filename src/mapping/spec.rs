//! The mapping-file and code-map formats as written in `mappings/` (YAML). The same
//! shapes are described for editors and start-up validation in
//! `schemas/mapping.schema.json`, `schemas/codemap.schema.json` and
//! `schemas/refset.schema.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    pub flow: Flow,
    pub direction: Direction,
    pub input: InputKind,
    pub output: OutputSpec,
    pub fields: Vec<FieldSpec>,
    /// Essential canonical fields deliberately left out, each with the reason.
    #[serde(default)]
    pub omits: BTreeMap<String, String>,
    #[serde(default)]
    pub fixtures: Vec<FixtureSpec>,
}

pub use crate::model::Flow;

/// Outbound: gateway → CLW platform or practice. Inbound: source system → canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Outbound,
    Inbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    /// The canonical Referral (PRSB items) after consent policy.
    CanonicalReferral,
    /// The canonical message-back event (PRSB "message back to GP") with its referral.
    CanonicalEvent,
    /// A FHIR resource or Bundle.
    Fhir,
    /// Any JSON document (platform events).
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub format: OutputFormat,
    /// Relative to the mapping file.
    #[serde(default)]
    pub schema: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// A JSON document; dotted `to` names make nested objects.
    Json,
    /// Flat name → text pairs (HTML form fields).
    Form,
    /// Flat name → text pairs in field order (one spreadsheet row).
    Csv,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub to: String,
    #[serde(default)]
    pub expr: Option<String>,
    /// A fixed value instead of an expression.
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub transforms: Vec<TransformSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformSpec {
    /// Reformat FHIR dates / dateTimes with a strftime pattern (`%d/%m/%Y`).
    Date(String),
    /// Translate codes through a code map.
    Code(CodeLookup),
    /// Join every value into one text with this separator.
    Join(String),
    /// Use this when the expression found nothing.
    Default(Value),
    /// Fail the mapping when nothing was found.
    Required,
    /// Shape the result: one text, a number, a boolean, or always a list.
    As(Shape),
    /// Build a JSON value per input value: `{member}`, `{.}`, `{%constant}` placeholders.
    Template(Value),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeLookup {
    pub map: String,
    pub from: String,
    /// A column name, or `column.display` for its display term.
    pub to: String,
    /// Used for codes the map does not have; without it they fail the mapping.
    #[serde(default)]
    pub fallback: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Text,
    Number,
    Boolean,
    List,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureSpec {
    /// Input document, relative to the mapping file.
    pub input: PathBuf,
    /// Expected output; absent when the fixture expects errors.
    #[serde(default)]
    pub expected: Option<PathBuf>,
    /// Text each expected error must contain, in order.
    #[serde(default)]
    pub expected_errors: Vec<String>,
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeMapFile {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Column name → what it holds.
    pub columns: BTreeMap<String, Column>,
    pub entries: Vec<BTreeMap<String, CodeEntry>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The refset of the standard this column's codes are drawn from.
    #[serde(default)]
    pub refset: Option<RefsetBinding>,
}

/// Which refset a column's codes are drawn from: one for the whole column, or one per
/// row, named in another column of the row (its code the refset id, or `none`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RefsetBinding {
    Whole(RefsetRef),
    PerRow(PerRowRefset),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefsetRef {
    /// The refset's SNOMED CT concept id.
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerRowRefset {
    /// The column whose code, in each row, is the refset id (or `none`).
    pub per_row: String,
}

/// A refset's published members (`mappings/refsets/*.yaml`), with where and which
/// release they were read from; described in `schemas/refset.schema.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefsetFile {
    /// The refset's SNOMED CT concept id.
    pub refset: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Where the membership was read (a release file, a published list).
    pub source: String,
    /// The release it was read from (e.g. the UK Edition's version and date).
    pub version: String,
    /// The terms the list is published under.
    pub licence: String,
    /// The member concept ids.
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeEntry {
    pub code: String,
    pub display: String,
}
