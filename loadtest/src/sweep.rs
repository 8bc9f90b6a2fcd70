//! Sweep stopping rule: grow the rate (or concurrency) geometrically while every step meets the
//! p99 bound, then bisect between the best passing and the lowest failing value.

use crate::cli::SweepOver;

#[derive(Debug, Clone)]
pub struct SweepRule {
    pub over: SweepOver,
    pub start: f64,
    pub p99_bound_us: u64,
    pub max_error_rate: f64,
    pub growth: f64,
    pub precision: f64,
    pub max_steps: usize,
}

/// Open loop: a step whose completions fall this far short of the offered rate failed even if
/// its p99 looks fine (e.g. requests dropped as not sent).
const MIN_ACHIEVED_FRACTION: f64 = 0.95;
/// Closed loop: more concurrency that adds less than this much throughput only adds queueing.
const MIN_CONCURRENCY_GAIN: f64 = 0.03;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// The rate or concurrency this step ran at.
    pub value: f64,
    pub throughput: f64,
    pub p99_us: u64,
    pub error_rate: f64,
}

impl SweepRule {
    pub fn passes(&self, o: &StepOutcome) -> bool {
        let served = match self.over {
            SweepOver::Rate => o.throughput >= MIN_ACHIEVED_FRACTION * o.value,
            SweepOver::Concurrency => o.throughput > 0.0,
        };
        served && o.p99_us <= self.p99_bound_us && o.error_rate <= self.max_error_rate
    }

    /// The value to run next, or `None` when the sweep is done.
    pub fn next_value(&self, steps: &[StepOutcome]) -> Option<f64> {
        if steps.is_empty() {
            return Some(self.normalise(self.start));
        }
        if steps.len() >= self.max_steps {
            return None;
        }
        let passing: Vec<&StepOutcome> = steps.iter().filter(|o| self.passes(o)).collect();
        let lo = passing.iter().map(|o| o.value).reduce(f64::max);
        // Failures below the best pass are noise; the boundary lies above it.
        let hi = steps
            .iter()
            .filter(|o| !self.passes(o) && lo.is_none_or(|lo| o.value > lo))
            .map(|o| o.value)
            .reduce(f64::min);
        let next = match (lo, hi) {
            (Some(lo), None) => {
                if self.saturated(&passing, lo) {
                    return None;
                }
                self.normalise(lo * self.growth).max(lo + 1.0)
            }
            (None, Some(hi)) => self.normalise(hi / self.growth),
            (Some(lo), Some(hi)) => {
                if (hi - lo) / lo <= self.precision {
                    return None;
                }
                self.normalise((lo + hi) / 2.0)
            }
            (None, None) => unreachable!("a non-empty sweep has a passing or a failing step"),
        };
        let tried = steps.iter().any(|o| o.value == next);
        (next >= 1.0 && !tried).then_some(next)
    }

    /// Index of the passing step with the highest throughput.
    pub fn best(&self, steps: &[StepOutcome]) -> Option<usize> {
        steps
            .iter()
            .enumerate()
            .filter(|(_, o)| self.passes(o))
            .max_by(|a, b| {
                // On a tie the lower rate/concurrency wins: same work at less load.
                (a.1.throughput.total_cmp(&b.1.throughput)).then(b.1.value.total_cmp(&a.1.value))
            })
            .map(|(i, _)| i)
    }

    fn normalise(&self, v: f64) -> f64 {
        match self.over {
            SweepOver::Rate => v,
            SweepOver::Concurrency => v.floor().max(1.0),
        }
    }

