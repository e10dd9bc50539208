//! Bounded password hashing.
//!
//! An argon2id verification costs 7 MiB and about 13 ms of a core
//! (see [`super::secrets`]). Unbounded, a flood of sign-in posts (each needs only
//! one GET for a cookie and a CSRF token) fills tokio's blocking pool, 512
//! threads × 7 MiB, and starves every other endpoint. So every password check
//! passes this gate: at most `concurrency` hashes run at once, at most `queue`
//! more wait, each for at most `wait`; anything beyond is refused at once as
//! [`Overloaded`], which the pages answer `503` with `Retry-After`
//! (RFC 6749 §4.1.2.1 `temporarily_unavailable`). Memory for hashing is so
//! bounded by `concurrency × 7 MiB`, whatever the traffic.
//!
//! Each hash runs on a thread of its own below the request path's scheduling
//! priority ([`HashPriority`]): where hashing and the request path share a
//! core, a token request arriving during a hash would otherwise wait for the
//! scheduler's time slice. The benchmark measured `/token`'s p99 at six times
//! its quiet value with hashes at normal priority, 3.9 times with `nice` 10
//! (Linux's EEVDF scheduler lets a running thread finish its slice whatever
//! its `nice`). Hashes now run at `SCHED_IDLE` by default, which a waking
//! request preempts at once; docs/performance.md has what is left of the
//! tail.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// The scheduling priority password hashes run at (Linux; elsewhere they run
/// at the request path's). On an idle core a hash runs as fast as ever
/// either way; they differ when the core is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashPriority {
    /// `SCHED_IDLE` (the default): any request that wakes preempts a hash at
    /// once, so a hash never keeps a request waiting for the core. The price: while every
    /// core is kept busy by other work a hash gets almost no time, and
    /// sign-ins wait, then are refused (`503`), until the load drops.
    Idle,
    /// A `nice` value, 0–19 (the request path runs at 0): a hash keeps a
    /// share of a busy core (at 10, about a tenth), but a request arriving
    /// during a hash may wait for the rest of the hash's time slice.
    Nice(i32),
}

impl std::str::FromStr for HashPriority {
    type Err = String;

    /// `idle`, or a `nice` value from 0 to 19.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "idle" {
            return Ok(Self::Idle);
        }
        match value.parse::<i32>() {
            Ok(nice @ 0..=19) => Ok(Self::Nice(nice)),
            _ => Err(format!("expected `idle` or a nice value from 0 to 19, got `{value}`")),
        }
    }
}

/// The gate's limits (`AUTH_HASH_*`, see the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashLimits {
    /// Hashes running at once: the cores given to hashing.
    pub concurrency: usize,
    /// Checks waiting for a free slot beyond those running.
    pub queue: usize,
    /// How long a waiting check waits before it is refused.
    pub wait: Duration,
    /// The scheduling priority of the hashing threads.
    pub priority: HashPriority,
}

impl HashLimits {
    /// One hash per core, as many waiting, for at most a second.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            concurrency: cores,
            queue: cores,
            wait: Duration::from_secs(1),
            priority: HashPriority::Idle,
        }
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
    priority: HashPriority,
}

impl HashGate {
    pub fn new(limits: HashLimits) -> Self {
        let concurrency = limits.concurrency.max(1);
        Self {
            admitted: Arc::new(Semaphore::new(concurrency + limits.queue)),
            running: Arc::new(Semaphore::new(concurrency)),
            wait: limits.wait,
            priority: limits.priority,
        }
    }

    /// Runs `work` (a hash) on a thread of its own at the gate's [`HashPriority`] once a
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
        let priority = self.priority;
        std::thread::Builder::new()
            .name("password-hash".into())
            .spawn(move || {
                priority.apply_to_this_thread();
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

impl HashPriority {
    /// Puts the calling thread at this priority (the benchmark's sign-in
    /// lanes use it too). On Linux both the policy and `nice` are per thread.
    /// Lowering needs no privilege; if a sandbox forbids it all the same, the
    /// thread runs at normal priority: the request path is slower during
    /// sign-ins, nothing is wrong.
    pub fn apply_to_this_thread(self) {
        #[cfg(target_os = "linux")]
        match self {
            Self::Idle => {
                use thread_priority::unix::{
                    NormalThreadSchedulePolicy, ThreadSchedulePolicy,
                    set_thread_priority_and_policy, thread_native_id,
                };
                let _ = set_thread_priority_and_policy(
                    thread_native_id(),
                    thread_priority::ThreadPriority::Min,
                    ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
                );
            }
            Self::Nice(nice) => {
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice);
            }
        }
        // A new thread starts at its parent's priority, and may have just
        // preempted a request thread on waking. Lowering its own priority
        // does not make the kernel reschedule, so without this it would keep
        // the core until the next tick (4 ms here: `perf sched` showed a
        // request thread waiting exactly that long behind a hash thread that
        // had just been spawned). Yielding hands the core back at once.
        std::thread::yield_now();
    }
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
        let gate = HashGate::new(limits(1, 1, Duration::from_secs(1)));
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

    fn limits(concurrency: usize, queue: usize, wait: Duration) -> HashLimits {
        HashLimits { concurrency, queue, wait, priority: HashPriority::Idle }
    }

    /// What the calling thread runs at: its policy and its `nice`.
    #[cfg(target_os = "linux")]
    fn own_priority() -> (thread_priority::unix::ThreadSchedulePolicy, i32) {
        let policy = thread_priority::unix::thread_schedule_policy().expect("the policy");
        let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        (policy, nice.expect("the niceness"))
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_hash_runs_below_the_request_paths_priority() {
        use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        let normal = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
        // The request path: SCHED_OTHER, at whatever `nice` the test runs
        // (0 normally; a niced test run starts higher).
        let request_path = own_priority();
        assert_eq!(request_path.0, normal);

        let gate = HashGate::new(limits(1, 0, Duration::from_secs(1)));
        let hashing = gate.run(own_priority).await.expect("admitted");
        assert_eq!(hashing.0, ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle));

        // One step below the request path (lowering needs no privilege).
        let lower = (request_path.1 + 1).min(19);
        let niced =
            HashLimits { priority: HashPriority::Nice(lower), ..limits(1, 0, Duration::ZERO) };
        let hashing = HashGate::new(niced).run(own_priority).await.expect("admitted");
        assert_eq!(hashing, (normal, lower));
        // The request path's own thread is left as it was.
        assert_eq!(own_priority(), request_path);
    }

    #[test]
    fn a_priority_is_idle_or_a_nice_value() {
        assert_eq!("idle".parse(), Ok(HashPriority::Idle));
        assert_eq!("10".parse(), Ok(HashPriority::Nice(10)));
        assert_eq!("0".parse(), Ok(HashPriority::Nice(0)));
        for bad in ["-1", "20", "IDLE", ""] {
            assert!(bad.parse::<HashPriority>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn within_the_limits_every_check_runs() {
        let gate = HashGate::new(limits(2, 8, Duration::from_secs(30)));
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
