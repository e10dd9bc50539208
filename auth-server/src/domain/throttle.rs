//! Throttles: how often one key (a client, an address, an account name) may ask.
//!
//! Bounding the work per request ([`super::hashing`]) keeps the server up; a
//! throttle keeps a caller from asking too often: guessing passwords or user
//! codes, flooding the token endpoint, growing the denylist. Each throttle is a
//! GCRA token bucket per key (the `governor` crate): `burst` requests at once,
//! refilled evenly over `per`. A refusal is [`OAuthError::TooManyRequests`],
//! which HTTP answers `429` with `Retry-After` and gRPC `RESOURCE_EXHAUSTED`.
//!
//! Time comes from the injected [`Clock`], so tests cross a limit and recover by
//! moving the clock, not by sleeping.
//!
//! Memory: keys are kept as 64-bit keyed hashes (the caller chooses the names,
//! not their size), at most `max_keys` per throttle. A full table first drops
//! keys whose bucket is full again; if it is still full, every key beyond it
//! shares one bucket, so a flood of fresh names degrades to one global limit
//! instead of growing memory.
//!
//! Several replicas: each counts on its own, so the effective limit is the
//! configured one times the replicas a caller's requests are spread over.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher as _;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use tollgate_token::{Clock, OAuthError};

/// A rate: `burst` requests at once, refilled evenly over `per` (one every
/// `per / burst`). Written `burst/period`, e.g. `10/5m`; units `s`, `m`, `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    pub const fn new(burst: NonZeroU32, per: Duration) -> Self {
        Self { burst, per }
    }

    /// The time one request's allowance takes to come back.
    pub fn interval(&self) -> Duration {
        self.per / self.burst.get()
    }

    fn quota(&self) -> Quota {
        // `interval` is never zero: parsing refuses a period shorter than the burst
        // in nanoseconds.
        Quota::with_period(self.interval())
            .unwrap_or(Quota::per_second(self.burst))
            .allow_burst(self.burst)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.per.as_secs();
        match secs {
            s if s % 3600 == 0 => write!(f, "{}/{}h", self.burst, s / 3600),
            s if s % 60 == 0 => write!(f, "{}/{}m", self.burst, s / 60),
            s => write!(f, "{}/{s}s", self.burst),
        }
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a rate like 10/5m (burst/period, units s, m, h)");
        let (burst, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let burst: NonZeroU32 = burst.trim().parse().map_err(|_| bad())?;
        let period = period.trim();
        let (number, unit) = period.split_at(period.len().saturating_sub(1));
        let number: u64 = number.parse().map_err(|_| bad())?;
        let secs = match unit {
            "s" => number,
            "m" => number.checked_mul(60).ok_or_else(bad)?,
            "h" => number.checked_mul(3600).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        if secs == 0 {
            return Err(format!("{s:?}: the period must be at least one second"));
        }
        Ok(Self { burst, per: Duration::from_secs(secs) })
    }
}

/// `governor`'s view of the injected clock.
#[derive(Debug, Clone)]
struct Ticks(Arc<dyn Clock>);

impl governor::clock::Clock for Ticks {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let millis = u64::try_from(self.0.now_millis()).unwrap_or(0);
        Nanos::from(millis.saturating_mul(1_000_000))
    }
}

/// The key every name beyond a full table shares.
const OVERFLOW: u64 = 0;

