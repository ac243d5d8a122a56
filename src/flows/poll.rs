//! Polling, the closed loop for platforms that publish no events: each destination
//! that can be asked what became of what it was sent (the FHIR destination's Tasks)
//! is polled every so often; changes come back as canonical events, queued through the
//! same door as the platform's own, and where the poll got to is kept in the store.

use std::sync::Arc;

use tracing::{info, warn};

use crate::deliver::Poller;
use crate::flows::door::Door;
use crate::flows::message_back::queued_id;
use crate::shutdown::Shutdown;
use crate::store::{Store, Write};

/// Polls until shutdown. `source` names it in the store and in queued event ids.
pub async fn run(
    source: String,
    poller: Arc<dyn Poller>,
    store: Store,
    door: Arc<Door>,
    mut shutdown: Shutdown,
) {
    info!(
        source,
        every_s = poller.every().as_secs(),
        "polling for platform events"
    );
    loop {
        if let Err(e) = once(&source, poller.as_ref(), &store, &door).await {
            warn!(source, error = %e, "poll failed; trying again next time");
        }
        if !shutdown.pause(poller.every()).await {
            return;
        }
    }
}

/// One poll: every event queued before the cursor moves past it.
pub async fn once(
    source: &str,
    poller: &dyn Poller,
    store: &Store,
    door: &Door,
) -> crate::error::Result<usize> {
    let cursor = store.cursor(source).await?;
    let (events, next) = poller.poll(cursor.as_deref()).await?;
    let n = events.len();
    for mut ev in events {
        ev.event_id = queued_id(source, &ev.event_id);
        let id = ev.event_id.clone();
        // Seen before (the Task saved again with the same status): its time may differ,
        // the event does not.
        if store
            .message(crate::model::Flow::MessageBack.as_str(), &id)
            .await?
            .is_some()
        {
            continue;
        }
        let value = serde_json::to_value(&ev).map_err(|e| {
            crate::error::GatewayError::permanent(crate::error::Stage::Intake, e.to_string())
        })?;
        door.put(source, &id, &value).await?;
    }
    if let Some(next) = next {
        store
            .write(Write::Cursor {
                source: source.to_string(),
                cursor: next,
            })
            .await?;
    }
    Ok(n)
}
