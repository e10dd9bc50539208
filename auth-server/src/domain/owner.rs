//! The resource owner's sign-in, on every page that takes a password: the
//! authorization, device and account pages.

use tollgate_telemetry::audit::{self, Event, Subject};
use tollgate_token::OAuthError;

use super::model::User;
use super::{OAuthCore, secrets, storage_failure};
use crate::storage::UserStore;

/// The most of a typed username that reaches the audit log (characters).
pub const MAX_LOGGED_USERNAME: usize = 64;

/// `typed`, cut at [`MAX_LOGGED_USERNAME`] characters.
fn logged_name(typed: &str) -> &str {
    typed.char_indices().nth(MAX_LOGGED_USERNAME).map_or(typed, |(end, _)| &typed[..end])
}

impl<S: UserStore> OAuthCore<S> {
    /// Checks a resource owner's credentials, and records the attempt in the
    /// audit trail. Unknown user and wrong password take the same time (a hash is
    /// verified either way) and give the same answer.
    pub async fn authenticate_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<User>, OAuthError> {
        let user = self.store.user_by_username(username).await.map_err(storage_failure)?;
        let (password, phc) =
            (password.to_owned(), user.as_ref().map(|u| u.password_hash.expose().clone()));
        let ok = self
            .hashing
            .run(move || secrets::verify_password_blocking(&password, phc.as_deref()))
            .await
            .map_err(|_| {
                tracing::warn!("password check refused: too many at once");
                OAuthError::TemporarilyUnavailable(
                    "too many sign-ins at once; try again in a moment".into(),
                )
            })?;
        let user = user.filter(|_| ok);
        match &user {
            Some(user) => audit::record(
                Event::LoginSucceeded,
                Subject { subject: Some(&user.subject), ..Subject::default() },
            ),
            // The name typed, not the password: operators see guessing. Cut to
            // a bound: the caller chose it, and it must not grow the log.
            None => audit::record(
                Event::LoginFailed,
                Subject {
                    username: Some(logged_name(username)),
                    reason: Some("bad_credentials"),
                    ..Subject::default()
                },
            ),
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::domain::grants::testing::{Fixture, PASSWORD, SUBJECT};
    use crate::domain::hashing::HashLimits;

    #[test]
    fn a_typed_username_is_logged_only_up_to_the_bound() {
        assert_eq!(super::logged_name("alice"), "alice");
        let long = "é".repeat(10_000);
        assert_eq!(super::logged_name(&long).chars().count(), super::MAX_LOGGED_USERNAME);
    }

    #[tokio::test]
    async fn the_right_password_signs_in_and_a_wrong_one_does_not() {
        let fx = Fixture::new().await;
        let user = fx.core.authenticate_user("alice", PASSWORD).await.expect("checked");
        assert_eq!(user.map(|u| u.subject).as_deref(), Some(SUBJECT));
        assert_eq!(fx.core.authenticate_user("alice", "wrong").await.expect("checked"), None);
        assert_eq!(fx.core.authenticate_user("nobody", PASSWORD).await.expect("checked"), None);
    }

    #[tokio::test]
    async fn a_sign_in_past_the_hashing_bound_is_temporarily_unavailable() {
        let limits = HashLimits { concurrency: 1, queue: 0, wait: Duration::ZERO };
        let fx = Fixture::with_hash_limits(limits).await;
        // Another sign-in holds the one hashing slot (it has started hashing).
        let (started, hashing) = tokio::sync::oneshot::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = tokio::spawn({
            let gate = fx.core.hashing.clone();
            async move {
                gate.run(move || {
                    let _ = started.send(());
                    released.recv()
                })
                .await
            }
        });
        hashing.await.expect("the holder hashes");
        let refused = fx.core.authenticate_user("alice", PASSWORD).await.expect_err("refused");
        assert_eq!(
            (refused.code(), refused.description()),
            ("temporarily_unavailable", "too many sign-ins at once; try again in a moment")
        );
        release.send(()).expect("released");
        holder.await.expect("joined").expect("ran").expect("received");
        let user = fx.core.authenticate_user("alice", PASSWORD).await.expect("admitted again");
        assert!(user.is_some());
    }
}
