//! The wiring plan: everything a configuration names, built and checked once —
//! mappings (loaded once), routes, destinations with their sinks, secrets and
//! schemas. `serve`, `check` and `mapping test` all start here, so a bad configuration
//! gives the same report whichever command meets it, every problem named by its key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::config::{Config, ConfigErrors};
use crate::deliver::Destination;
use crate::error::{GatewayError, Stage};
use crate::mapping::MappingSet;
use crate::model::{ConsentState, Flow};
use crate::routing::Routes;
use crate::schema::SchemaSet;

pub struct Wiring {
    pub mappings: Arc<MappingSet>,
    /// Every configured destination, built.
    pub destinations: BTreeMap<String, Arc<Destination>>,
    pub referrals: ReferralWiring,
}

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
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        Ok(Wiring {
            mappings,
            destinations,
            referrals: ReferralWiring {
                routes,
                destinations: referral_destinations,
                consent_not_recorded: config.referrals.consent_not_recorded,
            },
        })
    }
}
