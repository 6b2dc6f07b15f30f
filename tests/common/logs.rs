//! Every server the suite runs is checked for secrets in its logs: the passwords the
//! harness registers accounts with and the tokens it is given back must never appear in a
//! log line, at any level. In-process servers log through a subscriber installed here;
//! child processes log JSON to a pipe read here. A server's checks run when it is
//! dropped.

use std::sync::{Mutex, OnceLock};

use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Passwords (of 6 characters or more: shorter ones are ordinary words) and tokens.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Log lines of in-process servers, kept only when they show a secret.
static LEAKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn remember_secret(secret: &str) {
    if secret.len() >= 6 {
        SECRETS.lock().expect("secrets").push(secret.to_owned());
    }
}

/// The secrets `line` shows, if any.
pub fn secrets_in(line: &str) -> Vec<String> {
    SECRETS
        .lock()
        .expect("secrets")
        .iter()
        .filter(|s| line.contains(s.as_str()))
        .cloned()
        .collect()
}

/// Installs the checking subscriber once per test binary: every event, at every level,
/// formatted with its fields and checked against the secrets known so far.
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // The server's own events (and its HTTP request spans) at debug; other crates' from
        // info up (their trace events fire per frame, and carry nothing of ours).
        let levels = tracing_subscriber::filter::Targets::new()
            .with_target("ecliptic", tracing::Level::DEBUG)
            .with_target("tower_http", tracing::Level::DEBUG)
            .with_default(tracing::Level::INFO);
        let subscriber = tracing_subscriber::registry().with(SecretCheck.with_filter(levels));
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Fails the calling test if any line logged so far showed a secret.
pub fn assert_no_leaks() {
    let leaks = LEAKS.lock().expect("leaks").clone();
    assert!(leaks.is_empty(), "secrets in log lines: {leaks:#?}");
}

/// Records a child process's log line if it shows a secret.
pub fn check_line(line: &str) {
    if !secrets_in(line).is_empty() {
        LEAKS.lock().expect("leaks").push(line.to_owned());
    }
}

struct SecretCheck;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SecretCheck {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut line = Fields(format!("span {}:", attrs.metadata().name()));
        attrs.record(&mut line);
        check_line(&line.0);
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut line = Fields(format!(
            "{} {}:",
            event.metadata().level(),
            event.metadata().target()
        ));
        event.record(&mut line);
        check_line(&line.0);
    }
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {}={value:?}", field.name());
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {}={value}", field.name());
    }
}
