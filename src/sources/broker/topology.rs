//! Exchanges and queues, declared idempotently at start and exported as
//! deploy/rabbitmq/definitions.json (`clw-gateway topology`).
//!
//! ```text
//! One set per flow (`{f}` = `referral` or `event`):
//!
//! {p}.{f}s (topic) ──#──▶ {p}.{f} (quorum, DLX {p}.{f}.dlx, delivery-limit)
//! {p}.{f}.retry (direct) ──tier-N──▶ {p}.{f}.retry.N (quorum, TTL N) ──dead-letter──▶ {p}.{f}.requeue (fanout) ──▶ {p}.{f}
//! {p}.{f}.dlx (fanout) ──▶ {p}.{f}.parked (quorum) ──recorder──▶ store (parked table)
//! ```
//!
//! Every argument is explicit (RabbitMQ 4 changed defaults, e.g. a quorum queue's
//! delivery limit of 20). Dead-lettering is at-least-once (with reject-publish
//! overflow, which it requires): a message leaves a queue only when the next has it.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use serde_json::{Value, json};

use crate::error::{GatewayError, Result, Stage};

/// Redeliveries of a parked message before RabbitMQ would drop it.
pub const PARKED_DELIVERY_LIMIT: u32 = 10_000;

#[derive(Debug, Clone)]
pub struct Topology {
    pub flow: crate::model::Flow,
    pub prefix: String,
    /// The flow's name in queue names: `referral` or `event`.
    pub unit: String,
    pub tiers: Vec<Duration>,
    pub delivery_limit: u32,
}

#[derive(Debug, Clone)]
struct QueueSpec {
    name: String,
    args: Vec<(&'static str, ArgValue)>,
}

#[derive(Debug, Clone)]
enum ArgValue {
    Str(String),
    Int(i64),
}

impl Topology {
    pub fn flow(&self) -> crate::model::Flow {
        self.flow
    }

    /// The same broker's topology for another flow.
    pub fn for_flow(&self, flow: crate::model::Flow) -> Topology {
        Topology {
            flow,
            unit: crate::flows::row(flow).queue_unit.into(),
            ..self.clone()
        }
    }
    pub fn exchange(&self) -> String {
        format!("{}.{}s", self.prefix, self.unit)
    }
    pub fn queue(&self) -> String {
        format!("{}.{}", self.prefix, self.unit)
    }
    pub fn retry_exchange(&self) -> String {
        format!("{}.{}.retry", self.prefix, self.unit)
    }
    pub fn retry_queue(&self, tier: usize) -> String {
        format!("{}.{}.retry.{}", self.prefix, self.unit, tier + 1)
    }
    pub fn retry_key(tier: usize) -> String {
        format!("tier-{}", tier + 1)
    }
    pub fn requeue_exchange(&self) -> String {
        format!("{}.{}.requeue", self.prefix, self.unit)
    }
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.{}.dlx", self.prefix, self.unit)
    }
    pub fn parked_queue(&self) -> String {
        format!("{}.{}.parked", self.prefix, self.unit)
    }

    fn exchanges(&self) -> Vec<(String, &'static str)> {
        vec![
            (self.exchange(), "topic"),
            (self.retry_exchange(), "direct"),
            (self.requeue_exchange(), "fanout"),
            (self.dead_letter_exchange(), "fanout"),
        ]
    }

    fn queues(&self) -> Vec<QueueSpec> {
        let quorum = || ("x-queue-type", ArgValue::Str("quorum".into()));
        // Dead-lettering that keeps a message until the target has it (quorum queues,
        // RabbitMQ 3.10+); it needs reject-publish overflow, so both are set.
        let at_least_once = |dlx: String| {
            [
                ("x-dead-letter-exchange", ArgValue::Str(dlx)),
                (
                    "x-dead-letter-strategy",
                    ArgValue::Str("at-least-once".into()),
                ),
                ("x-overflow", ArgValue::Str("reject-publish".into())),
            ]
        };
        let mut main = vec![
            quorum(),
            (
                "x-delivery-limit",
                ArgValue::Int(self.delivery_limit.into()),
            ),
        ];
        main.extend(at_least_once(self.dead_letter_exchange()));
        let mut q = vec![
            QueueSpec {
                name: self.queue(),
                args: main,
            },
            QueueSpec {
                name: self.parked_queue(),
                // Nothing reads this queue but the recorder, which acks once the store
                // has the message; the explicit limit (RabbitMQ 4 defaults to 20 and
                // then drops) only matters if recorders keep crashing mid-record.
                args: vec![
                    quorum(),
                    (
                        "x-delivery-limit",
                        ArgValue::Int(PARKED_DELIVERY_LIMIT.into()),
                    ),
                    ("x-overflow", ArgValue::Str("reject-publish".into())),
                ],
            },
        ];
        for (i, ttl) in self.tiers.iter().enumerate() {
            let mut args = vec![
                quorum(),
                ("x-message-ttl", ArgValue::Int(ttl.as_millis() as i64)),
            ];
            args.extend(at_least_once(self.requeue_exchange()));
            q.push(QueueSpec {
                name: self.retry_queue(i),
                args,
            });
        }
        q
    }

