//! SQLite's own page cache behind a thin wrapper that skips truncations with nothing to drop.
//!
//! Why: when a b-tree split reorders its new pages, SQLite parks a page for a moment under the
//! number of the lock-byte page (`PENDING_BYTE / page_size + 1`, page 262,145 at 4 KiB) and
//! moves it back. The page cache remembers that number as the highest it has seen, and at the
//! end of the transaction the pager truncates the cache to the database's size: seeing a key
//! that far past the end, it walks its whole hash table and every cached page instead of a
//! few slots. On the webhook path (small commits, each with a split) that walk was 4% of all
//! CPU and sat inside the writer's critical section.
//!
//! The wrapper forwards every call to the default cache and keeps two facts per cache: the
//! highest page number ever created or moved to (other than the parking number), and whether a
//! page is parked right now. A truncation that can drop nothing (no parked page and every page
//! below its limit) is skipped; any other is forwarded. Both facts are upper bounds, never
//! lowered except by a forwarded truncation, so a truncation that could drop a page is always
//! forwarded.

use rusqlite::ffi;
use std::ffi::{c_int, c_uint};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

/// The lock-byte offset SQLite reserves (`PENDING_BYTE`, 1 GiB); its page is never a real page.
const PENDING_BYTE: u64 = 0x4000_0000;

/// SQLite's default page-cache methods, as they were before the wrapper was installed.
struct DefaultMethods(ffi::sqlite3_pcache_methods2);

// SAFETY: the methods are plain function pointers and SQLite's own argument, set once before
// SQLite starts and only read afterwards.
unsafe impl Send for DefaultMethods {}
unsafe impl Sync for DefaultMethods {}

static DEFAULT: OnceLock<Option<DefaultMethods>> = OnceLock::new();

/// One cache: the default cache's handle and what the wrapper knows of its keys.
struct Wrapped {
    inner: *mut ffi::sqlite3_pcache,
    /// The number pages are parked under during a split (see the module's doc).
    parking: c_uint,
    /// No page has a number above this (parking aside).
    highest: AtomicU32,
    /// Whether a page may be parked now.
    parked: AtomicBool,
    /// Truncations skipped for having nothing to drop.
    skipped: AtomicU64,
}

/// Installs the wrapper if SQLite has not started yet in this process; returns whether it is
/// in place. Called before the store opens its first connection; later calls answer the same.
pub(crate) fn install() -> bool {
    DEFAULT
        .get_or_init(|| {
            let mut default = std::mem::MaybeUninit::<ffi::sqlite3_pcache_methods2>::zeroed();
            // SAFETY: SQLITE_CONFIG_GETPCACHE2 writes the current methods into the pointer; both
            // calls refuse (SQLITE_MISUSE) once SQLite has started, changing nothing.
            unsafe {
                if ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, default.as_mut_ptr())
                    != ffi::SQLITE_OK
                {
                    return None;
                }
                let default = default.assume_init();
                let (Some(_), Some(_), Some(_), Some(_), Some(_)) = (
                    default.xCreate,
                    default.xFetch,
                    default.xRekey,
                    default.xTruncate,
                    default.xDestroy,
                ) else {
                    return None;
                };
                let wrapper = ffi::sqlite3_pcache_methods2 {
                    xCreate: Some(create),
                    xCachesize: Some(cachesize),
                    xPagecount: Some(pagecount),
                    xFetch: Some(fetch),
                    xUnpin: Some(unpin),
                    xRekey: Some(rekey),
                    xTruncate: Some(truncate),
                    xDestroy: Some(destroy),
                    xShrink: Some(shrink),
                    // Start-up and shut-down are the default's own, with its own argument.
                    ..default
                };
                // SQLite copies the struct; the functions it points to are static.
                let wrapper: *const ffi::sqlite3_pcache_methods2 = &wrapper;
                if ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, wrapper) != ffi::SQLITE_OK {
                    return None;
                }
                Some(DefaultMethods(default))
            }
        })
        .is_some()
}

/// The default methods (SQLite calls the wrapper only after `install` stored them).
fn methods() -> Option<&'static ffi::sqlite3_pcache_methods2> {
    match DEFAULT.get() {
        Some(Some(DefaultMethods(m))) => Some(m),
        _ => None,
    }
}

/// # Safety
/// `cache` is a pointer `create` returned and `destroy` has not yet freed.
unsafe fn wrapped<'a>(cache: *mut ffi::sqlite3_pcache) -> &'a Wrapped {
    // SAFETY: per the function's contract.
    unsafe { &*(cache as *const Wrapped) }
}

