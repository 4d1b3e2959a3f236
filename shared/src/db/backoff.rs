//! How often an environment tries to connect while the database cannot be reached.
//!
//! Without a bound, every request that needs a new connection tries again, and each waits out
//! the connect timeout when the address answers nothing (a failover's old address, a black-holed
//! route): the client waits seconds for its 503, and a fleet of environments keeps hammering a
//! database that is trying to come back. So after a failed connect the environment refuses at
//! once (a 503 with `Retry-After`) until an interval has passed, then tries once more (a
//! probe), whether or not a request is waiting for it:
//!
//! - The interval starts at `DB_BACKOFF_MIN_MS` (1 s) and doubles with each failure up to
//!   `DB_BACKOFF_MAX_MS` (1.5 s): at most about one attempt per second per environment, and a
//!   database that comes back is used again within 1.5 s and a connect.
//! - It is jittered (half to all of it), so that environments that failed together do not try
//!   again together.
//! - It counts from the start of the failed attempt: an attempt that hung for the whole connect
//!   timeout is followed by the next as soon as the interval allows.
//! - While the database is reachable, connections open freely (several at once on Lambda
//!   Managed Instances), each within the request that needs it; once an attempt has failed,
//!   one at a time, off the request path (see [`connection`](super::connection)).
//! - An attempt abandoned before it ended proves nothing either way: it changes nothing but
//!   lets the next one start.

use std::{
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::sync;

#[derive(Debug)]
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    state: Mutex<State>,
    /// Seeded from the OS at start-up: environments draw different jitter.
    jitter: RandomState,
}

#[derive(Debug, Default)]
struct State {
    /// Failed attempts since the last success.
    failures: u32,
    /// When the next attempt may start (meaningful while `failures > 0`).
    next_attempt: Option<Instant>,
    /// When the attempt after a failure that is in flight began: no other starts meanwhile.
    probing: Option<Instant>,
    /// Attempts begun so far: what the jitter is drawn from.
    attempts: u64,
    /// Why the last attempt failed, for the requests refused meanwhile.
    last_failure: Option<Arc<str>>,
}

/// Why a connect may not be tried now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    /// When the next attempt is due (zero while another is in flight).
    pub(super) retry_after: Duration,
    /// When the attempt in flight began, if one is.
    pub(super) probe_started: Option<Instant>,
    /// Why the last attempt failed.
    pub(super) last_failure: Option<Arc<str>>,
}

/// Leave to try one connect; say how it went with [`Backoff::succeeded`],
/// [`Backoff::failed`] or [`Backoff::abandoned`].
#[derive(Debug)]
#[must_use = "an attempt is ended by the backoff it came from"]
pub(super) struct Attempt {
    started: Instant,
    /// This attempt follows a failure: the only one allowed until it ends.
    probe: bool,
}

impl Attempt {
    /// Whether the attempt follows a failure (the database may still be unreachable).
    pub(super) fn is_probe(&self) -> bool {
        self.probe
    }

