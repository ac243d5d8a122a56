//! clw-gateway: moves social-prescribing referrals from GP systems to Community Link
//! Worker platforms, and what happened back, exactly once. ARCHITECTURE.md describes
//! the engine, the flows and the rooms.

pub mod app;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod deliver;
pub mod engine;
pub mod error;
pub mod flows;
pub mod http;
pub mod ig;
pub mod intake;
pub mod mapping;
pub mod model;
pub mod policy;
pub mod record;
pub mod secret;
pub mod sources;
pub mod store;
pub mod wiring;
