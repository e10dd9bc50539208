//! The resource owner's sign-in, on every page that takes a password: the
//! authorization, device and account pages.

use tollgate_telemetry::audit::{self, Event, Subject};
use tollgate_token::OAuthError;

use super::model::User;
use super::{OAuthCore, secrets, storage_failure};
use crate::storage::UserStore;

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
        let ok = secrets::verify_password(
            password.to_owned(),
            user.as_ref().map(|u| u.password_hash.expose().clone()),
        )
        .await;
        let user = user.filter(|_| ok);
        match &user {
            Some(user) => audit::record(
                Event::LoginSucceeded,
                Subject { subject: Some(&user.subject), ..Subject::default() },
            ),
            // The name typed, not the password: operators see guessing.
            None => audit::record(
                Event::LoginFailed,
                Subject {
                    username: Some(username),
                    reason: Some("bad_credentials"),
                    ..Subject::default()
                },
            ),
        }
        Ok(user)
    }
}
