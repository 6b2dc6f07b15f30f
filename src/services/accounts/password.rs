//! Password handling: one credential, whichever protocol it comes from.
//!
//! Protocols that send the password itself (store-lobby, GARP) hash it with SHA-256 first;
//! RaOS sends that SHA-256 as `password_hash`. Either way the server sees the lowercase hex
//! SHA-256 and stores argon2id of it (OWASP minimum: 19 MiB, t=2, p=1), so one password
//! works on every protocol. Argon2 is CPU-heavy by design: callers run it on the blocking
//! pool behind [`super::Accounts`]'s semaphore, never on the simulation thread.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

use crate::services::DomainError;

/// What a client sent to prove who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The password itself.
    Password(String),
    /// Lowercase or uppercase hex SHA-256 of the password.
    PasswordHash(String),
}

const MAX_PASSWORD_BYTES: usize = 1024;

impl Credential {
    /// Checks a new password against the policy: at least `min_chars` characters. A
    /// client that sends only the password's hash cannot be checked, and is not.
    pub fn meets_policy(&self, min_chars: usize) -> Result<(), DomainError> {
        match self {
            Credential::Password(pw) if pw.chars().count() < min_chars => {
                Err(DomainError::InvalidInput(format!(
                    "passwords need at least {min_chars} characters"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The canonical form that argon2 sees: lowercase hex SHA-256 of the password.
    pub fn prehash(&self) -> Result<String, DomainError> {
        match self {
            Credential::Password(pw) => {
                if pw.is_empty() || pw.len() > MAX_PASSWORD_BYTES {
                    return Err(DomainError::InvalidInput(format!(
                        "password must be 1 to {MAX_PASSWORD_BYTES} bytes"
                    )));
                }
                Ok(hex::encode(Sha256::digest(pw.as_bytes())))
            }
            Credential::PasswordHash(h) => {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(DomainError::InvalidInput(
                        "password_hash must be the 64-character hex SHA-256 of the password".into(),
                    ));
                }
                Ok(h.to_ascii_lowercase())
            }
        }
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Argon2id PHC string of a prehashed password. Blocking: call on the blocking pool.
pub fn hash(prehash: &str) -> Result<String, DomainError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| DomainError::Internal(format!("salt: {e}")))?;
    argon2()
        .hash_password(prehash.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DomainError::Internal(format!("argon2: {e}")))
}

/// Whether `prehash` matches the stored PHC string. Blocking: call on the blocking pool.
pub fn verify(prehash: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(prehash.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_and_its_hash_are_one_credential() {
        let raw = Credential::Password("hunter2".into()).prehash().unwrap();
        let upper = Credential::PasswordHash(raw.to_uppercase())
            .prehash()
            .unwrap();
        assert_eq!(raw, upper);
        let stored = hash(&raw).unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(&upper, &stored));
        let other = Credential::Password("hunter3".into()).prehash().unwrap();
        assert!(!verify(&other, &stored));
    }

    #[test]
    fn malformed_hashes_are_refused() {
        assert!(Credential::PasswordHash("abc".into()).prehash().is_err());
        assert!(Credential::PasswordHash("z".repeat(64)).prehash().is_err());
        assert!(Credential::Password(String::new()).prehash().is_err());
    }
}
