//! A test hook: aborts the process at a chosen point, so a test can crash a host exactly
//! there (a `kill -9` at a deterministic moment) and check what survives.
//! `SHOPSYNC_CRASH_AT=NAME:N` aborts on the N-th time the point called NAME is passed; unset
//! (always, outside such tests) it costs one relaxed atomic read per point.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The point and count to crash at, read once from the environment.
fn target() -> Option<&'static (String, u64)> {
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let spec = std::env::var("SHOPSYNC_CRASH_AT").ok()?;
            let (name, count) = spec.rsplit_once(':')?;
            Some((name.to_owned(), count.parse().ok()?))
        })
        .as_ref()
}

/// Passes the point `name`: aborts the process when it is the one (and the count) the
/// environment names.
pub fn point(name: &str) {
    static PASSED: AtomicU64 = AtomicU64::new(0);
    let Some((target, count)) = target() else {
        return;
    };
    if target == name && PASSED.fetch_add(1, Ordering::Relaxed) + 1 == *count {
        eprintln!("SHOPSYNC_CRASH_AT: aborting at {name}:{count}");
        std::process::abort();
    }
}
