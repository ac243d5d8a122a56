//! The wiring plan: everything a configuration names, built and checked once —
//! mappings (loaded once), routes, destinations with their sinks, secrets and
//! schemas. `serve`, `check` and `mapping test` all start here, so a bad configuration
//! gives the same report whichever command meets it, every problem named by its key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::config::{Config, ConfigErrors};
use crate::deliver::Destination;
use crate::error::{GatewayError, Stage};
use crate::flows::message_back::{EVENT_CODES, MessageBackWiring, Platform};
use crate::flows::referral::ReferralWiring;
use crate::mapping::MappingSet;
use crate::mapping::schema::SchemaSet;
use crate::mapping::spec::{Direction, InputKind};
use crate::model::Flow;
use crate::policy::routing::Routes;

pub struct Wiring {
    /// RabbitMQ or the spool: the one place that knows which.
    pub transport: crate::sources::Transport,
    pub mappings: Arc<MappingSet>,
    /// Every configured destination, built.
    pub destinations: BTreeMap<String, Arc<Destination>>,
    pub referrals: ReferralWiring,
    /// Present when the message back is on.
    pub message_back: Option<MessageBackWiring>,
    /// The operator console's accounts, when the console is on.
    pub console: Option<ConsoleWiring>,
}

/// Who may use the console, and how.
#[derive(Debug, Clone)]
pub struct ConsoleWiring {
    pub operators: BTreeMap<String, Operator>,
    pub trusted_user_header: Option<String>,
    pub session_ttl: std::time::Duration,
    pub max_failed_logins: u32,
    pub lockout: std::time::Duration,
    /// Cookies marked `Secure`: the console is served beyond this machine, so through
    /// TLS at a proxy.
    pub secure_cookies: bool,
}

#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub secret: Option<String>,
    pub role: crate::config::Role,
    /// None: every programme.
    pub programmes: Option<BTreeSet<String>>,
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
                config.intake.chi_check,
                &mut problems,
            )
        });
        let console = console(config, &mut problems);
        idle_settings(config, &destinations, &mut problems);
        unknown_programmes(config, routes.as_ref(), &mut problems);
        // With `[ig] require_agreements`, a configuration out of step with its agreements
        // does not run (without it, `check` warns).
        problems.extend(
            config
                .agreement_findings()
                .into_iter()
                .filter(|f| f.level == crate::config::Level::Fail)
                .map(|f| GatewayError::config(f.key, f.message)),
        );
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        let read2 = mappings
            .codes
            .get(crate::policy::read2::READ2_REASONS)
            .cloned();
        Ok(Wiring {
            transport: config.transport(),
            console,
            mappings,
            destinations,
            referrals: ReferralWiring {
                routes,
                destinations: referral_destinations,
                consent_not_recorded: config.referrals.consent_not_recorded,
                consent_covers: config.referrals.consent_covers.clone(),
                missing_mandatory: config.referrals.missing_mandatory,
                read2,
            },
            message_back,
        })
    }
}

/// A `[lifecycle]` policy for a programme no referral is routed to would never act.
fn unknown_programmes(
    config: &Config,
    routes: Option<&crate::policy::routing::Routes>,
    problems: &mut Vec<GatewayError>,
) {
    let known: Vec<&str> = match routes {
        Some(r) => r.programmes().map(|(name, _)| name).collect(),
        None => vec![crate::flows::referral::DEFAULT_PROGRAMME],
    };
    for name in config.lifecycle.programmes.keys() {
        if !known.contains(&name.as_str()) {
            problems.push(problem(
                format!("lifecycle.programmes.{name}"),
                format!(
                    "no referral goes to a programme of that name (known: {}), so this policy \
                     would never act",
                    known.join(", ")
                ),
            ));
        }
    }
}

/// Settings that would do nothing, refused rather than silently ignored: a door, a
/// poller, a report reader or a record writer with the message back off, the console
/// with the HTTP listener off.
fn idle_settings(
    config: &Config,
    destinations: &BTreeMap<String, Arc<Destination>>,
    problems: &mut Vec<GatewayError>,
) {
    let off = "the message back is off (no [message_back] section), so this would do nothing";
    if config.ingress.enabled && config.message_back().is_none() {
        problems.push(problem("ingress.enabled", off));
    }
    if config.console.enabled && !config.http.enabled {
        problems.push(problem(
            "console.enabled",
            "the console is served on the HTTP listener, which is off (http.enabled = false)",
        ));
    }
    if config.message_back().is_some() {
        return;
    }
    for (name, d) in destinations {
        if d.flow == Flow::MessageBack {
            problems.push(problem(
                format!("destinations.{name}"),
                format!("a record writer ({}), but {off}", d.kind),
            ));
        } else if d.poller().is_some() {
            problems.push(problem(format!("destinations.{name}.poll_every"), off));
        } else if d.reports().is_some() {
            problems.push(problem(format!("destinations.{name}.reports_every"), off));
        }
    }
}

