//! The load generator's report: a table for people, JSON for scripts.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::{Options, RunStats};

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub clients_requested: usize,
    pub clients_connected: u64,
    pub duration_secs: f64,
    pub messages_in_per_sec: f64,
    pub messages_out_per_sec: f64,
    pub bytes_in_per_client_per_sec: f64,
    pub latency: Latency,
    pub errors: u64,
    /// The server's ticks from the moment every client was connected to the end (absent
    /// when not all of them connected, and for `idle`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_ticks: Option<ServerTicks>,
    /// The `idle` scenario's measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_memory: Option<IdleMemory>,
}

/// The server's tick in steady state, from two readings of its `/metrics` histogram.
#[derive(Debug, Clone, Serialize)]
pub struct ServerTicks {
    pub measured_secs: f64,
    pub ticks: u64,
    /// The upper bound of the histogram bucket holding the percentile (`null` if past
    /// the last bound, or without ticks).
    pub p50_ms_at_most: Option<f64>,
    pub p99_ms_at_most: Option<f64>,
    pub over_25ms: u64,
    pub overruns: u64,
}

/// Server memory around connecting the `idle` scenario's clients.
#[derive(Debug, Clone, Serialize)]
pub struct IdleMemory {
    pub server_rss_before_bytes: i64,
    pub server_rss_after_bytes: i64,
    pub bytes_per_connection: i64,
}

impl Report {
    pub fn from_stats(options: &Options, stats: &RunStats, took: Duration) -> Self {
        let secs = took.as_secs_f64().max(0.001);
        let connected = stats.connected.load(Ordering::Relaxed);
        let mut samples = stats.latencies_us.lock().clone();
        samples.sort_unstable();
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((samples.len() - 1) as f64 * q).round() as usize;
            samples[i] as f64 / 1000.0
        };
        Self {
            scenario: options.scenario.name().to_owned(),
            clients_requested: options.clients,
            clients_connected: connected,
            duration_secs: (secs * 100.0).round() / 100.0,
            messages_in_per_sec: (stats.messages_in.load(Ordering::Relaxed) as f64 / secs).round(),
            messages_out_per_sec: (stats.messages_out.load(Ordering::Relaxed) as f64 / secs)
                .round(),
            bytes_in_per_client_per_sec: (stats.bytes_in.load(Ordering::Relaxed) as f64
                / secs
                / connected.max(1) as f64)
                .round(),
            latency: Latency {
                samples: samples.len(),
                p50_ms: at(0.50),
                p99_ms: at(0.99),
                max_ms: samples.last().map_or(0.0, |v| *v as f64 / 1000.0),
            },
            errors: stats.errors.load(Ordering::Relaxed),
            server_ticks: None,
            idle_memory: None,
        }
    }

    pub fn table(&self) -> String {
        let rows = [
            ("scenario", self.scenario.clone()),
            (
                "clients connected",
                format!("{} of {}", self.clients_connected, self.clients_requested),
            ),
            ("duration", format!("{:.1} s", self.duration_secs)),
            ("messages in", format!("{:.0} /s", self.messages_in_per_sec)),
            (
                "messages out",
                format!("{:.0} /s", self.messages_out_per_sec),
            ),
            (
                "bytes in per client",
                format!("{:.0} B/s", self.bytes_in_per_client_per_sec),
            ),
            (
                "latency p50 / p99 / max",
                format!(
                    "{:.2} / {:.2} / {:.2} ms ({} samples)",
                    self.latency.p50_ms,
                    self.latency.p99_ms,
                    self.latency.max_ms,
                    self.latency.samples
                ),
            ),
            ("errors", self.errors.to_string()),
        ];
        let mut table: String = rows.iter().map(|(k, v)| format!("{k:<24} {v}\n")).collect();
        if let Some(t) = &self.server_ticks {
            let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v}"));
            table.push_str(&format!(
                "{:<24} p50 <= {} ms, p99 <= {} ms; {} of {} ticks over 25 ms, {} overruns \
                 (last {:.0} s, all clients connected)\n",
                "server tick",
                ms(t.p50_ms_at_most),
                ms(t.p99_ms_at_most),
                t.over_25ms,
                t.ticks,
                t.overruns,
                t.measured_secs
            ));
        }
        if let Some(m) = &self.idle_memory {
            table.push_str(&format!(
                "{:<24} {} -> {} bytes: {} bytes per idle connection\n",
                "server memory",
                m.server_rss_before_bytes,
                m.server_rss_after_bytes,
                m.bytes_per_connection
            ));
        }
        table
    }
}