    /// (exchange, queue, routing key)
    fn bindings(&self) -> Vec<(String, String, String)> {
        let mut b = vec![
            (self.exchange(), self.queue(), "#".to_string()),
            (self.requeue_exchange(), self.queue(), String::new()),
            (
                self.dead_letter_exchange(),
                self.parked_queue(),
                String::new(),
            ),
        ];
        for i in 0..self.tiers.len() {
            b.push((
                self.retry_exchange(),
                self.retry_queue(i),
                Self::retry_key(i),
            ));
        }
        b
    }

    pub fn queue_names(&self) -> Vec<String> {
        self.queues().into_iter().map(|q| q.name).collect()
    }

    pub fn exchange_names(&self) -> Vec<String> {
        self.exchanges().into_iter().map(|e| e.0).collect()
    }

    /// Declares everything; safe to run on every start and from many instances.
    pub async fn declare(&self, ch: &Channel) -> Result<()> {
        for (name, kind) in self.exchanges() {
            let kind = match kind {
                "topic" => ExchangeKind::Topic,
                "direct" => ExchangeKind::Direct,
                _ => ExchangeKind::Fanout,
            };
            ch.exchange_declare(
                ShortString::from(name),
                kind,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        }
        for q in self.queues() {
            let mut args = FieldTable::default();
            for (k, v) in &q.args {
                let v = match v {
                    ArgValue::Str(s) => AMQPValue::LongString(LongString::from(s.as_str())),
                    ArgValue::Int(n) => AMQPValue::LongLongInt(*n),
                };
                args.insert(ShortString::from(*k), v);
            }
            ch.queue_declare(
                ShortString::from(q.name.as_str()),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .map_err(|e| declare_error(&q.name, e))?;
        }
        for (ex, q, key) in self.bindings() {
            ch.queue_bind(
                ShortString::from(q),
                ShortString::from(ex),
                ShortString::from(key),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// Definitions for several flows' topologies in one file.
    pub fn definitions_of(all: &[Topology], vhost: &str) -> Value {
        let mut out =
            json!({"rabbit_version": "3.10.8", "exchanges": [], "queues": [], "bindings": []});
        for t in all {
            let d = t.definitions(vhost);
            for k in ["exchanges", "queues", "bindings"] {
                if let (Some(acc), Some(more)) = (out[k].as_array_mut(), d[k].as_array()) {
                    acc.extend(more.iter().cloned());
                }
            }
        }
        out
    }

    /// RabbitMQ definitions (management import format) for the same topology.
    pub fn definitions(&self, vhost: &str) -> Value {
        let exchanges: Vec<Value> = self
            .exchanges()
            .into_iter()
            .map(|(name, kind)| {
                json!({"name": name, "vhost": vhost, "type": kind, "durable": true,
                       "auto_delete": false, "internal": false, "arguments": {}})
            })
            .collect();
        let queues: Vec<Value> = self
            .queues()
            .into_iter()
            .map(|q| {
                let args: serde_json::Map<String, Value> = q
                    .args
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            ArgValue::Str(s) => json!(s),
                            ArgValue::Int(n) => json!(n),
                        };
                        (k.to_string(), v)
                    })
                    .collect();
                json!({"name": q.name, "vhost": vhost, "durable": true, "auto_delete": false, "arguments": args})
            })
            .collect();
        let bindings: Vec<Value> = self
            .bindings()
            .into_iter()
            .map(|(ex, q, key)| {
                json!({"source": ex, "vhost": vhost, "destination": q, "destination_type": "queue",
                       "routing_key": key, "arguments": {}})
            })
            .collect();
        json!({"rabbit_version": "3.10.8", "exchanges": exchanges, "queues": queues, "bindings": bindings})
    }
}

/// A queue that exists with other arguments (declared by an earlier version) is named
/// with the way out, rather than a bare PRECONDITION_FAILED.
fn declare_error(queue: &str, e: lapin::Error) -> GatewayError {
    let text = e.to_string();
    if text.contains("PRECONDITION_FAILED") || text.contains("inequivalent arg") {
        GatewayError::permanent(
            Stage::Broker,
            format!(
                "queue {queue} exists with other arguments than this version declares ({text}); \
                 see docs/upgrading.md for moving its messages to the new topology"
            ),
        )
    } else {
        e.into()
    }
}
