//! Sources beside the transports: the door the gateway's own doors queue events through
//! (sealed with their origin), the pollers that turn a destination's records into
//! events, and the readers of a destination's non-delivery reports.

pub mod door;
pub mod poll;
pub mod reports;
