//! A per-destination circuit breaker for answers that mean "every message will fail
//! the same way until a person acts": 401 / 403 (a rotated or revoked credential) and
//! 404 (a moved endpoint). While paused, the destination's messages wait in the retry
//! tiers instead of being parked one by one; one message at a time is let through as a
//! probe, and the first success resumes the destination.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::GatewayError;

#[derive(Default)]
pub struct Breaker {
    pause: Mutex<Option<Pause>>,
}

#[derive(Debug, Clone)]
struct Pause {
    since: chrono::DateTime<chrono::Utc>,
    reason: String,
    last_probe: Instant,
}

/// Whether a message may be sent now.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    Open,
    /// Paused, but this message is the probe.
    Probe,
    /// Paused: wait. Says since when and why.
    Closed {
        since: String,
        reason: String,
    },
}

/// A change the engine logs and counts.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Paused(String),
    Resumed,
}

/// The statuses that pause a destination.
pub fn pauses(e: &GatewayError) -> bool {
    matches!(e.status, Some(401 | 403 | 404))
}

impl Breaker {
    pub fn gate(&self, probe_every: Duration) -> Gate {
        let mut p = self.pause.lock().unwrap_or_else(|e| e.into_inner());
        match p.as_mut() {
            None => Gate::Open,
            Some(pause) if pause.last_probe.elapsed() >= probe_every => {
                pause.last_probe = Instant::now();
                Gate::Probe
            }
            Some(pause) => Gate::Closed {
                since: pause
                    .since
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                reason: pause.reason.clone(),
            },
        }
    }

    /// Records a send's result.
    pub fn record(&self, result: Result<(), &GatewayError>) -> Option<Transition> {
        let mut p = self.pause.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => p.take().map(|_| Transition::Resumed),
            Err(e) if pauses(e) => {
                let was_paused = p.is_some();
                *p = Some(Pause {
                    since: p
                        .as_ref()
                        .map(|old| old.since)
                        .unwrap_or_else(chrono::Utc::now),
                    reason: e.reason(),
                    last_probe: Instant::now(),
                });
                (!was_paused).then(|| Transition::Paused(e.reason()))
            }
            // Other failures say nothing about the credential or endpoint.
            Err(_) => None,
        }
    }

    /// Since when and why the destination is paused, without taking a probe turn.
    pub fn paused(&self) -> Option<(String, String)> {
        self.pause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|p| {
                (
                    p.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    p.reason.clone(),
                )
            })
    }

    pub fn is_paused(&self) -> bool {
        self.pause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Stage;

    fn answered(status: u16) -> GatewayError {
        let mut e = GatewayError::permanent(Stage::Deliver, format!("answered {status}"));
        e.status = Some(status);
        e
    }

    #[test]
    fn credentials_refused_pause_until_a_probe_succeeds() {
        let b = Breaker::default();
        assert_eq!(b.gate(Duration::ZERO), Gate::Open);
        assert_eq!(b.record(Err(&answered(500))), None, "a 500 does not pause");
        assert_eq!(
            b.record(Err(&answered(401))),
            Some(Transition::Paused("answered 401".into()))
        );
        assert!(b.is_paused());
        // Within the probe interval every message waits.
        assert!(matches!(
            b.gate(Duration::from_secs(3600)),
            Gate::Closed { .. }
        ));
        // Once the interval has passed, one message probes; the next waits again.
        assert_eq!(b.gate(Duration::ZERO), Gate::Probe);
        assert!(matches!(
            b.gate(Duration::from_secs(3600)),
            Gate::Closed { .. }
        ));
        // A failed probe keeps it paused (no second "paused" transition).
        assert_eq!(b.record(Err(&answered(403))), None);
        assert!(b.is_paused());
        assert_eq!(b.record(Ok(())), Some(Transition::Resumed));
        assert_eq!(b.gate(Duration::from_secs(3600)), Gate::Open);
        assert!(b.record(Err(&answered(404))).is_some());
    }
}
