//! The information-governance pack (`clw-gateway ig`, `/console/ig`): the running
//! configuration read as an IG lead needs it — per programme and destination the
//! agreement, the fields, the consent, the channel, retention and where data rests; the
//! record writers; the platforms; the operators; the dataset; the hazards per route —
//! rendered as Markdown, a self-contained HTML file, JSON and a data-flow SVG, with the
//! DPIA annex and DSA field schedule templates filled in. No secret value is ever read.

pub mod catalog;
pub mod hazards;
pub mod html;
pub mod markdown;
pub mod pack;
mod places;
pub mod svg;
pub mod templates;
mod views;

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::deliver::{DestinationConfig, KeptFiles};
use crate::error::{GatewayError, Result};
use crate::model::{ConsentState, Flow};
use crate::policy::routing::Routes;
use pack::*;

/// What a pack is made from: the configuration and its routes file as read once — so the
/// console's pack describes the routes the instance started with, even if the file on
/// disk has changed since.
pub struct Source {
    pub config: Config,
    routes: Option<(Routes, Vec<u8>)>,
}

impl Source {
    /// Reads the routes file `config` names (checked as start-up checks it).
    pub fn load(config: &Config) -> Result<Source> {
        let routes = match &config.referrals.routes {
            Some(path) => {
                let known: BTreeSet<String> = config.destinations.names.iter().cloned().collect();
                let bytes = std::fs::read(path).map_err(|e| {
                    GatewayError::config("referrals.routes", format!("cannot read: {e}"))
                })?;
                Some((Routes::load(path, &known)?, bytes))
            }
            None => None,
        };
        Ok(Source {
            config: config.clone(),
            routes,
        })
    }
}

/// Builds the pack from `source` as of `now`.
pub fn build(source: &Source, now: chrono::DateTime<chrono::Utc>) -> Result<Pack> {
    let config = &source.config;
    let routes = source.routes.as_ref().map(|(r, _)| r);
    let routes_bytes: &[u8] = source
        .routes
        .as_ref()
        .map(|(_, b)| b.as_slice())
        .unwrap_or_default();
    let message_back = config.message_back();
    let writer_practices = writer_practices(config, routes);
    let logged = hazards::logged()?;
    let mut destinations = Vec::new();
    let mut writers = Vec::new();
    for (name, d) in config.destinations.iter() {
        let view = destination(config, routes, &writer_practices, &logged, name, d);
        match d.flow() {
            Flow::Referral => destinations.push(view),
            Flow::MessageBack => writers.push(view),
        }
    }
    let all: Vec<&Destination> = destinations.iter().chain(&writers).collect();
    let hazards = logged
        .iter()
        .filter_map(|h| {
            let routes: Vec<String> = all
                .iter()
                .filter(|d| d.hazards.contains(&h.id))
                .map(|d| d.name.clone())
                .collect();
            (!routes.is_empty()).then(|| Hazard {
                logged: h.clone(),
                routes,
            })
        })
        .collect();
    Ok(Pack {
        about: About {
            gateway_version: format!("clw-gateway {}", env!("CARGO_PKG_VERSION")),
            config_digest: digest(&config.digest, routes_bytes),
            generated_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            instance: config.gateway.instance.clone(),
            source: match config.broker {
                Some(_) => "RabbitMQ".into(),
                None => "spool folders".into(),
            },
            require_agreements: config.ig.require_agreements,
            contact: config.ig.contact.clone(),
        },
        findings: config.agreement_findings(),
        agreements: views::agreements(config, &all),
        routes: route_views(config, routes, &writer_practices),
        platforms: views::platforms(config),
        consent: consent_rules(config, message_back.is_some()),
        retention: places::retention(config),
        console: views::console(config),
        dataset: views::dataset(config),
        destinations,
        writers,
        hazards,
    })
}

