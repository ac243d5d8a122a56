//! RabbitMQ (lapin 4): topology, the consuming source with retry tiers and parking,
//! publisher confirms, and the dead-letter tools behind `dlq list|replay`.

mod consumer;
pub mod dlq;
pub mod headers;
mod settings;
mod topology;

use std::time::Duration;

use lapin::types::LongString;
use lapin::{Connection, ConnectionProperties};

use crate::error::{GatewayError, Result, Stage};

pub use consumer::{BrokerSource, CONFIRM_TIMEOUT, guarded, publish_confirmed, publish_within};
pub use settings::BrokerConfig;
pub use topology::Topology;

/// Connects with lapin's automatic recovery on: after a network failure it reconnects and
/// replays topology and consumers; deliveries in flight come back as redeliveries.
pub async fn connect(url: &str, name: &str) -> Result<Connection> {
    let props = ConnectionProperties::default()
        .with_connection_name(LongString::from(name))
        .enable_auto_recover();
    let url = with_frame_max(url);
    tokio::time::timeout(Duration::from_secs(30), Connection::connect(&url, props))
        .await
        .map_err(|_| {
            GatewayError::transient(Stage::Broker, "no answer from the broker within 30s")
        })?
        .map_err(|e| {
            GatewayError::transient(Stage::Broker, format!("cannot connect to the broker: {e}"))
        })
}

/// The AMQP frame size asked for unless the URL sets one. lapin keeps 32 frames of
/// buffer each way per connection: at RabbitMQ's default 128 KiB that is 8 MiB a
/// connection, most of a small pod; at 16 KiB, 1 MiB (bodies span frames as needed).
pub const FRAME_MAX: u32 = 16 * 1024;

fn with_frame_max(url: &str) -> String {
    if url.contains("frame_max=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}frame_max={FRAME_MAX}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_frame_size_is_asked_for_unless_the_url_sets_one() {
        assert_eq!(
            super::with_frame_max("amqp://h/%2f"),
            "amqp://h/%2f?frame_max=16384"
        );
        assert_eq!(
            super::with_frame_max("amqp://h/%2f?heartbeat=10"),
            "amqp://h/%2f?heartbeat=10&frame_max=16384"
        );
        assert_eq!(
            super::with_frame_max("amqp://h/?frame_max=65536"),
            "amqp://h/?frame_max=65536"
        );
    }
}
