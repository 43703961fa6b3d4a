//! The one way to ask the fetch loop for a round now: a webhook push, a `--watch-local` file
//! change, `Agent::trigger`. Each request is counted the moment it is made, before the fetch it
//! causes, so `/status` `sync_requests` tells "nobody asked" apart from "asked, not served yet".

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Wakes the fetch loop and counts why it was woken. Requests made while a round runs coalesce
/// into one more round (a [`Notify`] permit), but each is counted.
#[derive(Debug, Default)]
pub struct SyncTrigger {
    notify: Notify,
    requests: AtomicU64,
}

impl SyncTrigger {
    /// Asks for a fetch round now.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Requests made since start.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Completes on the next request (at once if one came since the last wait).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn a_request_is_counted_at_once_and_wakes_the_next_wait() {
        let trigger = SyncTrigger::default();
        assert_eq!(trigger.requests(), 0);
        assert!(trigger.notified().now_or_never().is_none(), "nothing asked");
        trigger.request();
        trigger.request();
        assert_eq!(trigger.requests(), 2, "every request is counted");
        assert!(trigger.notified().now_or_never().is_some());
        assert!(
            trigger.notified().now_or_never().is_none(),
            "requests before a wait coalesce into one wake-up"
        );
    }
}
