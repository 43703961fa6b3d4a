//! How the long-running agent keeps glibc's allocator from holding memory it no longer uses.
//!
//! glibc's malloc gives each thread that allocates its own arena (up to eight per core) and keeps
//! the memory freed into an arena for reuse instead of returning it to the system. A reconcile
//! allocates a few MiB (the live state of every endpoint, the plan), on whichever tokio thread
//! runs it, and frees it all at the end; with one arena per thread each arena ends up holding its
//! own copy of that peak, and the resident set grows tick after tick to a plateau well above what
//! is in use. The agent therefore runs on one arena and hands freed pages back after each
//! reconcile. `benches/agent_memory.rs` measures the effect (docs/benchmarks.md, "Agent memory").
//! The agent's threads spend their time waiting on the network, so one arena costs no throughput
//! (the in-sync tick was as fast or faster in the bench).
//!
//! Other platforms and allocators (musl, macOS) need nothing and get no-ops.

/// Limits the process to one malloc arena. Call before any thread starts, so that no thread has
/// its own arena already.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets an allocator parameter; it is called before the runtime
    // starts other threads, and M_ARENA_MAX takes any positive value.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns the free pages the allocator holds to the system (after a reconcile freed its state).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` walks the allocator's own free lists under its locks; it is safe to
    // call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
