//! The operator console: server-rendered pages on the admin listener (`/console`), off
//! unless `[console] enabled`, and then only for the operators it names. Each signs in as
//! themselves (name and secret; failures throttled per name and per client), and gets a
//! random session id in an HttpOnly, SameSite=Strict cookie (Secure whenever the console
//! is served beyond this machine) that expires, and that signing out ends on every
//! instance (sessions are kept in the store, by digest). Scripts may send HTTP Basic
//! credentials; a trusted reverse proxy may name the operator in a header instead
//! (opt-in). A `viewer` sees; an `operator` also replays and dismisses; an operator
//! scoped to programmes sees and acts on those programmes' messages only. It shows counts
//! per state and per programme / practice, the parked messages with stage, class, field
//! and reason (never patient values), destinations paused by the circuit breaker and a
//! referral's timeline; every replay and dismissal is audited under the operator's name.

mod actions;
mod auth;
mod ig;
mod pages;
mod referral;
pub mod report;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};

use crate::config::Role;
use crate::deliver::Destination;
use crate::sources::Transport;
use crate::store::Store;
use crate::wiring::ConsoleWiring;

use actions::{dismiss, replay};
use auth::{login, login_form, logout};
use pages::home;
use referral::referral;

const SESSION: &str = "clw_console";

pub struct Console {
    /// Where replayed messages go back in.
    transport: Transport,
    store: Store,
    access: ConsoleWiring,
    destinations: Vec<Arc<Destination>>,
    /// Failed sign-ins by "name:<operator>" and "addr:<client>": how many, since when.
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// The programme dataset's report, when the dataset is on.
    reports: Option<report::ReportSource>,
    /// The running configuration and routes, for the IG pack at `/console/ig`.
    ig: Option<crate::ig::Source>,
}

impl Console {
    pub fn new(
        store: Store,
        access: ConsoleWiring,
        destinations: Vec<Arc<Destination>>,
        transport: Transport,
    ) -> Console {
        Console {
            transport,
            store,
            access,
            destinations,
            failures: Mutex::new(HashMap::new()),
            reports: None,
            ig: None,
        }
    }

    /// Serves the programme dataset's report at `/console/report`.
    pub fn with_reports(mut self, reports: Option<report::ReportSource>) -> Console {
        self.reports = reports;
        self
    }

    /// Serves the IG pack of the running configuration at `/console/ig`.
    pub fn with_ig(mut self, source: Option<crate::ig::Source>) -> Console {
        self.ig = source;
        self
    }
}

/// An authenticated operator.
#[derive(Debug, Clone)]
pub struct Who {
    pub name: String,
    pub role: Role,
    programmes: Option<std::collections::BTreeSet<String>>,
}

impl Who {
    fn of(o: &crate::wiring::Operator) -> Who {
        Who {
            name: o.name.clone(),
            role: o.role,
            programmes: o.programmes.clone(),
        }
    }

    /// Whether a message of `programme` (None: not known) is theirs to see.
    fn sees(&self, programme: Option<&str>) -> bool {
        match &self.programmes {
            None => true,
            // Unknown belongs to no programme: hidden from scoped operators.
            Some(p) => programme.is_some_and(|x| p.contains(x)),
        }
    }

    fn scoped(&self) -> bool {
        self.programmes.is_some()
    }
}

type Shared = Arc<Console>;

pub fn router(console: Shared) -> Router {
    Router::new()
        .route("/console", get(home))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/replay", post(replay))
        .route("/console/dismiss", post(dismiss))
        .route("/console/referral/{id}", get(referral))
        .route("/console/report", get(report::report))
        .route("/console/ig", get(ig::ig))
        .with_state(console)
}

fn form(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
