//! Routing: which CLW programme a referral goes to, by the referring practice (ODS code
//! in England, practice code in Scotland), and so which destinations. Routes are data
//! (`mappings/routes.yaml`, format `schemas/routes.schema.json`), checked at start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{GatewayError, Result, Stage};
use crate::mapping::schema::CompiledSchema;

const ROUTES_SCHEMA: &str = include_str!("../../schemas/routes.schema.json");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    programmes: BTreeMap<String, Programme>,
    practices: BTreeMap<String, PracticeEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Programme {
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    destinations: Vec<String>,
    #[serde(default)]
    record_writers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum PracticeEntry {
    Programme(String),
    Detailed {
        programme: String,
        #[serde(default)]
        record_writers: Vec<String>,
    },
}

impl PracticeEntry {
    fn programme(&self) -> &str {
        match self {
            PracticeEntry::Programme(p) | PracticeEntry::Detailed { programme: p, .. } => p,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Routes {
    /// practice code → programme
    practices: BTreeMap<String, String>,
    /// programme → destinations
    programmes: BTreeMap<String, Vec<String>>,
    /// practice code → its own record writers
    practice_writers: BTreeMap<String, Vec<String>>,
    /// programme → record writers
    programme_writers: BTreeMap<String, Vec<String>>,
}

impl Routes {
    /// Loads and checks a routes file: its schema, then that every practice names a
    /// programme and every programme only destinations in `known`.
    pub fn load(path: &Path, known: &BTreeSet<String>) -> Result<Routes> {
        Self::load_with_writers(path, known, known)
    }

    /// As [`Routes::load`], with record writers checked against `writers`.
    pub fn load_with_writers(
        path: &Path,
        known: &BTreeSet<String>,
        writers: &BTreeSet<String>,
    ) -> Result<Routes> {
        let fail = |msg: String| {
            GatewayError::invalid(
                Stage::Config,
                "referrals.routes",
                format!("{}: {msg}", path.display()),
            )
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let value: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| fail(format!("is not valid YAML: {e}")))?;
        let schema: Value =
            serde_json::from_str(ROUTES_SCHEMA).map_err(|e| fail(format!("routes schema: {e}")))?;
        let schema = CompiledSchema::from_value(Path::new("schemas/routes.schema.json"), &schema)?;
        let errs = schema.errors(&value, 20);
        if !errs.is_empty() {
            let all: Vec<String> = errs.into_iter().map(|(p, m)| format!("{p}: {m}")).collect();
            return Err(fail(all.join("; ")));
        }
        let file: RoutesFile = serde_path_to_error::deserialize(value)
            .map_err(|e| fail(format!("{}: {}", e.path(), e.inner())))?;
        let mut problems = Vec::new();
        for (practice, entry) in &file.practices {
            let programme = entry.programme();
            if !file.programmes.contains_key(programme) {
                problems.push(format!(
                    "practice {practice} names programme {programme:?}, which is not defined"
                ));
            }
            if let PracticeEntry::Detailed { record_writers, .. } = entry {
                for w in record_writers {
                    if !writers.contains(w) {
                        problems.push(format!(
                            "practice {practice} names record writer {w:?}, which is not in [destinations]"
                        ));
                    }
                }
            }
        }
        for (name, p) in &file.programmes {
            for d in &p.destinations {
                if !known.contains(d) {
                    problems.push(format!(
                        "programme {name} names destination {d:?}, which is not in [destinations]"
                    ));
                }
            }
            for w in &p.record_writers {
                if !writers.contains(w) {
                    problems.push(format!(
                        "programme {name} names record writer {w:?}, which is not in [destinations]"
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(fail(problems.join("; ")));
        }
        Ok(Routes {
            practice_writers: file
                .practices
                .iter()
                .filter_map(|(k, e)| match e {
                    PracticeEntry::Detailed { record_writers, .. }
                        if !record_writers.is_empty() =>
                    {
                        Some((k.clone(), record_writers.clone()))
                    }
                    _ => None,
                })
                .collect(),
            practices: file
                .practices
                .iter()
                .map(|(k, e)| (k.clone(), e.programme().to_string()))
                .collect(),
            programme_writers: file
                .programmes
                .iter()
                .filter(|(_, p)| !p.record_writers.is_empty())
                .map(|(k, p)| (k.clone(), p.record_writers.clone()))
                .collect(),
            programmes: file
                .programmes
                .into_iter()
                .map(|(k, p)| (k, p.destinations))
                .collect(),
        })
    }

    /// The record writers for a practice's events: its own, else its programme's; None
    /// when the routes name none (the configured default applies).
    pub fn writers_for(&self, practice: Option<&str>, programme: &str) -> Option<&[String]> {
        practice
            .and_then(|p| self.practice_writers.get(p))
            .or_else(|| self.programme_writers.get(programme))
            .map(Vec::as_slice)
    }

    /// Every record writer a practice or programme names.
    pub fn writers(&self) -> BTreeSet<String> {
        self.practice_writers
            .values()
            .chain(self.programme_writers.values())
            .flatten()
            .cloned()
            .collect()
    }

    /// Every practice the routes name, with its programme.
    pub fn practices(&self) -> impl Iterator<Item = (&str, &str)> {
        self.practices
            .iter()
            .map(|(code, programme)| (code.as_str(), programme.as_str()))
    }

    /// Every programme and its destinations.
    pub fn programmes(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.programmes
            .iter()
            .map(|(name, d)| (name.as_str(), d.as_slice()))
    }

    /// Every destination some programme uses.
    pub fn destinations(&self) -> BTreeSet<String> {
        self.programmes.values().flatten().cloned().collect()
    }

    /// The programme and destinations for a referral from `practice`. Practice codes
    /// are organisation identifiers, not patient data, so errors may name them.
    pub fn route(&self, practice: Option<&str>) -> Result<(&str, &[String])> {
        let codes: Vec<(&str, &str)> = practice
            .map(|p| ("gp_practice.ods_code", p))
            .into_iter()
            .collect();
        self.route_codes(&codes)
            .map(|(_, programme, names)| (programme, names))
    }

    /// The practice code routed by, the programme and its destinations, for a practice
    /// known by `codes` (each with the canonical field that carries it: its ODS code, its
    /// Scottish practice code). A practice with both is routed by the one the routes
    /// file names.
    pub fn route_codes<'c>(
        &self,
        codes: &[(&'static str, &'c str)],
    ) -> Result<(&'c str, &str, &[String])> {
        let Some((field, first)) = codes.first() else {
            return Err(GatewayError::invalid(
                Stage::Policy,
                "gp_practice",
                "the referral names no GP practice (neither an ODS code nor a Scottish practice \
                 code), so no programme can be chosen",
            ));
        };
        let Some((code, programme)) = codes
            .iter()
            .find_map(|(_, c)| self.practices.get(*c).map(|p| (*c, p.as_str())))
        else {
            return Err(GatewayError::invalid(
                Stage::Policy,
                *field,
                format!("practice {first} has no programme in the routes (referrals.routes)"),
            ));
        };
        let names = self
            .programmes
            .get(programme)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok((code, programme, names))
    }

    /// The destinations for a referral from `practice`.
    pub fn destinations_for(&self, practice: Option<&str>) -> Result<&[String]> {
        let practice = practice.ok_or_else(|| {
            GatewayError::invalid(
                Stage::Policy,
                "gp_practice.ods_code",
                "the referral names no GP practice, so no programme can be chosen",
            )
        })?;
        let programme = self.practices.get(practice).ok_or_else(|| {
            GatewayError::invalid(
                Stage::Policy,
                "gp_practice.ods_code",
                format!("practice {practice} has no programme in the routes (referrals.routes)"),
            )
        })?;
        Ok(self
            .programmes
            .get(programme)
            .map(Vec::as_slice)
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, known: &[&str]) -> Result<Routes> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("routes.yaml");
        std::fs::write(&p, yaml).unwrap();
        Routes::load(&p, &known.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn practices_choose_programmes_and_programmes_destinations() {
        let r = load(
            "programmes:\n  leeds: {destinations: [a, b]}\n  york: {destinations: [b]}\n\
             practices:\n  GP5: leeds\n  B82005: york\n",
            &["a", "b"],
        )
        .unwrap();
        assert_eq!(r.destinations_for(Some("GP5")).unwrap(), ["a", "b"]);
        assert_eq!(r.destinations_for(Some("B82005")).unwrap(), ["b"]);
        let e = r.destinations_for(Some("X1")).unwrap_err();
        assert!(
            e.reason().contains("practice X1 has no programme"),
            "{}",
            e.reason()
        );
        assert!(r.destinations_for(None).is_err());
    }

    #[test]
    fn a_practice_s_record_writers_come_before_its_programme_s() {
        // `load` checks writers against the same names as destinations.
        let r = load(
            "programmes:\n  leeds: {destinations: [a], record_writers: [prog-fhir]}\n  \
             york: {destinations: [a]}\n\
             practices:\n  GP5: {programme: leeds, record_writers: [practice-mesh]}\n  \
             B86001: leeds\n  B82005: york\n",
            &["a", "prog-fhir", "practice-mesh"],
        )
        .unwrap();
        assert_eq!(
            r.writers_for(Some("GP5"), "leeds").unwrap(),
            ["practice-mesh"]
        );
        assert_eq!(
            r.writers_for(Some("B86001"), "leeds").unwrap(),
            ["prog-fhir"]
        );
        assert_eq!(r.writers_for(None, "leeds").unwrap(), ["prog-fhir"]);
        // Neither names any: the configured [message_back] writers apply.
        assert!(r.writers_for(Some("B82005"), "york").is_none());
        assert_eq!(
            r.writers(),
            ["practice-mesh", "prog-fhir"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
    }

    #[test]
    fn unknown_programmes_and_destinations_are_refused_naming_them() {
        let e = load(
            "programmes:\n  leeds: {destinations: [nope]}\npractices:\n  GP5: york\n",
            &["a"],
        )
        .unwrap_err()
        .reason();
        assert!(e.contains("practice GP5 names programme \"york\""), "{e}");
        assert!(
            e.contains("programme leeds names destination \"nope\""),
            "{e}"
        );
        let e = load("programmes: []\npractices: {}\n", &[])
            .unwrap_err()
            .reason();
        assert!(e.contains("/programmes"), "{e}");
    }

    #[test]
    fn scottish_practice_codes_route_quoted_or_bare() {
        // A bare number is read as its digits; a code with a leading zero must be quoted
        // (YAML would read 01234 as a number and drop the zero).
        let bare = load(
            "programmes:\n  glasgow: {destinations: [a]}\npractices:\n  43210: glasgow\n",
            &["a"],
        )
        .unwrap();
        assert_eq!(bare.route(Some("43210")).unwrap().0, "glasgow");
        let r = load(
            "programmes:\n  glasgow: {destinations: [a]}\npractices:\n  \"01234\": glasgow\n",
            &["a"],
        )
        .unwrap();
        assert_eq!(r.route(Some("01234")).unwrap().0, "glasgow");
    }
}
