//! Tick-duration statistics over a sliding window, for `/healthz`, logs and benchmarks.

use std::time::Duration;

/// The last `capacity` tick durations and the count of skipped ticks.
pub struct TickStats {
    window: Vec<Duration>,
    next: usize,
    filled: bool,
    pub overruns: u64,
    scratch: Vec<Duration>,
}

/// Percentiles of the current window.
#[derive(Debug, Clone, Copy, Default)]
pub struct TickSummary {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub samples: usize,
}

impl TickStats {
    pub fn new(capacity: usize) -> Self {
        Self {
            window: vec![Duration::ZERO; capacity.max(1)],
            next: 0,
            filled: false,
            overruns: 0,
            scratch: Vec::with_capacity(capacity.max(1)),
        }
    }

    pub fn record(&mut self, took: Duration) {
        self.window[self.next] = took;
        self.next += 1;
        if self.next == self.window.len() {
            self.next = 0;
            self.filled = true;
        }
    }

    /// Percentiles of the samples in the window (sorts a copy; call it rarely).
    pub fn summary(&self) -> TickSummary {
        let len = if self.filled {
            self.window.len()
        } else {
            self.next
        };
        if len == 0 {
            return TickSummary::default();
        }
        let mut sorted = self.scratch.clone();
        sorted.clear();
        sorted.extend_from_slice(&self.window[..len]);
        sorted.sort_unstable();
        let at = |q: f64| sorted[((len as f64 - 1.0) * q).round() as usize];
        TickSummary {
            p50: at(0.50),
            p99: at(0.99),
            max: sorted[len - 1],
            samples: len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_the_window() {
        let mut stats = TickStats::new(100);
        for ms in 1..=100 {
            stats.record(Duration::from_millis(ms));
        }
        let s = stats.summary();
        assert_eq!(s.samples, 100);
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(s.p50, Duration::from_millis(51));
        assert_eq!(s.p99, Duration::from_millis(99));
        // The window slides: old samples leave.
        for _ in 0..100 {
            stats.record(Duration::from_millis(1));
        }
        assert_eq!(stats.summary().max, Duration::from_millis(1));
    }
}
