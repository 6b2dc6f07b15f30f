//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! One registry per server (not the global default) so several servers can run in one
//! process, as the integration tests do. Protocol labels are the module names:
//! `game`, `comms`, `garp`, `raos`, `rest`, `dev`, `lobby`.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The protocol labels (see the module's doc).
pub const PROTOCOLS: [&str; 7] = ["game", "comms", "garp", "raos", "rest", "dev", "lobby"];

pub struct Metrics {
    registry: Registry,
    /// Wall time of one `FixedMain` run.
    pub tick_seconds: Histogram,
    /// Ticks the loop could not run in time and skipped.
    pub tick_overruns: IntCounter,
    /// The tick counter, for a quick look at liveness.
    pub tick: IntGauge,
    pub connections: IntGaugeVec,
    /// Commands waiting for the simulation.
    pub inbox_depth: IntGauge,
    /// Commands refused because the inbox was full.
    pub inbox_rejected: IntCounter,
    pub messages_in: IntCounterVec,
    pub messages_out: IntCounterVec,
    pub bytes_in: IntCounterVec,
    pub bytes_out: IntCounterVec,
    /// Connections refused at accept because their address holds too many already.
    pub connections_refused: IntCounterVec,
    /// Operations waiting for the store's writer thread.
    pub store_queue_depth: IntGauge,
    /// Transactions the writer committed, and how many operations they carried.
    pub store_commits: IntCounter,
    pub store_ops: IntCounter,
    /// Direct messages dropped from full offline mailboxes.
    pub mailbox_dropped: IntCounter,
    /// Tick duration percentiles over the last 4096 ticks, refreshed every second.
    pub tick_p50: Gauge,
    pub tick_p99: Gauge,
    pub tick_max: Gauge,
    /// Connections closed because they could not keep up with what they had to receive.
    pub slow_consumers: IntCounterVec,
    /// Game deltas a client's full queue could not take (it gets a snapshot later).
    pub deltas_dropped: IntCounter,
    /// Logins by outcome: `ok`, `failed`, `throttled`, `disabled`.
    pub logins: IntCounterVec,
    /// Accounts registered.
    pub registrations: IntCounter,
    /// Builds published, and their bytes.
    pub uploads: IntCounter,
    pub upload_bytes: IntCounter,
    /// Builds downloads begun (lobby `DOWNLOAD_BEGIN` and `/downloads/...`).
    pub downloads: IntCounter,
    /// GARP wagers placed, and the coins they moved into pots.
    pub wagers: IntCounter,
    pub coins_wagered: IntCounter,
    /// Players online by protocol (`game`: joined a world; `comms`, `lobby`: connected
    /// users), refreshed every second by the simulation.
    pub players_online: IntGaugeVec,
    /// Running worlds (systems, rooms, sessions) and lobby rooms.
    pub instances: IntGauge,
    pub rooms: IntGauge,
    /// Wall time of each part of the tick (`TickSet`), per tick.
    pub tick_set_seconds: prometheus::HistogramVec,
    /// Scripts stopped, by kind (`mod`, `room`) and reason (`budget`, `memory`, `error`).
    pub script_stops: IntCounterVec,
    /// Scripts running, by kind.
    pub scripts_running: IntGaugeVec,
    /// Time spent in scripts per tick, by kind.
    pub script_seconds: prometheus::HistogramVec,
    /// Always 1, labelled with the version: which build is running.
    pub build_info: IntGaugeVec,
    /// CPU, memory and file descriptors of this process (Linux).
    process: prometheus::process_collector::ProcessCollector,
    /// The last connections closed for reading too slowly, for the operator console.
    pub slow_consumer_log: crate::journal::Journal,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("ecliptic".into()), None)
            .expect("static registry prefix is valid");
        let tick_seconds = Histogram::with_opts(
            HistogramOpts::new("tick_duration_seconds", "Wall time of one simulation tick")
                // Fine around the 20-30 Hz budgets (33-50 ms), where "is p99 under 25 ms?"
                // gets asked.
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02,
                    0.025, 0.03, 0.04, 0.05, 0.1, 0.25,
                ]),
        )
        .expect("histogram options are valid");
        let per_protocol = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["protocol"])
                .expect("counter options are valid")
        };
        let metrics = Self {
            tick_seconds,
            tick_overruns: counter("tick_overruns_total", "Ticks skipped to catch up"),
            tick: int_gauge("tick", "Current simulation tick"),
            connections: int_gauges("connections", "Open connections by protocol", &["protocol"]),
            inbox_depth: int_gauge("inbox_depth", "Commands waiting for the simulation"),
            inbox_rejected: counter(
                "inbox_rejected_total",
                "Commands refused because the inbox was full",
            ),
            messages_in: per_protocol("messages_in_total", "Messages received"),
            messages_out: per_protocol("messages_out_total", "Messages sent"),
            bytes_in: per_protocol("bytes_in_total", "Bytes received"),
            bytes_out: per_protocol("bytes_out_total", "Bytes sent"),
            connections_refused: per_protocol(
                "connections_refused_total",
                "Connections refused by the per-address limit",
            ),
            store_queue_depth: int_gauge(
                "store_queue_depth",
                "Operations waiting for the store writer",
            ),
            store_commits: counter("store_commits_total", "Store transactions committed"),
            store_ops: counter("store_ops_total", "Store operations committed"),
            tick_p50: gauge("tick_p50_seconds", "Median tick duration, recent ticks"),
            tick_p99: gauge(
                "tick_p99_seconds",
                "99th percentile tick duration, recent ticks",
            ),
            tick_max: gauge("tick_max_seconds", "Longest tick, recent ticks"),
            slow_consumers: per_protocol(
                "slow_consumer_disconnects_total",
                "Connections closed because their outbound queue filled",
            ),
            deltas_dropped: counter(
                "deltas_dropped_total",
                "Game deltas dropped for clients whose queue was full",
            ),
            mailbox_dropped: counter(
                "mailbox_dropped_total",
                "Direct messages dropped from full offline mailboxes",
            ),
            logins: counters("logins_total", "Logins by outcome", &["outcome"]),
            registrations: counter("registrations_total", "Accounts registered"),
            uploads: counter("uploads_published_total", "Builds published"),
            upload_bytes: counter(
                "upload_published_bytes_total",
                "Bytes of the builds published",
            ),
            downloads: counter("downloads_total", "Build downloads begun"),
            wagers: counter("wagers_total", "GARP wagers placed"),
            coins_wagered: counter("coins_wagered_total", "Coins moved into wager pots"),
            players_online: int_gauges(
                "players_online",
                "Players online by protocol",
                &["protocol"],
            ),
            instances: int_gauge("instances", "Running worlds: systems, rooms, sessions"),
            rooms: int_gauge("lobby_rooms", "Open lobby rooms"),
            tick_set_seconds: short_histograms(
                "tick_set_duration_seconds",
                "Wall time of each part of the tick (TickSet)",
                &["set"],
            ),
            script_stops: counters(
                "script_stops_total",
                "Scripts stopped, by kind and reason",
                &["kind", "reason"],
            ),
            scripts_running: int_gauges("scripts_running", "Scripts running, by kind", &["kind"]),
            script_seconds: short_histograms(
                "script_tick_seconds",
                "Time spent in scripts in one tick, by kind",
                &["kind"],
            ),
            build_info: int_gauges("build_info", "The running build (always 1)", &["version"]),
            process: prometheus::process_collector::ProcessCollector::for_self(),
            slow_consumer_log: Default::default(),
            registry,
        };
        metrics.register_all();
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics.show_at_zero();
        metrics
    }

    /// Series shown before anyone has used them, so dashboards have a line at zero.
    fn show_at_zero(&self) {
        for protocol in ["game", "comms", "lobby"] {
            self.players_online.with_label_values(&[protocol]).set(0);
        }
        for protocol in PROTOCOLS {
            self.connections.with_label_values(&[protocol]);
            for counter in [
                &self.messages_in,
                &self.messages_out,
                &self.bytes_in,
                &self.bytes_out,
                &self.connections_refused,
                &self.slow_consumers,
            ] {
                counter.with_label_values(&[protocol]);
            }
        }
        for outcome in ["ok", "failed", "throttled", "disabled"] {
            self.logins.with_label_values(&[outcome]);
        }
    }

    fn register_all(&self) {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.tick_seconds.clone()),
            Box::new(self.tick_overruns.clone()),
            Box::new(self.tick.clone()),
            Box::new(self.connections.clone()),
            Box::new(self.inbox_depth.clone()),
            Box::new(self.inbox_rejected.clone()),
            Box::new(self.messages_in.clone()),
            Box::new(self.messages_out.clone()),
            Box::new(self.bytes_in.clone()),
            Box::new(self.bytes_out.clone()),
            Box::new(self.connections_refused.clone()),
            Box::new(self.store_queue_depth.clone()),
            Box::new(self.store_commits.clone()),
            Box::new(self.store_ops.clone()),
            Box::new(self.mailbox_dropped.clone()),
            Box::new(self.tick_p50.clone()),
            Box::new(self.tick_p99.clone()),
            Box::new(self.tick_max.clone()),
            Box::new(self.slow_consumers.clone()),
            Box::new(self.deltas_dropped.clone()),
            Box::new(self.logins.clone()),
            Box::new(self.registrations.clone()),
            Box::new(self.uploads.clone()),
            Box::new(self.upload_bytes.clone()),
            Box::new(self.downloads.clone()),
            Box::new(self.wagers.clone()),
            Box::new(self.coins_wagered.clone()),
            Box::new(self.players_online.clone()),
            Box::new(self.instances.clone()),
            Box::new(self.rooms.clone()),
            Box::new(self.tick_set_seconds.clone()),
            Box::new(self.build_info.clone()),
            Box::new(self.script_stops.clone()),
            Box::new(self.scripts_running.clone()),
            Box::new(self.script_seconds.clone()),
        ];
        for collector in collectors {
            self.registry
                .register(collector)
                .expect("each metric is registered once");
        }
        // Another collector of the same process for the registry; `self.process` stays
        // for the console's memory figure.
        let process = prometheus::process_collector::ProcessCollector::for_self();
        self.registry
            .register(Box::new(process))
            .expect("the process collector is registered once");
    }

    /// Counts one received message of `bytes` on `protocol`.
    pub fn received(&self, protocol: &str, bytes: usize) {
        self.messages_in.with_label_values(&[protocol]).inc();
        self.bytes_in
            .with_label_values(&[protocol])
            .inc_by(bytes as u64);
    }

    /// Counts one sent message of `bytes` on `protocol`.
    pub fn sent(&self, protocol: &str, bytes: usize) {
        self.messages_out.with_label_values(&[protocol]).inc();
        self.bytes_out
            .with_label_values(&[protocol])
            .inc_by(bytes as u64);
    }

    /// Open connections by protocol.
    pub fn connections_by_protocol(&self) -> std::collections::BTreeMap<String, i64> {
        use prometheus::core::Collector as _;
        let mut by_protocol = std::collections::BTreeMap::new();
        for family in self.connections.collect() {
            for metric in family.get_metric() {
                if let Some(label) = metric.get_label().first() {
                    by_protocol.insert(
                        label.value().to_owned(),
                        metric.get_gauge().get_value() as i64,
                    );
                }
            }
        }
        by_protocol
    }

    /// The process's resident memory now, where it can be read (Linux).
    pub fn resident_bytes(&self) -> Option<i64> {
        use prometheus::core::Collector as _;
        self.process
            .collect()
            .iter()
            .find(|family| family.name() == "process_resident_memory_bytes")
            .and_then(|family| family.get_metric().first())
            .map(|metric| metric.get_gauge().get_value() as i64)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!("metrics encoding failed: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("counter options are valid")
}

fn int_gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("gauge options are valid")
}

fn gauge(name: &str, help: &str) -> Gauge {
    Gauge::new(name, help).expect("gauge options are valid")
}

fn counters(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("counter options are valid")
}

fn int_gauges(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("gauge options are valid")
}

/// A histogram of short durations (10 µs to 25 ms): parts of a tick.
fn short_histograms(name: &str, help: &str, labels: &[&str]) -> prometheus::HistogramVec {
    let buckets = vec![
        0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    ];
    prometheus::HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("histogram options are valid")
}
