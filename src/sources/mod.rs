//! Sources beside the transports: the door the gateway's own doors queue events through
//! (sealed with their origin), the pollers that turn a destination's records into
//! events, and the readers of a destination's non-delivery reports.

pub mod broker;
pub mod door;
pub mod ingress;
pub mod listener;
pub mod parking;
pub mod poll;
pub mod reports;
pub mod shutdown;
pub mod spool;