/// The configuration's digest, with the routes file's bytes folded in when there is one.
fn digest(config: &str, routes: &[u8]) -> String {
    if routes.is_empty() {
        return config.to_string();
    }
    let mut h = Sha256::new();
    h.update(config.as_bytes());
    h.update(b"\nroutes\n");
    h.update(routes);
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Record writer → the practices it writes for (`*`: every practice the routes give no
/// writers of its own).
fn writer_practices(config: &Config, routes: Option<&Routes>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let Some(mb) = config.message_back() else {
        return out;
    };
    let mut default_used = routes.is_none();
    for (code, programme) in routes.iter().flat_map(|r| r.practices()) {
        match routes.and_then(|r| r.writers_for(Some(code), programme)) {
            Some(names) => names
                .iter()
                .for_each(|n| out.entry(n.clone()).or_default().push(code.to_string())),
            None => default_used = true,
        }
    }
    if default_used {
        for w in &mb.writers {
            out.entry(w.clone()).or_default().push("*".into());
        }
    }
    out
}

/// The nation a practice code says: 5 digits Scotland, an ODS practice code (a letter and
/// five digits) England; anything else does not say.
fn nation(code: &str) -> &'static str {
    let ods = code.len() == 6
        && code.starts_with(|c: char| c.is_ascii_uppercase())
        && code[1..].chars().all(|c| c.is_ascii_digit());
    if crate::model::identifiers::is_scottish_practice_code(code) {
        "Scotland"
    } else if ods {
        "England"
    } else {
        ""
    }
}

fn route_views(
    config: &Config,
    routes: Option<&Routes>,
    writer_practices: &BTreeMap<String, Vec<String>>,
) -> Vec<Route> {
    let writers_of = |code: &str| -> Vec<String> {
        writer_practices
            .iter()
            .filter(|(_, ps)| ps.iter().any(|p| p == code))
            .map(|(w, _)| w.clone())
            .collect()
    };
    let Some(routes) = routes else {
        return vec![Route {
            practice: "*".into(),
            nation: String::new(),
            programme: "(every practice)".into(),
            destinations: config.referrals.destinations.clone(),
            record_writers: writers_of("*"),
            unanswered: unanswered(config, crate::flows::referral::DEFAULT_PROGRAMME),
        }];
    };
    let programmes: BTreeMap<&str, &[String]> = routes.programmes().collect();
    routes
        .practices()
        .map(|(code, programme)| Route {
            practice: code.to_string(),
            nation: nation(code).into(),
            programme: programme.to_string(),
            destinations: programmes
                .get(programme)
                .map(|d| d.to_vec())
                .unwrap_or_default(),
            record_writers: match routes.writers_for(Some(code), programme) {
                Some(w) => w.to_vec(),
                None => writers_of("*"),
            },
            unanswered: unanswered(config, programme),
        })
        .collect()
}

fn destination(
    config: &Config,
    routes: Option<&Routes>,
    writer_practices: &BTreeMap<String, Vec<String>>,
    logged: &[hazards::LoggedHazard],
    name: &str,
    d: &DestinationConfig,
) -> Destination {
    let flow = d.flow();
    let terms = d.terms();
    let (programmes, practices) = match (flow, routes) {
        (Flow::MessageBack, _) => (
            Vec::new(),
            writer_practices.get(name).cloned().unwrap_or_default(),
        ),
        (Flow::Referral, Some(r)) => {
            let programmes: Vec<String> = r
                .programmes()
                .filter(|(_, ds)| ds.iter().any(|x| x == name))
                .map(|(p, _)| p.to_string())
                .collect();
            let practices = r
                .practices()
                .filter(|(_, p)| programmes.iter().any(|x| x == p))
                .map(|(c, _)| c.to_string())
                .collect();
            (programmes, practices)
        }
        (Flow::Referral, None) => {
            let used = config.referrals.destinations.iter().any(|x| x == name);
            (Vec::new(), if used { vec!["*".into()] } else { Vec::new() })
        }
    };
    // The sensitive sections this flow carries at all (gender history is the referral's).
    let sections: Vec<&str> = crate::model::SENSITIVE_SECTIONS
        .into_iter()
        .filter(|s| catalog::knows(flow, s))
        .collect();
    let sensitive_agreed: Vec<String> = sections
        .iter()
        .filter(|s| terms.allow.iter().any(|a| a == *s))
        .map(|s| s.to_string())
        .collect();
    let rests = d
        .kept()
        .map(|k| {
            let (what, key, period) = match k.files {
                KeptFiles::Outbox => (
                    "files written for it",
                    "outboxes",
                    config.retention.outboxes,
                ),
                KeptFiles::Sheets => ("its spreadsheet files", "sheets", config.retention.sheets),
            };
            Resting {
                what: what.into(),
                place: k.dir.display().to_string(),
                kept_for: places::period(period),
                key: format!("retention.{key}"),
            }
        })
        .into_iter()
        .collect();
    Destination {
        name: name.to_string(),
        kind: d.kind().to_string(),
        flow: flow.as_str().to_string(),
        programmes,
        practices,
        agreement: terms.agreement.map(str::to_string),
        sent_under: sent_under(config, flow),
        allow: terms.allow.to_vec(),
        fields: catalog::expand(flow, terms.allow),
        sensitive_withheld: sections
            .iter()
            .filter(|s| !sensitive_agreed.iter().any(|a| a == *s))
            .map(|s| s.to_string())
            .collect(),
        sensitive_agreed,
        channel: d.channel(),
        rests,
        later: later(flow, d.later()),
        hazards: logged
            .iter()
            .filter(|h| h.applies(flow.as_str(), d.kind()))
            .map(|h| h.id.clone())
            .collect(),
    }
}

/// A programme's `[lifecycle]` policy, in words.
fn unanswered(config: &Config, programme: &str) -> Option<String> {
    let p = config.lifecycle.programmes.get(programme)?;
    let mut out = format!("reminded after {}", places::period(p.respond_within));
    if let Some(every) = p.remind_every {
        out.push_str(&format!(" (again every {})", places::period(every)));
    }
    if let Some(close) = p.close_after {
        out.push_str(&format!(
            "; closed as not responded after {}, written to the practice record",
            places::period(close)
        ));
    }
    Some(out)
}

/// What a referral destination is sent of a referral's later messages: an update is the
/// referral again (its allow-list applies); every notice names the referral only.
fn later(flow: Flow, takes: &[crate::model::lifecycle::Change]) -> Vec<String> {
    use crate::model::lifecycle::Change;
    if flow != Flow::Referral {
        return Vec::new();
    }
    if takes.is_empty() {
        return vec![
            "none through its interface: each update, cancellation or withdrawal is held for a \
             person to make at the platform"
                .into(),
        ];
    }
    takes
        .iter()
        .map(|c| match c {
            Change::Amend => {
                "updates: the referral again, as allowed above, with the changed fields' names"
                    .to_string()
            }
            other => format!(
                "{} notices: the referral's ids and the practice's referral identifier only",
                other.event_name()
            ),
        })
        .collect()
}

/// The consent states a destination of `flow` is sent under, and how.
fn sent_under(config: &Config, flow: Flow) -> Vec<String> {
    match flow {
        Flow::Referral => {
            let not_recorded = match config.referrals.consent_not_recorded {
                ConsentState::Full => "not-recorded: as full (referrals.consent_not_recorded)",
                ConsentState::CodesOnly => {
                    "not-recorded: as codes-only (referrals.consent_not_recorded)"
                }
                _ => "not-recorded: not sent (referrals.consent_not_recorded)",
            };
            vec![
                "full: every field listed".into(),
                "codes-only: the fields listed, without free text".into(),
                not_recorded.into(),
            ]
        }
        Flow::MessageBack => vec![
            "full: every field listed".into(),
            "codes-only or not recorded: the fields listed, without the platform's free text"
                .into(),
        ],
    }
}

fn consent_rules(config: &Config, message_back: bool) -> Vec<ConsentRule> {
    let rule = |flow: &str, state: &str, sends: &str| ConsentRule {
        flow: flow.into(),
        state: state.into(),
        sends: sends.into(),
    };
    let not_recorded = match config.referrals.consent_not_recorded {
        ConsentState::Full => "as full consent (referrals.consent_not_recorded = \"full\")",
        ConsentState::CodesOnly => {
            "as codes-only consent (referrals.consent_not_recorded = \"codes-only\")"
        }
        _ => "nothing: withheld and audited (referrals.consent_not_recorded = \"declined\")",
    };
    let mut out = vec![
        rule(
            "referral",
            "full",
            "every field the destination's allow-list names",
        ),
        rule(
            "referral",
            "codes-only",
            "the allowed fields without free text: codes, dates and identifiers only",
        ),
        rule("referral", "not-recorded", not_recorded),
        rule(
            "referral",
            "declined",
            "nothing: the referral is withheld from every destination and audited",
        ),
    ];
    if message_back {
        out.push(rule(
            "message-back",
            "full (the referral's)",
            "the platform's free text (summary, reasons, plan) with the coded entries",
        ));
        out.push(rule(
            "message-back",
            "codes-only, not-recorded or declined (the referral's)",
            "coded entries only; the document says what was left out",
        ));
    }
    out
}

/// The pack's files, rendered.
pub struct Rendered {
    /// `ig-pack.md`: the pack, the diagram linked as `data-flow.svg`.
    pub markdown: String,
    /// `ig-pack.html`: the pack, the DPIA annex and the DSA field schedule, self-contained.
    pub html: String,
    /// `ig-pack.json`
    pub json: String,
    /// `data-flow.svg`
    pub svg: String,
    /// `dpia-annex.md`
    pub dpia_annex: String,
    /// `dsa-field-schedule.md`
    pub dsa_schedule: String,
}

impl Rendered {
    /// (file name, contents) of every file, in the order `--out` writes them.
    pub fn files(&self) -> [(&'static str, &str); 6] {
        [
            ("ig-pack.md", &self.markdown),
            ("ig-pack.html", &self.html),
            ("ig-pack.json", &self.json),
            ("data-flow.svg", &self.svg),
            ("dpia-annex.md", &self.dpia_annex),
            ("dsa-field-schedule.md", &self.dsa_schedule),
        ]
    }
}

/// Every file of the pack.
pub fn render(p: &Pack) -> Result<Rendered> {
    let svg = svg::render(p);
    let dpia_annex = templates::fill(templates::DPIA_ANNEX, p)?;
    let dsa_schedule = templates::fill(templates::DSA_SCHEDULE, p)?;
    let html = html::document(
        "Information-governance pack: clw-gateway",
        &[
            (
                "pack",
                "The pack",
                markdown::render(p, &format!("<figure>{svg}</figure>")),
            ),
            ("dpia-annex", "DPIA annex", dpia_annex.clone()),
            (
                "dsa-field-schedule",
                "DSA field schedule",
                dsa_schedule.clone(),
            ),
        ],
    );
    Ok(Rendered {
        markdown: markdown::render(
            p,
            "![Data flow: practices to programmes and back](data-flow.svg)",
        ),
        html,
        json: serde_json::to_string_pretty(p).unwrap_or_default(),
        svg,
        dpia_annex,
        dsa_schedule,
    })
}

/// The audit entry for one generation of the pack, by `actor`.
pub fn audit_entry(p: &Pack, actor: &str, how: &str) -> crate::store::AuditEntry {
    crate::store::AuditEntry {
        actor: actor.to_string(),
        action: crate::model::state::AuditAction::IgPack,
        flow: "ig".into(),
        message_id: p.about.config_digest.clone(),
        destination: None,
        fields: Vec::new(),
        agreement: None,
        detail: Some(format!(
            "IG pack generated ({how}) by {} at {}: {} destinations, {} record writers, {} findings",
            p.about.gateway_version,
            p.about.generated_at,
            p.destinations.len(),
            p.writers.len(),
            p.findings.len()
        )),
    }
}
