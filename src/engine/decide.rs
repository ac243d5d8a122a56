//! The retry / park decision for a failed attempt, kept apart from any I/O so the
//! table can be tested on its own.

use std::time::Duration;

use crate::error::{ErrorClass, GatewayError};

/// What to do after an attempt that did not settle a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Wait in retry tier `tier` (0-based), then try again.
    Retry { tier: usize },
    /// Park: failed for good, or the tiers are spent (`gave_up`).
    Park { gave_up: bool },
}

/// The retry tier for attempt number `attempts` (1 = first try), honouring a
/// destination's Retry-After by moving to the nearest later tier that covers it; None
/// when the tiers are spent.
pub fn choose_tier(
    tiers: &[Duration],
    attempts: u32,
    retry_after: Option<Duration>,
) -> Option<usize> {
    let base = (attempts as usize).checked_sub(1)?;
    if base >= tiers.len() {
        return None;
    }
    Some(match retry_after {
        Some(wait) => (base..tiers.len())
            .find(|&i| tiers[i] >= wait)
            .unwrap_or(tiers.len() - 1),
        None => base,
    })
}

/// The tier for a message that waits without having been tried (another copy in
/// flight, a paused destination): the first that covers `wait`, else the last.
pub fn defer_tier(tiers: &[Duration], wait: Option<Duration>) -> Option<usize> {
    if tiers.is_empty() {
        return None;
    }
    let wait = wait.unwrap_or(Duration::ZERO);
    Some(
        tiers
            .iter()
            .position(|t| *t >= wait)
            .unwrap_or(tiers.len() - 1),
    )
}

/// The decision table: transient errors go to the next tier while tiers remain;
/// permanent errors, unknown outcomes, and transient ones past the last tier, are
/// parked. A withheld message never reaches here (it is settled, not failed).
pub fn decide(tiers: &[Duration], attempts: u32, error: &GatewayError) -> Decision {
    match (error.class, choose_tier(tiers, attempts, error.retry_after)) {
        (ErrorClass::Transient, Some(tier)) => Decision::Retry { tier },
        (ErrorClass::Transient, None) => Decision::Park { gave_up: true },
        (ErrorClass::Permanent | ErrorClass::Unknown, _) => Decision::Park { gave_up: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Stage;

    fn tiers() -> Vec<Duration> {
        [5, 30, 300, 1800].map(Duration::from_secs).to_vec()
    }

    #[test]
    fn each_attempt_takes_the_next_tier_until_they_are_spent() {
        let t = tiers();
        assert_eq!(choose_tier(&t, 0, None), None);
        assert_eq!(choose_tier(&t, 1, None), Some(0));
        assert_eq!(choose_tier(&t, 2, None), Some(1));
        assert_eq!(choose_tier(&t, 4, None), Some(3));
        assert_eq!(choose_tier(&t, 5, None), None);
        assert_eq!(choose_tier(&[], 1, None), None);
    }

    #[test]
    fn retry_after_picks_the_nearest_tier_that_covers_it() {
        let t = tiers();
        let s = Duration::from_secs;
        // Already covered by the tier this attempt would take.
        assert_eq!(choose_tier(&t, 1, Some(s(3))), Some(0));
        assert_eq!(choose_tier(&t, 1, Some(s(5))), Some(0));
        // Moves up to the first tier at least as long.
        assert_eq!(choose_tier(&t, 1, Some(s(6))), Some(1));
        assert_eq!(choose_tier(&t, 1, Some(s(120))), Some(2));
        // Never back to an earlier tier.
        assert_eq!(choose_tier(&t, 3, Some(s(1))), Some(2));
        // Longer than every tier: the last one.
        assert_eq!(choose_tier(&t, 1, Some(s(86_400))), Some(3));
        // Spent tiers stay spent whatever Retry-After says.
        assert_eq!(choose_tier(&t, 5, Some(s(1))), None);
    }

    #[test]
    fn deferrals_take_the_first_tier_that_covers_the_wait() {
        let t = tiers();
        assert_eq!(defer_tier(&t, None), Some(0));
        assert_eq!(defer_tier(&t, Some(Duration::from_secs(30))), Some(1));
        assert_eq!(defer_tier(&t, Some(Duration::from_secs(31))), Some(2));
        assert_eq!(defer_tier(&t, Some(Duration::from_secs(99_999))), Some(3));
        assert_eq!(defer_tier(&[], None), None);
    }

    #[test]
    fn decision_table() {
        let t = tiers();
        let transient = GatewayError::transient(Stage::Deliver, "503");
        let permanent = GatewayError::permanent(Stage::Deliver, "400");
        assert_eq!(decide(&t, 1, &transient), Decision::Retry { tier: 0 });
        assert_eq!(decide(&t, 4, &transient), Decision::Retry { tier: 3 });
        assert_eq!(decide(&t, 5, &transient), Decision::Park { gave_up: true });
        assert_eq!(decide(&t, 1, &permanent), Decision::Park { gave_up: false });
        assert_eq!(decide(&[], 1, &transient), Decision::Park { gave_up: true });
        let later = transient
            .clone()
            .with_retry_after(Some(Duration::from_secs(60)));
        assert_eq!(decide(&t, 1, &later), Decision::Retry { tier: 2 });
    }
}
