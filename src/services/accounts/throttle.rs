//! Login throttling: failed attempts counted per account and per client address in a fixed
//! window. Over the limit, logins are refused before any password hashing is spent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Ip(IpAddr),
}

pub struct LoginThrottle {
    window: Duration,
    per_account: u32,
    per_ip: u32,
    failures: Mutex<HashMap<Key, (Instant, u32)>>,
}

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 100_000;

impl LoginThrottle {
    pub fn new(window: Duration, per_account: u32, per_ip: u32) -> Self {
        Self {
            window,
            per_account,
            per_ip,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when the account or the address has failed too often.
    pub fn check(&self, account: &str, ip: Option<IpAddr>) -> Result<(), u64> {
        let now = Instant::now();
        let failures = self.failures.lock();
        let over = |key: Key, limit: u32| -> Option<u64> {
            let (start, count) = failures.get(&key)?;
            let age = now.saturating_duration_since(*start);
            (age < self.window && *count >= limit).then(|| (self.window - age).as_secs().max(1))
        };
        if let Some(wait) = over(Key::Account(account.to_owned()), self.per_account) {
            return Err(wait);
        }
        if let Some(wait) = ip.and_then(|ip| over(Key::Ip(ip), self.per_ip)) {
            return Err(wait);
        }
        Ok(())
    }

    pub fn record_failure(&self, account: &str, ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= SWEEP_AT {
            failures.retain(|_, (start, _)| now.saturating_duration_since(*start) < self.window);
        }
        let keys = std::iter::once(Key::Account(account.to_owned())).chain(ip.map(Key::Ip));
        for key in keys {
            let entry = failures.entry(key).or_insert((now, 0));
            if now.saturating_duration_since(entry.0) >= self.window {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
    }

    /// A successful login clears the account's count (not the address's).
    pub fn record_success(&self, account: &str) {
        self.failures
            .lock()
            .remove(&Key::Account(account.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_limit_then_success_clears() {
        let t = LoginThrottle::new(Duration::from_secs(60), 2, 100);
        let ip = Some("10.0.0.1".parse().unwrap());
        assert!(t.check("alice", ip).is_ok());
        t.record_failure("alice", ip);
        t.record_failure("alice", ip);
        assert!(t.check("alice", ip).is_err());
        assert!(t.check("bob", ip).is_ok());
        t.record_success("alice");
        assert!(t.check("alice", ip).is_ok());
    }

    #[test]
    fn address_limit_spans_accounts() {
        let t = LoginThrottle::new(Duration::from_secs(60), 100, 3);
        let ip = Some("10.0.0.2".parse().unwrap());
        for name in ["a", "b", "c"] {
            t.record_failure(name, ip);
        }
        assert!(t.check("d", ip).is_err());
        assert!(t.check("d", Some("10.0.0.3".parse().unwrap())).is_ok());
    }
}
