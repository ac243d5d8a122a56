//! The wiring plan: everything a configuration names, built and checked once —
//! mappings (loaded once), routes, destinations with their sinks, secrets and
//! schemas. `serve`, `check` and `mapping test` all start here, so a bad configuration
//! gives the same report whichever command meets it, every problem named by its key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::config::{Config, ConfigErrors};
use crate::deliver::Destination;
use crate::error::{GatewayError, Stage};
use crate::mapping::spec::{Direction, InputKind};
use crate::mapping::{CodeMap, Mapping, MappingSet};
use crate::model::{ConsentState, Flow};
use crate::routing::Routes;
use crate::schema::SchemaSet;

pub struct Wiring {
    pub mappings: Arc<MappingSet>,
    /// Every configured destination, built.
    pub destinations: BTreeMap<String, Arc<Destination>>,
    pub referrals: ReferralWiring,
    /// Present when the message back is on.
    pub message_back: Option<MessageBackWiring>,
    /// The operator console's token, when the console is on.
    pub console_token: Option<String>,
}

/// What the message-back flow needs.
pub struct MessageBackWiring {
    /// By the name in their door.
    pub platforms: BTreeMap<String, Platform>,
    /// The code map coded entries come from (`social-prescribing`).
    pub codes: Arc<CodeMap>,
    /// Record writers for practices the routes give none.
    pub default_writers: Vec<Arc<Destination>>,
    /// Every record writer, by name.
    pub writers: BTreeMap<String, Arc<Destination>>,
    pub routes: Option<Routes>,
    pub no_response_after: std::time::Duration,
}

/// A platform that sends events.
pub struct Platform {
    pub name: String,
    pub mapping: Arc<Mapping>,
    pub upload_mapping: Arc<Mapping>,
    pub programme: Option<String>,
    /// HMAC secrets its HTTP requests may be signed with (current first).
    pub secrets: Vec<String>,
}

/// The code map message-back events are coded from.
pub const EVENT_CODES: &str = "social-prescribing";

/// What the referral flow needs beyond its destinations.
pub struct ReferralWiring {
    /// Practice → programme → destinations; None sends every referral to `destinations`.
    pub routes: Option<Routes>,
    /// The destinations referrals can go to (every one a route names, or the fixed list).
    pub destinations: Vec<Arc<Destination>>,
    pub consent_not_recorded: ConsentState,
}

impl Wiring {
    /// Builds the plan, or every problem found.
    pub fn build(config: &Config) -> Result<Wiring, ConfigErrors> {
        let mut problems = config.problems();
        let mappings = match MappingSet::load_configured(&config.mappings.dir) {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => {
                problems.push(e.at("mappings.dir"));
                None
            }
        };
        let mut destinations = BTreeMap::new();
        if let Some(mappings) = &mappings {
            let mut schemas = SchemaSet::default();
            for (name, d) in config.destinations.iter() {
                match Destination::build(name, d, mappings, &mut schemas) {
                    Ok(built) => {
                        destinations.insert(name.clone(), built);
                    }
                    Err(e) => problems.extend(e),
                }
            }
        }
        let known: BTreeSet<String> = config.destinations.names.iter().cloned().collect();
        let routes = match &config.referrals.routes {
            Some(path) => match Routes::load(path, &known) {
                Ok(r) => Some(r),
                Err(e) => {
                    problems.push(e);
                    None
                }
            },
            None => None,
        };
        let names: Vec<String> = match &routes {
            Some(r) => r.destinations().into_iter().collect(),
            None => config.referrals.destinations.clone(),
        };
        let mut referral_destinations = Vec::new();
        for name in &names {
            match destinations.get(name) {
                Some(d) if d.flow != Flow::Referral => problems.push(GatewayError::invalid(
                    Stage::Config,
                    "referrals.destinations",
                    format!(
                        "destination {name} is a {} destination (it writes {} events), not a referral destination",
                        d.kind, d.flow
                    ),
                )),
                Some(d) => referral_destinations.push(d.clone()),
                // Missing or broken: already reported.
                None => {}
            }
        }
        let Some(mappings) = mappings else {
            return Err(ConfigErrors(problems));
        };
        let message_back = config.message_back().and_then(|mb| {
            message_back(
                &mb,
                &mappings,
                &destinations,
                routes.as_ref(),
                &mut problems,
            )
        });
        let console_token = console_token(config, &mut problems);
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        Ok(Wiring {
            console_token,
            mappings,
            destinations,
            referrals: ReferralWiring {
                routes,
                destinations: referral_destinations,
                consent_not_recorded: config.referrals.consent_not_recorded,
            },
            message_back,
        })
    }
}

