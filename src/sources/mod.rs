//! Sources move bytes, nothing more: the one [`Transport`] (RabbitMQ in `broker/`, or the
//! embedded `spool/` folders) that feeds each flow's pipeline, parks and replays; the
//! door the gateway's own doors queue events through (sealed with their origin); the
//! signed HTTP event door (`ingress`) and its bounded listener; the pollers that turn
//! a destination's records into events; and the readers of a destination's
//! non-delivery reports.

pub mod broker;
pub mod door;
pub mod ingress;
pub mod lifecycle;
pub mod listener;
pub mod parking;
pub mod poll;
pub mod reports;
pub mod shutdown;
pub mod spool;
pub mod transport;

pub use transport::Transport;
