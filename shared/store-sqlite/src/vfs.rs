//! The operating system's SQLite VFS with one change: a transaction's write-ahead-log frames
//! reach the file in a few large writes instead of two per frame.
//!
//! Why: SQLite writes each log frame as two `pwrite`s (its 24-byte header, then the page), so
//! a webhook's commit of a few dozen pages made about 80 system calls, all inside the writer's
//! critical section (12% of the webhook path's CPU). Here a log file's writes are gathered
//! while they are contiguous and handed to the file in one write:
//! - when the page of a commit frame (a frame header naming the database's size) arrives: the
//!   commit's frames are in the file before SQLite publishes the commit to readers, and a
//!   failed write is that write's error, so it fails the commit;
//! - before any other call on the log file (read, sync, size, truncate, locks, controls,
//!   close), so SQLite never observes the file without its own writes;
//! - before any lock change or memory barrier on the shared-memory index (calls on the
//!   database file the log belongs to): nothing stays gathered once the connection lets go
//!   of the log's write lock, so frames of a transaction rolled back after it spilled are
//!   written while the lock is still held, where SQLite itself would have written them, never
//!   later over another writer's frames;
//! - when a write is not contiguous with the gathered ones, or would take them past what the
//!   operating system VFS writes at once (128 KiB).
//!
//! The database file is the operating system VFS's object behind a forwarding wrapper (which
//! knows its log); every other file (journals, temporary files) is the base VFS's own.

use rusqlite::ffi;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

/// The name the VFS is registered under (as the default).
const NAME: &std::ffi::CStr = c"shopsync-unix";

/// A log frame's header (the page follows it).
const FRAME_HEADER: usize = 24;

/// The most bytes handed to the file in one write: the unix VFS writes at most 128 KiB - 1 at
/// a time (it masks larger sizes), about 31 frames of 4 KiB.
const MAX_WRITE: usize = 0x1_ffff;

/// The operating system VFS the wrapper forwards to (set before the wrapper is registered).
static BASE: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

static INSTALLED: OnceLock<bool> = OnceLock::new();

fn base() -> *mut ffi::sqlite3_vfs {
    BASE.load(Ordering::Acquire)
}

/// Registers the VFS as SQLite's default, once per process; returns whether it is in place.
/// Connections opened before keep the VFS they were opened with.
pub(crate) fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        // SAFETY: finding the default VFS starts SQLite if needed; the registered struct is
        // leaked, so it outlives every connection, as SQLite requires.
        unsafe {
            let base = ffi::sqlite3_vfs_find(std::ptr::null());
            if base.is_null() || (*base).xOpen.is_none() {
                return false;
            }
            let Some(size) = usize::try_from((*base).szOsFile)
                .ok()
                .and_then(|inner| c_int::try_from(INNER_OFFSET + inner).ok())
            else {
                return false;
            };
            BASE.store(base, Ordering::Release);
            let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
                iVersion: (*base).iVersion.min(3),
                szOsFile: size,
                mxPathname: (*base).mxPathname,
                pNext: std::ptr::null_mut(),
                zName: NAME.as_ptr(),
                pAppData: std::ptr::null_mut(),
                xOpen: Some(open),
                xDelete: Some(delete),
                xAccess: Some(access),
                xFullPathname: Some(full_pathname),
                xDlOpen: Some(dl_open),
                xDlError: Some(dl_error),
                xDlSym: Some(dl_sym),
                xDlClose: Some(dl_close),
                xRandomness: Some(randomness),
                xSleep: Some(sleep),
                xCurrentTime: Some(current_time),
                xGetLastError: Some(get_last_error),
                xCurrentTimeInt64: Some(current_time_int64),
                xSetSystemCall: Some(set_system_call),
                xGetSystemCall: Some(get_system_call),
                xNextSystemCall: Some(next_system_call),
            }));
            ffi::sqlite3_vfs_register(vfs, 1) == ffi::SQLITE_OK
        }
    })
}

