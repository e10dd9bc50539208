//! The token endpoint's latency, as the benchmark and the flood measurement
//! probe it: one client-credentials request at a fixed interval, each one's
//! latency and status kept, quantiles read from them.

use std::time::{Duration, Instant};

/// The latencies of a probe's requests.
pub struct Latencies(pub Vec<Duration>);

impl Latencies {
    pub fn at(&self, quantile: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    pub fn report(&self, what: &str) {
        println!(
            "{what}: {} requests, median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.0.len(),
            self.at(0.5).as_secs_f64() * 1e3,
            self.at(0.9).as_secs_f64() * 1e3,
            self.at(0.99).as_secs_f64() * 1e3,
            self.at(1.0).as_secs_f64() * 1e3,
        );
    }
}

/// `/token` client credentials, one request every `every`, until `until`:
/// each one's latency and status (0 for a transport failure).
pub async fn token_probe(
    http: reqwest::Client,
    url: String,
    secret: String,
    every: Duration,
    until: Instant,
) -> Vec<(Duration, u16)> {
    let mut answers = Vec::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        ticker.tick().await;
        let started = Instant::now();
        let reply = http
            .post(&url)
            .basic_auth("tollgate-reporter", Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await;
        let status = match reply {
            Ok(reply) => {
                let status = reply.status().as_u16();
                let _ = reply.bytes().await;
                status
            }
            Err(_) => 0,
        };
        answers.push((started.elapsed(), status));
    }
    answers
}
