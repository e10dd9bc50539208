//! The resource owner's browser session at the authorization server.
//!
//! One encrypted, authenticated cookie (AES-GCM via `PrivateCookieJar`) holding
//! the CSRF token of the forms and, once signed in, the subject. The `__Host-`
//! prefix pins it to this origin with `Secure` and `Path=/`; `HttpOnly` keeps it
//! from scripts; `SameSite=Lax` lets the top-level navigation from the client
//! carry it while cross-site form posts cannot.

use axum_extra::extract::PrivateCookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::domain::secrets::generate_secret;

pub const SESSION_COOKIE: &str = "__Host-tollgate-session";
/// How long a sign-in lasts.
pub const SESSION_TTL_SECS: i64 = 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// The synchronizer token every form must echo.
    pub csrf: String,
    pub subject: Option<String>,
    pub username: Option<String>,
    pub auth_time: Option<i64>,
}

impl Session {
    pub fn anonymous() -> Self {
        Self { csrf: generate_secret(), subject: None, username: None, auth_time: None }
    }

    /// A fresh session for a signed-in user. The CSRF token changes at sign-in.
    pub fn signed_in(subject: String, username: String, now: i64) -> Self {
        Self {
            csrf: generate_secret(),
            subject: Some(subject),
            username: Some(username),
            auth_time: Some(now),
        }
    }

    /// The signed-in subject and username, if the sign-in is still fresh at `now`.
    pub fn user(&self, now: i64) -> Option<(&str, &str)> {
        match (&self.subject, &self.username, self.auth_time) {
            (Some(subject), Some(username), Some(at)) if now - at < SESSION_TTL_SECS => {
                Some((subject, username))
            }
            _ => None,
        }
    }

    /// Whether a form's token is this session's, compared in constant time.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

pub fn load(jar: &PrivateCookieJar) -> Option<Session> {
    jar.get(SESSION_COOKIE).and_then(|c| serde_json::from_str(c.value()).ok())
}

pub fn store(jar: PrivateCookieJar, session: &Session) -> PrivateCookieJar {
    let value = serde_json::to_string(session).unwrap_or_default();
    let cookie = Cookie::build((SESSION_COOKIE, value))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .build();
    jar.add(cookie)
}
