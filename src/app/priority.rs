//! The adaptation thread's CPU priority: on a machine with few cores the live path must win
//! the CPU, and adaptation use what is left. [`run_at_lowest_priority`] lowers the calling
//! thread ([`AdaptPriority`]: Linux's `SCHED_IDLE` by default, or nice 19) and runs its work in
//! a rayon pool of its own, so that every worker it starts inherits the priority. An adapter
//! that gets no CPU this way is given time by the live path ([`super::adapt_share`]).

/// Environment variable choosing the adaptation thread's priority: `idle` (the default) or
/// `nice`.
pub const ADAPT_PRIORITY_ENV: &str = "LIVEDEPTH_ADAPT_PRIORITY";

/// How low the adaptation thread runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdaptPriority {
    /// Nice 19: the adapter gets a small share of a contended core whatever else runs, but a
    /// live-path thread that wakes may wait up to a scheduler slice for it.
    Nice,
    /// Linux's `SCHED_IDLE` (the default): a live-path thread that wakes preempts the adapter at
    /// once, so the live path loses far fewer frames to it (docs/adapt.md, Real time). While the
    /// live path keeps every core busy (an unpaced replay) the adapter gets no CPU of its own;
    /// the live path then yields it time ([`super::adapt_share`]). Other processes that keep
    /// every core busy starve it for as long as they do: choose `nice` there.
    Idle,
}

impl AdaptPriority {
    /// The priority [`ADAPT_PRIORITY_ENV`] asks for (unset or empty: idle), or an error naming
    /// the variable, what it holds and what it may hold.
    pub fn from_env() -> crate::Result<Self> {
        Self::parse(std::env::var(ADAPT_PRIORITY_ENV).ok().as_deref())
    }

    /// [`Self::from_env`] on the variable's value.
    pub fn parse(value: Option<&str>) -> crate::Result<Self> {
        match value.map(str::trim) {
            None | Some("") | Some("idle") => Ok(AdaptPriority::Idle),
            Some("nice") => Ok(AdaptPriority::Nice),
            Some(other) => Err(crate::Error::Other(format!(
                "{ADAPT_PRIORITY_ENV}: expected `nice` or `idle`, got `{other}`"
            ))),
        }
    }
}

/// How far [`lower_thread_priority`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadPriority {
    /// Linux `SCHED_IDLE` (and nice 19).
    Idle,
    /// Nice 19 only (asked for, or `SCHED_IDLE` was refused).
    Nice19,
    /// Neither could be set (or not Linux).
    Unchanged,
}

/// Gives the calling thread (and the libtorch and rayon worker threads it starts later, which
/// inherit it) nice 19, and with [`AdaptPriority::Idle`] Linux's `SCHED_IDLE` policy too.
pub fn lower_thread_priority(priority: AdaptPriority) -> ThreadPriority {
    #[cfg(target_os = "linux")]
    {
        // On Linux nice and the scheduling policy are per thread: PRIO_PROCESS with who = 0, and
        // sched_setscheduler with pid 0, mean the calling thread.
        // SAFETY: setpriority has no memory-safety preconditions.
        let nice = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) == 0 };
        let idle = priority == AdaptPriority::Idle && {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: `param` is a valid sched_param that outlives the call; SCHED_IDLE
            // requires priority 0.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
        };
        match (idle, nice) {
            (true, _) => ThreadPriority::Idle,
            (false, true) => ThreadPriority::Nice19,
            (false, false) => ThreadPriority::Unchanged,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = priority;
        ThreadPriority::Unchanged
    }
}

