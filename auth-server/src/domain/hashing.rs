//! Bounded password hashing.
//!
//! An argon2id verification costs 19 MiB and tens of milliseconds of a core
//! (see [`super::secrets`]). Unbounded, a flood of sign-in posts (each needs only
//! one GET for a cookie and a CSRF token) fills tokio's blocking pool, 512
//! threads × 19 MiB, and starves every other endpoint. So every password check
//! passes this gate: at most `concurrency` hashes run at once, at most `queue`
//! more wait, each for at most `wait`; anything beyond is refused at once as
//! [`Overloaded`], which the pages answer `503` with `Retry-After`
//! (RFC 6749 §4.1.2.1 `temporarily_unavailable`). Memory for hashing is so
//! bounded by `concurrency × 19 MiB`, whatever the traffic.
//!
//! Each hash runs on a thread of its own at a lower scheduling priority
//! ([`HASH_NICENESS`]): where hashing and the request path share a core, a
//! token request arriving during a hash would otherwise wait for the
//! scheduler's time slice. The benchmark measured `/token`'s p99 at six times
//! its quiet value while passwords were checked on the same core
//! (docs/performance.md).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// The `nice` value password hashes run at (Linux; the request path runs at
/// 0). A waking request preempts a hash; on an idle core the hash runs as
/// fast as ever.
pub const HASH_NICENESS: i32 = 10;

/// The gate's limits (`AUTH_HASH_*`, see the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashLimits {
    /// Hashes running at once: the cores given to hashing.
    pub concurrency: usize,
    /// Checks waiting for a free slot beyond those running.
    pub queue: usize,
    /// How long a waiting check waits before it is refused.
    pub wait: Duration,
}

impl HashLimits {
    /// One hash per core, as many waiting, for at most a second.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self { concurrency: cores, queue: cores, wait: Duration::from_secs(1) }
    }
}

/// Too many password checks at once: refused without hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks at once")]
pub struct Overloaded;

/// The gate every password hash passes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HashGate {
    /// Running plus waiting: a check that cannot take one is refused at once.
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
    wait: Duration,
}

impl HashGate {
    pub fn new(limits: HashLimits) -> Self {
        let concurrency = limits.concurrency.max(1);
        Self {
            admitted: Arc::new(Semaphore::new(concurrency + limits.queue)),
            running: Arc::new(Semaphore::new(concurrency)),
            wait: limits.wait,
        }
    }

    /// Runs `work` (a hash) on a thread of its own at [`HASH_NICENESS`] once a
    /// slot is free, or refuses when the queue is full or the wait runs out.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Overloaded> {
        let _admitted = self.admitted.clone().try_acquire_owned().map_err(|_| Overloaded)?;
        let running = tokio::time::timeout(self.wait, self.running.clone().acquire_owned())
            .await
            .map_err(|_| Overloaded)?
            .map_err(|_| Overloaded)?;
        // The slot is held until the hash is done, even if the caller goes
        // away. A thread per hash (at most `concurrency` at once) rather than
        // tokio's blocking pool, whose threads also serve other work and
        // could not be given their priority back.
        let (done, answer) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("password-hash".into())
            .spawn(move || {
                lower_priority();
                let result = work();
                // Free the slot before answering: whoever sees the answer
                // finds the slot free.
                drop(running);
                let _ = done.send(result);
            })
            .map_err(|_| Overloaded)?;
        answer.await.map_err(|_| Overloaded)
    }
}

/// Puts the calling thread at [`HASH_NICENESS`]. On Linux `nice` is per
/// thread. If a sandbox forbids it the hash runs at normal priority: the
/// request path is slower during sign-ins, nothing is wrong.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASH_NICENESS);
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A "hash" that holds its slot until told to finish.
    fn held() -> (mpsc::Sender<()>, impl FnOnce() -> u8 + Send + 'static) {
        let (release, released) = mpsc::channel::<()>();
        (release, move || {
            let _ = released.recv();
            7
        })
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_queue_a_check_is_refused_at_once_and_a_waiter_after_the_wait() {
        let gate =
            HashGate::new(HashLimits { concurrency: 1, queue: 1, wait: Duration::from_secs(1) });
        let (release, work) = held();
        let running = tokio::spawn({
            let gate = gate.clone();
            async move { gate.run(work).await }
        });
        tokio::task::yield_now().await;
        while gate.running.available_permits() != 0 {
            tokio::task::yield_now().await;
        }
        // One waits (the queue), the next finds it full: refused without waiting.
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.run(|| 1).await }
        });
        while gate.admitted.available_permits() != 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.run(|| 2).await, Err(Overloaded));
        // The waiter gives up when its wait runs out (time moved, not slept; a
        // running blocking task keeps tokio from moving a paused clock itself).
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!waiting.is_finished(), "refused before its wait ran out");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(waiting.await.expect("joined"), Err(Overloaded));
        // The running hash finishes; then the gate admits again.
        release.send(()).expect("released");
        assert_eq!(running.await.expect("joined"), Ok(7));
        assert_eq!(gate.run(|| 3).await, Ok(3));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_hash_runs_below_the_request_paths_priority() {
        let gate =
            HashGate::new(HashLimits { concurrency: 1, queue: 0, wait: Duration::from_secs(1) });
        let own = || rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        let request_path = own().expect("the test's own niceness");
        let hashing = gate.run(own).await.expect("admitted").expect("the hash's niceness");
        assert_eq!((request_path, hashing), (0, HASH_NICENESS));
        // The request path's own thread is left as it was.
        assert_eq!(own().expect("niceness"), request_path);
    }

    #[tokio::test]
    async fn within_the_limits_every_check_runs() {
        let gate =
            HashGate::new(HashLimits { concurrency: 2, queue: 8, wait: Duration::from_secs(30) });
        let checks: Vec<_> = (0..10u8)
            .map(|i| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.run(move || i).await })
            })
            .collect();
        for (i, check) in checks.into_iter().enumerate() {
            assert_eq!(check.await.expect("joined"), Ok(i as u8));
        }
    }
}