    /// When the attempt began.
    pub(super) fn started(&self) -> Instant {
        self.started
    }
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            state: Mutex::default(),
            jitter: RandomState::new(),
        }
    }

    /// Leave to connect now, or why not.
    pub(super) fn try_begin(&self) -> Result<Attempt, Refusal> {
        let mut state = self.lock();
        let now = Instant::now();
        let probe = state.failures > 0;
        if probe {
            let due = state.next_attempt.unwrap_or(now);
            if state.probing.is_some() || now < due {
                return Err(Refusal {
                    retry_after: due.saturating_duration_since(now),
                    probe_started: state.probing,
                    last_failure: state.last_failure.clone(),
                });
            }
            state.probing = Some(now);
        }
        state.attempts += 1;
        Ok(Attempt {
            started: now,
            probe,
        })
    }

    /// Leave to try the attempt after a failure, if it is due and none is in flight; `None`
    /// also when the last attempt succeeded (nothing to probe).
    pub(super) fn try_probe(&self) -> Option<Attempt> {
        if self.lock().failures == 0 {
            return None;
        }
        self.try_begin().ok().filter(Attempt::is_probe)
    }

    /// The connection opened: connect freely again.
    pub(super) fn succeeded(&self, _attempt: Attempt) {
        let mut state = self.lock();
        if state.failures > 0 {
            tracing::info!(
                failures = state.failures,
                "the database is reachable again; connecting freely"
            );
        }
        *state = State {
            attempts: state.attempts,
            ..State::default()
        };
    }

    /// The connect failed, for `reason`: returns how long until the next attempt is due.
    pub(super) fn failed(&self, attempt: Attempt, reason: &str) -> Duration {
        let mut state = self.lock();
        state.failures = state.failures.saturating_add(1);
        state.probing = None;
        state.last_failure = Some(Arc::from(reason));
        let interval = self.jittered(self.interval(state.failures), state.attempts);
        let due = attempt.started + interval;
        // Attempts begun together while the database was reachable may fail one after another:
        // none of them brings the next attempt forward.
        let due = state.next_attempt.map_or(due, |earlier| earlier.max(due));
        state.next_attempt = Some(due);
        if state.failures == 1 {
            tracing::warn!(
                ?interval,
                "a database connect failed; refusing at once until the next attempt is due"
            );
        }
        due.saturating_duration_since(Instant::now())
    }

    /// The attempt ended without an outcome: the next one may start.
    pub(super) fn abandoned(&self, attempt: Attempt) {
        if attempt.probe {
            self.lock().probing = None;
        }
    }

    /// Whether the last attempt failed (the database is being backed off).
    #[cfg(test)]
    fn is_backing_off(&self) -> bool {
        self.lock().failures > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A few numbers, each written whole.
        sync::lock(&self.state)
    }

    /// The interval after the `failures`-th failure in a row, before jitter.
    fn interval(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.min.saturating_mul(1 << doublings).min(self.max)
    }

    /// Half to all of `interval`, drawn anew for each attempt.
    fn jittered(&self, interval: Duration, draw: u64) -> Duration {
        let fraction = (self.jitter.hash_one(draw) >> 11) as f64 / (1_u64 << 53) as f64;
        interval.mul_f64(0.5 + fraction / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(Duration::from_millis(1000), Duration::from_millis(1500))
    }

    #[test]
    fn while_the_database_is_reachable_connects_are_never_refused_nor_serialised() {
        let backoff = backoff();

        let first = backoff.try_begin().unwrap();
        let second = backoff.try_begin().unwrap();
        backoff.succeeded(first);
        backoff.succeeded(second);

        assert!(backoff.try_begin().is_ok());
        assert!(!backoff.is_backing_off());
    }

    #[test]
    fn after_a_failure_the_next_connect_waits_half_to_all_of_the_interval() {
        let backoff = backoff();

        let retry_after = backoff.failed(backoff.try_begin().unwrap(), "refused");
        let refused = backoff.try_begin().unwrap_err();

        assert!(
            retry_after <= Duration::from_millis(1000),
            "{retry_after:?}"
        );
        assert!(retry_after >= Duration::from_millis(450), "{retry_after:?}");
        assert!(
            refused.retry_after <= retry_after,
            "{refused:?} after {retry_after:?}"
        );
        assert_eq!(
            refused.last_failure.as_deref(),
            Some("refused"),
            "refusals say why"
        );
        assert!(backoff.is_backing_off());
    }

    #[test]
    fn the_interval_doubles_with_each_failure_up_to_the_maximum() {
        let backoff = backoff();

        let intervals: Vec<_> = (1..=4).map(|failures| backoff.interval(failures)).collect();

        assert_eq!(
            intervals,
            [1000, 1500, 1500, 1500].map(Duration::from_millis)
        );
    }

    #[test]
    fn jitter_spreads_the_attempts_of_environments_that_failed_together() {
        let environments: Vec<Backoff> = (0..20).map(|_| backoff()).collect();

        let due: Vec<_> = environments
            .iter()
            .map(|backoff| backoff.failed(backoff.try_begin().unwrap(), "refused"))
            .collect();

        let earliest = due.iter().min().unwrap();
        let latest = due.iter().max().unwrap();
        assert!(*latest - *earliest > Duration::from_millis(100), "{due:?}");
    }

    #[test]
    fn once_due_exactly_one_connect_is_let_through_until_it_ends() {
        let backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
        backoff.failed(backoff.try_begin().unwrap(), "refused");

        let probe = backoff.try_begin().unwrap();
        let meanwhile = backoff.try_begin().unwrap_err();
        assert!(probe.is_probe());
        backoff.succeeded(probe);

        assert_eq!(meanwhile.retry_after, Duration::ZERO);
        assert!(meanwhile.probe_started.is_some());
        assert!(!backoff.is_backing_off());
        assert!(backoff.try_begin().is_ok());
    }

    #[test]
    fn a_probe_is_given_only_while_backing_off_once_due_and_with_none_in_flight() {
        let backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert!(backoff.try_probe().is_none(), "nothing failed");
        backoff.failed(backoff.try_begin().unwrap(), "refused");

        let probe = backoff.try_probe().expect("due at once");
        assert!(backoff.try_probe().is_none(), "one in flight");
        backoff.succeeded(probe);

        assert!(backoff.try_probe().is_none(), "reachable again");
    }

    #[test]
    fn an_abandoned_attempt_changes_nothing_but_lets_the_next_one_start() {
        let backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
        backoff.failed(backoff.try_begin().unwrap(), "refused");

        backoff.abandoned(backoff.try_begin().unwrap());

        assert!(backoff.is_backing_off());
        assert!(backoff.try_begin().is_ok());
    }
}
