//! The resource owner's sign-in, on every page that takes a password: the
//! authorization, device and account pages.

use tollgate_telemetry::audit::{self, Event, Subject};
use tollgate_token::OAuthError;

use super::model::User;
use super::{OAuthCore, clipped, secrets, storage_failure};
use crate::storage::UserStore;

impl<S: UserStore> OAuthCore<S> {
    /// Checks a resource owner's credentials, typed at an address whose
    /// throttle key is `from` ([`super::throttle::address_key`]), and records the
    /// attempt in the audit trail. Unknown user and wrong password take the same
    /// time (a hash is verified either way) and give the same answer.
    pub async fn authenticate_user(
        &self,
        username: &str,
        password: &str,
        from: &str,
    ) -> Result<Option<User>, OAuthError> {
        self.throttle_sign_in(username, from)?;
        let user = self.store.user_by_username(username).await.map_err(storage_failure)?;
        let (password, phc) =
            (password.to_owned(), user.as_ref().map(|u| u.password_hash.expose().clone()));
        let check = self
            .hashing
            .run(move || secrets::verify_password_upgrading(&password, phc.as_deref()))
            .await
            .map_err(|_| {
                tracing::warn!("password check refused: too many at once");
                OAuthError::TemporarilyUnavailable(
                    "too many sign-ins at once; try again in a moment".into(),
                )
            })?;
        let ok = check != secrets::PasswordCheck::Wrong;
        if let (secrets::PasswordCheck::RightRehashed(new), Some(user)) = (check, &user) {
            // Only if it is still the hash just checked: a password changed
            // meanwhile (`admin add-user`, the bootstrap file) is not undone.
            let old = user.password_hash.expose();
            match self.store.replace_password_hash(&user.subject, old, &new).await {
                Ok(replaced) => tracing::info!(replaced, "outdated password hash renewed"),
                Err(err) => tracing::warn!(error = %err, "renewing a password hash failed"),
            }
        }
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
                    username: Some(clipped(username)),
                    reason: Some("bad_credentials"),
                    ..Subject::default()
                },
            ),
        }
        Ok(user)
    }
}

