//! The adaptation thread's CPU priority: on a machine with few cores the live path must always
//! win the CPU, and adaptation only use what is left. [`run_at_lowest_priority`] lowers the
//! calling thread to Linux's `SCHED_IDLE` (nice 19 where that is refused) and runs its work in a
//! rayon pool of its own, so that every worker it starts inherits the priority.

/// How far [`lower_thread_priority`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadPriority {
    /// Linux `SCHED_IDLE`: the thread runs only on a core no normal thread wants, and a normal
    /// thread that wakes takes the core at once.
    Idle,
    /// Nice 19 only (`SCHED_IDLE` was refused): the thread still gets a small share of a
    /// contended core, and a waking normal thread may wait up to a scheduler slice for it.
    Nice19,
    /// Neither could be set (or not Linux).
    Unchanged,
}

/// Gives the calling thread (and the libtorch and rayon worker threads it starts later, which
/// inherit it) the lowest CPU priority, so that on a machine with few cores the live path
/// always wins the CPU and adaptation only uses what is left.
///
/// Linux's `SCHED_IDLE` policy first: with it a live-path thread that wakes (a libtorch worker
/// at one of the ~50 barriers of a forward) preempts the adapter at once. Nice 19 alone is not
/// enough: the fair scheduler may let the adapter finish its slice first, and each such wait
/// delays a whole barrier of the live forward. Nice 19 is set as well, for a kernel that refuses
/// `SCHED_IDLE`.
pub fn lower_thread_priority() -> ThreadPriority {
    #[cfg(target_os = "linux")]
    {
        // On Linux nice and the scheduling policy are per thread: PRIO_PROCESS with who = 0, and
        // sched_setscheduler with pid 0, mean the calling thread.
        // SAFETY: setpriority has no memory-safety preconditions.
        let nice = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) == 0 };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param that outlives the call; SCHED_IDLE requires
        // priority 0.
        let idle = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 };
        match (idle, nice) {
            (true, _) => ThreadPriority::Idle,
            (false, true) => ThreadPriority::Nice19,
            (false, false) => ThreadPriority::Unchanged,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        ThreadPriority::Unchanged
    }
}

/// Runs `work` at the lowest CPU priority: lowers the calling thread ([`lower_thread_priority`],
/// with a warning when it cannot), then runs `work` in a rayon pool that this thread starts, so
/// that the CPU loss's workers inherit the priority too (rayon's global pool may already exist,
/// started by a normal-priority thread: `bench live-adapt` renders its drive with it).
pub fn run_at_lowest_priority<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    match lower_thread_priority() {
        ThreadPriority::Idle => {}
        ThreadPriority::Nice19 => tracing::warn!(
            "adapt: the kernel refused SCHED_IDLE; adaptation runs at nice 19, and the live path \
             may lose frames to it"
        ),
        ThreadPriority::Unchanged => tracing::warn!(
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
    use super::{ThreadPriority, lower_thread_priority, run_at_lowest_priority};

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
            let lowered = lower_thread_priority();
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
            run_at_lowest_priority(|| {
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
}
