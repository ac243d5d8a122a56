//! The unanswered-referral sweep (docs/lifecycle.md): every `lifecycle.check_every`, per
//! programme with a policy, the referrals delivered longer ago than `respond_within` that
//! no event has answered. Each is reminded (once, or every `remind_every`), and past
//! `close_after` closed as "the service did not respond". The sweep decides nothing
//! about destinations: it queues the gateway's sealed instruction on the referral
//! transport (where the referral front plans it, exactly once by its id), and for a close
//! the gateway's own closing event on the message-back transport (written to the
//! practice record by the record writers, with its own code).

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

mod config;

pub use config::{LifecycleConfig, UnansweredPolicy};

use super::door::Door;
use crate::flows::lifecycle::Instruction;
use crate::flows::message_back::NOT_RESPONDED;
use crate::model::Flow;
use crate::model::message_back::{Closure, EventType, MessageBack};
use crate::secret::seal::Origin;
use crate::sources::shutdown::Shutdown;
use crate::store::Store;

/// Where the sweep queues what it decides.
pub struct Doors {
    pub referrals: Arc<Door>,
    /// The message back's, when it is on (a close is then written back).
    pub events: Option<Arc<Door>>,
}

/// Sweeps until shutdown.
pub async fn run(config: LifecycleConfig, store: Store, doors: Doors, mut shutdown: Shutdown) {
    if config.programmes.is_empty() {
        return;
    }
    info!(
        every_s = config.check_every.as_secs(),
        programmes = config.programmes.len(),
        "looking for unanswered referrals"
    );
    loop {
        match once(&config, &store, &doors).await {
            Ok(n) if n > 0 => info!(queued = n, "unanswered referrals reminded or closed"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "unanswered-referral sweep failed; trying again next time"),
        }
        if !shutdown.pause(config.check_every).await {
            return;
        }
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// One sweep: how many instructions it queued.
pub async fn once(
    config: &LifecycleConfig,
    store: &Store,
    doors: &Doors,
) -> crate::error::Result<usize> {
    let now = store.now();
    let mut queued = 0;
    for (programme, policy) in &config.programmes {
        for u in store
            .unanswered(programme, now - ms(policy.respond_within))
            .await?
        {
            let closing = policy.close_after.is_some_and(|c| u.sent_at < now - ms(c));
            let instruction = if closing {
                Instruction {
                    id: format!("lifecycle:close:{}", u.referral_id),
                    change: "close".into(),
                    referral_id: u.referral_id.clone(),
                    reason: format!(
                        "closed by the referrer's gateway: the service did not respond within {}",
                        crate::model::dates::period_in_words(
                            policy.close_after.unwrap_or_default()
                        )
                    ),
                }
            } else {
                let due = match (u.reminders, u.last_reminder, policy.remind_every) {
                    (0, _, _) => true,
                    (_, Some(last), Some(every)) => last < now - ms(every),
                    _ => false,
                };
                if !due {
                    continue;
                }
                Instruction {
                    id: format!("lifecycle:remind:{}:{}", u.referral_id, u.reminders + 1),
                    change: "remind".into(),
                    referral_id: u.referral_id.clone(),
                    // Made the same by every sweep (a copy queued twice is the same
                    // message, never "same id, different content").
                    reason: format!(
                        "no response from the service within {} of the referral being sent",
                        crate::model::dates::period_in_words(policy.respond_within)
                    ),
                }
            };
            // Queued before and not yet taken (or taken): not again.
            if store
                .message(Flow::Referral.as_str(), &instruction.id)
                .await?
                .is_none()
            {
                let json = serde_json::to_vec(&instruction).map_err(|e| {
                    crate::error::GatewayError::permanent(
                        crate::error::Stage::Intake,
                        format!("instruction: {e}"),
                    )
                })?;
                doors
                    .referrals
                    .put_sealed(&Origin::Gateway, &instruction.id, &json)
                    .await?;
                queued += 1;
            }
            if closing && let Some(events) = &doors.events {
                let at = u.sent_at + ms(policy.close_after.unwrap_or_default());
                let event = not_responded(&u.referral_id, &instruction.reason, at);
                let id = crate::flows::message_back::queued_id(
                    &crate::flows::message_back::id_prefix(&Origin::Gateway),
                    &event.event_id,
                );
                if store
                    .message(Flow::MessageBack.as_str(), &id)
                    .await?
                    .is_none()
                {
                    events.put(&Origin::Gateway, &event).await?;
                }
            }
        }
    }
    Ok(queued)
}

/// The gateway's own closing event: the referral closed because the service did not
/// respond, for the practice record.
/// It happened when the referral became due to close (`at`, ms): the same for every sweep.
fn not_responded(referral_id: &str, reason: &str, at: i64) -> MessageBack {
    MessageBack {
        closed: Some(Closure {
            reason: NOT_RESPONDED.into(),
            outcome: Some(reason.to_string()),
        }),
        ..MessageBack::about(
            format!("not-responded-{referral_id}"),
            EventType::Closed,
            chrono::DateTime::from_timestamp_millis(at)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            referral_id.to_string(),
        )
    }
}
