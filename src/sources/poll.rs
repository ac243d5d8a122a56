//! Polling, the closed loop for platforms that publish no events: each destination
//! that can be asked what became of what it was sent (the FHIR destination's Tasks)
//! is polled every so often; changes come back as canonical events, queued through the
//! same door as the platform's own, and where the poll got to is kept in the store.

use std::sync::Arc;

use tracing::{info, warn};

use super::door::Door;
use crate::deliver::Poller;
use crate::flows::message_back::queued_id;
use crate::secret::seal::Origin;
use crate::sources::shutdown::Shutdown;
use crate::store::{Store, Write};

pub use crate::flows::message_back::poll_source as source_name;

/// Polls `destination` until shutdown. Its events are bound to that destination: they
/// may answer only the referrals it was sent.
pub async fn run(
    destination: String,
    poller: Arc<dyn Poller>,
    store: Store,
    door: Arc<Door>,
    mut shutdown: Shutdown,
) {
    let source = source_name(&destination);
    info!(
        source,
        every_s = poller.every().as_secs(),
        "polling for platform events"
    );
    loop {
        if let Err(e) = once(&destination, poller.as_ref(), &store, &door).await {
            warn!(source, error = %e, "poll failed; trying again next time");
        }
        if !shutdown.pause(poller.every()).await {
            return;
        }
    }
}

/// One poll of `destination`: every event queued before the cursor moves past it.
pub async fn once(
    destination: &str,
    poller: &dyn Poller,
    store: &Store,
    door: &Door,
) -> crate::error::Result<usize> {
    let source = source_name(destination);
    let origin = Origin::Poller(destination.to_string());
    let cursor = store.cursor(&source).await?;
    let (events, next) = poller.poll(cursor.as_deref()).await?;
    let n = events.len();
    for ev in events {
        let id = queued_id(&source, &ev.event_id);
        // Seen before (the Task saved again with the same status): its time may differ,
        // the event does not.
        if store
            .message(crate::model::Flow::MessageBack.as_str(), &id)
            .await?
            .is_some()
        {
            continue;
        }
        door.put(&origin, &ev).await?;
    }
    if let Some(next) = next {
        store
            .write(Write::Cursor {
                source: source.clone(),
                cursor: next,
            })
            .await?;
    }
    Ok(n)
}