impl<S> OAuthCore<S> {
    /// The sign-in throttles, before any lookup or hash: a throttled guess costs
    /// nothing, and is answered the same whether the name exists or not (the
    /// buckets are keyed by the name typed). Three buckets: the address (any
    /// name), the name from this address, the name from anywhere. The second
    /// refills more slowly than the third and is checked first, so one address
    /// cannot keep an account locked: what it may spend is less than what the
    /// account gets back (see [`super::throttle::ThrottleSettings::check`]).
    fn throttle_sign_in(&self, username: &str, from: &str) -> Result<(), OAuthError> {
        let name = clipped(username);
        let throttles = self.throttles();
        throttles.sign_in_ip.check(from)?;
        throttles.sign_in_account_ip.check(&format!("{from}\n{name}"))?;
        throttles.sign_in_account.check(name)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tollgate_token::OAuthError;

    use crate::domain::grants::testing::{Fixture, PASSWORD, SUBJECT};
    use crate::domain::hashing::HashLimits;
    use crate::domain::throttle::ThrottleSettings;

    /// The address key of the sign-ins that are not about addresses.
    const HERE: &str = "192.0.2.1";

    fn refused_for(retry_after_secs: u64) -> OAuthError {
        OAuthError::TooManyRequests { retry_after_secs }
    }

    async fn with_throttles(change: impl FnOnce(&mut ThrottleSettings)) -> Fixture {
        Fixture::with_settings(|settings| change(&mut settings.throttles)).await
    }

    #[tokio::test]
    async fn guessing_one_account_from_many_addresses_is_throttled_the_same_whether_it_exists_or_not()
     {
        let fx = with_throttles(|t| t.sign_in_account = "3/3m".parse().unwrap()).await;
        for name in ["alice", "nobody"] {
            for i in 0..3 {
                let from = format!("198.51.100.{i}");
                let user = fx.core.authenticate_user(name, "guess", &from).await.expect("checked");
                assert_eq!(user, None);
            }
            // The fourth try, from yet another address and even with the right
            // password, is refused before anything is looked up.
            let refused = fx.core.authenticate_user(name, PASSWORD, "203.0.113.9").await;
            assert_eq!(refused, Err(refused_for(60)), "{name}");
        }
        // One interval later the account has one try back.
        fx.clock.advance(60);
        let user = fx.core.authenticate_user("alice", PASSWORD, HERE).await.expect("admitted");
        assert_eq!(user.map(|u| u.subject).as_deref(), Some(SUBJECT));
        assert_eq!(fx.core.authenticate_user("alice", PASSWORD, HERE).await, Err(refused_for(60)));
    }

    #[tokio::test]
    async fn one_address_cannot_keep_an_account_locked() {
        let fx = with_throttles(|t| {
            t.sign_in_account = "4/2m".parse().unwrap(); // one back every 30 s
            t.sign_in_account_ip = "2/2m".parse().unwrap(); // one every 60 s
        })
        .await;
        let attacker = "198.51.100.66";
        // For ten minutes the attacker tries whenever it may, every 10 s; the
        // owner signs in once a minute from home, and always gets in.
        for second in (0..600).step_by(10) {
            let _ = fx.core.authenticate_user("alice", "guess", attacker).await;
            if second % 60 == 30 {
                let user = fx.core.authenticate_user("alice", PASSWORD, HERE).await;
                assert!(matches!(user, Ok(Some(_))), "locked out at {second} s: {user:?}");
            }
            fx.clock.advance(10);
        }
    }

    #[tokio::test]
    async fn one_address_guessing_many_accounts_is_throttled() {
        let fx = with_throttles(|t| t.sign_in_ip = "3/30s".parse().unwrap()).await;
        for name in ["a", "b", "c"] {
            assert_eq!(fx.core.authenticate_user(name, "guess", HERE).await, Ok(None));
        }
        assert_eq!(fx.core.authenticate_user("alice", PASSWORD, HERE).await, Err(refused_for(10)));
        // Another address is not held back; this one is, until time passes.
        assert!(fx.core.authenticate_user("alice", PASSWORD, "192.0.2.2").await.is_ok());
        fx.clock.advance(10);
        assert!(matches!(fx.core.authenticate_user("alice", PASSWORD, HERE).await, Ok(Some(_))));
    }

    #[test]
    fn a_typed_username_is_logged_only_up_to_the_bound() {
        assert_eq!(super::clipped("alice"), "alice");
        let long = "é".repeat(10_000);
        assert_eq!(super::clipped(&long).chars().count(), crate::domain::MAX_LOGGED_CHARS);
    }

    #[tokio::test]
    async fn the_right_password_signs_in_and_a_wrong_one_does_not() {
        let fx = Fixture::new().await;
        let user = fx.core.authenticate_user("alice", PASSWORD, HERE).await.expect("checked");
        assert_eq!(user.map(|u| u.subject).as_deref(), Some(SUBJECT));
        assert_eq!(fx.core.authenticate_user("alice", "wrong", HERE).await.expect("checked"), None);
        assert_eq!(
            fx.core.authenticate_user("nobody", PASSWORD, HERE).await.expect("checked"),
            None
        );
    }

    #[tokio::test]
    async fn a_sign_in_renews_an_outdated_password_hash_and_a_failed_one_does_not() {
        use crate::domain::grants::testing::PASSWORD_HASH;
        use crate::storage::UserStore as _;
        let fx = Fixture::new().await;
        let stored = || async { fx.core.store.user_by_username("alice").await.unwrap().unwrap() };
        assert_eq!(stored().await.password_hash.expose(), PASSWORD_HASH);
        assert_eq!(fx.core.authenticate_user("alice", "wrong", HERE).await.expect("checked"), None);
        assert_eq!(stored().await.password_hash.expose(), PASSWORD_HASH, "renewed by a wrong one");

        let user = fx.core.authenticate_user("alice", PASSWORD, HERE).await.expect("checked");
        assert_eq!(user.map(|u| u.subject).as_deref(), Some(SUBJECT));
        let renewed = stored().await.password_hash.expose().clone();
        assert!(renewed.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{renewed}");
        // The same password signs in with the renewed hash, which stays.
        let user = fx.core.authenticate_user("alice", PASSWORD, HERE).await.expect("checked");
        assert_eq!(user.map(|u| u.subject).as_deref(), Some(SUBJECT));
        assert_eq!(stored().await.password_hash.expose(), &renewed);
    }

    #[tokio::test]
    async fn a_sign_in_past_the_hashing_bound_is_temporarily_unavailable() {
        let limits = HashLimits {
            concurrency: 1,
            queue: 0,
            wait: Duration::ZERO,
            ..HashLimits::for_this_machine()
        };
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
        let refused =
            fx.core.authenticate_user("alice", PASSWORD, HERE).await.expect_err("refused");
        assert_eq!(
            (refused.code(), refused.description()),
            ("temporarily_unavailable", "too many sign-ins at once; try again in a moment")
        );
        release.send(()).expect("released");
        holder.await.expect("joined").expect("ran").expect("received");
        let user =
            fx.core.authenticate_user("alice", PASSWORD, HERE).await.expect("admitted again");
        assert!(user.is_some());
    }
}
