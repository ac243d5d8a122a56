//! clw-gateway: moves social-prescribing referrals from GP systems to Community Link
//! Worker platforms, and what happened back, exactly once. See DESIGN.md for the pipeline.

pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod error;
pub mod http;
pub mod intake;
pub mod mapping;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod routing;
pub mod schema;
pub mod shutdown;
pub mod spool;
pub mod store;