/// One throttle: a bucket per key.
pub struct Throttle {
    /// Names it in metrics and logs.
    name: &'static str,
    rate: Rate,
    limiter: RateLimiter<u64, DashMapStateStore<u64>, Ticks, NoOpMiddleware<Nanos>>,
    ticks: Ticks,
    /// Keyed per process, so no one can pick names that collide on purpose.
    hasher: RandomState,
    max_keys: usize,
    /// When the table was last swept (clock milliseconds): at most once a second.
    last_sweep: AtomicI64,
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("keys", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

impl Throttle {
    pub fn new(name: &'static str, rate: Rate, max_keys: usize, clock: Arc<dyn Clock>) -> Self {
        let ticks = Ticks(clock);
        Self {
            name,
            rate,
            limiter: RateLimiter::new(rate.quota(), DashMapStateStore::default(), ticks.clone()),
            ticks,
            hasher: RandomState::new(),
            max_keys: max_keys.max(1),
            last_sweep: AtomicI64::new(i64::MIN),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one request from `key`'s allowance, or refuses with how long to
    /// wait.
    pub fn check(&self, key: &str) -> Result<(), OAuthError> {
        // `| 1`: no real key is ever the overflow key.
        let mut hashed = self.hasher.hash_one(key) | 1;
        if self.limiter.len() >= self.max_keys {
            self.sweep();
            if self.limiter.len() >= self.max_keys {
                hashed = OVERFLOW;
            }
        }
        self.limiter.check_key(&hashed).map_err(|not_until| {
            tollgate_telemetry::metrics::throttled(self.name);
            tracing::debug!(throttle = self.name, "request throttled");
            OAuthError::too_many_requests(not_until.wait_time_from(self.ticks.now()))
        })
    }

    /// How many keys are tracked now.
    pub fn keys(&self) -> usize {
        self.limiter.len()
    }

    /// Drops the keys whose bucket is full again (they are as if never seen),
    /// at most once a second: a sweep walks the whole table.
    fn sweep(&self) {
        let now = self.ticks.0.now_millis();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1000
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The throttles' rates and table size (`AUTH_RATE_*`, see the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Every password sign-in from one address.
    pub sign_in_ip: Rate,
    /// Sign-ins naming one account, from anywhere.
    pub sign_in_account: Rate,
    /// Sign-ins naming one account from one address.
    pub sign_in_account_ip: Rate,
    /// An authenticated client's calls: `/token`, `/introspect`, `/revoke`,
    /// `/device_authorization`, and the same over gRPC.
    pub client: Rate,
    /// A client's revocations: each can add to the denylist every service
    /// fetches, so this bounds how fast one client grows it.
    pub revoke: Rate,
    /// `/device_authorization` and user-code entry at `/device`, per address
    /// (RFC 8628 §5.1: user codes are guessable at scale).
    pub device_ip: Rate,
    /// The resource owner's pages, per address.
    pub pages_ip: Rate,
    /// Keys tracked per throttle.
    pub max_keys: usize,
}

const fn nz(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

const fn rate(burst: u32, secs: u64) -> Rate {
    Rate::new(nz(burst), Duration::from_secs(secs))
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            // 20 at once, then one every 3 s: a shared office address signs in
            // freely; a guesser gets 1,200 tries an hour across all accounts.
            sign_in_ip: rate(20, 60),
            // 10 at once, then one every 30 s.
            sign_in_account: rate(10, 300),
            // 5 at once, then one a minute: slower than the account's refill,
            // so one address can never keep an account locked.
            sign_in_account_ip: rate(5, 300),
            client: rate(500, 1),
            // 100 at once, then 10 a second: with 300 s access tokens, at most
            // about 3,000 live denylist entries per client.
            revoke: rate(100, 10),
            device_ip: rate(10, 60),
            pages_ip: rate(120, 60),
            max_keys: 100_000,
        }
    }
}

impl ThrottleSettings {
    /// The rule that keeps one address from locking an account out: its own
    /// allowance on the account must refill more slowly than the account's.
    pub fn check(&self) -> Result<(), String> {
        if self.sign_in_account_ip.interval() <= self.sign_in_account.interval() {
            return Err(format!(
                "AUTH_RATE_SIGN_IN_ACCOUNT_IP ({}) must refill more slowly than \
                 AUTH_RATE_SIGN_IN_ACCOUNT ({}), or one address could keep an account locked",
                self.sign_in_account_ip, self.sign_in_account
            ));
        }
        Ok(())
    }
}

/// Every throttle of the authorization server.
#[derive(Debug)]
pub struct Throttles {
    pub sign_in_ip: Throttle,
    pub sign_in_account: Throttle,
    pub sign_in_account_ip: Throttle,
    pub client: Throttle,
    pub revoke: Throttle,
    pub device_ip: Throttle,
    pub pages_ip: Throttle,
}

impl Throttles {
    pub fn new(settings: &ThrottleSettings, clock: &Arc<dyn Clock>) -> Self {
        let throttle = |name, rate| Throttle::new(name, rate, settings.max_keys, clock.clone());
        Self {
            sign_in_ip: throttle("sign_in_ip", settings.sign_in_ip),
            sign_in_account: throttle("sign_in_account", settings.sign_in_account),
            sign_in_account_ip: throttle("sign_in_account_ip", settings.sign_in_account_ip),
            client: throttle("client", settings.client),
            revoke: throttle("revoke", settings.revoke),
            device_ip: throttle("device_ip", settings.device_ip),
            pages_ip: throttle("pages_ip", settings.pages_ip),
        }
    }
}

/// The key of a caller's address: IPv4 as is, IPv6 by its /64 (one host
/// usually holds a whole /64, so single addresses would be free to change).
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use tollgate_token::ManualClock;

    use super::*;

    fn throttle(rate: &str, max_keys: usize) -> (Throttle, ManualClock) {
        let clock = ManualClock::new(1_700_000_000);
        let throttle =
            Throttle::new("test", rate.parse().unwrap(), max_keys, Arc::new(clock.clone()));
        (throttle, clock)
    }

    #[test]
    fn rates_read_and_print_as_burst_per_period() {
        let rate: Rate = "10/5m".parse().unwrap();
        assert_eq!((rate.burst.get(), rate.per), (10, Duration::from_secs(300)));
        assert_eq!(rate.interval(), Duration::from_secs(30));
        assert_eq!(rate.to_string(), "10/5m");
        assert_eq!("500/1s".parse::<Rate>().unwrap().to_string(), "500/1s");
        for bad in ["", "10", "0/1s", "10/0s", "10/5", "10/5d", "x/1s", "10/-1s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_key_is_refused_past_its_burst_and_admitted_again_as_it_refills() {
        let (throttle, clock) = throttle("3/30s", 100);
        for _ in 0..3 {
            throttle.check("client-a").unwrap();
        }
        let refused = throttle.check("client-a").unwrap_err();
        assert_eq!(refused, OAuthError::TooManyRequests { retry_after_secs: 10 });
        // Another key has its own allowance.
        throttle.check("client-b").unwrap();
        clock.advance(9);
        assert!(throttle.check("client-a").is_err(), "one interval has not passed");
        clock.advance(1);
        throttle.check("client-a").unwrap();
        assert!(throttle.check("client-a").is_err(), "only one came back");
    }

    #[test]
    fn a_full_table_drops_idle_keys_then_shares_one_bucket_and_stays_bounded() {
        let (throttle, clock) = throttle("2/10s", 4);
        for key in ["a", "b", "c", "d"] {
            throttle.check(key).unwrap();
        }
        assert_eq!(throttle.keys(), 4);
        // Still recent: the table stays full, and every new name shares the
        // overflow bucket (2 at once), whatever it is called.
        throttle.check("e").unwrap();
        throttle.check("f").unwrap();
        assert!(throttle.check("g").is_err());
        assert!(throttle.keys() <= 5, "{} keys", throttle.keys());
        // Once the old keys' buckets are full again, a sweep drops them.
        clock.advance(11);
        throttle.check("h").unwrap();
        assert!(throttle.keys() <= 2, "{} keys after the sweep", throttle.keys());
        for i in 0..1_000 {
            let _ = throttle.check(&format!("flood-{i}"));
        }
        assert!(throttle.keys() <= 5, "{} keys after a flood of names", throttle.keys());
    }

    #[test]
    fn one_address_cannot_be_faster_than_the_account_refill() {
        assert!(ThrottleSettings::default().check().is_ok());
        let settings = ThrottleSettings {
            sign_in_account_ip: "10/5m".parse().unwrap(),
            ..ThrottleSettings::default()
        };
        assert!(settings.check().unwrap_err().contains("AUTH_RATE_SIGN_IN_ACCOUNT_IP"));
    }

    #[test]
    fn ipv6_callers_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_eq!(address_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_ne!(
            address_key("10.0.0.1".parse().unwrap()),
            address_key("10.0.0.2".parse().unwrap())
        );
    }
}
