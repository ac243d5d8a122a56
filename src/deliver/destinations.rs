//! `[destinations.NAME]`: every configured destination, each parsed by its kind on its
//! own so that one bad entry does not hide the problems of the others.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::DestinationConfig;
use crate::error::GatewayError;

/// Every `[destinations.NAME]`, each parsed on its own so one bad entry does not hide
/// the problems of the others.
#[derive(Debug, Clone)]
pub struct Destinations {
    pub parsed: BTreeMap<String, DestinationConfig>,
    /// Entries that did not parse, each naming its key.
    pub problems: Vec<GatewayError>,
    /// Every configured name, parsed or not.
    pub names: Vec<String>,
    /// No [destinations] was given: the embedded default's.
    pub defaulted: bool,
}

impl Destinations {
    pub fn get(&self, name: &str) -> Option<&DestinationConfig> {
        self.parsed.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &DestinationConfig)> {
        self.parsed.iter()
    }

    pub fn insert(&mut self, name: &str, d: DestinationConfig) {
        if !self.contains(name) {
            self.names.push(name.to_string());
        }
        self.parsed.insert(name.to_string(), d);
    }

    fn from_tables(tables: BTreeMap<String, toml::Value>) -> Destinations {
        let mut out = Destinations {
            parsed: BTreeMap::new(),
            problems: Vec::new(),
            names: tables.keys().cloned().collect(),
            defaulted: false,
        };
        for (name, value) in tables {
            match serde_path_to_error::deserialize::<_, DestinationConfig>(value) {
                Ok(d) => {
                    out.parsed.insert(name, d);
                }
                Err(e) => {
                    let path = e.path().to_string();
                    let key = if path == "." || path.is_empty() {
                        format!("destinations.{name}")
                    } else {
                        format!("destinations.{name}.{path}")
                    };
                    let message = e.into_inner().message().to_string();
                    out.problems.push(GatewayError::config(key, message));
                }
            }
        }
        out
    }
}

impl<'de> Deserialize<'de> for Destinations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Destinations::from_tables(BTreeMap::deserialize(d)?))
    }
}

impl Default for Destinations {
    fn default() -> Self {
        Destinations::embedded(Path::new("data"))
    }
}

impl Destinations {
    /// The embedded default, under `data_dir`: the PRSB referral JSON as a file per
    /// referral, and each message-back event as a document in the practice folder.
    pub fn embedded(data_dir: &Path) -> Destinations {
        let dir = |rel: &str| toml::Value::String(data_dir.join(rel).display().to_string());
        let mut outbox = toml::toml! {
            kind = "file"
            allow = ["person_demographics", "contact_preferences", "referral_details",
                     "referrer_details", "gp_practice", "referred_to", "consent"]
        };
        outbox.insert("dir".into(), dir("outbox/referrals"));
        let mut practice = toml::toml! {
            kind = "practice-folder"
            allow = ["event", "headline", "coded", "summary", "referral", "patient", "practice"]
        };
        practice.insert("dir".into(), dir("practice"));
        let mut d = Destinations::from_tables(BTreeMap::from([
            ("outbox".to_string(), toml::Value::Table(outbox)),
            ("practice-folder".to_string(), toml::Value::Table(practice)),
        ]));
        d.defaulted = true;
        d
    }
}
