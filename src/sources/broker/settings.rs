//! `[broker]`: the broker's own section of the configuration. Present, RabbitMQ is the
//! transport; absent, the spool folders are.

use std::time::Duration;

use serde::Deserialize;

use super::{CONFIRM_TIMEOUT, Topology};
use crate::error::GatewayError;
use crate::model::Flow;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// `amqp://user:pass@host:5672/%2f` or `amqps://...` (TLS via rustls).
    pub url: String,
    /// Prefix of every exchange and queue name (`clw.referral`, `clw.referral.parked`, ...).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Unacknowledged messages held at once per consumer; also the processing concurrency.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// Redeliveries after which RabbitMQ itself dead-letters a message (x-delivery-limit).
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
    /// Longest wait for the broker to confirm a publish (a retry, a parking); past it
    /// the message goes back to the queue and /readyz reports not ready.
    #[serde(default = "default_confirm_timeout", with = "humantime_serde")]
    pub confirm_timeout: Duration,
}

fn default_confirm_timeout() -> Duration {
    CONFIRM_TIMEOUT
}

fn default_prefix() -> String {
    "clw".into()
}
fn default_prefetch() -> u16 {
    64
}
fn default_delivery_limit() -> u32 {
    20
}

impl BrokerConfig {
    /// Every problem in the section, each naming its key.
    pub fn problems(&self) -> Vec<GatewayError> {
        let mut errs = Vec::new();
        if !(self.url.starts_with("amqp://") || self.url.starts_with("amqps://")) {
            errs.push(GatewayError::config(
                "broker.url",
                "must start with amqp:// or amqps://",
            ));
        }
        if self.prefetch == 0 {
            errs.push(GatewayError::config(
                "broker.prefetch",
                "must be at least 1",
            ));
        }
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            errs.push(GatewayError::config(
                "broker.prefix",
                "must be a non-empty name without spaces",
            ));
        }
        errs
    }

    /// A flow's exchanges and queues, named by its queue unit.
    pub fn topology(&self, flow: Flow, tiers: &[Duration]) -> Topology {
        Topology {
            flow,
            unit: crate::flows::row(flow).queue_unit.into(),
            prefix: self.prefix.clone(),
            tiers: tiers.to_vec(),
            delivery_limit: self.delivery_limit,
        }
    }
}
