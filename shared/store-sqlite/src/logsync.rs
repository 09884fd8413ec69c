//! Group fsync of the embedded store's write-ahead log: one fsync covers every commit made
//! before it started, and every caller waiting on those commits is woken at once when it ends.

use shopsync_store::backend::StoreError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// How far the log is known durable.
#[derive(Debug, Clone, Default)]
struct Durable {
    /// Commits covered by a finished fsync.
    commits: u64,
    /// Why an fsync failed. Sticky: after a failed fsync the kernel may have dropped the
    /// log's unwritten pages, so no later fsync can vouch for them (restart the process, and
    /// SQLite recovers from what reached the disk).
    failure: Option<String>,
}

/// Group commit for the log: commits are counted by the writer ([`LogSync::committed`]);
/// [`LogSync::wait_durable`] returns once an fsync that started after the caller's last
/// commit has finished. At most one fsync runs at a time; callers arriving meanwhile share
/// the next one. Waiters are woken together (a broadcast), never one after another through
/// a lock's queue, which under load made each caller wait for every earlier one to be
/// scheduled in turn.
pub(crate) struct LogSync {
    commits: AtomicU64,
    syncing: AtomicBool,
    durable: watch::Sender<Durable>,
}

impl LogSync {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            commits: AtomicU64::new(0),
            syncing: AtomicBool::new(false),
            durable: watch::Sender::new(Durable::default()),
        })
    }

    /// Counts one commit (call after it returned).
    pub(crate) fn committed(&self) {
        self.commits.fetch_add(1, Ordering::AcqRel);
    }

    /// Waits until every commit counted so far is durable, running `sync` (on a blocking
    /// thread) when no fsync that covers them is already running. A caller that stops
    /// waiting leaves a started fsync to finish and publish its result.
    pub(crate) async fn wait_durable<F>(self: &Arc<Self>, sync: F) -> Result<(), StoreError>
    where
        F: Fn() -> Result<(), StoreError> + Send + Sync + 'static,
    {
        let wanted = self.commits.load(Ordering::Acquire);
        let sync = Arc::new(sync);
        let mut durable = self.durable.subscribe();
        loop {
            {
                let now = durable.borrow_and_update();
                if let Some(failure) = &now.failure {
                    return Err(failed(failure));
                }
                if now.commits >= wanted {
                    return Ok(());
                }
            }
            if !self.syncing.swap(true, Ordering::AcqRel) {
                // Everything counted up to here; later commits may ride along.
                let covering = self.commits.load(Ordering::Acquire);
                let this = Arc::clone(self);
                let sync = Arc::clone(&sync);
                let run = move || {
                    let result = sync();
                    // Cleared before publishing: a caller that saw it set is subscribed
                    // already, so the publication below wakes it.
                    this.syncing.store(false, Ordering::Release);
                    this.durable.send_modify(|d| match result {
                        Ok(()) => d.commits = d.commits.max(covering),
                        Err(e) => {
                            if d.failure.is_none() {
                                d.failure = Some(e.to_string());
                            }
                        }
                    });
                };
                drop(tokio::task::spawn_blocking(run));
            }
            if durable.changed().await.is_err() {
                return Err(StoreError::Unavailable("the store is closed".into()));
            }
        }
    }
}

fn failed(failure: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "the write-ahead log could not be made durable ({failure}); writes since are not \
         guaranteed on disk: restart shopsync to recover the store from what reached the disk"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn counting(
        fsyncs: &Arc<AtomicUsize>,
        pause: Duration,
    ) -> impl Fn() -> Result<(), StoreError> + Send + Sync + Clone + 'static {
        let fsyncs = Arc::clone(fsyncs);
        move || {
            std::thread::sleep(pause);
            fsyncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A task waiting for durability whose fsync (if it runs one) takes `pause`.
    fn waiting(
        log: &Arc<LogSync>,
        fsyncs: &Arc<AtomicUsize>,
        pause: Duration,
    ) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        let log = Arc::clone(log);
        let sync = counting(fsyncs, pause);
        tokio::spawn(async move { log.wait_durable(sync).await })
    }

    #[tokio::test]
    async fn nothing_committed_needs_no_fsync() {
        let log = LogSync::new();
        let fsyncs = Arc::new(AtomicUsize::new(0));
        log.wait_durable(counting(&fsyncs, Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(fsyncs.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_fsyncs_and_each_is_covered() {
        let log = LogSync::new();
        let fsyncs = Arc::new(AtomicUsize::new(0));
        let mut waiters = Vec::new();
        for _ in 0..64 {
            log.committed();
            let log = Arc::clone(&log);
            let sync = counting(&fsyncs, Duration::from_millis(5));
            waiters.push(tokio::spawn(async move {
                log.wait_durable(sync).await.unwrap();
                // Returned only once a finished fsync covers this caller's commit.
                log.durable.borrow().commits
            }));
        }
        for (i, waiter) in waiters.into_iter().enumerate() {
            assert!(waiter.await.unwrap() > i as u64);
        }
        let n = fsyncs.load(Ordering::SeqCst);
        assert!((1..=3).contains(&n), "64 waiters took {n} fsyncs");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_made_during_an_fsync_waits_for_the_next_one() {
        let log = LogSync::new();
        let fsyncs = Arc::new(AtomicUsize::new(0));
        log.committed();
        let first = waiting(&log, &fsyncs, Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The first fsync is running and covers only the first commit.
        log.committed();
        log.wait_durable(counting(&fsyncs, Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(fsyncs.load(Ordering::SeqCst), 2);
        assert_eq!(log.durable.borrow().commits, 2);
        first.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_failed_fsync_fails_every_later_wait() {
        let log = LogSync::new();
        log.committed();
        let err = log
            .wait_durable(|| Err(StoreError::Unavailable("disk gone".into())))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("disk gone"), "{err}");
        // Even one whose own fsync would succeed: the failed one may have lost pages.
        let fsyncs = Arc::new(AtomicUsize::new(0));
        log.committed();
        let err = log
            .wait_durable(counting(&fsyncs, Duration::ZERO))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("restart"), "{err}");
        assert_eq!(fsyncs.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_that_gives_up_leaves_the_fsync_to_finish_for_the_others() {
        let log = LogSync::new();
        let fsyncs = Arc::new(AtomicUsize::new(0));
        log.committed();
        let leader = waiting(&log, &fsyncs, Duration::from_millis(30));
        tokio::time::sleep(Duration::from_millis(5)).await;
        leader.abort();
        tokio::time::timeout(
            Duration::from_secs(5),
            log.wait_durable(counting(&fsyncs, Duration::ZERO)),
        )
        .await
        .expect("not stuck behind the abandoned fsync")
        .unwrap();
        assert_eq!(fsyncs.load(Ordering::SeqCst), 1);
    }
}