    /// Closed loop only: the highest passing concurrency barely beat the best lower one.
    fn saturated(&self, passing: &[&StepOutcome], top: f64) -> bool {
        if self.over != SweepOver::Concurrency {
            return false;
        }
        let top_tput = passing
            .iter()
            .filter(|o| o.value == top)
            .map(|o| o.throughput)
            .fold(0.0, f64::max);
        let below = passing
            .iter()
            .filter(|o| o.value < top)
            .map(|o| o.throughput)
            .fold(f64::NAN, f64::max);
        below.is_finite() && top_tput < below * (1.0 + MIN_CONCURRENCY_GAIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(over: SweepOver) -> SweepRule {
        SweepRule {
            over,
            start: 1000.0,
            p99_bound_us: 10_000,
            max_error_rate: 0.0,
            growth: 2.0,
            precision: 0.05,
            max_steps: 30,
        }
    }

    /// A server that serves any rate up to `capacity` with p99 = 1 ms, and beyond it falls behind.
    fn rate_server(capacity: f64) -> impl Fn(f64) -> StepOutcome {
        move |rate| StepOutcome {
            value: rate,
            throughput: rate.min(capacity),
            p99_us: if rate <= capacity { 1000 } else { 500_000 },
            error_rate: 0.0,
        }
    }

    fn drive(r: &SweepRule, server: impl Fn(f64) -> StepOutcome) -> Vec<StepOutcome> {
        let mut steps = Vec::new();
        while let Some(v) = r.next_value(&steps) {
            steps.push(server(v));
        }
        steps
    }

    #[test]
    fn pass_requires_bound_errors_and_served_rate() {
        let r = rule(SweepOver::Rate);
        let ok = StepOutcome {
            value: 1000.0,
            throughput: 990.0,
            p99_us: 10_000,
            error_rate: 0.0,
        };
        assert!(r.passes(&ok));
        assert!(!r.passes(&StepOutcome {
            p99_us: 10_001,
            ..ok
        }));
        assert!(!r.passes(&StepOutcome {
            error_rate: 0.001,
            ..ok
        }));
        assert!(!r.passes(&StepOutcome {
            throughput: 900.0,
            ..ok
        }));
    }

    #[test]
    fn rate_sweep_grows_then_bisects_to_capacity() {
        let r = rule(SweepOver::Rate);
        let steps = drive(&r, rate_server(11_000.0));
        let values: Vec<f64> = steps.iter().map(|s| s.value).collect();
        assert_eq!(&values[..5], &[1000.0, 2000.0, 4000.0, 8000.0, 16000.0]);
        assert_eq!(values[5], 12000.0, "first bisection between 8k and 16k");
        let best = &steps[r.best(&steps).unwrap()];
        assert!(
            best.value <= 11_000.0 && best.value >= 11_000.0 / 1.05,
            "{values:?}"
        );
        assert!(steps.len() < r.max_steps);
    }

    #[test]
    fn rate_sweep_backs_off_when_the_first_step_fails() {
        let r = rule(SweepOver::Rate);
        let steps = drive(&r, rate_server(300.0));
        assert_eq!(steps[1].value, 500.0);
        assert_eq!(steps[2].value, 250.0);
        let best = &steps[r.best(&steps).unwrap()];
        assert!(best.value > 300.0 / 1.05 && best.value <= 300.0);
    }

    #[test]
    fn sweep_stops_at_max_steps_and_never_repeats() {
        let r = SweepRule {
            max_steps: 4,
            ..rule(SweepOver::Rate)
        };
        assert_eq!(drive(&r, rate_server(1e9)).len(), 4);
        let tiny = rule(SweepOver::Rate);
        // Nothing passes, even at 1/s: stops instead of going below one request per second.
        let steps = drive(&tiny, rate_server(0.0));
        assert!(steps.iter().all(|s| s.value >= 1.0));
        assert!(tiny.best(&steps).is_none());
    }

    #[test]
    fn concurrency_sweep_stops_when_throughput_saturates() {
        let r = SweepRule {
            start: 1.0,
            ..rule(SweepOver::Concurrency)
        };
        // Throughput grows linearly to 4 in flight, then stays flat; p99 grows with queueing.
        let server = |c: f64| StepOutcome {
            value: c,
            throughput: 1000.0 * c.min(4.0),
            p99_us: (1000.0 * (c / 4.0).max(1.0)) as u64,
            error_rate: 0.0,
        };
        let steps = drive(&r, server);
        let values: Vec<f64> = steps.iter().map(|s| s.value).collect();
        assert_eq!(values, vec![1.0, 2.0, 4.0, 8.0]);
        assert_eq!(steps[r.best(&steps).unwrap()].value, 4.0);
    }

    #[test]
    fn concurrency_bisection_is_integral() {
        let r = SweepRule {
            start: 1.0,
            ..rule(SweepOver::Concurrency)
        };
        // Linear throughput, but p99 breaks the bound above 11 in flight.
        let server = |c: f64| StepOutcome {
            value: c,
            throughput: 1000.0 * c,
            p99_us: if c <= 11.0 { 5000 } else { 20_000 },
            error_rate: 0.0,
        };
        let steps = drive(&r, server);
        assert!(steps.iter().all(|s| s.value.fract() == 0.0));
        assert_eq!(steps[r.best(&steps).unwrap()].value, 11.0);
    }
}