unsafe extern "C" fn create(
    page_size: c_int,
    extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(inner_create) = methods().and_then(|m| m.xCreate) else {
        return std::ptr::null_mut();
    };
    // SAFETY: forwarded as SQLite called it.
    let inner = unsafe { inner_create(page_size, extra, purgeable) };
    if inner.is_null() {
        return inner;
    }
    let parking = u64::try_from(page_size)
        .ok()
        .filter(|size| *size > 0)
        .map_or(c_uint::MAX, |size| {
            c_uint::try_from(PENDING_BYTE / size + 1).unwrap_or(c_uint::MAX)
        });
    let cache = Box::new(Wrapped {
        inner,
        parking,
        highest: AtomicU32::new(0),
        parked: AtomicBool::new(false),
        skipped: AtomicU64::new(0),
    });
    Box::into_raw(cache) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn cachesize(cache: *mut ffi::sqlite3_pcache, pages: c_int) {
    if let Some(f) = methods().and_then(|m| m.xCachesize) {
        // SAFETY: `cache` came from `create`; forwarded with the default's handle.
        unsafe { f(wrapped(cache).inner, pages) }
    }
}

unsafe extern "C" fn pagecount(cache: *mut ffi::sqlite3_pcache) -> c_int {
    match methods().and_then(|m| m.xPagecount) {
        // SAFETY: as in `cachesize`.
        Some(f) => unsafe { f(wrapped(cache).inner) },
        None => 0,
    }
}

unsafe extern "C" fn fetch(
    cache: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create_flag: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let Some(f) = methods().and_then(|m| m.xFetch) else {
        return std::ptr::null_mut();
    };
    // SAFETY: as in `cachesize`.
    let cache = unsafe { wrapped(cache) };
    // SAFETY: forwarded as SQLite called it.
    let page = unsafe { f(cache.inner, key, create_flag) };
    if !page.is_null() && create_flag != 0 {
        // The page may be new: its number counts.
        note_key(cache, key);
    }
    page
}

unsafe extern "C" fn unpin(
    cache: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    if let Some(f) = methods().and_then(|m| m.xUnpin) {
        // SAFETY: as in `cachesize`. A discarded page's number stays counted (an upper bound).
        unsafe { f(wrapped(cache).inner, page, discard) }
    }
}

unsafe extern "C" fn rekey(
    cache: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old_key: c_uint,
    new_key: c_uint,
) {
    let Some(f) = methods().and_then(|m| m.xRekey) else {
        return;
    };
    // SAFETY: as in `cachesize`.
    let cache = unsafe { wrapped(cache) };
    // SAFETY: forwarded as SQLite called it.
    unsafe { f(cache.inner, page, old_key, new_key) };
    if old_key == cache.parking && new_key != cache.parking {
        cache.parked.store(false, Ordering::Relaxed);
    }
    note_key(cache, new_key);
}

fn note_key(cache: &Wrapped, key: c_uint) {
    if key == cache.parking {
        cache.parked.store(true, Ordering::Relaxed);
    } else {
        cache.highest.fetch_max(key, Ordering::Relaxed);
    }
}

unsafe extern "C" fn truncate(cache: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let Some(f) = methods().and_then(|m| m.xTruncate) else {
        return;
    };
    // SAFETY: as in `cachesize`.
    let cache = unsafe { wrapped(cache) };
    // Pages numbered `limit` or more are to go: none can exist when none is parked and no
    // number at or past `limit` was ever handed out since the last forwarded truncation.
    let parked = cache.parked.load(Ordering::Relaxed);
    if !parked && cache.highest.load(Ordering::Relaxed) < limit {
        cache.skipped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SAFETY: forwarded as SQLite called it.
    unsafe { f(cache.inner, limit) };
    cache
        .highest
        .fetch_min(limit.saturating_sub(1), Ordering::Relaxed);
    if limit <= cache.parking {
        cache.parked.store(false, Ordering::Relaxed);
    }
}

unsafe extern "C" fn destroy(cache: *mut ffi::sqlite3_pcache) {
    // SAFETY: `cache` came from `create` (a boxed `Wrapped`) and SQLite destroys it once.
    let cache = unsafe { Box::from_raw(cache as *mut Wrapped) };
    if let Some(f) = methods().and_then(|m| m.xDestroy) {
        // SAFETY: the default's handle, destroyed once with its wrapper.
        unsafe { f(cache.inner) }
    }
}

unsafe extern "C" fn shrink(cache: *mut ffi::sqlite3_pcache) {
    if let Some(f) = methods().and_then(|m| m.xShrink) {
        // SAFETY: as in `cachesize`.
        unsafe { f(wrapped(cache).inner) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache made through the wrapper, driven as the pager drives it.
    struct TestCache(*mut ffi::sqlite3_pcache);

    impl TestCache {
        fn new(page_size: c_int) -> Self {
            // SQLite must be started (its default cache initialised) for a cache to be made.
            crate::prepare_sqlite();
            assert!(install(), "SQLite had started before the wrapper");
            rusqlite::Connection::open_in_memory().expect("sqlite starts");
            // SAFETY: the wrapper is installed and SQLite started.
            let cache = unsafe { create(page_size, 64, 1) };
            assert!(!cache.is_null());
            // Room for every page the tests make (a cache of size 0 keeps no unpinned page).
            // SAFETY: a live cache.
            unsafe { cachesize(cache, 100) };
            Self(cache)
        }
        fn page(&self, key: c_uint) -> *mut ffi::sqlite3_pcache_page {
            // SAFETY: a live cache; createFlag 2 makes the page if missing.
            let page = unsafe { fetch(self.0, key, 2) };
            assert!(!page.is_null(), "page {key}");
            page
        }
        fn cached(&self, key: c_uint) -> bool {
            // SAFETY: a live cache; createFlag 0 only looks.
            let page = unsafe { fetch(self.0, key, 0) };
            if !page.is_null() {
                self.release(page);
            }
            !page.is_null()
        }
        fn release(&self, page: *mut ffi::sqlite3_pcache_page) {
            // SAFETY: a page this cache handed out.
            unsafe { unpin(self.0, page, 0) }
        }
        fn pages(&self) -> c_int {
            // SAFETY: a live cache.
            unsafe { pagecount(self.0) }
        }
        fn truncate(&self, limit: c_uint) {
            // SAFETY: a live cache.
            unsafe { truncate(self.0, limit) }
        }
        fn rekey(&self, page: *mut ffi::sqlite3_pcache_page, from: c_uint, to: c_uint) {
            // SAFETY: a page of this cache, at `from`, with nothing at `to`.
            unsafe { rekey(self.0, page, from, to) }
        }
    }

    impl Drop for TestCache {
        fn drop(&mut self) {
            // SAFETY: made by `create`, destroyed once.
            unsafe { destroy(self.0) }
        }
    }

    fn wrapper_state(cache: &TestCache) -> (u32, bool) {
        // SAFETY: a live cache.
        let w = unsafe { wrapped(cache.0) };
        (
            w.highest.load(Ordering::Relaxed),
            w.parked.load(Ordering::Relaxed),
        )
    }

    fn skipped(cache: &TestCache) -> u64 {
        // SAFETY: a live cache.
        unsafe { wrapped(cache.0) }.skipped.load(Ordering::Relaxed)
    }

    #[test]
    fn a_truncation_past_every_page_is_skipped_after_a_page_was_parked_and_moved_back() {
        let cache = TestCache::new(4096);
        let parking = (PENDING_BYTE / 4096 + 1) as c_uint;
        let pages: Vec<_> = (1..=10).map(|key| cache.page(key)).collect();
        // A split's reordering: 4 -> parking, 7 -> 4, parking -> 7.
        cache.rekey(pages[3], 4, parking);
        assert_eq!(wrapper_state(&cache), (10, true));
        cache.rekey(pages[6], 7, 4);
        cache.rekey(pages[3], parking, 7);
        assert_eq!(wrapper_state(&cache), (10, false));
        for page in pages {
            cache.release(page);
        }
        // The commit's truncation to the database's size (10 pages): nothing to drop.
        cache.truncate(11);
        assert_eq!(skipped(&cache), 1);
        assert_eq!(cache.pages(), 10);
        assert!((1..=10).all(|key| cache.cached(key)));
    }

    #[test]
    fn a_truncation_below_the_highest_page_drops_what_is_past_it() {
        let cache = TestCache::new(4096);
        let pages: Vec<_> = (1..=10).map(|key| cache.page(key)).collect();
        for page in pages {
            cache.release(page);
        }
        // A rollback back to 6 pages.
        cache.truncate(7);
        assert_eq!(skipped(&cache), 0);
        assert_eq!(cache.pages(), 6);
        assert!((1..=6).all(|key| cache.cached(key)));
        assert!((7..=10).all(|key| !cache.cached(key)));
        assert_eq!(wrapper_state(&cache).0, 6);
        // And pages made past the end again are dropped again.
        let page = cache.page(9);
        cache.release(page);
        cache.truncate(7);
        assert!(!cache.cached(9));
    }

    #[test]
    fn a_parked_page_is_always_truncated_away() {
        let cache = TestCache::new(1024);
        let parking = (PENDING_BYTE / 1024 + 1) as c_uint;
        let pages: Vec<_> = (1..=3).map(|key| cache.page(key)).collect();
        cache.rekey(pages[2], 3, parking);
        for page in pages {
            cache.release(page);
        }
        // Left parked (as after an error mid-split): the truncation must reach it.
        cache.truncate(4);
        assert_eq!(skipped(&cache), 0);
        assert!(!cache.cached(parking));
        assert_eq!(cache.pages(), 2);
        assert_eq!(wrapper_state(&cache), (3, false));
    }
}