/// A write-ahead-log file's state; the base VFS's file object follows at [`INNER_OFFSET`].
#[repr(C)]
struct WalFile {
    /// SQLite's view: points at [`WAL_METHODS`].
    file: ffi::sqlite3_file,
    /// Writes gathered, contiguous from `start`.
    gathered: Vec<u8>,
    start: i64,
    /// The last write was a commit frame's header: its page completes the commit.
    commit_header: bool,
    /// The database file this log belongs to (a [`DbFile`]), or null.
    db: *mut ffi::sqlite3_file,
    /// Writes SQLite made, and writes handed to the file (for tests and diagnostics).
    received: u64,
    issued: u64,
}

/// A main database file's state; the base VFS's file object follows at [`INNER_OFFSET`].
#[repr(C)]
struct DbFile {
    /// SQLite's view: points at [`DB_METHODS`].
    file: ffi::sqlite3_file,
    /// Its open log (a [`WalFile`]), or null.
    wal: *mut ffi::sqlite3_file,
}

/// Where the base VFS's file object begins inside ours (either kind).
const INNER_OFFSET: usize = {
    let (wal, db) = (
        std::mem::size_of::<WalFile>(),
        std::mem::size_of::<DbFile>(),
    );
    let larger = if wal > db { wal } else { db };
    larger.div_ceil(8) * 8
};

/// The base VFS's object inside `file` (either kind).
///
/// # Safety
/// `file` is a [`WalFile`] or [`DbFile`] that [`open`] made; the pointer spans the allocation.
unsafe fn inner_of(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: per the function's contract.
    unsafe { file.cast::<u8>().add(INNER_OFFSET).cast() }
}

/// The base VFS's methods for the object inside `file`.
///
/// # Safety
/// As [`inner_of`], with the inner object open.
unsafe fn inner_methods(file: *mut ffi::sqlite3_file) -> Option<&'static ffi::sqlite3_io_methods> {
    // SAFETY: per the function's contract; the base's methods are static in SQLite.
    unsafe { (*inner_of(file)).pMethods.as_ref() }
}

/// # Safety
/// `file` is an open [`WalFile`].
unsafe fn wal_state<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
    // SAFETY: per the function's contract; the state is the allocation's first bytes.
    unsafe { &mut *(file as *mut WalFile) }
}

/// Hands a log's gathered writes to the file in one write.
///
/// # Safety
/// `file` is an open [`WalFile`].
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the function's contract.
    let state = unsafe { wal_state(file) };
    if state.gathered.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Ok(len) = c_int::try_from(state.gathered.len()) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    state.issued += 1;
    #[cfg(test)]
    if tests::FAIL_NEXT_FLUSH.with(|fail| fail.replace(false)) {
        state.gathered.clear();
        return ffi::SQLITE_IOERR_WRITE;
    }
    // SAFETY: the inner file is open; the buffer is `len` readable bytes.
    let rc = unsafe {
        match inner_methods(file).and_then(|m| m.xWrite) {
            Some(write) => write(
                inner_of(file),
                state.gathered.as_ptr().cast(),
                len,
                state.start,
            ),
            None => ffi::SQLITE_IOERR_WRITE,
        }
    };
    // Written or failed, the bytes are SQLite's to write again; none is kept for later.
    state.gathered.clear();
    rc
}

/// Hands the log of a database file its gathered writes (see the module's doc).
///
/// # Safety
/// `file` is an open [`DbFile`].
unsafe fn flush_log_of(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the function's contract; a linked log is open (it unlinks when it closes).
    unsafe {
        let wal = (*(file as *mut DbFile)).wal;
        if wal.is_null() {
            ffi::SQLITE_OK
        } else {
            flush(wal)
        }
    }
}

/// Nothing to do before a call (the database file's other methods).
///
/// # Safety
/// None: `file` is not used.
unsafe fn nothing(_file: *mut ffi::sqlite3_file) -> c_int {
    ffi::SQLITE_OK
}

