//! The parts of the pack read straight from configuration sections: the agreements,
//! the platforms writing back, the console's operators and the dataset.

use std::collections::BTreeSet;

use super::pack::*;
use super::places;
use crate::config::{Config, Role};

pub(super) fn platforms(config: &Config) -> Vec<Platform> {
    let Some(mb) = config.message_back() else {
        return Vec::new();
    };
    mb.platforms
        .iter()
        .map(|(name, p)| {
            let mut doors = Vec::new();
            if config.ingress.enabled && p.secret.is_some() {
                doors.push(format!(
                    "signed HTTP door: POST /v1/events/{name} and /v1/uploads/{name} \
                     (HMAC-SHA256, secret from {})",
                    p.secret.as_ref().map(|s| s.source()).unwrap_or_default()
                ));
            }
            if let Some(u) = &p.broker_user {
                doors.push(format!("AMQP events door as broker user {u}"));
            }
            if mb.spool_platform.as_deref() == Some(name) {
                doors.push("files dropped in the events spool folder".into());
            }
            Platform {
                name: name.clone(),
                programme: p.programme.clone(),
                answers_for: p.destinations.clone(),
                doors,
                require_patient: p
                    .require_patient
                    .iter()
                    .map(|i| i.describe().to_string())
                    .collect(),
            }
        })
        .collect()
}

pub(super) fn agreements(config: &Config, used: &[&Destination]) -> Vec<Agreement> {
    let users = |id: &str| -> Vec<String> {
        let mut out: Vec<String> = used
            .iter()
            .filter(|d| d.agreement.as_deref() == Some(id))
            .map(|d| d.name.clone())
            .collect();
        if config.dataset.agreement.as_deref() == Some(id) {
            out.push("the programme dataset".into());
        }
        out
    };
    let mut out: Vec<Agreement> = config
        .agreements
        .iter()
        .map(|(id, a)| Agreement {
            id: id.clone(),
            declared: true,
            title: a.title.clone(),
            controllers: a.controllers.clone(),
            lawful_basis: Some(a.lawful_basis.clone()),
            special_category: a.special_category.clone(),
            confidentiality: a.confidentiality.clone(),
            purposes: a.purposes.clone(),
            processors: a.processors.clone(),
            sub_processors: a.sub_processors.clone(),
            fields: a.fields.clone(),
            max_retention: a.max_retention.map(places::period),
            review_by: a.review_by.clone(),
            used_by: users(id),
        })
        .collect();
    let named: BTreeSet<&str> = used
        .iter()
        .filter_map(|d| d.agreement.as_deref())
        .chain(config.dataset.agreement.as_deref())
        .collect();
    for id in named
        .into_iter()
        .filter(|id| !config.agreements.contains_key(*id))
    {
        out.push(Agreement {
            id: id.to_string(),
            declared: false,
            title: None,
            controllers: Vec::new(),
            lawful_basis: None,
            special_category: None,
            confidentiality: None,
            purposes: Vec::new(),
            processors: Vec::new(),
            sub_processors: Vec::new(),
            fields: None,
            max_retention: None,
            review_by: None,
            used_by: users(id),
        });
    }
    out
}

pub(super) fn console(config: &Config) -> Console {
    let c = &config.console;
    Console {
        enabled: c.enabled,
        session_ttl: places::period(c.session_ttl),
        sign_in: match &c.trusted_user_header {
            Some(h) => format!("named by the trusted proxy's {h} header"),
            None => "each operator's own secret (at least 16 characters), then a session".into(),
        },
        operators: c
            .operators
            .iter()
            .map(|(name, o)| Operator {
                name: name.clone(),
                role: match o.role {
                    Role::Viewer => "viewer".into(),
                    Role::Operator => "operator".into(),
                },
                may: match o.role {
                    Role::Viewer => "sees parked messages, referrals and the dataset report".into(),
                    Role::Operator => {
                        "sees, and replays or dismisses parked messages (each audited)".into()
                    }
                },
                programmes: o.programmes.clone(),
            })
            .collect(),
    }
}

pub(super) fn dataset(config: &Config) -> Dataset {
    let d = &config.dataset;
    Dataset {
        enabled: d.enabled,
        recipients: d.recipients.clone(),
        key_holder: d.key_holder.clone(),
        key_source: d.pseudonym_key.as_ref().map(|s| s.source()),
        agreement: d.agreement.clone(),
        opt_out: d.opt_out.as_ref().map(|p| p.display().to_string()),
        suppress_below: d.suppress_below,
        round_to: d.round_to,
        schedule: d.schedule.as_ref().map(|s| {
            format!(
                "every {}, the last {} months of each programme as {} into {}",
                places::period(s.every),
                s.months,
                s.format,
                s.dir.display()
            )
        }),
        kept_for: places::period(config.retention.dataset),
    }
}
