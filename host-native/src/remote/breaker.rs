//! [`Breaker`]: after repeated failures the remote is skipped for a cool-down, then
//! tried again by one probe; never switched off for good.
//!
//! Closed (failures counted) → three failures in a row → Open until `now + cooldown` →
//! the first operation after that is a probe → success: Closed, the cool-down back to
//! its base; failure: Open again for twice the cool-down (at most twelve times the
//! base). Only availability failures count (a refused connection, a timeout, a protocol
//! error); a missing or corrupt object is data, not an outage.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row that open the breaker.
pub(crate) const FAILURES_TO_OPEN: u32 = 3;
const MAX_COOLDOWN_FACTOR: u32 = 12;

/// Whether an operation may go to the remote now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Go ahead.
    Go,
    /// Go ahead: this operation is the probe after a cool-down.
    Probe,
    /// Skip the remote (a miss): it failed lately.
    Skip,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    base: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    failures_in_a_row: u32,
    open_until: Option<Instant>,
    cooldown: Duration,
    probing: bool,
    trips: u64,
}

/// What the breaker says about itself, for stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BreakerState {
    Closed,
    Open { remaining: Duration },
}

impl Breaker {
    pub(crate) fn new(cooldown: Duration) -> Breaker {
        Breaker {
            base: cooldown,
            state: Mutex::new(State {
                failures_in_a_row: 0,
                open_until: None,
                cooldown,
                probing: false,
                trips: 0,
            }),
        }
    }

    /// Whether an operation starting at `now` may use the remote.
    pub(crate) fn admit(&self, now: Instant) -> Admission {
        let mut state = crate::registry::lock(&self.state);
        match state.open_until {
            None => Admission::Go,
            Some(until) if now < until => Admission::Skip,
            Some(_) if state.probing => Admission::Skip,
            Some(_) => {
                state.probing = true;
                Admission::Probe
            }
        }
    }

    /// Records how an admitted operation went (`true`: the remote answered).
    pub(crate) fn record(&self, now: Instant, answered: bool) {
        let mut state = crate::registry::lock(&self.state);
        let was_probe = std::mem::take(&mut state.probing);
        if answered {
            state.failures_in_a_row = 0;
            state.open_until = None;
            state.cooldown = self.base;
            return;
        }
        state.failures_in_a_row += 1;
        if was_probe {
            state.cooldown = (state.cooldown * 2).min(self.base * MAX_COOLDOWN_FACTOR);
            state.open_until = Some(now + state.cooldown);
            state.trips += 1;
        } else if state.open_until.is_none() && state.failures_in_a_row >= FAILURES_TO_OPEN {
            state.open_until = Some(now + state.cooldown);
            state.trips += 1;
        }
    }

    /// Times the breaker opened.
    pub(crate) fn trips(&self) -> u64 {
        crate::registry::lock(&self.state).trips
    }

    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match crate::registry::lock(&self.state).open_until {
            Some(until) if now < until => BreakerState::Open {
                remaining: until - now,
            },
            _ => BreakerState::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_millis(100);

    #[test]
    fn opens_after_three_failures_and_probes_after_the_cooldown() {
        let breaker = Breaker::new(COOL);
        let t0 = Instant::now();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert_eq!(breaker.admit(t0), Admission::Go);
            breaker.record(t0, false);
        }
        assert_eq!(breaker.admit(t0), Admission::Go);
        breaker.record(t0, false);
        assert_eq!(breaker.trips(), 1);
        assert_eq!(breaker.admit(t0 + COOL / 2), Admission::Skip);
        // After the cool-down exactly one caller probes.
        let later = t0 + COOL;
        assert_eq!(breaker.admit(later), Admission::Probe);
        assert_eq!(breaker.admit(later), Admission::Skip);
        breaker.record(later, true);
        assert_eq!(breaker.admit(later), Admission::Go);
        assert_eq!(breaker.state(later), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown_up_to_a_bound() {
        let breaker = Breaker::new(COOL);
        let mut now = Instant::now();
        for _ in 0..FAILURES_TO_OPEN {
            breaker.admit(now);
            breaker.record(now, false);
        }
        let mut expected = COOL;
        for _ in 0..6 {
            now += expected;
            assert_eq!(breaker.admit(now), Admission::Probe);
            breaker.record(now, false);
            expected = (expected * 2).min(COOL * MAX_COOLDOWN_FACTOR);
            assert_eq!(
                breaker.state(now),
                BreakerState::Open {
                    remaining: expected
                }
            );
            assert_eq!(breaker.admit(now + expected / 2), Admission::Skip);
        }
        assert_eq!(expected, COOL * MAX_COOLDOWN_FACTOR);
        // A success resets it: the next opening waits the base cool-down again.
        now += expected;
        assert_eq!(breaker.admit(now), Admission::Probe);
        breaker.record(now, true);
        for _ in 0..FAILURES_TO_OPEN {
            breaker.admit(now);
            breaker.record(now, false);
        }
        assert_eq!(breaker.state(now), BreakerState::Open { remaining: COOL });
        assert_eq!(breaker.trips(), 8);
    }

    #[test]
    fn a_success_between_failures_keeps_it_closed() {
        let breaker = Breaker::new(COOL);
        let now = Instant::now();
        for round in 0..10 {
            breaker.admit(now);
            breaker.record(now, round % 3 == 2);
        }
        assert_eq!(breaker.state(now), BreakerState::Closed);
        assert_eq!(breaker.trips(), 0);
    }
}
