//! Locks that outlive a panic.

use std::sync::{Mutex, MutexGuard};

/// `mutex`'s guard, even when a panic poisoned it. Every mutex in this crate guards state that
/// is replaced whole, or only pushed to and popped from, so a panic while it was held cannot
/// have left it half-changed; a poisoned lock then means only that a request panicked, and the
/// environment goes on serving.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
