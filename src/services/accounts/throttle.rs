//! Login throttling, per account and per client address, in a fixed window.
//!
//! An attempt counts against both limits when it *starts*, before any hashing, so requests
//! sent all at once cannot slip past a limit that only finished attempts would have
//! reached; a successful attempt gives its count back. An account checks one password at a
//! time and an address `checks_per_ip` at a time, so a flood from one address queues behind
//! itself rather than in front of everyone else's logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Ip(IpAddr),
}

pub struct LoginThrottle {
    window: Duration,
    per_account: u32,
    per_ip: u32,
    checks_per_ip: usize,
    attempts: Mutex<HashMap<Key, (Instant, u32)>>,
    turns: Arc<Mutex<HashMap<Key, Arc<Semaphore>>>>,
}

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 100_000;

/// A login attempt under way: counted, and holding its turn to check a password. Dropped
/// without [`Attempt::succeeded`], it stays counted as a failure.
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    account: String,
    ip: Option<IpAddr>,
    _turns: Vec<Turn>,
}

impl Attempt<'_> {
    /// The password was right: the account's count is cleared and the address's attempt
    /// given back.
    pub fn succeeded(self) {
        let mut attempts = self.throttle.attempts.lock();
        attempts.remove(&Key::Account(self.account.clone()));
        if let Some(ip) = self.ip
            && let Some(entry) = attempts.get_mut(&Key::Ip(ip))
        {
            entry.1 = entry.1.saturating_sub(1);
        }
    }
}

impl Attempt<'_> {
    /// The password could not be checked at all (the database is down): the attempt is
    /// given back to the account and the address, as if it had not been made.
    pub fn not_made(self) {
        let mut attempts = self.throttle.attempts.lock();
        let keys = std::iter::once(Key::Account(self.account.clone())).chain(self.ip.map(Key::Ip));
        for key in keys {
            if let Some(entry) = attempts.get_mut(&key) {
                entry.1 = entry.1.saturating_sub(1);
            }
        }
    }
}

/// One of a key's turns; the key's entry goes when its last turn does.
struct Turn {
    key: Key,
    gate: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    turns: Arc<Mutex<HashMap<Key, Arc<Semaphore>>>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.permit.take();
        let mut turns = self.turns.lock();
        // Only the map and this turn hold the gate: nobody is waiting on it.
        if Arc::strong_count(&self.gate) == 2 {
            turns.remove(&self.key);
        }
    }
}

impl LoginThrottle {
    pub fn new(window: Duration, per_account: u32, per_ip: u32, checks_per_ip: usize) -> Self {
        Self {
            window,
            per_account,
            per_ip,
            checks_per_ip: checks_per_ip.max(1),
            attempts: Mutex::new(HashMap::new()),
            turns: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Counts an attempt on `account` from `ip` and waits for its turn to check the
    /// password; `Err(seconds to wait)` when either has had too many attempts.
    pub async fn begin(&self, account: &str, ip: Option<IpAddr>) -> Result<Attempt<'_>, u64> {
        self.count(account, ip)?;
        let mut turns = Vec::with_capacity(2);
        if let Some(ip) = ip {
            turns.push(self.turn(Key::Ip(ip), self.checks_per_ip).await);
        }
        turns.push(self.turn(Key::Account(account.to_owned()), 1).await);
        Ok(Attempt {
            throttle: self,
            account: account.to_owned(),
            ip,
            _turns: turns,
        })
    }

    fn count(&self, account: &str, ip: Option<IpAddr>) -> Result<(), u64> {
        let now = Instant::now();
        let mut attempts = self.attempts.lock();
        if attempts.len() >= SWEEP_AT {
            attempts.retain(|_, (start, _)| now.saturating_duration_since(*start) < self.window);
        }
        let keys: Vec<(Key, u32)> =
            std::iter::once((Key::Account(account.to_owned()), self.per_account))
                .chain(ip.map(|ip| (Key::Ip(ip), self.per_ip)))
                .collect();
        for (key, limit) in &keys {
            if let Some((start, count)) = attempts.get(key) {
                let age = now.saturating_duration_since(*start);
                if age < self.window && count >= limit {
                    return Err((self.window - age).as_secs().max(1));
                }
            }
        }
        for (key, _) in keys {
            let entry = attempts.entry(key).or_insert((now, 0));
            if now.saturating_duration_since(entry.0) >= self.window {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        Ok(())
    }

    async fn turn(&self, key: Key, at_once: usize) -> Turn {
        let gate = self
            .turns
            .lock()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(at_once)))
            .clone();
        // The gate is never closed, so acquiring only waits.
        let permit = gate.clone().acquire_owned().await.ok();
        Turn {
            key,
            gate,
            permit,
            turns: self.turns.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attempts_count_when_they_start_and_success_gives_them_back() {
        let t = LoginThrottle::new(Duration::from_secs(60), 2, 100, 4);
        let ip = Some("10.0.0.1".parse().unwrap());
        let first = t.begin("alice", ip).await.expect("first");
        drop(first); // failed
        let second = t.begin("alice", ip).await.expect("second");
        // Two attempts started: a third is refused even before the second finishes.
        assert!(t.count("alice", ip).is_err());
        second.succeeded();
        let third = t.begin("alice", ip).await.expect("cleared by the success");
        third.succeeded();
        assert!(t.begin("bob", ip).await.is_ok());
    }

    #[tokio::test]
    async fn address_limit_spans_accounts() {
        let t = LoginThrottle::new(Duration::from_secs(60), 100, 3, 4);
        let ip = Some("10.0.0.2".parse().unwrap());
        for name in ["a", "b", "c"] {
            drop(t.begin(name, ip).await.expect("under the limit"));
        }
        assert!(t.begin("d", ip).await.is_err());
        assert!(
            t.begin("d", Some("10.0.0.3".parse().unwrap()))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn one_check_per_account_at_a_time_and_turns_are_forgotten() {
        let t = LoginThrottle::new(Duration::from_secs(60), 10, 100, 4);
        let held = t.begin("carol", None).await.expect("first");
        let waiting = tokio::time::timeout(Duration::from_millis(50), t.begin("carol", None));
        assert!(waiting.await.is_err(), "a second check waits for the first");
        drop(held);
        assert!(t.turns.lock().is_empty(), "no gate is kept once unused");
    }
}