/// # Safety
/// `file` is an open [`WalFile`]; `data` is what SQLite asked to write at `offset`.
unsafe fn gather(file: *mut ffi::sqlite3_file, data: &[u8], offset: i64) -> c_int {
    // SAFETY: per the function's contract (for every use of `file` below).
    let state = unsafe { wal_state(file) };
    state.received += 1;
    let end = i64::try_from(state.gathered.len())
        .ok()
        .and_then(|len| state.start.checked_add(len));
    let room = state.gathered.len() + data.len() <= MAX_WRITE;
    if !state.gathered.is_empty() && (end != Some(offset) || !room) {
        let rc = unsafe { flush(file) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    let state = unsafe { wal_state(file) };
    let completes_commit = state.commit_header && data.len() != FRAME_HEADER;
    // A frame header's second word is the database's size in pages on a commit frame and zero
    // on every other frame.
    state.commit_header = data.len() == FRAME_HEADER && data[4..8] != [0; 4];
    if data.len() > MAX_WRITE {
        // Never gathered (pages are at most 64 KiB): straight to the file.
        state.issued += 1;
        let Ok(len) = c_int::try_from(data.len()) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        return match unsafe { inner_methods(file) }.and_then(|m| m.xWrite) {
            Some(write) => unsafe { write(inner_of(file), data.as_ptr().cast(), len, offset) },
            None => ffi::SQLITE_IOERR_WRITE,
        };
    }
    if state.gathered.is_empty() {
        state.start = offset;
    }
    state.gathered.extend_from_slice(data);
    if completes_commit {
        return unsafe { flush(file) };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = base();
    // SAFETY: `base` is the operating system VFS (static in SQLite) once installed.
    let Some(base_open) = (unsafe { base.as_ref() }).and_then(|b| b.xOpen) else {
        return ffi::SQLITE_CANTOPEN;
    };
    let wal = flags & ffi::SQLITE_OPEN_WAL != 0;
    if !wal && flags & ffi::SQLITE_OPEN_MAIN_DB == 0 {
        // Journals and temporary files: the base VFS's own object in the same memory.
        // SAFETY: `file` has room for the base's object (our size is larger).
        return unsafe { base_open(base, name, file, flags, out_flags) };
    }
    // SAFETY: SQLite gave `szOsFile` bytes: our state, then room for the base's object at
    // INNER_OFFSET; `name` is a log's name when `wal` (as `sqlite3_database_file_object` needs).
    unsafe {
        (*file).pMethods = std::ptr::null();
        let inner = inner_of(file);
        let rc = base_open(base, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // The base leaves a file it failed to open closed, with no methods.
            return rc;
        }
        if (*inner).pMethods.is_null() {
            return ffi::SQLITE_CANTOPEN;
        }
        if !wal {
            (file as *mut DbFile).write(DbFile {
                file: ffi::sqlite3_file {
                    pMethods: &DB_METHODS,
                },
                wal: std::ptr::null_mut(),
            });
            return ffi::SQLITE_OK;
        }
        let db = ffi::sqlite3_database_file_object(name);
        let db = if !db.is_null() && std::ptr::eq((*db).pMethods, &DB_METHODS) {
            (*(db as *mut DbFile)).wal = file;
            db
        } else {
            std::ptr::null_mut()
        };
        (file as *mut WalFile).write(WalFile {
            file: ffi::sqlite3_file {
                pMethods: &WAL_METHODS,
            },
            gathered: Vec::new(),
            start: 0,
            commit_header: false,
            db,
            received: 0,
            issued: 0,
        });
    }
    ffi::SQLITE_OK
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: Some(wal_shm_map),
    xShmLock: Some(wal_shm_lock),
    xShmBarrier: Some(wal_shm_barrier),
    xShmUnmap: Some(wal_shm_unmap),
    xFetch: Some(wal_fetch),
    xUnfetch: Some(wal_unfetch),
};

static DB_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(db_close),
    xRead: Some(db_read),
    xWrite: Some(db_write),
    xTruncate: Some(db_truncate),
    xSync: Some(db_sync),
    xFileSize: Some(db_file_size),
    xLock: Some(db_lock),
    xUnlock: Some(db_unlock),
    xCheckReservedLock: Some(db_check_reserved_lock),
    xFileControl: Some(db_file_control),
    xSectorSize: Some(db_sector_size),
    xDeviceCharacteristics: Some(db_device_characteristics),
    xShmMap: Some(db_shm_map),
    xShmLock: Some(db_shm_lock),
    xShmBarrier: Some(db_shm_barrier),
    xShmUnmap: Some(db_shm_unmap),
    xFetch: Some(db_fetch),
    xUnfetch: Some(db_unfetch),
};

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file it opened, once; a linked database file is still open (it
    // unlinks its log when it closes first).
    unsafe {
        let flushed = flush(file);
        let db = wal_state(file).db;
        if !db.is_null() {
            (*(db as *mut DbFile)).wal = std::ptr::null_mut();
        }
        let closed = match inner_methods(file).and_then(|m| m.xClose) {
            Some(f) => f(inner_of(file)),
            None => ffi::SQLITE_OK,
        };
        // SQLite frees the memory itself.
        std::ptr::drop_in_place(file as *mut WalFile);
        flush_error(flushed, closed)
    }
}

unsafe extern "C" fn db_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file it opened, once; a linked log is still open.
    unsafe {
        let wal = (*(file as *mut DbFile)).wal;
        if !wal.is_null() {
            wal_state(wal).db = std::ptr::null_mut();
        }
        match inner_methods(file).and_then(|m| m.xClose) {
            Some(f) => f(inner_of(file)),
            None => ffi::SQLITE_OK,
        }
    }
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    // SAFETY: an open WalFile; SQLite passes `amount` readable bytes.
    unsafe {
        gather(
            file,
            std::slice::from_raw_parts(data.cast::<u8>(), len),
            offset,
        )
    }
}

/// Defines a file method that runs `$before` (writing out gathered frames) and forwards the
/// call to the base VFS's object (`$missing` when the base lacks the method). An error from
/// `$before` is the answer if the call itself succeeds.
macro_rules! file_method {
    ($name:ident, $before:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: SQLite calls a file's methods only while it is open; forwarded as called.
            unsafe {
                let before = $before(file);
                match inner_methods(file).and_then(|m| m.$method) {
                    Some(f) => flush_error(before, f(inner_of(file) $(, $arg)*)),
                    None => $missing,
                }
            }
        }
    };
}

