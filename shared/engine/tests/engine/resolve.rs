//! A person settles the conflicts the policy leaves to them: the value they choose becomes
//! a version by them, written with the settled conflict, and the product's push resumes.

use crate::common;
use serde_json::json;
use shopsync_domain::{
    Actor, ChangeSource, ConflictStatus, ResolutionMethod, ShopifyProductId, SyncConflict,
};
use shopsync_engine::down::local_id_for;
use shopsync_engine::edit::edit_product;
use shopsync_engine::operation::open_conflicts;
use shopsync_engine::resolve::{resolve_conflict, Choice, ResolveError};
use shopsync_engine::sync::{run_bidirectional, run_full_down, run_up};

fn choice(method: ResolutionMethod, value: Option<serde_json::Value>) -> Choice {
    Choice {
        method,
        value,
        note: Some("checked the box in the warehouse".into()),
    }
}

on_both_stores! {
    async fn a_barcode_edited_on_both_sides_waits_for_a_person_whose_choice_is_pushed() {
        let (sim, client, store, _dir) = common::setup(1, 2).await;
        let system = Actor::system("test");
        run_full_down(&store, &client, &system, &Default::default()).await.unwrap();
        let shopify_id = sim.with_shop(|s| s.products().next().unwrap().id);
        let id = local_id_for(ShopifyProductId::new(shopify_id).unwrap());
        let product = store.product(id).await.unwrap().unwrap();
        let variant = product.content.variants[0].shopify_id.unwrap();
        let ana = Actor::new("ana@example.com").unwrap();
        let edit = shopsync_domain::ProductEdit {
            variants: vec![shopsync_domain::VariantEdit {
                variant: Some(shopsync_domain::VariantRef::Shopify(variant)),
                barcode: Some(Some("4006381333931".into())),
                ..Default::default()
            }],
            ..Default::default()
        };
        edit_product(&store, id, &edit, None, &ana, chrono::Utc::now()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        sim.with_shop(|s| {
            s.edit_product(shopify_id, |p| {
                p.variants[0].barcode = Some("036000291452".into());
            })
        });
        run_bidirectional(&store, &client, &system, &Default::default()).await.unwrap();
        let open = open_conflicts(&store, id).await.unwrap();
        let conflict: SyncConflict = open
            .into_iter()
            .find(|c| c.field_name.as_str().ends_with("/barcode"))
            .expect("a barcode conflict for a person");
        assert_eq!(conflict.local_value, Some(json!("4006381333931")));
        assert_eq!(conflict.remote_value, Some(json!("036000291452")));
        // Held back from the push while it is open.
        run_up(&store, &client, &system).await.unwrap();
        let remote = sim.with_shop(|s| s.product(shopify_id).unwrap().clone());
        assert_eq!(remote.variants[0].barcode.as_deref(), Some("036000291452"));

        // A value that does not fit the field changes nothing.
        let bad = resolve_conflict(&store, conflict.conflict_uuid, &choice(ResolutionMethod::Manual, Some(json!(12))), &ana, chrono::Utc::now()).await;
        assert!(matches!(bad, Err(ResolveError::Refused(_))), "{bad:?}");
        let merge = resolve_conflict(&store, conflict.conflict_uuid, &choice(ResolutionMethod::Merge, None), &ana, chrono::Utc::now()).await;
        assert!(matches!(merge, Err(ResolveError::Refused(_))), "{merge:?}");

        let settled = resolve_conflict(
            &store,
            conflict.conflict_uuid,
            &choice(ResolutionMethod::Manual, Some(json!("96385074"))),
            &ana,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(settled.status, ConflictStatus::Resolved);
        let resolution = settled.resolution.clone().unwrap();
        assert_eq!(resolution.resolved_by, ana);
        assert_eq!(resolution.method, Some(ResolutionMethod::Manual));
        assert_eq!(resolution.note.as_deref(), Some("checked the box in the warehouse"));
        let stored: SyncConflict = store
            .get(&shopsync_store::item::Key::pk(conflict.conflict_uuid.to_string()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored, settled);
        let after = store.product(id).await.unwrap().unwrap();
        assert_eq!(after.content.variants[0].barcode.as_deref(), Some("96385074"));
        let newest = store.product_versions(id, true, 1, None).await.unwrap().items;
        assert_eq!(newest[0].change_source, ChangeSource::ConflictResolution);
        assert_eq!(newest[0].changed_by, ana);

        // Settled once: a second resolve is refused and writes nothing.
        let again = resolve_conflict(&store, conflict.conflict_uuid, &choice(ResolutionMethod::RemoteWins, None), &ana, chrono::Utc::now()).await;
        assert!(matches!(again, Err(ResolveError::Settled { .. })), "{again:?}");
        assert_eq!(store.product(id).await.unwrap().unwrap().version, after.version);

        // The push resumes with the chosen value.
        assert!(open_conflicts(&store, id).await.unwrap().is_empty());
        run_up(&store, &client, &system).await.unwrap();
        let remote = sim.with_shop(|s| s.product(shopify_id).unwrap().clone());
        assert_eq!(remote.variants[0].barcode.as_deref(), Some("96385074"));
    }
}

#[test]
fn merge_unites_tags_and_applies_both_sides_stock_changes() {
    use shopsync_domain::{ConflictValues, FieldPath, OperationId, OwnershipPolicy, ProductId};
    let conflict = |field: &str, base, local, remote| {
        let path = FieldPath::new_unchecked(field.into());
        let values = ConflictValues {
            base: Some(base),
            local: Some(local),
            remote: Some(remote),
        };
        let decision = OwnershipPolicy::default().decide(&path, &values, None, None);
        SyncConflict::field(
            OperationId::generate(),
            ProductId::generate(),
            path,
            values,
            &decision,
            chrono::Utc::now(),
        )
    };
    let tags = conflict(
        "tags",
        json!(["a"]),
        json!(["a", "local"]),
        json!(["a", "remote"]),
    );
    assert_eq!(
        tags.chosen_value(ResolutionMethod::Merge, None, None)
            .unwrap()
            .0,
        Some(json!(["a", "local", "remote"]))
    );
    // 10 at the last sync; 3 sold in Shopify, 5 received locally: 12.
    let stock = conflict("variants/k/inventory/7", json!(10), json!(15), json!(7));
    assert_eq!(
        stock
            .chosen_value(ResolutionMethod::Merge, None, None)
            .unwrap()
            .0,
        Some(json!(12))
    );
    assert_eq!(
        stock
            .chosen_value(ResolutionMethod::Base, None, None)
            .unwrap()
            .0,
        Some(json!(10))
    );
    assert!(stock
        .chosen_value(ResolutionMethod::Manual, None, None)
        .is_err());
    let title = conflict("title", json!("a"), json!("b"), json!("c"));
    assert!(title
        .chosen_value(ResolutionMethod::Merge, None, None)
        .is_err());
    assert!(
        title
            .chosen_value(ResolutionMethod::NewestWins, None, None)
            .is_err(),
        "no change times"
    );
    assert_eq!(
        title
            .chosen_value(
                ResolutionMethod::NewestWins,
                None,
                Some(shopsync_domain::Side::Local)
            )
            .unwrap(),
        (Some(json!("b")), Some(shopsync_domain::Side::Local))
    );
}

on_both_stores! {
    /// A bulk resolve the worker runs: every open conflict the filter takes is settled as
    /// the person chose, and what cannot be settled that way is counted as skipped.
    async fn a_queued_bulk_resolve_settles_what_its_filter_takes_and_counts_the_rest() {
        use shopsync_engine::jobs::JobOutcome;
        let case = BulkResolve::with(
            |product| {
                vec![
                    field_conflict(product, "title", json!("Remote title")),
                    field_conflict(product, "vendor", json!("Remote vendor")),
                    // Not a value a product type can take: refused, counted as skipped, left open.
                    field_conflict(product, "product_type", json!(42)),
                ]
            },
            None,
        )
        .await;
        let JobOutcome::Ran(Some(done)) = case.worker.handle(&case.message).await.unwrap() else {
            panic!("the bulk resolve runs");
        };
        assert_eq!(done.status, shopsync_domain::OperationStatus::Completed);
        assert_eq!((done.statistics.updated, done.statistics.skipped), (2, 1), "{done:?}");
        assert_eq!(done.created_by.as_str(), "ana@example.com");
        let product = case.store.product(case.product).await.unwrap().unwrap();
        assert_eq!(product.content.title, "Remote title");
        assert_eq!(product.content.vendor, "Remote vendor");
        let open = open_conflicts(&case.store, case.product).await.unwrap();
        assert_eq!(open.iter().map(|c| c.conflict_uuid).collect::<Vec<_>>(), vec![case.conflicts[2].conflict_uuid]);
    }
}

/// An open conflict on `field` of `product`: local "local", Shopify `remote`, no base.
fn field_conflict(
    product: shopsync_domain::ProductId,
    field: &str,
    remote: serde_json::Value,
) -> SyncConflict {
    use shopsync_domain::{ConflictValues, FieldPath, OperationId, OwnershipPolicy};
    let path = FieldPath::new_unchecked(field.into());
    let values = ConflictValues {
        base: None,
        local: Some(json!("local")),
        remote: Some(remote),
    };
    let decision = OwnershipPolicy::default().decide(&path, &values, None, None);
    SyncConflict::field(
        OperationId::generate(),
        product,
        path,
        values,
        &decision,
        chrono::Utc::now(),
    )
}

/// A catalog of one product from the simulator, open conflicts on it, a bulk resolve of them
/// (remote wins) recorded as pending by Ana, and a worker whose continuations, if any, go to
/// `continuation`.
struct BulkResolve {
    store: shopsync_store::Store,
    product: shopsync_domain::ProductId,
    message: shopsync_engine::jobs::JobMessage,
    operation: shopsync_domain::OperationId,
    conflicts: Vec<SyncConflict>,
    worker: shopsync_engine::jobs::Worker,
    _dir: tempfile::TempDir,
    _sim: shopsync_shopify_sim::SimHandle,
}

impl BulkResolve {
    /// `count` conflicts on the product's title, each with its own remote value.
    async fn of(
        count: usize,
        continuation: Option<std::sync::Arc<shopsync_engine::jobs::LocalQueue>>,
    ) -> Self {
        let titles = |product| {
            (0..count)
                .map(|index| {
                    field_conflict(product, "title", json!(format!("Remote title {index}")))
                })
                .collect()
        };
        Self::with(titles, continuation).await
    }

    /// As [`BulkResolve::of`], with the conflicts `conflicts_of` makes for the product.
    async fn with(
        conflicts_of: impl FnOnce(shopsync_domain::ProductId) -> Vec<SyncConflict>,
        continuation: Option<std::sync::Arc<shopsync_engine::jobs::LocalQueue>>,
    ) -> Self {
        use shopsync_engine::jobs::{operation_of_job, Job, JobMessage, JobQueue, Worker};
        use shopsync_engine::resolve::ConflictFilter;
        let (sim, client, store, dir) = common::setup(1, 1).await;
        run_full_down(&store, &client, &Actor::system("test"), &Default::default())
            .await
            .unwrap();
        let shopify_id = sim.with_shop(|s| s.products().next().unwrap().id);
        let product = local_id_for(ShopifyProductId::new(shopify_id).unwrap());
        let conflicts = conflicts_of(product);
        store.put_all(&conflicts).await.unwrap();
        let ana = Actor::new("ana@example.com").unwrap();
        let message = JobMessage::new(
            Job::ResolveConflicts {
                filter: ConflictFilter {
                    product: Some(product),
                    ..ConflictFilter::default()
                },
                choice: choice(ResolutionMethod::RemoteWins, None),
                by: ana.clone(),
            },
            chrono::Utc::now(),
        );
        let mut pending = shopsync_domain::SyncOperation::new(
            "bulk",
            shopsync_domain::OperationType::ConflictResolution,
            shopsync_domain::SyncDirection::Bidirectional,
            ana,
            chrono::Utc::now(),
        );
        pending.operation_uuid = operation_of_job(&message.id);
        store.insert(&pending).await.unwrap();
        let worker = Worker {
            store: store.clone(),
            client,
            actor: Actor::system("worker"),
            rails: Default::default(),
            continuation: continuation.map(|queue| queue as std::sync::Arc<dyn JobQueue>),
            imports: None,
        };
        BulkResolve {
            store,
            product,
            message,
            operation: pending.operation_uuid,
            conflicts,
            worker,
            _dir: dir,
            _sim: sim,
        }
    }

    /// The bulk resolve's operation as stored.
    async fn operation(&self) -> shopsync_domain::SyncOperation {
        shopsync_engine::operation::load_operation(&self.store, self.operation)
            .await
            .unwrap()
    }

    /// The versions of the product a conflict resolution wrote.
    async fn resolution_versions(&self) -> usize {
        let versions = self
            .store
            .product_versions(self.product, false, 1000, None)
            .await
            .unwrap();
        assert!(versions.next.is_none(), "one page holds them");
        versions
            .items
            .iter()
            .filter(|v| v.change_source == ChangeSource::ConflictResolution)
            .count()
    }
}

/// The next message on `queue`, if one comes within a moment.
async fn next_message(
    queue: &shopsync_engine::jobs::LocalQueue,
) -> Option<shopsync_engine::jobs::JobMessage> {
    tokio::time::timeout(std::time::Duration::from_millis(200), queue.receive())
        .await
        .ok()
        .flatten()
}

on_both_stores! {
    /// A bulk resolve that reaches its deadline after every page saves its counts and goes
    /// on as a continuation from where it stopped: each conflict is settled once and counted
    /// once, whatever the number of pieces.
    async fn a_bulk_resolve_stopped_after_every_page_goes_on_and_counts_each_conflict_once() {
        use shopsync_engine::jobs::{JobOutcome, LocalQueue};
        let queue = std::sync::Arc::new(LocalQueue::default());
        let case = BulkResolve::of(250, Some(queue.clone())).await;
        // Every piece starts past its deadline: it does one page and sends its continuation.
        let mut next = Some(case.message.clone());
        let mut resolved_after_each = Vec::new();
        while let Some(message) = next.take() {
            let outcome = case.worker.handle_until(&message, Some(std::time::Instant::now())).await.unwrap();
            assert!(matches!(outcome, JobOutcome::Ran(Some(_))), "{outcome:?}");
            resolved_after_each.push(case.operation().await.statistics.updated);
            next = next_message(&queue).await;
        }
        assert_eq!(resolved_after_each, vec![100, 200, 250], "three pieces of a page each, each piece's count saved with it");
        let done = case.operation().await;
        assert_eq!(done.status, shopsync_domain::OperationStatus::Completed);
        assert_eq!((done.statistics.processed, done.statistics.updated, done.statistics.skipped), (250, 250, 0));
        assert!(done.checkpoint.is_none(), "a finished bulk resolve keeps no checkpoint");
        assert_eq!(case.resolution_versions().await, 250, "one version per conflict");
        for conflict in &case.conflicts {
            let settled: SyncConflict = case.store.get(&shopsync_store::item::Key::pk(conflict.conflict_uuid.to_string())).await.unwrap().unwrap();
            assert_eq!(settled.status, ConflictStatus::Resolved);
            assert_eq!(settled.resolution.unwrap().resolved_in, Some(case.operation));
        }
    }
}

on_both_stores! {
    /// A bulk resolve whose worker died after settling part of a page, delivered again,
    /// counts what it settled before once and settles the rest.
    async fn a_bulk_resolve_delivered_again_after_a_crash_counts_what_it_settled_before_once() {
        use shopsync_engine::jobs::JobOutcome;
        use shopsync_engine::resolve::{resolve_conflict_in, ConflictFilter, ResolveCheckpoint};
        let case = BulkResolve::of(40, None).await;
        let ana = Actor::new("ana@example.com").unwrap();
        // The worker took the page in hand (saved with its operation), settled 15 of it and
        // died before it saved their count.
        let mut running = case.operation().await;
        running.move_to(shopsync_domain::OperationStatus::InProgress, None, chrono::Utc::now()).unwrap();
        running.checkpoint = Some(serde_json::to_value(ResolveCheckpoint {
            filter: ConflictFilter { product: Some(case.product), ..Default::default() },
            choice: choice(ResolutionMethod::RemoteWins, None),
            by: ana.clone(),
            next: None,
            in_hand: Some(case.conflicts.iter().map(|c| c.conflict_uuid).collect()),
            skipped_reasons: Vec::new(),
        }).unwrap());
        case.store.put_all(std::slice::from_ref(&running)).await.unwrap();
        for conflict in &case.conflicts[..15] {
            resolve_conflict_in(&case.store, conflict.conflict_uuid, &choice(ResolutionMethod::RemoteWins, None), &ana, chrono::Utc::now(), Some(case.operation)).await.unwrap();
        }
        // One settled by someone else meanwhile: skipped, as it is settled already.
        resolve_conflict(&case.store, case.conflicts[20].conflict_uuid, &choice(ResolutionMethod::LocalWins, None), &ana, chrono::Utc::now()).await.unwrap();
        let JobOutcome::Ran(Some(done)) = case.worker.handle(&case.message).await.unwrap() else {
            panic!("the bulk resolve runs");
        };
        assert_eq!(done.status, shopsync_domain::OperationStatus::Completed);
        // The page in hand is settled again whole: what the operation settled before
        // counts once as its own, what someone else settled as skipped.
        assert_eq!((done.statistics.updated, done.statistics.skipped), (39, 1), "{done:?}");
        assert!(done.status_reason.as_deref().unwrap().contains("is resolved already"), "{:?}", done.status_reason);
        assert_eq!(case.resolution_versions().await, 40, "one version per conflict, none twice");
    }
}

on_both_stores! {
    /// A cancel stops a bulk resolve at its next page: what it settled stays settled and
    /// counted, the rest stays open.
    async fn a_cancelled_bulk_resolve_stops_at_its_next_page() {
        use shopsync_engine::jobs::{JobOutcome, LocalQueue};
        let queue = std::sync::Arc::new(LocalQueue::default());
        let case = BulkResolve::of(150, Some(queue.clone())).await;
        case.worker.handle_until(&case.message, Some(std::time::Instant::now())).await.unwrap();
        let ana = Actor::new("ana@example.com").unwrap();
        shopsync_engine::review::cancel_operation(&case.store, case.operation, &ana, "wrong filter").await.unwrap();
        let continuation = next_message(&queue).await.expect("the first piece sent its continuation");
        let JobOutcome::Ran(Some(stopped)) = case.worker.handle_until(&continuation, Some(std::time::Instant::now())).await.unwrap() else {
            panic!("the continuation runs");
        };
        assert_eq!(stopped.status, shopsync_domain::OperationStatus::Cancelled);
        assert_eq!(stopped.statistics.updated, 100, "the first page's count stays");
        assert_eq!(open_conflicts(&case.store, case.product).await.unwrap().len(), 50, "the rest stays open");
        assert_eq!(case.resolution_versions().await, 100);
        assert!(next_message(&queue).await.is_none(), "nothing more is queued");
    }
}