/// The console's token when it is on: set, readable and long enough to guess at.
fn console_token(config: &Config, problems: &mut Vec<GatewayError>) -> Option<String> {
    if !config.console.enabled {
        return None;
    }
    match config
        .console
        .token
        .as_ref()
        .map(crate::config::Secret::read)
    {
        None => problems.push(problem(
            "console.token",
            "the console is enabled: set a token (an environment variable or a file)",
        )),
        Some(Err(e)) => problems.push(problem("console.token", e)),
        Some(Ok(t)) if t.len() < 16 => {
            problems.push(problem("console.token", "must be at least 16 characters"))
        }
        Some(Ok(t)) => return Some(t),
    }
    None
}

fn problem(key: impl Into<String>, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid(Stage::Config, key, message)
}

/// Wires the message back: its writers (message-back destinations), its platforms'
/// mappings and secrets, its code map. Problems are pushed, each with its key.
fn message_back(
    mb: &crate::config::MessageBackConfig,
    mappings: &MappingSet,
    destinations: &BTreeMap<String, Arc<Destination>>,
    routes: Option<&Routes>,
    problems: &mut Vec<GatewayError>,
) -> Option<MessageBackWiring> {
    let before = problems.len();
    let writers: BTreeMap<String, Arc<Destination>> = destinations
        .iter()
        .filter(|(_, d)| d.flow == Flow::MessageBack)
        .map(|(k, d)| (k.clone(), d.clone()))
        .collect();
    let mut default_writers = Vec::new();
    if mb.writers.is_empty() {
        problems.push(problem(
            "message_back.writers",
            "must name at least one record writer: an event for a practice the routes give no writers would have nowhere to go",
        ));
    }
    for (i, name) in mb.writers.iter().enumerate() {
        match (writers.get(name), destinations.get(name)) {
            (Some(w), _) => default_writers.push(w.clone()),
            (None, Some(d)) => problems.push(problem(
                format!("message_back.writers[{i}]"),
                format!(
                    "destination {name} is a {} destination, not a record writer",
                    d.kind
                ),
            )),
            // Missing, or broken and already reported.
            (None, None) => problems.push(problem(
                format!("message_back.writers[{i}]"),
                format!(
                    "no record writer named {name:?} in [destinations] (or it could not be built)"
                ),
            )),
        }
    }
    if let Some(r) = routes {
        for w in r.writers() {
            if !writers.contains_key(&w) && destinations.contains_key(&w) {
                problems.push(problem(
                    "referrals.routes",
                    format!("record writer {w} is not a message-back destination"),
                ));
            }
        }
    }
    let codes = match mappings.codes.get(EVENT_CODES) {
        Some(c) if c.has_column("platform") => Some(c.clone()),
        _ => {
            problems.push(problem(
                "mappings.dir",
                format!("the message back needs code map {EVENT_CODES} with a platform column"),
            ));
            None
        }
    };
    let mut platforms = BTreeMap::new();
    for (name, p) in &mb.platforms {
        let key = |k: &str| format!("message_back.platforms.{name}.{k}");
        let inbound = |k: &str, mapping: &str, problems: &mut Vec<GatewayError>| match mappings
            .get(mapping)
        {
            Some(m)
                if m.flow == Flow::MessageBack
                    && m.direction == Direction::Inbound
                    && m.input == InputKind::Json =>
            {
                Some(m.clone())
            }
            Some(_) => {
                problems.push(problem(
                    key(k),
                    format!("mapping {mapping} is not a message-back inbound mapping of JSON"),
                ));
                None
            }
            None => {
                problems.push(problem(
                    key(k),
                    format!("no mapping {mapping:?} in the mappings folder"),
                ));
                None
            }
        };
        let mapping = inbound("mapping", &p.mapping, problems);
        let upload_mapping = inbound("upload_mapping", &p.upload_mapping, problems);
        let mut secrets = Vec::new();
        for (k, s) in [
            ("secret", &p.secret),
            ("previous_secret", &p.previous_secret),
        ] {
            if let Some(s) = s {
                match s.read() {
                    Ok(v) => secrets.push(v),
                    Err(why) => problems.push(problem(key(k), why)),
                }
            }
        }
        if let (Some(mapping), Some(upload_mapping)) = (mapping, upload_mapping) {
            platforms.insert(
                name.clone(),
                Platform {
                    name: name.clone(),
                    mapping,
                    upload_mapping,
                    programme: p.programme.clone(),
                    secrets,
                },
            );
        }
    }
    // The canonical format is always understood: the door queues events in it.
    let canonical = crate::flows::message_back::DEFAULT_PLATFORM;
    if !platforms.contains_key(canonical)
        && let (Some(m), Some(u)) = (mappings.get(canonical), mappings.get("sheet-event"))
    {
        platforms.insert(
            canonical.to_string(),
            Platform {
                name: canonical.to_string(),
                mapping: m.clone(),
                upload_mapping: u.clone(),
                programme: None,
                secrets: Vec::new(),
            },
        );
    }
    if problems.len() > before {
        return None;
    }
    Some(MessageBackWiring {
        platforms,
        codes: codes?,
        default_writers,
        writers,
        routes: routes.cloned(),
        no_response_after: mb.no_response_after,
    })
}