/// A method's answer, unless what ran before it failed.
trait AfterFlush {
    fn or_flush_error(self, flushed: c_int) -> Self;
}

impl AfterFlush for c_int {
    fn or_flush_error(self, flushed: c_int) -> Self {
        if flushed != ffi::SQLITE_OK && self == ffi::SQLITE_OK {
            flushed
        } else {
            self
        }
    }
}

impl AfterFlush for () {
    fn or_flush_error(self, flushed: c_int) -> Self {
        if flushed != ffi::SQLITE_OK {
            // Only a transaction that never committed can be gathered here (a commit's frames
            // go out with its last page); its frames are past the log's end either way.
            tracing::warn!(code = flushed, "writing a log's gathered frames failed");
        }
    }
}

fn flush_error<T: AfterFlush>(flushed: c_int, answer: T) -> T {
    answer.or_flush_error(flushed)
}

type Offset = ffi::sqlite3_int64;

file_method!(wal_read, flush, xRead, (data: *mut c_void, amount: c_int, offset: Offset) -> c_int, ffi::SQLITE_IOERR_READ);
file_method!(wal_truncate, flush, xTruncate, (size: Offset) -> c_int, ffi::SQLITE_IOERR_TRUNCATE);
file_method!(wal_sync, flush, xSync, (flags: c_int) -> c_int, ffi::SQLITE_IOERR_FSYNC);
file_method!(wal_file_size, flush, xFileSize, (size: *mut Offset) -> c_int, ffi::SQLITE_IOERR_FSTAT);
file_method!(wal_lock, flush, xLock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_LOCK);
file_method!(wal_unlock, flush, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_UNLOCK);
file_method!(wal_check_reserved_lock, flush, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
file_method!(wal_file_control, flush, xFileControl, (op: c_int, arg: *mut c_void) -> c_int, ffi::SQLITE_NOTFOUND);
file_method!(wal_sector_size, flush, xSectorSize, () -> c_int, 4096);
file_method!(wal_device_characteristics, flush, xDeviceCharacteristics, () -> c_int, 0);
file_method!(wal_shm_map, flush, xShmMap, (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR_SHMMAP);
file_method!(wal_shm_lock, flush, xShmLock, (offset: c_int, n: c_int, flags: c_int) -> c_int, ffi::SQLITE_IOERR_SHMLOCK);
file_method!(wal_shm_barrier, flush, xShmBarrier, () -> (), ());
file_method!(wal_shm_unmap, flush, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);
file_method!(wal_fetch, flush, xFetch, (offset: Offset, amount: c_int, out: *mut *mut c_void) -> c_int, no_map(out));
file_method!(wal_unfetch, flush, xUnfetch, (offset: Offset, page: *mut c_void) -> c_int, ffi::SQLITE_OK);

file_method!(db_read, nothing, xRead, (data: *mut c_void, amount: c_int, offset: Offset) -> c_int, ffi::SQLITE_IOERR_READ);
file_method!(db_write, nothing, xWrite, (data: *const c_void, amount: c_int, offset: Offset) -> c_int, ffi::SQLITE_IOERR_WRITE);
file_method!(db_truncate, nothing, xTruncate, (size: Offset) -> c_int, ffi::SQLITE_IOERR_TRUNCATE);
file_method!(db_sync, nothing, xSync, (flags: c_int) -> c_int, ffi::SQLITE_IOERR_FSYNC);
file_method!(db_file_size, nothing, xFileSize, (size: *mut Offset) -> c_int, ffi::SQLITE_IOERR_FSTAT);
file_method!(db_lock, nothing, xLock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_LOCK);
file_method!(db_unlock, nothing, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_UNLOCK);
file_method!(db_check_reserved_lock, nothing, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
file_method!(db_file_control, nothing, xFileControl, (op: c_int, arg: *mut c_void) -> c_int, ffi::SQLITE_NOTFOUND);
file_method!(db_sector_size, nothing, xSectorSize, () -> c_int, 4096);
file_method!(db_device_characteristics, nothing, xDeviceCharacteristics, () -> c_int, 0);
file_method!(db_shm_map, nothing, xShmMap, (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR_SHMMAP);
file_method!(db_shm_lock, flush_log_of, xShmLock, (offset: c_int, n: c_int, flags: c_int) -> c_int, ffi::SQLITE_IOERR_SHMLOCK);
file_method!(db_shm_barrier, flush_log_of, xShmBarrier, () -> (), ());
file_method!(db_shm_unmap, nothing, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);
file_method!(db_fetch, nothing, xFetch, (offset: Offset, amount: c_int, out: *mut *mut c_void) -> c_int, no_map(out));
file_method!(db_unfetch, nothing, xUnfetch, (offset: Offset, page: *mut c_void) -> c_int, ffi::SQLITE_OK);

/// The writes SQLite made to `conn`'s open log and the writes handed to the file, when the
/// log is this VFS's (for tests).
#[cfg(test)]
pub(crate) fn log_writes(conn: &rusqlite::Connection) -> Option<(u64, u64)> {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: SQLITE_FCNTL_JOURNAL_POINTER writes the open log file's object; it is a WalFile
    // when its methods are ours, kept open by the connection.
    unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_JOURNAL_POINTER,
            (&mut file as *mut *mut ffi::sqlite3_file).cast(),
        );
        if rc != ffi::SQLITE_OK || file.is_null() || !std::ptr::eq((*file).pMethods, &WAL_METHODS) {
            return None;
        }
        let state = wal_state(file);
        Some((state.received, state.issued))
    }
}

/// The answer to a memory-map request the base cannot serve: no map (SQLite reads instead).
///
/// # Safety
/// `out` is the pointer SQLite passed for the mapping.
unsafe fn no_map(out: *mut *mut c_void) -> c_int {
    // SAFETY: per the function's contract.
    unsafe { *out = std::ptr::null_mut() };
    ffi::SQLITE_OK
}

/// Defines a method of the VFS that forwards to the base VFS (`$missing` when it lacks it).
macro_rules! forward_vfs {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(_vfs: *mut ffi::sqlite3_vfs $(, $arg: $ty)*) -> $ret {
            let base = base();
            // SAFETY: `base` is the operating system VFS (static in SQLite) once installed.
            match unsafe { base.as_ref() }.and_then(|b| b.$method) {
                // SAFETY: forwarded to the base VFS as SQLite called it.
                Some(f) => unsafe { f(base $(, $arg)*) },
                None => $missing,
            }
        }
    };
}

forward_vfs!(delete, xDelete, (name: *const c_char, sync_dir: c_int) -> c_int, ffi::SQLITE_IOERR_DELETE);
forward_vfs!(access, xAccess, (name: *const c_char, flags: c_int, out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_ACCESS);
forward_vfs!(full_pathname, xFullPathname, (name: *const c_char, size: c_int, out: *mut c_char) -> c_int, ffi::SQLITE_CANTOPEN);
forward_vfs!(dl_open, xDlOpen, (name: *const c_char) -> *mut c_void, std::ptr::null_mut());
forward_vfs!(dl_error, xDlError, (size: c_int, out: *mut c_char) -> (), ());
forward_vfs!(dl_sym, xDlSym, (handle: *mut c_void, symbol: *const c_char) -> Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>, None);
forward_vfs!(dl_close, xDlClose, (handle: *mut c_void) -> (), ());
forward_vfs!(randomness, xRandomness, (size: c_int, out: *mut c_char) -> c_int, 0);
forward_vfs!(sleep, xSleep, (micros: c_int) -> c_int, 0);
forward_vfs!(current_time, xCurrentTime, (out: *mut f64) -> c_int, ffi::SQLITE_ERROR);
forward_vfs!(get_last_error, xGetLastError, (size: c_int, out: *mut c_char) -> c_int, 0);
forward_vfs!(current_time_int64, xCurrentTimeInt64, (out: *mut ffi::sqlite3_int64) -> c_int, ffi::SQLITE_ERROR);
forward_vfs!(set_system_call, xSetSystemCall, (name: *const c_char, call: ffi::sqlite3_syscall_ptr) -> c_int, ffi::SQLITE_NOTFOUND);
forward_vfs!(get_system_call, xGetSystemCall, (name: *const c_char) -> ffi::sqlite3_syscall_ptr, None);
forward_vfs!(next_system_call, xNextSystemCall, (name: *const c_char) -> *const c_char, std::ptr::null());

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    thread_local! {
        /// Makes this thread's next write of gathered frames fail (an I/O error).
        pub(super) static FAIL_NEXT_FLUSH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[test]
    fn a_commit_whose_frames_fail_to_reach_the_log_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.sqlite3");
        let writer = open(&path);
        writer
            .execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
            .expect("schema");
        let insert = |conn: &Connection, from: i64| -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            for k in from..from + 10 {
                tx.execute("INSERT INTO t VALUES (?1, 'x')", [k])?;
            }
            tx.commit()
        };
        insert(&writer, 0).expect("first commit");
        FAIL_NEXT_FLUSH.with(|fail| fail.set(true));
        let failed = insert(&writer, 100);
        assert!(
            matches!(&failed, Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::SystemIoFailure),
            "{failed:?}"
        );
        drop(writer);
        let reader = open(&path);
        let rows: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 10, "only the first commit");
        insert(&reader, 200).expect("later commits go on");
        let check: String = reader
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(check, "ok");
    }

    fn wal_counts(conn: &Connection) -> (u64, u64) {
        log_writes(conn).expect("the log is ours")
    }

    fn gathered(conn: &Connection) -> usize {
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: as in `log_writes`, which checked (via `wal_counts`) the log is ours.
        unsafe {
            ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_JOURNAL_POINTER,
                (&mut file as *mut *mut ffi::sqlite3_file).cast(),
            );
            wal_counts(conn);
            wal_state(file).gathered.len()
        }
    }

    fn open(path: &std::path::Path) -> Connection {
        crate::prepare_sqlite();
        assert!(install(), "SQLite had started without the VFS");
        let conn = Connection::open(path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.pragma_update(None, "synchronous", "NORMAL")
            .expect("sync");
        conn
    }

    #[test]
    fn a_commit_reaches_the_log_in_one_write_and_other_connections_see_it_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.sqlite3");
        let writer = open(&path);
        let reader = open(&path);
        writer
            .execute_batch(
                "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t (v);",
            )
            .expect("schema");
        for round in 0..50 {
            let before = wal_counts(&writer);
            let tx = writer.unchecked_transaction().expect("tx");
            for i in 0..20 {
                let k = round * 20 + i;
                tx.execute(
                    "INSERT INTO t VALUES (?1, ?2)",
                    (k, format!("{k:08x}").repeat(25)),
                )
                .expect("insert");
            }
            tx.commit().expect("commit");
            let after = wal_counts(&writer);
            let received = after.0 - before.0;
            // Several pages, each a header and a page: all in one write.
            assert!(received >= 6, "{received} writes in round {round}");
            assert_eq!(after.1 - before.1, 1, "one write for {received}");
            let seen: i64 = reader
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .expect("count");
            assert_eq!(seen, (round + 1) * 20);
        }
        let check: String = reader
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(check, "ok");
    }

    #[test]
    fn frames_of_a_spilled_transaction_rolled_back_never_land_on_another_writers_commit() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.sqlite3");
        let first = open(&path);
        let second = open(&path);
        first.pragma_update(None, "cache_size", 20).expect("cache");
        first
            .execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
            .expect("schema");
        // The first writer spills frames (the last few still gathered) and rolls back; the
        // second then commits more frames over the same part of the log.
        let spilled = first.unchecked_transaction().expect("tx");
        for k in 0..70 {
            spilled
                .execute("INSERT INTO t VALUES (?1, randomblob(1000))", [k])
                .expect("insert");
        }
        assert!(gathered(&first) > 0, "frames spilled and gathered");
        drop(spilled);
        // Written out before the write lock went (the rollback reads them back; the lock's
        // release writes out whatever is left), never held for later.
        assert_eq!(gathered(&first), 0);
        let tx = second.unchecked_transaction().expect("tx");
        for k in 0..2_000 {
            tx.execute("INSERT INTO t VALUES (?1, zeroblob(1000))", [k])
                .expect("insert");
        }
        tx.commit().expect("commit");
        // The first connection touches the log again (a read), then everyone checks.
        let counted = |conn: &Connection| -> (i64, i64) {
            conn.query_row(
                "SELECT count(*), sum(length(v) - 1000 + instr(v, x'01')) FROM t",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("count")
        };
        assert_eq!(counted(&first), (2_000, 0));
        drop(first);
        drop(second);
        let fresh = open(&path);
        assert_eq!(counted(&fresh), (2_000, 0));
        let check: String = fresh
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(check, "ok");
    }

    #[test]
    fn large_and_rolled_back_transactions_and_log_restarts_keep_every_committed_row() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.sqlite3");
        let writer = open(&path);
        // A small cache: a big transaction spills frames to the log before it commits.
        writer.pragma_update(None, "cache_size", 20).expect("cache");
        writer
            .execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
            .expect("schema");
        fn big(conn: &Connection, from: i64) -> rusqlite::Transaction<'_> {
            let tx = conn.unchecked_transaction().expect("tx");
            for k in from..from + 2_000 {
                tx.execute("INSERT INTO t VALUES (?1, zeroblob(1000))", [k])
                    .expect("insert");
            }
            tx
        }
        big(&writer, 0).commit().expect("commit");
        let (received, issued) = wal_counts(&writer);
        // About 500 frames of 4 KiB: written 31 at a time, at most 128 KiB each.
        assert!(issued >= 16, "{issued} writes");
        assert!(issued * 40 < received, "{issued} writes for {received}");
        // Spilled, then rolled back: none of it may show.
        drop(big(&writer, 10_000));
        // The log restarts from its start after a full checkpoint.
        writer
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
            .expect("checkpoint");
        big(&writer, 20_000).commit().expect("commit");
        drop(writer);
        let reader = open(&path);
        let (count, low, high): (i64, i64, i64) = reader
            .query_row("SELECT count(*), min(k), max(k) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("count");
        assert_eq!((count, low, high), (4_000, 0, 21_999));
        let rolled_back: i64 = reader
            .query_row(
                "SELECT count(*) FROM t WHERE k BETWEEN 10000 AND 11999",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(rolled_back, 0);
        let check: String = reader
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(check, "ok");
    }
}
