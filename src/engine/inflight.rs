//! One copy of a message at a time in this process: a second copy of the same
//! (flow, id) waits for the first to finish, then finds what it did in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub struct InFlight {
    locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Held while a message is processed; frees its entry when the last holder goes.
pub struct Held<'a> {
    owner: &'a InFlight,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl InFlight {
    pub async fn hold(&self, key: String) -> Held<'_> {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        Held {
            owner: self,
            key,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut map = self.owner.locks.lock().unwrap_or_else(|e| e.into_inner());
        drop(self.guard.take());
        // Only the map and this guard's Arc knew it: nobody else waits.
        if map
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_second_copy_waits_for_the_first_and_entries_are_freed() {
        let f = Arc::new(InFlight::default());
        let first = f.hold("referral/m1".into()).await;
        let f2 = f.clone();
        let second = tokio::spawn(async move {
            let _h = f2.hold("referral/m1".into()).await;
        });
        // Another id is not held up.
        drop(f.hold("referral/m2".into()).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!second.is_finished(), "the second copy waits");
        drop(first);
        second.await.unwrap();
        assert!(f.is_empty());
    }
}
