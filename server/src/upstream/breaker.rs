//! The circuit breaker of one upstream service. Closed: requests go out, and consecutive
//! failures are counted. `failures_max` of them in a row open it: for `cooldown_ms` no request
//! goes out and views are served stale at once instead of each waiting for a timeout. Then it
//! is half-open: one trial request goes out (other views keep being served stale meanwhile);
//! its success closes the breaker, its failure opens it for another cooldown.

use parking_lot::Mutex;

/// What the breaker lets through, as INFO shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests go out.
    Closed,
    /// No request goes out until the cooldown has passed.
    Open,
    /// One trial request is out; the rest wait for its outcome.
    HalfOpen,
}

impl BreakerState {
    /// The INFO spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until_ms: u64 },
    HalfOpen { trial_at_ms: u64 },
}

/// One service's breaker.
#[derive(Debug)]
pub struct Breaker {
    failures_max: u32,
    cooldown_ms: u64,
    state: Mutex<State>,
}

/// A change of state worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// It just opened.
    Opened,
    /// A trial succeeded: it closed again.
    Closed,
}

impl Breaker {
    /// A closed breaker that opens after `failures_max` consecutive failures and stays open
    /// `cooldown_ms`.
    pub fn new(failures_max: u32, cooldown_ms: u64) -> Breaker {
        assert!(failures_max > 0);
        Breaker {
            failures_max,
            cooldown_ms,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Whether a request may go out at `now_ms`. Past an open breaker's cooldown the caller's
    /// request is the trial. A trial whose outcome never came (its view went away) is
    /// replaced by another one after a cooldown.
    pub fn allow(&self, now_ms: u64) -> bool {
        let mut state = self.state.lock();
        match *state {
            State::Closed { .. } => true,
            State::Open { until_ms }
            | State::HalfOpen {
                trial_at_ms: until_ms,
            } if now_ms < until_ms => false,
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen {
                    trial_at_ms: now_ms + self.cooldown_ms,
                };
                true
            }
        }
    }

    /// Records the outcome of a request that [`Breaker::allow`] let through.
    pub fn record(&self, ok: bool, now_ms: u64) -> Option<Transition> {
        let mut state = self.state.lock();
        let before = *state;
        *state = match (before, ok) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.failures_max => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (State::Open { until_ms }, false) => State::Open { until_ms },
            (State::Closed { .. } | State::HalfOpen { .. }, false) => State::Open {
                until_ms: now_ms + self.cooldown_ms,
            },
        };
        match (before, *state) {
            (State::Closed { .. }, State::Open { .. }) => Some(Transition::Opened),
            (State::Open { .. } | State::HalfOpen { .. }, State::Closed { .. }) => {
                Some(Transition::Closed)
            }
            _ => None,
        }
    }

    /// The state at `now_ms` (an open breaker past its cooldown shows as half-open: the next
    /// request is the trial).
    pub fn state(&self, now_ms: u64) -> BreakerState {
        match *self.state.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until_ms } if now_ms < until_ms => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_only() {
        let breaker = Breaker::new(3, 1000);
        assert_eq!(breaker.record(false, 0), None);
        assert_eq!(breaker.record(false, 0), None);
        assert_eq!(breaker.record(true, 0), None, "a success resets the count");
        assert_eq!(breaker.record(false, 0), None);
        assert_eq!(breaker.record(false, 0), None);
        assert!(breaker.allow(0));
        assert_eq!(breaker.record(false, 10), Some(Transition::Opened));
        assert_eq!(breaker.state(10), BreakerState::Open);
        assert!(!breaker.allow(500));
        assert!(!breaker.allow(1009));
    }

    #[test]
    fn one_trial_after_the_cooldown_decides() {
        let breaker = Breaker::new(1, 1000);
        assert_eq!(breaker.record(false, 0), Some(Transition::Opened));
        assert_eq!(breaker.state(1000), BreakerState::HalfOpen);
        assert!(breaker.allow(1000), "the trial");
        assert!(!breaker.allow(1001), "one trial at a time");
        assert_eq!(breaker.record(false, 1020), None);
        assert_eq!(breaker.state(1500), BreakerState::Open);
        assert!(!breaker.allow(2000));
        assert!(breaker.allow(2020), "the next trial");
        assert_eq!(breaker.record(true, 2030), Some(Transition::Closed));
        assert_eq!(breaker.state(2030), BreakerState::Closed);
        assert!(breaker.allow(2031));
    }

    #[test]
    fn a_lost_trial_is_replaced_after_a_cooldown() {
        let breaker = Breaker::new(1, 100);
        breaker.record(false, 0);
        assert!(breaker.allow(100));
        assert!(!breaker.allow(150));
        assert!(breaker.allow(200), "the first trial never reported");
    }
}
