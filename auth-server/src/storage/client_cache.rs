//! The registered clients, kept in memory so that authenticating a client (on
//! every token, introspection and revocation request) does not cost a database
//! round trip.
//!
//! Clients change rarely and only by an operator (the bootstrap file, the
//! `admin` commands), so a short-lived copy is safe:
//! - a change made through this process's store is seen at once (the write
//!   drops the copy);
//! - a change made elsewhere (another replica, the `admin` command run as
//!   another process) is seen within [`CLIENT_CACHE_TTL`]: a narrowed scope or
//!   a rotated secret takes effect on every replica within that bound.
//!
//! Only clients that exist are kept, so unknown client ids (all an attacker
//! without a client can send) never grow it, and at most
//! [`MAX_CACHED_CLIENTS`] are held (docs/security.md, "Limits").

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::domain::model::Client;

/// How long a copy is used before the database is asked again.
pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(5);
/// The most clients held; past it, copies are still made only after stale ones
/// are dropped.
pub const MAX_CACHED_CLIENTS: usize = 10_000;

#[derive(Debug, Default)]
pub(super) struct ClientCache {
    entries: Mutex<HashMap<String, (Client, Instant)>>,
}

impl ClientCache {
    /// The copy of `client_id` made less than [`CLIENT_CACHE_TTL`] before `now`.
    pub(super) fn get(&self, client_id: &str, now: Instant) -> Option<Client> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (client, fetched) = entries.get(client_id)?;
        (now.saturating_duration_since(*fetched) < CLIENT_CACHE_TTL).then(|| client.clone())
    }

    /// Keeps a copy of `client`, read from the database at `now`.
    pub(super) fn put(&self, client: &Client, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_CLIENTS && !entries.contains_key(&client.client_id) {
            entries.retain(|_, (_, fetched)| {
                now.saturating_duration_since(*fetched) < CLIENT_CACHE_TTL
            });
            if entries.len() >= MAX_CACHED_CLIENTS {
                return;
            }
        }
        entries.insert(client.client_id.clone(), (client.clone(), now));
    }

    /// Drops the copy of `client_id` (it was just written).
    pub(super) fn forget(&self, client_id: &str) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(client_id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str) -> Client {
        Client {
            client_id: id.into(),
            name: id.into(),
            secret_hash: None,
            redirect_uris: vec![],
            grant_types: vec![],
            scope: tollgate_token::Scope::default(),
            audience: "api".into(),
            exchange_audiences: vec![],
            jwks: None,
            resources: vec![],
            dpop_bound_access_tokens: false,
            tls_client_auth_san_dns: None,
        }
    }

    #[test]
    fn a_copy_is_used_for_the_ttl_then_the_database_is_asked_again() {
        let cache = ClientCache::default();
        let t0 = Instant::now();
        cache.put(&client("web"), t0);
        assert_eq!(
            cache.get("web", t0 + CLIENT_CACHE_TTL - Duration::from_millis(1)),
            Some(client("web"))
        );
        assert_eq!(cache.get("web", t0 + CLIENT_CACHE_TTL), None);
        assert_eq!(cache.get("other", t0), None);
        cache.put(&client("web"), t0);
        cache.forget("web");
        assert_eq!(cache.get("web", t0), None, "a write drops the copy");
    }

    #[test]
    fn it_holds_at_most_the_bound_and_makes_room_only_from_stale_copies() {
        let cache = ClientCache::default();
        let t0 = Instant::now();
        for n in 0..MAX_CACHED_CLIENTS {
            cache.put(&client(&format!("c{n}")), t0);
        }
        cache.put(&client("one-more"), t0);
        assert_eq!(cache.len(), MAX_CACHED_CLIENTS);
        assert_eq!(cache.get("one-more", t0), None);
        let later = t0 + CLIENT_CACHE_TTL;
        cache.put(&client("one-more"), later);
        assert_eq!(cache.len(), 1);
        assert!(cache.get("one-more", later).is_some());
    }
}