/// The console's operators when it is on: at least one, each named plainly, each with
/// a secret long enough to guess at (or named by a trusted proxy header instead).
fn console(config: &Config, problems: &mut Vec<GatewayError>) -> Option<ConsoleWiring> {
    let c = &config.console;
    if !c.enabled {
        return None;
    }
    if c.operators.is_empty() {
        problems.push(problem(
            "console.operators",
            "the console is enabled: name its operators ([console.operators.NAME] with a secret and a role)",
        ));
    }
    let before = problems.len();
    let mut operators = BTreeMap::new();
    for (name, o) in &c.operators {
        let key = |k: &str| format!("console.operators.{name}.{k}");
        let plain = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-' | '@'));
        if !plain {
            problems.push(problem(
                format!("console.operators.{name}"),
                "an operator's name is 1 to 64 letters, digits, '.', '_', '-' or '@' (the audit log records it)",
            ));
        }
        let secret = match o.secret.as_ref().map(crate::secret::Secret::read) {
            None if c.trusted_user_header.is_some() => None,
            None => {
                problems.push(problem(
                    key("secret"),
                    "set the secret this operator signs in with (an environment variable or a file)",
                ));
                None
            }
            Some(Err(e)) => {
                problems.push(problem(key("secret"), e));
                None
            }
            Some(Ok(t)) if t.len() < 16 => {
                problems.push(problem(key("secret"), "must be at least 16 characters"));
                None
            }
            Some(Ok(t)) => Some(t),
        };
        operators.insert(
            name.clone(),
            Operator {
                name: name.clone(),
                secret,
                role: o.role,
                programmes: (!o.programmes.is_empty())
                    .then(|| o.programmes.iter().cloned().collect()),
            },
        );
    }
    if c.trusted_user_header
        .as_deref()
        .is_some_and(|h| axum::http::HeaderName::from_bytes(h.as_bytes()).is_err())
    {
        problems.push(problem(
            "console.trusted_user_header",
            "is not a header name",
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(ConsoleWiring {
        operators,
        trusted_user_header: c.trusted_user_header.clone(),
        session_ttl: c.session_ttl,
        max_failed_logins: c.max_failed_logins.max(1),
        lockout: c.lockout,
        secure_cookies: !config.http.listen.ip().is_loopback(),
    })
}

fn problem(key: impl Into<String>, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid(Stage::Config, key, message)
}

/// Wires the message back: its writers (message-back destinations), its platforms'
/// mappings and secrets, its code map. Problems are pushed, each with its key.
fn message_back(
    mb: &crate::flows::message_back::MessageBackConfig,
    mappings: &MappingSet,
    destinations: &BTreeMap<String, Arc<Destination>>,
    routes: Option<&Routes>,
    chi_check: crate::model::identifiers::ChiCheck,
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
        let spoken_for = speaks_for(name, &p.destinations, destinations, problems);
        if p.broker_user.as_deref().is_some_and(str::is_empty) {
            problems.push(problem(key("broker_user"), "must not be empty"));
        }
        if let (Some(mapping), Some(upload_mapping)) = (mapping, upload_mapping) {
            let platform = Platform {
                name: name.clone(),
                mapping,
                upload_mapping,
                programme: p.programme.clone(),
                secrets,
                references: spoken_for
                    .iter()
                    .filter_map(|d| {
                        destinations
                            .get(d)
                            .and_then(|d| d.reference_step())
                            .map(|step| (d.to_string(), step))
                    })
                    .collect(),
                destinations: spoken_for,
                broker_user: p.broker_user.clone(),
                require_patient: p.require_patient.clone(),
                chi_check,
            };
            if platform.maps_reference() && platform.references.is_empty() {
                problems.push(problem(
                    key("mapping"),
                    "its mapping links events by referral.platform_reference, but none of the \
                     platform's destinations records the references it returns (a lamplight \
                     destination does): its events could never be linked. Name the referral by \
                     message_id, or by programme and the patient's number",
                ));
            }
            platforms.insert(name.clone(), Arc::new(platform));
        }
    }
    let mut users: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, p) in &mb.platforms {
        if let Some(user) = p.broker_user.as_deref()
            && let Some(other) = users.insert(user, name)
        {
            problems.push(problem(
                format!("message_back.platforms.{name}.broker_user"),
                format!("platform {other} publishes as the same broker user: one user speaks for one platform"),
            ));
        }
    }
    if let Some(sp) = &mb.spool_platform
        && !mb.platforms.contains_key(sp)
    {
        problems.push(problem(
            "message_back.spool_platform",
            format!("no platform {sp:?} in [message_back.platforms]"),
        ));
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
        spool_platform: mb.spool_platform.clone(),
        future_skew: mb.future_skew,
    })
}

/// The referral destinations a platform speaks for, checked: at least one, each a
/// configured referral destination.
fn speaks_for(
    platform: &str,
    names: &[String],
    destinations: &BTreeMap<String, Arc<Destination>>,
    problems: &mut Vec<GatewayError>,
) -> BTreeSet<String> {
    let key = format!("message_back.platforms.{platform}.destinations");
    if names.is_empty() {
        problems.push(problem(
            &key,
            "name the referral destinations this platform speaks for: its events may answer \
             only referrals delivered to one of them",
        ));
    }
    let mut out = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        match destinations.get(name) {
            Some(d) if d.flow == Flow::Referral => {
                out.insert(name.clone());
            }
            Some(d) => problems.push(problem(
                format!("{key}[{i}]"),
                format!("destination {name} is a {} record writer, not a referral destination", d.kind),
            )),
            None => problems.push(problem(
                format!("{key}[{i}]"),
                format!("no referral destination named {name:?} in [destinations] (or it could not be built)"),
            )),
        }
    }
    out
}
