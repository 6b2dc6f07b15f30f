//! Short in-memory records of what went wrong lately, for the operator console: the last
//! warnings and errors logged (process-wide, fed by a `tracing` layer) and the last
//! connections closed for reading too slowly (per server).

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;

/// How many records each journal keeps.
const KEPT: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Unix milliseconds.
    pub at: i64,
    pub level: &'static str,
    pub message: String,
}

/// A bounded list of recent records, newest last.
#[derive(Debug, Default)]
pub struct Journal {
    entries: Mutex<VecDeque<Entry>>,
}

impl Journal {
    pub fn record(&self, level: &'static str, message: String) {
        let mut entries = self.entries.lock();
        if entries.len() >= KEPT {
            entries.pop_front();
        }
        entries.push_back(Entry {
            at: chrono::Utc::now().timestamp_millis(),
            level,
            message,
        });
    }

    /// The records, newest first.
    pub fn recent(&self) -> Vec<Entry> {
        self.entries.lock().iter().rev().cloned().collect()
    }
}

/// Warnings and errors logged by this process.
pub fn logged() -> &'static Journal {
    static LOGGED: std::sync::OnceLock<Journal> = std::sync::OnceLock::new();
    LOGGED.get_or_init(Journal::default)
}

/// A `tracing` layer that copies warnings and errors into [`logged`].
pub struct JournalLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warn",
            _ => return,
        };
        let mut message = MessageText(String::new());
        event.record(&mut message);
        logged().record(
            level,
            format!("{}: {}", event.metadata().target(), message.0),
        );
    }
}

struct MessageText(String);

impl tracing::field::Visit for MessageText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn keeps_the_last_hundred_newest_first() {
        let journal = Journal::default();
        for n in 0..150 {
            journal.record("warn", format!("event {n}"));
        }
        let recent = journal.recent();
        assert_eq!(recent.len(), KEPT);
        assert_eq!(recent[0].message, "event 149");
        assert_eq!(recent[KEPT - 1].message, "event 50");
    }

    #[test]
    fn the_layer_keeps_warnings_and_errors_only() {
        let subscriber = tracing_subscriber::registry().with(JournalLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("journal-test: not kept");
            tracing::warn!(limit = 3, "journal-test: over the limit");
            tracing::error!("journal-test: broken");
        });
        let mine: Vec<_> = logged()
            .recent()
            .into_iter()
            .filter(|e| e.message.contains("journal-test"))
            .map(|e| (e.level, e.message))
            .collect();
        let target = module_path!();
        assert_eq!(
            mine,
            [
                ("error", format!("{target}: journal-test: broken")),
                (
                    "warn",
                    format!("{target}: journal-test: over the limit limit=3")
                ),
            ]
        );
    }
}