/// Runs `work` at `priority`: lowers the calling thread ([`lower_thread_priority`], with a
/// warning when it cannot), then runs `work` in a rayon pool that this thread starts, so that
/// the CPU loss's workers inherit the priority too (rayon's global pool may already exist,
/// started by a normal-priority thread: `bench live-adapt` renders its drive with it).
pub fn run_at_lowest_priority<T: Send>(
    priority: AdaptPriority,
    work: impl FnOnce() -> T + Send,
) -> T {
    match (priority, lower_thread_priority(priority)) {
        (_, ThreadPriority::Idle) | (AdaptPriority::Nice, ThreadPriority::Nice19) => {}
        (AdaptPriority::Idle, ThreadPriority::Nice19) => tracing::warn!(
            "adapt: the kernel refused SCHED_IDLE; adaptation runs at nice 19, and the live path \
             may lose frames to it"
        ),
        (_, ThreadPriority::Unchanged) => tracing::warn!(
            "adapt: could not lower the adaptation thread's priority; the live path may lose \
             frames to it"
        ),
    }
    match rayon::ThreadPoolBuilder::new().thread_name(|i| format!("adapt-loss-{i}")).build() {
        Ok(pool) => pool.install(work),
        Err(e) => {
            tracing::warn!(
                "adapt: no rayon pool of its own ({e}); the CPU loss runs on the global pool, \
                 whose threads may have a normal priority"
            );
            work()
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{AdaptPriority, ThreadPriority, lower_thread_priority, run_at_lowest_priority};

    fn own_nice() -> i32 {
        // SAFETY: getpriority has no memory-safety preconditions.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    fn own_policy() -> i32 {
        // SAFETY: sched_getscheduler has no memory-safety preconditions; 0 is this thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn only_the_adaptation_thread_is_lowered() {
        let (nice_before, policy_before) = (own_nice(), own_policy());
        let (lowered, nice, policy, child_policy) = std::thread::spawn(|| {
            let lowered = lower_thread_priority(AdaptPriority::Idle);
            // A worker the adaptation thread starts (libtorch's, rayon's) inherits the policy.
            let child = std::thread::spawn(own_policy).join().unwrap();
            (lowered, own_nice(), own_policy(), child)
        })
        .join()
        .unwrap();
        assert_eq!(lowered, ThreadPriority::Idle, "an unprivileged thread may enter SCHED_IDLE");
        assert_eq!((nice, policy), (19, libc::SCHED_IDLE), "the calling thread is lowered");
        assert_eq!(child_policy, libc::SCHED_IDLE, "threads it starts inherit SCHED_IDLE");
        assert_eq!((own_nice(), own_policy()), (nice_before, policy_before), "others keep theirs");
    }

    #[test]
    fn the_work_and_its_rayon_workers_run_lowered() {
        let policy_before = own_policy();
        let policies = std::thread::spawn(|| {
            run_at_lowest_priority(AdaptPriority::Idle, || {
                // Both halves of a join, wherever rayon runs them.
                let (a, b) = rayon::join(own_policy, own_policy);
                (own_policy(), a, b, rayon::current_thread_index().is_some())
            })
        })
        .join()
        .unwrap();
        assert_eq!(
            policies,
            (libc::SCHED_IDLE, libc::SCHED_IDLE, libc::SCHED_IDLE, true),
            "(work, join a, join b, on a pool of its own)"
        );
        assert_eq!(own_policy(), policy_before, "the test's thread keeps its policy");
    }

    #[test]
    fn nice_is_nice_19_under_the_normal_policy() {
        let (lowered, nice, policy) = std::thread::spawn(|| {
            run_at_lowest_priority(AdaptPriority::Nice, || {
                (lower_thread_priority(AdaptPriority::Nice), own_nice(), own_policy())
            })
        })
        .join()
        .unwrap();
        assert_eq!((lowered, nice, policy), (ThreadPriority::Nice19, 19, libc::SCHED_OTHER));
    }

    #[test]
    fn the_variable_is_parsed_and_a_bad_value_named() {
        assert_eq!(AdaptPriority::parse(None).unwrap(), AdaptPriority::Idle);
        assert_eq!(AdaptPriority::parse(Some("")).unwrap(), AdaptPriority::Idle);
        assert_eq!(AdaptPriority::parse(Some(" idle ")).unwrap(), AdaptPriority::Idle);
        assert_eq!(AdaptPriority::parse(Some("nice")).unwrap(), AdaptPriority::Nice);
        let e = AdaptPriority::parse(Some("realtime")).unwrap_err().to_string();
        assert!(e.contains("LIVEDEPTH_ADAPT_PRIORITY") && e.contains("realtime"), "{e}");
    }
}
