//! clw-gateway: moves social-prescribing referrals from GP systems to Community Link
//! Worker platforms, and what happened back, exactly once. ARCHITECTURE.md describes
//! the engine, the flows and the rooms.

pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod engine;
pub mod error;
pub mod flows;
pub mod golden;
pub mod http;
pub mod intake;
pub mod mapping;
pub mod markup;
pub mod metrics;
pub mod model;
pub mod parking;
pub mod policy;
pub mod record;
pub mod retention;
pub mod routing;
pub mod schema;
pub mod seal;
pub mod shutdown;
pub mod signing;
pub mod sources;
pub mod spool;
pub mod store;
pub mod wiring;
