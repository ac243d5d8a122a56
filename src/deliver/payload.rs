//! The deterministic keys that make redelivery harmless.

use uuid::Uuid;

/// Namespace for idempotency keys (a fixed random UUID; changing it would re-key every delivery).
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6b1e_7f0c_3c55_4a8e_9a1d_2f4e_8c7b_5d10);

/// The same (flow, message, destination) always gets the same key, across instances
/// and restarts, so a receiver can drop a repeat.
pub fn idempotency_key(flow: &str, message_id: &str, destination: &str) -> String {
    Uuid::new_v5(
        &KEY_NAMESPACE,
        format!("{flow}\n{message_id}\n{destination}").as_bytes(),
    )
    .to_string()
}

/// The body: the mapped referral as it is for a new one; for an update the same with the
/// `lifecycle` object beside it; for a notice the notice alone (no patient data).
pub(super) fn with_lifecycle(job: &super::Job<'_>) -> serde_json::Value {
    let mut payload = job.payload().clone();
    if let Some(op) = job.operation
        && op.change == crate::model::lifecycle::Change::Amend
        && let Some(obj) = payload.as_object_mut()
    {
        obj.insert("lifecycle".into(), op.lifecycle());
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_distinct() {
        assert_eq!(
            idempotency_key("referral", "m1", "a"),
            idempotency_key("referral", "m1", "a")
        );
        assert_ne!(
            idempotency_key("referral", "m1", "a"),
            idempotency_key("referral", "m1", "b")
        );
        assert_ne!(
            idempotency_key("referral", "m1", "a"),
            idempotency_key("message-back", "m1", "a")
        );
    }
}
