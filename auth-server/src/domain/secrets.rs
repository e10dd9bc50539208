//! Generating, hashing and comparing secrets.
//!
//! Two kinds of secret, two kinds of hash:
//! - **Generated** values (client secrets, refresh tokens, authorization codes)
//!   carry 256 bits of entropy. Guessing one from its hash is as hard as guessing
//!   it outright, so a fast hash (SHA-256) is the right tool: a slow hash would
//!   only slow down every token request.
//! - **Passwords** are chosen by people and have little entropy, so they get
//!   argon2id, which makes each guess expensive. It is CPU-heavy, so it runs on
//!   the blocking pool, never on the async threads.
//!
//! Every comparison of a presented secret with a stored hash is constant-time.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh 256-bit random value, base64url-encoded (43 characters).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 (hex) of a generated secret: what is stored instead of it.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Whether `presented` hashes to `stored_hash`, compared in constant time.
pub fn verify_secret(presented: &str, stored_hash: &str) -> bool {
    hash_secret(presented).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// argon2id's cost: 7 MiB, 5 passes, 1 lane. OWASP's Password Storage Cheat
/// Sheet lists five settings that "provide an equal level of defense" and
/// differ only in trading memory for passes, from 46 MiB × 1 through the
/// common 19 MiB × 2 to 7 MiB × 5. We take the last: a check takes about
/// 13 ms of a core here and a third of the memory of 19 MiB × 2, which keeps
/// the authorization server near its 25 MB budget while it checks a password
/// (docs/performance.md). Hashes made with other settings still verify (the
/// PHC string carries its own) and are replaced at the next successful
/// sign-in ([`verify_password_upgrading`]), or at start-up for the users of a
/// bootstrap file.
const MEMORY_KIB: u32 = 7 * 1024;
const PASSES: u32 = 5;
const LANES: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Whether a PHC hash parses and was made with [`argon2`]'s settings.
pub fn is_current(phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let is = |name: &str, value: u32| parsed.params.get_decimal(name) == Some(value);
    parsed.algorithm.as_str() == "argon2id"
        && parsed.version == Some(Version::V0x13 as u32)
        && is("m", MEMORY_KIB)
        && is("t", PASSES)
        && is("p", LANES)
}

/// A PHC hash of `password` with the current settings and a fresh salt, on
/// the calling thread.
fn hash_blocking(password: &[u8]) -> argon2::password_hash::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2().hash_password(password, &salt).map(|h| h.to_string())
}

/// Hashes a password with argon2id, on the blocking pool.
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        hash_blocking(password.as_bytes()).map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    })
    .await?
}

/// Verifies a password against a PHC string, on the blocking pool. `None` as the
/// hash (an unknown user) still spends the time of a real check, so the answer
/// time does not reveal whether the user exists.
pub async fn verify_password(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || verify_password_blocking(&password, phc.as_deref()))
        .await
        .unwrap_or(false)
}

/// [`verify_password`] on the calling thread: for a caller that runs it on the
/// blocking pool itself, behind the sign-in pages' [`super::hashing::HashGate`].
pub fn verify_password_blocking(password: &str, phc: Option<&str>) -> bool {
    let phc = phc.unwrap_or_else(|| dummy_hash());
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    argon2().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// A password check that also renews an outdated hash.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    Wrong,
    Right,
    /// Right, and the stored hash was made with older settings: this is the
    /// same password hashed with the current ones, to store in its place.
    RightRehashed(String),
}

/// [`verify_password_blocking`], and when the password is right but its hash
/// outdated, a new hash of it (a second hash's time, once per user). Only a
/// sign-in can renew a hash: the password itself is never kept.
pub fn verify_password_upgrading(password: &str, phc: Option<&str>) -> PasswordCheck {
    if !verify_password_blocking(password, phc) {
        return PasswordCheck::Wrong;
    }
    if phc.is_none_or(is_current) {
        return PasswordCheck::Right;
    }
    match hash_blocking(password.as_bytes()) {
        Ok(hash) => PasswordCheck::RightRehashed(hash),
        Err(_) => PasswordCheck::Right,
    }
}

/// Whether a string is an argon2 PHC hash we can verify against.
pub fn is_password_hash(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking(generate_secret().as_bytes()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_256_bits_and_distinct() {
        let a = generate_secret();
        assert_eq!(a.len(), 43);
        assert_ne!(a, generate_secret());
    }

    #[test]
    fn secret_hash_verifies_only_the_same_secret() {
        let secret = generate_secret();
        let hash = hash_secret(&secret);
        assert_eq!(hash.len(), 64);
        assert!(verify_secret(&secret, &hash));
        assert!(!verify_secret(&generate_secret(), &hash));
        assert!(!verify_secret(&secret, ""));
    }

    #[tokio::test]
    async fn passwords_verify_with_argon2id() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(is_password_hash(&hash));
        assert!(verify_password("correct horse".into(), Some(hash.clone())).await);
        assert!(!verify_password("wrong".into(), Some(hash)).await);
        assert!(!verify_password("anything".into(), None).await);
    }

    #[tokio::test]
    async fn new_hashes_use_the_current_settings_and_outdated_ones_are_renewed() {
        let current = hash_password("correct horse".into()).await.unwrap();
        assert!(current.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{current}");
        assert_eq!(
            verify_password_upgrading("correct horse", Some(&current)),
            PasswordCheck::Right
        );
        assert_eq!(verify_password_upgrading("wrong", Some(&current)), PasswordCheck::Wrong);

        // The settings of earlier releases (19 MiB, 2 passes): still verified,
        // and renewed only when the password given is right.
        use crate::domain::grants::testing::{PASSWORD, PASSWORD_HASH};
        assert!(PASSWORD_HASH.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(verify_password_upgrading("wrong", Some(PASSWORD_HASH)), PasswordCheck::Wrong);
        let PasswordCheck::RightRehashed(renewed) =
            verify_password_upgrading(PASSWORD, Some(PASSWORD_HASH))
        else {
            panic!("an outdated hash of the right password is renewed");
        };
        assert!(renewed.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{renewed}");
        assert!(is_current(&renewed) && !is_current(PASSWORD_HASH) && !is_current("not a hash"));
        assert!(verify_password_blocking(PASSWORD, Some(&renewed)));
        assert!(!verify_password_blocking("wrong", Some(&renewed)));
        // An unknown user (no hash) is never "renewed".
        assert_eq!(verify_password_upgrading(PASSWORD, None), PasswordCheck::Wrong);
    }
}
