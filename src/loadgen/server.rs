//! What the server says about itself on `/metrics`, read over plain HTTP: its memory (for
//! `idle`) and its tick histogram, so a run can report the tick in steady state rather
//! than over the ramp.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Options;
use super::report::ServerTicks;

/// The text of the server's `/metrics`.
pub async fn metrics(options: &Options) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(options.http).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: loadgen\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

/// The value of an unlabelled metric.
pub fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The tick histogram at one moment: cumulative counts by bucket bound, and overruns.
#[derive(Debug, Clone, PartialEq)]
pub struct TickHistogram {
    buckets: Vec<(f64, u64)>,
    overruns: u64,
}

impl TickHistogram {
    pub fn parse(text: &str) -> Option<Self> {
        let buckets: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("ecliptic_tick_duration_seconds_bucket{le=\""))
            .filter_map(|rest| {
                let (bound, count) = rest.split_once("\"} ")?;
                let bound = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse().ok()?
                };
                Some((bound, count.trim().parse().ok()?))
            })
            .collect();
        let overruns = value(text, "ecliptic_tick_overruns_total")? as u64;
        (!buckets.is_empty()).then_some(Self { buckets, overruns })
    }

    /// The ticks between `earlier` and this reading. Percentiles are the upper bound of
    /// the bucket they fall in (the histogram keeps no finer detail).
    pub fn since(&self, earlier: &Self, secs: f64) -> ServerTicks {
        let counts: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .zip(&earlier.buckets)
            .map(|((bound, now), (_, then))| (*bound, now.saturating_sub(*then)))
            .collect();
        let ticks = counts.last().map_or(0, |(_, n)| *n);
        let at_most = |q: f64| -> Option<f64> {
            let rank = (ticks as f64 * q).ceil().max(1.0) as u64;
            counts
                .iter()
                .find(|(_, n)| *n >= rank)
                .map(|(bound, _)| bound * 1000.0)
                .filter(|ms| ms.is_finite())
        };
        let over = |ms: f64| -> u64 {
            let within = counts
                .iter()
                .find(|(bound, _)| (bound * 1000.0 - ms).abs() < 1e-9)
                .map_or(0, |(_, n)| *n);
            ticks - within.min(ticks)
        };
        ServerTicks {
            measured_secs: (secs * 10.0).round() / 10.0,
            ticks,
            p50_ms_at_most: at_most(0.50),
            p99_ms_at_most: at_most(0.99),
            over_25ms: over(25.0),
            overruns: self.overruns.saturating_sub(earlier.overruns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(counts: [u64; 4], overruns: u64) -> String {
        format!(
            "ecliptic_tick_duration_seconds_bucket{{le=\"0.01\"}} {}\n\
             ecliptic_tick_duration_seconds_bucket{{le=\"0.025\"}} {}\n\
             ecliptic_tick_duration_seconds_bucket{{le=\"0.05\"}} {}\n\
             ecliptic_tick_duration_seconds_bucket{{le=\"+Inf\"}} {}\n\
             ecliptic_tick_overruns_total {overruns}\n",
            counts[0], counts[1], counts[2], counts[3]
        )
    }

    #[test]
    fn steady_state_ticks_come_from_the_difference_of_two_readings() {
        let before = TickHistogram::parse(&reading([50, 60, 60, 60], 1)).unwrap();
        // 100 more ticks: 90 within 10 ms, 8 within 25, 2 within 50.
        let after = TickHistogram::parse(&reading([140, 158, 160, 160], 3)).unwrap();
        let ticks = after.since(&before, 5.0);
        assert_eq!(ticks.ticks, 100);
        assert_eq!(ticks.p50_ms_at_most, Some(10.0));
        assert_eq!(ticks.p99_ms_at_most, Some(50.0));
        assert_eq!(ticks.over_25ms, 2);
        assert_eq!(ticks.overruns, 2);
        // No ticks in between: no percentiles.
        let none = after.since(&after, 1.0);
        assert_eq!((none.ticks, none.p99_ms_at_most), (0, None));
        assert!(TickHistogram::parse("nothing here").is_none());
    }
}
