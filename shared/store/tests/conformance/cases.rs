//! The conformance cases. Each takes a harness on fresh tables.

use crate::harness::Harness;
use chrono::{DateTime, Duration, TimeZone, Utc};
use shopsync_domain::testing::{sample_content, sample_row};
use shopsync_domain::*;
use shopsync_store::item::{Condition, Item, Key, Query, Scalar, SortCondition, WriteOp};
use shopsync_store::{
    CancelReason, IdempotencyStart, ProductCommit, Record, ReplaceError, RepoError, StoreError,
    Table,
};
use std::collections::{BTreeMap, HashSet};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
        .single()
        .expect("valid time")
}

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(seconds)
}

fn actor(name: &str) -> Actor {
    Actor::new(name).expect("actor")
}

fn product(variants: usize) -> Product {
    Product::new(ProductId::generate(), sample_content(variants), t0())
}

fn raw_item(id: &str, extra: &[(&str, Scalar)]) -> Item {
    let mut attrs: BTreeMap<String, Scalar> = [("id".to_owned(), Scalar::from(id))].into();
    attrs.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    Item {
        attrs,
        doc: Some(format!("{{\"id\":\"{id}\"}}").into_bytes()),
    }
}

fn operation(status: OperationStatus, created: i64) -> SyncOperation {
    let mut op = SyncOperation::new(
        "Daily Product Sync",
        OperationType::FullSync,
        SyncDirection::Down,
        actor("alice"),
        at(created),
    );
    op.status = status;
    op
}

fn staged(
    op: OperationId,
    product: ProductId,
    status: StagingStatus,
    staged: i64,
) -> ProductsStaging {
    let mut row = sample_row(op, product, actor("alice"), at(staged));
    row.status = status;
    row
}

fn conflict(
    op: OperationId,
    product: ProductId,
    status: ConflictStatus,
    detected: i64,
) -> SyncConflict {
    let path = FieldPath::new_unchecked("variants/v0001/price".into());
    let values = ConflictValues {
        base: Some(serde_json::json!("19.99")),
        local: Some(serde_json::json!("21.99")),
        remote: Some(serde_json::json!("24.99")),
    };
    let decision = OwnershipPolicy::default().decide(&path, &values, None, None);
    let mut c = SyncConflict::field(op, product, path, values, &decision, at(detected));
    c.status = status;
    c
}

fn version_of(p: &Product, n: u64, op: Option<OperationId>, created: i64) -> ProductVersion {
    ProductVersion {
        product_id: p.id,
        version_number: n,
        product_data: p.content.clone(),
        changed_fields: vec![FieldPath::new_unchecked("title".into())],
        change_source: ChangeSource::Shopify,
        changed_by: actor("alice"),
        sync_operation_id: op,
        created_at: at(created),
    }
}

/// The stamp of a product's new version made at `created` (its snapshot is the product's).
fn stamp_of(op: Option<OperationId>, created: i64) -> VersionStamp {
    VersionStamp::new(
        vec![FieldPath::new_unchecked("title".into())],
        ChangeSource::Shopify,
        actor("alice"),
        op,
        at(created),
    )
}

/// Follows every page with page size 3 and checks the records come back exactly in order.
async fn assert_pages<R: Record + PartialEq>(h: &Harness, mut query: Query, expected: &[R]) {
    query.limit = 3;
    let mut got = Vec::new();
    for _ in 0..100 {
        let page = h.store.query::<R>(query.clone()).await.expect("query");
        assert!(page.items.len() <= 3, "a page holds at most the limit");
        got.extend(page.items);
        match page.next {
            Some(next) => query.start = Some(next),
            None => break,
        }
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "count on {:?} {:?}",
        query.table,
        query.index
    );
    assert!(
        got == expected,
        "records or order differ on {:?} {:?}",
        query.table,
        query.index
    );
}

fn index_query(table: Table, index: &'static str, pk: impl Into<Scalar>) -> Query {
    Query::new(table, Some(index), pk)
}

pub async fn create_if_absent_refuses_a_second_create(h: Harness) {
    let first = raw_item("a", &[("n", Scalar::N(1))]);
    h.raw
        .put(
            Table::Categories,
            first.clone(),
            Some(Condition::ItemAbsent),
        )
        .await
        .expect("first create");
    let second = raw_item("a", &[("n", Scalar::N(2))]);
    let err = h
        .raw
        .put(Table::Categories, second, Some(Condition::ItemAbsent))
        .await
        .expect_err("second create");
    assert!(matches!(err, StoreError::ConditionFailed { .. }));
    assert!(!err.is_retryable());
    let stored = h
        .raw
        .get(Table::Categories, &Key::pk("a"))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(stored, first, "the first item is untouched");
    let p = product(1);
    h.store.insert(&p).await.expect("insert");
    assert!(matches!(
        h.store.insert(&p).await,
        Err(RepoError::AlreadyExists {
            table: Table::Products,
            ..
        })
    ));
}

pub async fn reading_an_absent_item_gives_none(h: Harness) {
    assert_eq!(
        h.raw
            .get(Table::Products, &Key::pk("nope"))
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        h.store.product(ProductId::generate()).await.expect("get"),
        None
    );
    assert_eq!(
        h.raw
            .get(Table::ProductVersions, &Key::pk_sk("nope", 1))
            .await
            .expect("get"),
        None
    );
}

pub async fn a_failed_condition_returns_the_current_item(h: Harness) {
    let item = raw_item("a", &[("version", Scalar::N(3))]);
    h.raw
        .put(Table::Categories, item.clone(), None)
        .await
        .expect("put");
    let stale = raw_item("a", &[("version", Scalar::N(3))]);
    let err = h
        .raw
        .put(
            Table::Categories,
            stale,
            Some(Condition::Eq("version", Scalar::N(2))),
        )
        .await
        .expect_err("stale");
    match err {
        StoreError::ConditionFailed { current } => assert_eq!(current.map(|b| *b), Some(item)),
        other => panic!("expected a condition failure, got {other:?}"),
    }
}

pub async fn comparisons_on_missing_attributes_are_false(h: Harness) {
    h.raw
        .put(Table::Categories, raw_item("a", &[]), None)
        .await
        .expect("put");
    let lt = Condition::Lt("expires", Scalar::N(10));
    assert!(h
        .raw
        .put(Table::Categories, raw_item("a", &[]), Some(lt.clone()))
        .await
        .is_err());
    h.raw
        .put(
            Table::Categories,
            raw_item("a", &[("x", Scalar::N(1))]),
            Some(Condition::Not(Box::new(lt))),
        )
        .await
        .expect("NOT of a false comparison holds");
    let mistyped = Condition::Eq("x", Scalar::from("1"));
    assert!(
        h.raw
            .put(Table::Categories, raw_item("a", &[]), Some(mistyped))
            .await
            .is_err(),
        "a string never equals a number"
    );
}

pub async fn conditional_delete_removes_only_when_the_condition_holds(h: Harness) {
    h.raw
        .put(
            Table::Categories,
            raw_item("a", &[("owner", Scalar::from("alice"))]),
            None,
        )
        .await
        .expect("put");
    let bob = Some(Condition::Eq("owner", Scalar::from("bob")));
    assert!(matches!(
        h.raw.delete(Table::Categories, &Key::pk("a"), bob).await,
        Err(StoreError::ConditionFailed { current: Some(_) })
    ));
    assert!(h
        .raw
        .get(Table::Categories, &Key::pk("a"))
        .await
        .expect("get")
        .is_some());
    h.raw
        .delete(
            Table::Categories,
            &Key::pk("a"),
            Some(Condition::Eq("owner", Scalar::from("alice"))),
        )
        .await
        .expect("delete");
    assert!(h
        .raw
        .get(Table::Categories, &Key::pk("a"))
        .await
        .expect("get")
        .is_none());
    h.raw
        .delete(Table::Categories, &Key::pk("a"), None)
        .await
        .expect("deleting an absent item without a condition is fine");
}

pub async fn a_multi_item_write_is_all_or_nothing(h: Harness) {
    let mut p = product(2);
    h.store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("create");
    let op = OperationId::generate();
    let row = staged(op, p.id, StagingStatus::Applied, 1);
    h.store.insert(&row).await.expect("staging row");
    // Product at the right version, a new snapshot, but the staged row is not pending any more.
    let read = p.clone();
    let mut content = p.content.clone();
    content.title = "Changed".into();
    p.change_content(content, at(5));
    let commit = ProductCommit {
        product: p.clone(),
        expected_version: Some(read.version),
        version: Some(stamp_of(Some(op), 5)),
        staging: Some((
            staged(op, p.id, StagingStatus::Applied, 1),
            Some(StagingStatus::Pending),
        )),
        actor: actor("alice"),
        now: at(5),
    };
    let mut commit = commit;
    if let Some((r, _)) = commit.staging.as_mut() {
        r.id = row.id;
    }
    let err = h
        .store
        .commit_product(commit)
        .await
        .expect_err("staging status check fails");
    assert!(
        matches!(&err, RepoError::StagingStatusConflict { status, .. } if status == "applied"),
        "{err:?}"
    );
    assert_eq!(
        h.store.product(p.id).await.expect("get").expect("present"),
        read,
        "product untouched"
    );
    assert_eq!(
        h.store.product_version(p.id, 2).await.expect("get"),
        None,
        "no snapshot written"
    );
    // Raw level: every write's reason is reported, in order.
    let writes = vec![
        WriteOp::Put {
            table: Table::Categories,
            item: raw_item("c1", &[]),
            condition: Some(Condition::ItemAbsent),
        },
        WriteOp::Check {
            table: Table::Products,
            key: Key::pk(p.id.to_string()),
            condition: Condition::Eq("version", Scalar::N(9)),
        },
    ];
    match h.raw.transact(writes).await {
        Err(StoreError::TransactionCanceled { reasons }) => {
            assert_eq!(reasons.len(), 2);
            assert_eq!(reasons[0], CancelReason::None);
            assert!(
                matches!(&reasons[1], CancelReason::ConditionFailed(Some(item)) if item.attrs.get("version") == Some(&Scalar::N(1)))
            );
        }
        other => panic!("expected cancellation, got {other:?}"),
    }
    assert!(h
        .raw
        .get(Table::Categories, &Key::pk("c1"))
        .await
        .expect("get")
        .is_none());
}

/// A transaction whose put of a new item finds the key taken leaves nothing behind: not the
/// other new items it holds, not its replacement of an existing one, not its delete; every
/// write's reason is reported, whichever position the refused one has.
pub async fn a_taken_key_refuses_the_whole_transaction_in_any_position(h: Harness) {
    let put_new = |id: &str| WriteOp::Put {
        table: Table::Categories,
        item: raw_item(id, &[]),
        condition: Some(Condition::ItemAbsent),
    };
    let existing = raw_item("taken", &[("n", Scalar::N(1))]);
    let kept = raw_item("kept", &[("n", Scalar::N(1))]);
    for item in [&existing, &kept] {
        h.raw
            .put(Table::Categories, item.clone(), None)
            .await
            .expect("seed");
    }
    let replace_kept = WriteOp::Put {
        table: Table::Categories,
        item: raw_item("kept", &[("n", Scalar::N(2))]),
        condition: Some(Condition::Eq("n", Scalar::N(1))),
    };
    let delete_kept = WriteOp::Delete {
        table: Table::Categories,
        key: Key::pk("kept"),
        condition: None,
    };
    for (round, (other, refused_at)) in [(replace_kept, 0), (delete_kept, 2)]
        .into_iter()
        .enumerate()
    {
        let fresh = [format!("new-a{round}"), format!("new-b{round}")];
        let mut writes = vec![other, put_new(&fresh[0]), put_new(&fresh[1])];
        writes.insert(refused_at, put_new("taken"));
        let single = h.raw.transact(writes.clone()).await;
        let grouped = h
            .raw
            .transact_each(vec![vec![put_new(&format!("alone{round}"))], writes])
            .await
            .expect("store answers");
        assert!(grouped[0].is_ok(), "{:?}", grouped[0]);
        for answer in [single, grouped[1].clone()] {
            match answer {
                Err(StoreError::TransactionCanceled { reasons }) => {
                    assert_eq!(reasons.len(), 4, "{reasons:?}");
                    for (i, reason) in reasons.iter().enumerate() {
                        if i == refused_at {
                            assert!(
                                matches!(reason, CancelReason::ConditionFailed(Some(item)) if *item == existing),
                                "{reason:?}"
                            );
                        } else {
                            assert_eq!(*reason, CancelReason::None, "write {i}");
                        }
                    }
                }
                other => panic!("expected cancellation, got {other:?}"),
            }
        }
        for id in &fresh {
            let found = h.raw.get(Table::Categories, &Key::pk(id.as_str())).await;
            assert!(found.expect("get").is_none(), "{id} left behind");
        }
        for (id, item) in [("taken", &existing), ("kept", &kept)] {
            let found = h.raw.get(Table::Categories, &Key::pk(id)).await;
            assert_eq!(found.expect("get").as_ref(), Some(item), "{id} changed");
        }
    }
}

pub async fn independent_groups_are_each_all_or_nothing(h: Harness) {
    let put = |id: &str| WriteOp::Put {
        table: Table::Categories,
        item: raw_item(id, &[]),
        condition: Some(Condition::ItemAbsent),
    };
    let groups = vec![
        vec![put("g1"), put("g2")],
        // Refused: the check names a product that does not exist.
        vec![
            put("g3"),
            WriteOp::Check {
                table: Table::Products,
                key: Key::pk("no-such-product"),
                condition: Condition::ItemPresent,
            },
        ],
        vec![put("g4")],
        // Invalid: the same item twice.
        vec![put("g5"), put("g5")],
        vec![put("g6")],
    ];
    let answers = h.raw.transact_each(groups).await.expect("store answers");
    assert_eq!(answers.len(), 5);
    assert!(answers[0].is_ok(), "{:?}", answers[0]);
    assert!(
        matches!(&answers[1], Err(StoreError::TransactionCanceled { reasons }) if reasons.len() == 2 && reasons[0] == CancelReason::None),
        "{:?}",
        answers[1]
    );
    assert!(answers[2].is_ok(), "{:?}", answers[2]);
    assert!(
        matches!(&answers[3], Err(StoreError::Invalid(_))),
        "{:?}",
        answers[3]
    );
    assert!(answers[4].is_ok(), "{:?}", answers[4]);
    for (id, present) in [
        ("g1", true),
        ("g2", true),
        ("g3", false),
        ("g4", true),
        ("g5", false),
        ("g6", true),
    ] {
        let found = h
            .raw
            .get(Table::Categories, &Key::pk(id))
            .await
            .expect("get")
            .is_some();
        assert_eq!(found, present, "{id}");
    }
    // A group that writes what an earlier one in the same call wrote sees it.
    let answers = h
        .raw
        .transact_each(vec![vec![put("g7")], vec![put("g7")]])
        .await
        .expect("store answers");
    assert!(answers[0].is_ok());
    assert!(matches!(
        &answers[1],
        Err(StoreError::TransactionCanceled { .. })
    ));
}

pub async fn a_multi_item_write_rejects_duplicates_and_oversize(h: Harness) {
    let twice = vec![
        WriteOp::Put {
            table: Table::Categories,
            item: raw_item("a", &[]),
            condition: None,
        },
        WriteOp::Delete {
            table: Table::Categories,
            key: Key::pk("a"),
            condition: None,
        },
    ];
    let err = h.raw.transact(twice).await.expect_err("same item twice");
    assert!(!err.is_retryable());
    let many = (0..101)
        .map(|i| WriteOp::Put {
            table: Table::Categories,
            item: raw_item(&format!("i{i}"), &[]),
            condition: None,
        })
        .collect();
    assert!(matches!(
        h.raw.transact(many).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(h
        .raw
        .get(Table::Categories, &Key::pk("a"))
        .await
        .expect("get")
        .is_none());
}

pub async fn creating_a_product_writes_its_first_version(h: Harness) {
    let p = product(3);
    h.store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("create");
    assert_eq!(h.store.product(p.id).await.expect("get"), Some(p.clone()));
    let v1 = h
        .store
        .product_version(p.id, 1)
        .await
        .expect("get")
        .expect("version 1");
    assert_eq!(v1.product_data, p.content);
    assert_eq!(v1.change_source, ChangeSource::Local);
    assert!(v1.changed_fields.iter().any(|f| f.as_str() == "title"));
    let again = h
        .store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await;
    assert!(matches!(again, Err(RepoError::AlreadyExists { .. })));
}

pub async fn an_optimistic_update_advances_version_and_snapshot(h: Harness) {
    let p = product(2);
    h.store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("create");
    let mut content = p.content.clone();
    content.variants[0].price = "64.00".parse().expect("price");
    let op = OperationId::generate();
    let updated = h
        .store
        .update_product_content(
            &p,
            content.clone(),
            ChangeSource::Shopify,
            &actor("alice"),
            Some(op),
            at(9),
        )
        .await
        .expect("update");
    assert_eq!(updated.version, 2);
    let stored = h.store.product(p.id).await.expect("get").expect("present");
    assert_eq!(stored.content, content);
    assert_eq!(stored.version, 2);
    let v2 = h
        .store
        .product_version(p.id, 2)
        .await
        .expect("get")
        .expect("version 2");
    assert_eq!(
        v2.changed_fields,
        vec![FieldPath::new_unchecked("variants/v0001/price".into())]
    );
    assert_eq!(v2.sync_operation_id, Some(op));
    let same = h
        .store
        .update_product_content(
            &stored,
            content,
            ChangeSource::Local,
            &actor("alice"),
            None,
            at(10),
        )
        .await
        .expect("no-op");
    assert_eq!(same.version, 2, "an unchanged content writes nothing");
    assert_eq!(h.store.product_version(p.id, 3).await.expect("get"), None);
}

pub async fn a_stale_update_is_a_typed_conflict_that_writes_nothing(h: Harness) {
    let p = product(1);
    h.store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("create");
    let mut first = p.content.clone();
    first.title = "First".into();
    let winner = h
        .store
        .update_product_content(&p, first, ChangeSource::Local, &actor("alice"), None, at(1))
        .await
        .expect("first");
    let mut second = p.content.clone();
    second.title = "Second".into();
    let err = h
        .store
        .update_product_content(&p, second, ChangeSource::Local, &actor("bob"), None, at(2))
        .await
        .expect_err("stale");
    match err {
        RepoError::VersionConflict { current } => assert_eq!(*current, winner),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    let stored = h.store.product(p.id).await.expect("get").expect("present");
    assert_eq!(stored.content.title, "First");
    assert_eq!(h.store.product_version(p.id, 3).await.expect("get"), None);
}

pub async fn fifty_concurrent_updates_lose_nothing(h: Harness) {
    let p = product(1);
    h.store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("create");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = h.store.clone();
        let id = p.id;
        tasks.push(tokio::spawn(async move {
            let me = actor(&format!("writer{i}"));
            for _attempt in 0..2_000 {
                let read = store.product(id).await.expect("read").expect("present");
                let mut content = read.content.clone();
                content.tags.insert(format!("tag{i:02}"));
                match store
                    .update_product_content(&read, content, ChangeSource::Local, &me, None, at(i))
                    .await
                {
                    Ok(_) => return,
                    Err(RepoError::VersionConflict { .. }) => continue,
                    Err(e) if e.is_retryable() => continue,
                    Err(e) => panic!("writer {i}: {e}"),
                }
            }
            panic!("writer {i} never got through");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let stored = h.store.product(p.id).await.expect("get").expect("present");
    assert_eq!(stored.version, 51, "one version per successful write");
    for i in 0..50 {
        assert!(
            stored.content.tags.contains(&format!("tag{i:02}")),
            "tag{i:02} lost"
        );
    }
    let mut query = Query::new(Table::ProductVersions, None, p.id.to_string());
    query.limit = 1000;
    let versions: Vec<ProductVersion> = h.store.query_all(query).await.expect("versions");
    let numbers: Vec<u64> = versions.iter().map(|v| v.version_number).collect();
    assert_eq!(
        numbers,
        (1..=51).collect::<Vec<_>>(),
        "contiguous version numbers"
    );
    assert_eq!(
        versions.last().map(|v| &v.product_data),
        Some(&stored.content)
    );
}

pub async fn a_lock_refuses_others_until_its_lease_expires(h: Harness) {
    let p = product(1);
    h.store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("create");
    let locked = h
        .store
        .lock_product(p.id, &actor("alice"), at(0), Duration::seconds(60))
        .await
        .expect("lock");
    assert!(locked.sync_locked);
    assert_eq!(locked.sync_locked_by, Some(actor("alice")));
    let err = h
        .store
        .lock_product(p.id, &actor("bob"), at(30), Duration::seconds(60))
        .await
        .expect_err("held");
    assert!(
        matches!(err, RepoError::Locked(LockError::HeldByOther { ref by, .. }) if *by == actor("alice"))
    );
    let taken = h
        .store
        .lock_product(p.id, &actor("bob"), at(61), Duration::seconds(60))
        .await
        .expect("expired lease is taken over");
    assert_eq!(taken.sync_locked_by, Some(actor("bob")));
    assert_eq!(taken.sync_lock_expires_at, Some(at(121)));
    assert_eq!(taken.version, 1, "locking is not a content change");
}

pub async fn only_the_holder_releases_a_lock(h: Harness) {
    let p = product(1);
    h.store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("create");
    h.store
        .lock_product(p.id, &actor("alice"), at(0), Duration::seconds(60))
        .await
        .expect("lock");
    let err = h
        .store
        .unlock_product(p.id, &actor("bob"), at(1))
        .await
        .expect_err("not the holder");
    assert!(matches!(
        err,
        RepoError::Locked(LockError::NotHolder { .. })
    ));
    assert!(
        h.store
            .product(p.id)
            .await
            .expect("get")
            .expect("present")
            .sync_locked
    );
    let freed = h
        .store
        .unlock_product(p.id, &actor("alice"), at(2))
        .await
        .expect("unlock");
    assert!(!freed.sync_locked);
    h.store
        .lock_product(p.id, &actor("bob"), at(3), Duration::seconds(5))
        .await
        .expect("free for others");
    let missing = h
        .store
        .lock_product(
            ProductId::generate(),
            &actor("bob"),
            at(3),
            Duration::seconds(5),
        )
        .await;
    assert!(matches!(missing, Err(RepoError::NotFound { .. })));
}

pub async fn a_lock_keeps_its_reason_and_an_override_releases_it_for_anyone(h: Harness) {
    let p = product(1);
    h.store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("create");
    h.store
        .lock_product_because(
            p.id,
            &actor("alice"),
            at(0),
            Duration::seconds(60),
            Some("fixing photos"),
        )
        .await
        .expect("lock");
    let stored = h.store.product(p.id).await.expect("get").expect("present");
    assert_eq!(stored.sync_lock_reason.as_deref(), Some("fixing photos"));
    assert_eq!(stored.sync_locked_by, Some(actor("alice")));
    let broken = h
        .store
        .break_product_lock(p.id, at(1))
        .await
        .expect("break");
    assert!(!broken.sync_locked && broken.sync_locked_by.is_none());
    let stored = h.store.product(p.id).await.expect("get").expect("present");
    assert!(!stored.sync_locked && stored.sync_lock_reason.is_none());
    assert_eq!(stored.version, 1, "a lock is not a content change");
    h.store
        .lock_product(p.id, &actor("bob"), at(2), Duration::seconds(5))
        .await
        .expect("free for others");
    let missing = h
        .store
        .break_product_lock(ProductId::generate(), at(3))
        .await;
    assert!(matches!(missing, Err(RepoError::NotFound { .. })));
}

pub async fn expired_locks_are_found_and_cleared_and_held_ones_kept(h: Harness) {
    let (short, long) = (product(1), product(2));
    for p in [&short, &long] {
        h.store
            .create_product(p, ChangeSource::Local, &actor("alice"), None)
            .await
            .expect("create");
    }
    h.store
        .lock_product(short.id, &actor("alice"), at(0), Duration::seconds(5))
        .await
        .expect("lock");
    h.store
        .lock_product(long.id, &actor("bob"), at(0), Duration::seconds(3600))
        .await
        .expect("lock");
    let expired = h.store.expired_locks(at(10), 100).await.expect("query");
    assert_eq!(
        expired.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![short.id]
    );
    assert_eq!(
        h.store
            .clear_expired_lock(short.id, at(10))
            .await
            .expect("clear"),
        Some(actor("alice"))
    );
    assert_eq!(
        h.store
            .clear_expired_lock(long.id, at(10))
            .await
            .expect("kept"),
        None,
        "a lease that runs is not cleared"
    );
    let cleared = h
        .store
        .product(short.id)
        .await
        .expect("get")
        .expect("present");
    assert!(!cleared.sync_locked && cleared.sync_locked_by.is_none());
    assert_eq!(cleared.version, 1);
    assert!(
        h.store
            .product(long.id)
            .await
            .expect("get")
            .expect("present")
            .sync_locked
    );
    assert!(h
        .store
        .expired_locks(at(10), 100)
        .await
        .expect("query")
        .is_empty());
    assert_eq!(
        h.store
            .clear_expired_lock(short.id, at(11))
            .await
            .expect("again"),
        None
    );
}

pub async fn a_locked_product_refuses_other_writers_but_not_its_holder(h: Harness) {
    let p = product(1);
    h.store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("create");
    let locked = h
        .store
        .lock_product(p.id, &actor("alice"), at(0), Duration::seconds(60))
        .await
        .expect("lock");
    let mut content = locked.content.clone();
    content.title = "By bob".into();
    let err = h
        .store
        .update_product_content(
            &locked,
            content.clone(),
            ChangeSource::Local,
            &actor("bob"),
            None,
            at(1),
        )
        .await
        .expect_err("locked");
    assert!(
        matches!(err, RepoError::Locked(LockError::HeldByOther { .. })),
        "{err:?}"
    );
    content.title = "By alice".into();
    let saved = h
        .store
        .update_product_content(
            &locked,
            content,
            ChangeSource::Local,
            &actor("alice"),
            None,
            at(2),
        )
        .await
        .expect("holder writes");
    let stored = h.store.product(p.id).await.expect("get").expect("present");
    assert_eq!(stored, saved);
    assert!(stored.sync_locked, "the holder's write keeps the lock");
    let mut late = stored.content.clone();
    late.title = "By bob, after the lease".into();
    h.store
        .update_product_content(
            &stored,
            late,
            ChangeSource::Local,
            &actor("bob"),
            None,
            at(61),
        )
        .await
        .expect("after the lease");
}

const HASH_A: &str = "sha256:aaaa";
const HASH_B: &str = "sha256:bbbb";

pub async fn idempotency_blocks_a_second_start_while_in_progress(h: Harness) {
    let start = h
        .store
        .begin_idempotent("webhook:1", HASH_A, at(0), at(30), at(86_400))
        .await
        .expect("begin");
    assert_eq!(start, IdempotencyStart::Started);
    let err = h
        .store
        .begin_idempotent("webhook:1", HASH_A, at(5), at(35), at(86_405))
        .await
        .expect_err("in progress");
    assert!(matches!(err, RepoError::IdempotencyInProgress { .. }));
    assert!(err.is_retryable());
}

pub async fn idempotency_replays_a_completed_result(h: Harness) {
    h.store
        .begin_idempotent("msg:7", HASH_A, at(0), at(30), at(86_400))
        .await
        .expect("begin");
    let result = serde_json::json!({"staged": 3, "ids": [1, 2, 3]});
    h.store
        .complete_idempotent("msg:7", HASH_A, result.clone(), at(86_400))
        .await
        .expect("complete");
    let again = h
        .store
        .begin_idempotent("msg:7", HASH_A, at(100), at(130), at(86_500))
        .await
        .expect("replay");
    assert_eq!(again, IdempotencyStart::Replay(result));
}

pub async fn idempotency_refuses_the_same_key_with_another_payload(h: Harness) {
    h.store
        .begin_idempotent("file:x.csv", HASH_A, at(0), at(30), at(86_400))
        .await
        .expect("begin");
    h.store
        .complete_idempotent("file:x.csv", HASH_A, serde_json::json!(null), at(86_400))
        .await
        .expect("complete");
    let err = h
        .store
        .begin_idempotent("file:x.csv", HASH_B, at(1), at(31), at(86_401))
        .await
        .expect_err("other payload");
    assert!(matches!(err, RepoError::IdempotencyPayloadMismatch { .. }));
    assert!(!err.is_retryable());
}

pub async fn idempotency_lets_an_expired_in_progress_record_be_retaken(h: Harness) {
    h.store
        .begin_idempotent("msg:9", HASH_A, at(0), at(30), at(86_400))
        .await
        .expect("begin");
    let retaken = h
        .store
        .begin_idempotent("msg:9", HASH_A, at(31), at(61), at(86_431))
        .await
        .expect("retake after the deadline");
    assert_eq!(retaken, IdempotencyStart::Started);
}

pub async fn idempotency_treats_an_expired_record_as_absent(h: Harness) {
    h.store
        .begin_idempotent("msg:10", HASH_A, at(0), at(30), at(100))
        .await
        .expect("begin");
    h.store
        .complete_idempotent("msg:10", HASH_A, serde_json::json!(1), at(100))
        .await
        .expect("complete");
    // The TTL sweeper has not run; expiry is decided in code.
    let fresh = h
        .store
        .begin_idempotent("msg:10", HASH_B, at(101), at(131), at(86_501))
        .await
        .expect("expired record is absent");
    assert_eq!(fresh, IdempotencyStart::Started);
}

pub async fn idempotency_abandon_lets_a_retry_run(h: Harness) {
    h.store
        .begin_idempotent("msg:11", HASH_A, at(0), at(30), at(86_400))
        .await
        .expect("begin");
    h.store
        .abandon_idempotent("msg:11", HASH_B)
        .await
        .expect("someone else's abandon is a no-op");
    assert!(
        h.store
            .begin_idempotent("msg:11", HASH_A, at(1), at(31), at(86_401))
            .await
            .is_err(),
        "still in progress"
    );
    h.store
        .abandon_idempotent("msg:11", HASH_A)
        .await
        .expect("abandon");
    let retry = h
        .store
        .begin_idempotent("msg:11", HASH_A, at(2), at(32), at(86_402))
        .await
        .expect("retry");
    assert_eq!(retry, IdempotencyStart::Started);
}

pub async fn a_completion_commits_with_its_work_once_without_a_claim(h: Harness) {
    use shopsync_store::{IdempotencyState, Store};
    let keys = ["webhook:id:w-1", "webhook:event:products/update:e-1"];
    assert_eq!(
        h.store
            .idempotency_state(keys[0], at(0))
            .await
            .expect("read"),
        IdempotencyState::Absent
    );
    let result = serde_json::json!({"outcome": "staged", "row": "r-1"});
    let attempt = |row: &ProductsStaging, now: i64| {
        let mut writes = vec![Store::insert_write(row).expect("row write")];
        for key in keys {
            writes.push(
                Store::completion_write(key, HASH_A, result.clone(), at(now), at(86_400))
                    .expect("mark"),
            );
        }
        writes
    };
    // Two attempts prepared the same delivery; the first to commit wins.
    let first = staged(
        OperationId::generate(),
        ProductId::generate(),
        StagingStatus::Pending,
        1,
    );
    let second = staged(
        first.sync_operation_id,
        first.source_product_id,
        StagingStatus::Pending,
        2,
    );
    h.store
        .commit_writes(attempt(&first, 1))
        .await
        .expect("store")
        .expect("first attempt commits");
    let refused = h
        .store
        .commit_writes(attempt(&second, 2))
        .await
        .expect("store")
        .expect_err("the second attempt's marks are refused");
    assert_eq!(refused.len(), 3);
    assert_eq!(refused[0], CancelReason::None, "the row itself was fine");
    assert!(refused[1..]
        .iter()
        .all(|r| matches!(r, CancelReason::ConditionFailed(_))));
    assert!(h
        .store
        .get::<ProductsStaging>(&first.key())
        .await
        .expect("read")
        .is_some());
    assert!(
        h.store
            .get::<ProductsStaging>(&second.key())
            .await
            .expect("read")
            .is_none(),
        "nothing of the refused attempt is written"
    );
    for key in keys {
        assert_eq!(
            h.store.idempotency_state(key, at(3)).await.expect("read"),
            IdempotencyState::Completed {
                payload_hash: HASH_A.into(),
                result: result.clone(),
            }
        );
    }
    // A live claim also refuses a completion; a lapsed one, or an expired record, does not.
    h.store
        .begin_idempotent("webhook:id:w-2", HASH_A, at(0), at(30), at(86_400))
        .await
        .expect("claim");
    assert_eq!(
        h.store
            .idempotency_state("webhook:id:w-2", at(10))
            .await
            .expect("read"),
        IdempotencyState::InProgress
    );
    let mark = |now: i64, expires: i64| {
        Store::completion_write(
            "webhook:id:w-2",
            HASH_A,
            serde_json::json!(1),
            at(now),
            at(expires),
        )
        .expect("mark")
    };
    assert!(h
        .store
        .commit_writes(vec![mark(10, 86_400)])
        .await
        .expect("store")
        .is_err());
    assert_eq!(
        h.store
            .idempotency_state("webhook:id:w-2", at(31))
            .await
            .expect("read"),
        IdempotencyState::Absent,
        "a lapsed claim reads as absent"
    );
    h.store
        .commit_writes(vec![mark(31, 100)])
        .await
        .expect("store")
        .expect("a lapsed claim is taken over");
    assert_eq!(
        h.store
            .idempotency_state("webhook:id:w-2", at(101))
            .await
            .expect("read"),
        IdempotencyState::Absent,
        "an expired record reads as absent"
    );
    h.store
        .commit_writes(vec![mark(101, 86_500)])
        .await
        .expect("store")
        .expect("an expired record is replaced");
}

pub async fn products_are_found_by_shopify_and_xorosoft_id(h: Harness) {
    let mut p = product(1);
    p.shopify_id = Some(ShopifyProductId::new(9_007_199_254_740_993).expect("id"));
    p.xorosoft_id = Some("XS-100".into());
    h.store
        .create_product(&p, ChangeSource::Shopify, &actor("alice"), None)
        .await
        .expect("create");
    h.store
        .create_product(&product(1), ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("other");
    let found = h
        .store
        .product_by_shopify_id(ShopifyProductId::new(9_007_199_254_740_993).expect("id"))
        .await
        .expect("query");
    assert_eq!(found, Some(p.clone()));
    assert_eq!(
        h.store
            .product_by_shopify_id(ShopifyProductId::new(9_007_199_254_740_992).expect("id"))
            .await
            .expect("query"),
        None
    );
    assert_pages(
        &h,
        index_query(Table::Products, "by_xorosoft_id", "XS-100"),
        &[p],
    )
    .await;
}

pub async fn lookups_asked_together_are_answered_each_in_order(h: Harness) {
    let shopify = |n: u64| ShopifyProductId::new(9_007_199_254_740_000 + n).expect("id");
    let mut mirrored = Vec::new();
    for n in [3, 1, 2] {
        let mut p = product(1);
        p.shopify_id = Some(shopify(n));
        h.store
            .create_product(&p, ChangeSource::Shopify, &actor("alice"), None)
            .await
            .expect("create");
        mirrored.push(p);
    }
    let found = h
        .store
        .products_by_shopify_ids(&[shopify(2), shopify(9), shopify(3), shopify(2)])
        .await
        .expect("lookups");
    assert_eq!(
        found,
        vec![
            Some(mirrored[2].clone()),
            None,
            Some(mirrored[0].clone()),
            Some(mirrored[2].clone()),
        ]
    );
    assert_eq!(
        h.store.products_by_shopify_ids(&[]).await.expect("none"),
        vec![]
    );
    // Queries of different tables and shapes, each answered with its own first page.
    let mut by_version = Query::new(Table::ProductVersions, None, mirrored[1].id.to_string());
    by_version.limit = 1;
    let pages = h
        .raw
        .query_each(&[
            by_version,
            index_query(Table::Products, "by_shopify_id", shopify(1).to_string()),
        ])
        .await
        .expect("queries");
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].items.len(), 1);
    let version: ProductVersion =
        serde_json::from_slice(pages[0].items[0].doc.as_deref().expect("doc")).expect("json");
    assert_eq!(
        (version.product_id, version.version_number),
        (mirrored[1].id, 1)
    );
    assert_eq!(pages[1].items.len(), 1);
    assert_eq!(
        pages[1].items[0].attrs.get("id"),
        Some(&Scalar::from(mirrored[1].id.to_string()))
    );
}

/// Reads by key asked together: each answered in order, absent keys and repeats included,
/// past DynamoDB's 100 keys a request, and on a table with a sort key.
pub async fn reads_by_key_asked_together_are_answered_each_in_order(h: Harness) {
    let ids: Vec<String> = (0..130).map(|i| format!("item-{i:03}")).collect();
    let writes: Vec<WriteOp> = ids
        .iter()
        .map(|id| WriteOp::Put {
            table: Table::Categories,
            item: raw_item(id, &[]),
            condition: None,
        })
        .collect();
    for chunk in writes.chunks(25) {
        h.raw.transact(chunk.to_vec()).await.expect("write");
    }
    let mut keys: Vec<Key> = ids.iter().rev().map(|id| Key::pk(id.as_str())).collect();
    keys.insert(3, Key::pk("absent"));
    keys.push(Key::pk(ids[0].as_str()));
    let found = h
        .raw
        .get_each(Table::Categories, &keys)
        .await
        .expect("reads");
    assert_eq!(found.len(), keys.len());
    for (key, item) in keys.iter().zip(&found) {
        match item {
            None => assert_eq!(key.pk, Scalar::from("absent")),
            Some(item) => assert_eq!(item.attrs.get("id"), Some(&key.pk), "in order"),
        }
    }
    assert_eq!(found.iter().filter(|f| f.is_none()).count(), 1);
    assert!(h
        .raw
        .get_each(Table::Categories, &[])
        .await
        .expect("none")
        .is_empty());

    let p = product(1);
    h.store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("create");
    let versions = h
        .raw
        .get_each(
            Table::ProductVersions,
            &[
                Key::pk_sk(p.id.to_string(), Scalar::N(2)),
                Key::pk_sk(p.id.to_string(), Scalar::N(1)),
            ],
        )
        .await
        .expect("versions");
    assert!(versions[0].is_none(), "no version 2");
    let first: ProductVersion = serde_json::from_slice(
        versions[1]
            .as_ref()
            .and_then(|i| i.doc.as_deref())
            .expect("doc"),
    )
    .expect("json");
    assert_eq!((first.product_id, first.version_number), (p.id, 1));
}

/// A Shopify product's local product is read at the id it is expected under, and looked for
/// through the index only where it is not there (and only when asked to).
pub async fn shopify_products_are_read_by_their_expected_id_then_by_index(h: Harness) {
    let shopify = |n: u64| ShopifyProductId::new(8_000_000_000_000 + n).expect("id");
    let mut at_expected = product(1);
    at_expected.shopify_id = Some(shopify(1));
    let mut elsewhere = product(1);
    elsewhere.shopify_id = Some(shopify(2));
    let mut other_product = product(1);
    other_product.shopify_id = Some(shopify(9));
    for p in [&at_expected, &elsewhere, &other_product] {
        h.store.insert(p).await.expect("insert");
    }
    let wanted = [
        (shopify(1), at_expected.id),
        (shopify(2), ProductId::generate()),
        (shopify(3), ProductId::generate()),
        // The id expected for this Shopify product holds another one: not a match.
        (shopify(4), other_product.id),
    ];
    let by_key = h
        .store
        .products_of_shopify(&wanted, false)
        .await
        .expect("reads");
    assert_eq!(by_key, vec![Some(at_expected.clone()), None, None, None]);
    let with_index = h
        .store
        .products_of_shopify(&wanted, true)
        .await
        .expect("reads");
    assert_eq!(
        with_index,
        vec![Some(at_expected), Some(elsewhere), None, None]
    );
}

pub async fn pending_push_index_is_sparse_and_ordered(h: Harness) {
    let mut expected = Vec::new();
    for i in 0..7 {
        let mut p = Product::new(ProductId::generate(), sample_content(1), at(i));
        if i % 3 == 0 {
            p.last_sync_version = p.version; // in step: not pending
        } else {
            expected.push(p.clone());
        }
        h.store.insert(&p).await.expect("insert");
    }
    assert_pages(
        &h,
        index_query(Table::Products, "by_pending_push", "1"),
        &expected,
    )
    .await;
}

pub async fn locks_are_listed_by_owner(h: Harness) {
    let mut expected = Vec::new();
    for i in 0..5 {
        let p = product(1);
        h.store.insert(&p).await.expect("insert");
        let lease = Duration::seconds(10 + i);
        expected.push(
            h.store
                .lock_product(p.id, &actor("carol"), at(0), lease)
                .await
                .expect("lock"),
        );
    }
    let other = product(1);
    h.store.insert(&other).await.expect("insert");
    h.store
        .lock_product(other.id, &actor("dave"), at(0), Duration::seconds(5))
        .await
        .expect("lock");
    assert_pages(
        &h,
        index_query(Table::Products, "by_lock_owner", "carol"),
        &expected,
    )
    .await;
}

pub async fn categories_and_their_versions_are_stored(h: Harness) {
    let content = CategoryContent {
        title: "Sweaters".into(),
        handle: "sweaters".into(),
        body_html: String::new(),
        sort_order: "MANUAL".into(),
        kind: shopsync_domain::CategoryKind::Custom,
        rules: None,
        products: [shopsync_domain::ShopifyProductId::new(9).expect("id")].into(),
    };
    let c = Category {
        id: CategoryId::generate(),
        shopify_id: Some(ShopifyCollectionId::new(841_564_295).expect("id")),
        content: content.clone(),
        version: 1,
        last_sync_version: 0,
        shopify_updated_at: Some(t0()),
        created_at: t0(),
        updated_at: t0(),
    };
    h.store.insert(&c).await.expect("insert");
    assert_pages(
        &h,
        index_query(Table::Categories, "by_shopify_id", "841564295"),
        std::slice::from_ref(&c),
    )
    .await;
    let op = OperationId::generate();
    let versions: Vec<CategoryVersion> = (1..=4)
        .map(|n| CategoryVersion {
            category_id: c.id,
            version_number: n,
            category_data: content.clone(),
            changed_fields: vec![],
            change_source: ChangeSource::Local,
            changed_by: actor("alice"),
            sync_operation_id: Some(op),
            created_at: at(n as i64),
        })
        .collect();
    for v in &versions {
        h.store.insert(v).await.expect("insert version");
    }
    assert_pages(
        &h,
        Query::new(Table::CategoryVersions, None, c.id.to_string()),
        &versions,
    )
    .await;
    assert_pages(
        &h,
        index_query(Table::CategoryVersions, "by_operation", op.to_string()),
        &versions,
    )
    .await;
}

pub async fn staging_rows_page_by_operation(h: Harness) {
    let op = OperationId::generate();
    let rows: Vec<_> = (0..8)
        .map(|i| staged(op, ProductId::generate(), StagingStatus::Pending, i))
        .collect();
    for r in rows.iter().rev() {
        h.store.insert(r).await.expect("insert");
    }
    h.store
        .insert(&staged(
            OperationId::generate(),
            ProductId::generate(),
            StagingStatus::Pending,
            3,
        ))
        .await
        .expect("other op");
    assert_pages(
        &h,
        index_query(Table::ProductsStaging, "by_operation", op.to_string()),
        &rows,
    )
    .await;
    let mut newest_first = index_query(Table::ProductsStaging, "by_operation", op.to_string());
    newest_first.ascending = false;
    let reversed: Vec<_> = rows.iter().rev().cloned().collect();
    assert_pages(&h, newest_first, &reversed).await;
}

pub async fn staging_rows_page_by_product_and_status(h: Harness) {
    let product_id = ProductId::generate();
    let mut for_product = Vec::new();
    let mut approved = Vec::new();
    for i in 0..7 {
        let status = if i % 2 == 0 {
            StagingStatus::Approved
        } else {
            StagingStatus::Rejected
        };
        let r = staged(OperationId::generate(), product_id, status, i);
        h.store.insert(&r).await.expect("insert");
        if status == StagingStatus::Approved {
            approved.push(r.clone());
        }
        for_product.push(r);
    }
    assert_pages(
        &h,
        index_query(Table::ProductsStaging, "by_product", product_id.to_string()),
        &for_product,
    )
    .await;
    assert_pages(
        &h,
        index_query(Table::ProductsStaging, "by_status", "approved"),
        &approved,
    )
    .await;
}

pub async fn applying_a_staged_row_twice_changes_nothing(h: Harness) {
    let p = product(1);
    h.store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("create");
    let op = OperationId::generate();
    let row = staged(op, p.id, StagingStatus::Pending, 1);
    h.store.insert(&row).await.expect("stage");
    let apply = |read: Product| {
        let mut product = read.clone();
        let mut content = read.content.clone();
        content.vendor = "Staged vendor".into();
        product.change_content(content, at(2));
        let mut applied = row.clone();
        applied.status = StagingStatus::Applied;
        applied.applied_at = Some(at(2));
        ProductCommit {
            version: Some(stamp_of(Some(op), 2)),
            product,
            expected_version: Some(read.version),
            staging: Some((applied, Some(StagingStatus::Pending))),
            actor: actor("system:worker"),
            now: at(2),
        }
    };
    h.store
        .commit_product(apply(p.clone()))
        .await
        .expect("apply");
    let after = h.store.product(p.id).await.expect("get").expect("present");
    assert_eq!(
        (after.version, after.content.vendor.as_str()),
        (2, "Staged vendor")
    );
    // A redelivered apply step reads the new product but the row is no longer pending.
    let err = h
        .store
        .commit_product(apply(after.clone()))
        .await
        .expect_err("second apply");
    assert!(
        matches!(err, RepoError::StagingStatusConflict { .. }),
        "{err:?}"
    );
    assert_eq!(h.store.product(p.id).await.expect("get"), Some(after));
    assert_eq!(h.store.product_version(p.id, 3).await.expect("get"), None);
}

pub async fn a_create_is_stored_without_listing_its_fields_and_read_back_whole(h: Harness) {
    let p = product(3);
    let op = OperationId::generate();
    let mut row = staged(op, p.id, StagingStatus::Applied, 1);
    row.change_type = ChangeType::Create;
    row.base_version = 0;
    row.proposed = Some(p.content.clone());
    let first = VersionStamp::first(&p, ChangeSource::Shopify, actor("system:sync"), Some(op));
    let version_key = ProductVersion::of(&p, first.clone()).key();
    h.store
        .commit_product(ProductCommit {
            version: Some(first),
            product: p.clone(),
            expected_version: None,
            staging: Some((row.clone(), None)),
            actor: actor("system:sync"),
            now: at(1),
        })
        .await
        .expect("create");
    let stored = |item: Option<Item>| -> serde_json::Value {
        let item = item.expect("present");
        serde_json::from_slice(item.doc.as_deref().expect("doc")).expect("json")
    };
    // Stored once: no per-field listing, and the row's content is version 1's snapshot.
    let raw_row = stored(
        h.raw
            .get(Table::ProductsStaging, &row.key())
            .await
            .expect("get"),
    );
    assert_eq!(raw_row["change_data"], serde_json::json!({}));
    assert_eq!(raw_row["proposed"], serde_json::Value::Null);
    let raw_version = stored(
        h.raw
            .get(Table::ProductVersions, &version_key)
            .await
            .expect("get"),
    );
    assert_eq!(raw_version["changed_fields"], serde_json::json!([]));
    // Read back whole: every field of the content is new.
    let every = p.content.to_fields();
    let read = h
        .store
        .get::<ProductsStaging>(&row.key())
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        read.change_data,
        fields::diff(&fields::Fields::new(), &every)
    );
    assert!(read.change_data.contains_key("variants/v0003/price"));
    assert_eq!(read.proposed.as_ref(), Some(&p.content));
    // Every way of reading the row reads it whole.
    let by_operation = h
        .store
        .query_all::<ProductsStaging>(Query::new(
            Table::ProductsStaging,
            Some("by_operation"),
            op.to_string(),
        ))
        .await
        .expect("query");
    assert_eq!(by_operation, vec![read.clone()]);
    let mut status_now = read.clone();
    status_now.status = StagingStatus::Superseded;
    let changed = h
        .store
        .replace_if(
            &status_now,
            Condition::Eq("status", Scalar::S("pending".into())),
        )
        .await
        .expect_err("the row is applied, not pending");
    match changed {
        ReplaceError::Changed(current) => assert_eq!(*current, read),
        other => panic!("{other:?}"),
    }
    let v1 = h
        .store
        .product_version(p.id, 1)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(v1.changed_fields, every.into_keys().collect::<Vec<_>>());
}

pub async fn a_create_keeps_its_content_unless_it_is_its_first_versions(h: Harness) {
    let op = OperationId::generate();
    let create = |p: &Product, status: StagingStatus| {
        let mut row = staged(op, p.id, status, 1);
        row.change_type = ChangeType::Create;
        row.base_version = 0;
        row.proposed = Some(p.content.clone());
        row
    };
    let commit = |p: &Product, version: VersionStamp, row: &ProductsStaging| ProductCommit {
        version: Some(version),
        product: p.clone(),
        expected_version: None,
        staging: Some((row.clone(), None)),
        actor: actor("system:sync"),
        now: at(1),
    };
    let first =
        |p: &Product| VersionStamp::first(p, ChangeSource::Shopify, actor("system:sync"), Some(op));
    // Staged, not applied: the row is what an approval will apply, so it keeps its content.
    let pending_product = product(4);
    let pending = create(&pending_product, StagingStatus::Pending);
    // Applied with content other than its product's first version: the row's own is kept.
    let other_product = product(5);
    let mut other = create(&other_product, StagingStatus::Applied);
    if let Some(proposed) = other.proposed.as_mut() {
        proposed.title = "Something else".into();
    }
    let other_first = first(&other_product);
    h.store
        .commit_product(commit(&pending_product, first(&pending_product), &pending))
        .await
        .expect("pending");
    h.store
        .commit_product(commit(&other_product, other_first, &other))
        .await
        .expect("other");
    for row in [&pending, &other] {
        let raw = h
            .raw
            .get(Table::ProductsStaging, &row.key())
            .await
            .expect("get")
            .expect("present");
        let doc: serde_json::Value =
            serde_json::from_slice(raw.doc.as_deref().expect("doc")).expect("json");
        assert_eq!(
            doc["proposed"]["title"],
            serde_json::json!(row.proposed.as_ref().map(|c| c.title.clone()))
        );
        let read = h
            .store
            .get::<ProductsStaging>(&row.key())
            .await
            .expect("get")
            .expect("present");
        assert_eq!(read.proposed, row.proposed);
    }
    // An applied create whose first version went missing is reported, not read as empty.
    let lost_product = product(6);
    let lost = create(&lost_product, StagingStatus::Applied);
    h.store
        .commit_product(commit(&lost_product, first(&lost_product), &lost))
        .await
        .expect("lost");
    h.raw
        .delete(
            Table::ProductVersions,
            &Key::pk_sk(lost_product.id.to_string(), 1),
            None,
        )
        .await
        .expect("delete");
    let err = h
        .store
        .get::<ProductsStaging>(&lost.key())
        .await
        .expect_err("content missing");
    assert!(
        matches!(&err, RepoError::Decode { reason, .. } if reason.contains("version 1")),
        "{err:?}"
    );
}

pub async fn operations_page_by_status_and_newest_first(h: Harness) {
    let mut all = Vec::new();
    for i in 0..7 {
        let status = if i % 2 == 0 {
            OperationStatus::Completed
        } else {
            OperationStatus::InProgress
        };
        let op = operation(status, i);
        h.store.insert(&op).await.expect("insert");
        all.push(op);
    }
    let completed: Vec<_> = all
        .iter()
        .filter(|o| o.status == OperationStatus::Completed)
        .cloned()
        .collect();
    assert_pages(
        &h,
        index_query(Table::SyncOperations, "by_status", "completed"),
        &completed,
    )
    .await;
    let mut newest = index_query(Table::SyncOperations, "by_created", "operation");
    newest.ascending = false;
    let reversed: Vec<_> = all.iter().rev().cloned().collect();
    assert_pages(&h, newest, &reversed).await;
}

pub async fn conflicts_page_by_status_product_and_operation(h: Harness) {
    let op = OperationId::generate();
    let product_id = ProductId::generate();
    let mut all = Vec::new();
    for i in 0..7 {
        let status = if i < 4 {
            ConflictStatus::Open
        } else {
            ConflictStatus::Resolved
        };
        let c = conflict(op, product_id, status, i);
        h.store.insert(&c).await.expect("insert");
        all.push(c);
    }
    h.store
        .insert(&conflict(
            OperationId::generate(),
            ProductId::generate(),
            ConflictStatus::Open,
            100,
        ))
        .await
        .expect("other");
    let open: Vec<_> = all
        .iter()
        .filter(|c| c.status == ConflictStatus::Open)
        .cloned()
        .collect();
    let mut open_query = index_query(Table::SyncConflicts, "by_status", "open");
    open_query.sk = Some(SortCondition::Lt(Scalar::N(
        shopsync_store::records::millis(at(100)),
    )));
    assert_pages(&h, open_query, &open).await;
    assert_pages(
        &h,
        index_query(Table::SyncConflicts, "by_product", product_id.to_string()),
        &all,
    )
    .await;
    assert_pages(
        &h,
        index_query(Table::SyncConflicts, "by_operation", op.to_string()),
        &all,
    )
    .await;
}

pub async fn rollbacks_page_by_original_operation(h: Harness) {
    let op = OperationId::generate();
    let rollbacks: Vec<_> = (0..4)
        .map(|i| SyncRollback {
            id: RollbackId::generate(),
            original_operation_id: op,
            rollback_type: RollbackType::Selective,
            operation_id: Some(OperationId::generate()),
            selected_products: vec![ProductId::generate()],
            selected_fields: vec!["price".into()],
            force: false,
            dry_run: false,
            backup_data: BackupData {
                products: vec![shopsync_domain::BackupRef {
                    product_id: product(1).id,
                    before_version: Some(1),
                    after_version: 2,
                    deleted: false,
                    created: false,
                    pushed: false,
                }],
                products_total: 1,
                categories: vec![],
            },
            status: RollbackStatus::Pending,
            status_reason: None,
            restored: vec![],
            restored_total: 0,
            skipped: vec![],
            skipped_total: 0,
            categories_restored: vec![],
            categories_skipped: vec![],
            requested_by: actor("admin"),
            created_at: at(i),
            completed_at: None,
        })
        .collect();
    for r in &rollbacks {
        h.store.insert(r).await.expect("insert");
    }
    assert_pages(
        &h,
        index_query(
            Table::SyncRollbacks,
            "by_original_operation",
            op.to_string(),
        ),
        &rollbacks,
    )
    .await;
}

pub async fn versions_page_by_product_in_both_directions(h: Harness) {
    let p = product(1);
    let versions: Vec<_> = (1..=10)
        .map(|n| version_of(&p, n, None, n as i64))
        .collect();
    for v in &versions {
        h.store.insert(v).await.expect("insert");
    }
    // Numeric order, not text order: 10 comes after 9.
    assert_pages(
        &h,
        Query::new(Table::ProductVersions, None, p.id.to_string()),
        &versions,
    )
    .await;
    let page = h
        .store
        .product_versions(p.id, true, 4, None)
        .await
        .expect("newest first");
    assert_eq!(
        page.items
            .iter()
            .map(|v| v.version_number)
            .collect::<Vec<_>>(),
        vec![10, 9, 8, 7]
    );
    let next = h
        .store
        .product_versions(p.id, true, 4, page.next)
        .await
        .expect("next page");
    assert_eq!(
        next.items
            .iter()
            .map(|v| v.version_number)
            .collect::<Vec<_>>(),
        vec![6, 5, 4, 3]
    );
}

pub async fn versions_page_by_operation(h: Harness) {
    let op = OperationId::generate();
    let mut expected = Vec::new();
    for i in 0..5 {
        let p = product(1);
        let v = version_of(&p, 2, Some(op), i);
        h.store.insert(&v).await.expect("insert");
        h.store
            .insert(&version_of(&p, 1, None, i))
            .await
            .expect("insert unrelated");
        expected.push(v);
    }
    assert_pages(
        &h,
        index_query(Table::ProductVersions, "by_operation", op.to_string()),
        &expected,
    )
    .await;
}

pub async fn xorosoft_products_page_by_sku_and_product(h: Harness) {
    let product_id = ProductId::generate();
    let rows: Vec<_> = ["WH1", "WH2", "WH3", "WH4"]
        .iter()
        .map(|wh| XorosoftProduct {
            stock_on_hand: Quantity(12),
            stock_available: Quantity(9),
            cost_price: Some("21.50".parse().expect("money")),
            product_id: Some(product_id),
            source_timestamp: Some(t0()),
            ..XorosoftProduct::new("XS-1", Sku::parse("MCS-0001").expect("sku"), wh, t0())
        })
        .collect();
    for r in &rows {
        h.store.insert(r).await.expect("insert");
    }
    assert_pages(
        &h,
        index_query(Table::XorosoftProducts, "by_sku", "MCS-0001"),
        &rows,
    )
    .await;
    assert_pages(
        &h,
        index_query(
            Table::XorosoftProducts,
            "by_product",
            product_id.to_string(),
        ),
        &rows,
    )
    .await;
    assert_pages(&h, Query::new(Table::XorosoftProducts, None, "XS-1"), &rows).await;
    assert_pages(
        &h,
        index_query(Table::XorosoftProducts, "by_warehouse", "WH2"),
        &rows[1..2],
    )
    .await;
    let one: Option<XorosoftProduct> = h.store.get(&Key::pk_sk("XS-1", "WH3")).await.expect("get");
    assert_eq!(one, Some(rows[2].clone()));
}

pub async fn xorosoft_logs_page_by_type_and_file(h: Harness) {
    let logs: Vec<_> = (0..5)
        .map(|i| XorosoftSyncLog {
            id: XorosoftLogId::generate(),
            status: XorosoftSyncStatus::Completed,
            statistics: XorosoftStatistics {
                records_processed: 10,
                records_updated: 4,
                records_failed: 1,
                records_unchanged: 5,
                ..XorosoftStatistics::default()
            },
            import_file: Some(format!("incoming/stock-{i}.csv")),
            errors: vec!["row 7: unknown SKU".into()],
            completed_at: Some(at(i + 1)),
            ..XorosoftSyncLog::new(
                shopsync_domain::ImportObject {
                    bucket: "incoming".into(),
                    key: format!("stock-{i}.csv"),
                    version_id: None,
                    etag: format!("e{i}"),
                    size: 10,
                    last_modified: None,
                },
                XorosoftSyncType::StockUpdate,
                Actor::system("s3"),
                at(i),
            )
        })
        .collect();
    for l in &logs {
        h.store.insert(l).await.expect("insert");
    }
    assert_pages(
        &h,
        index_query(Table::XorosoftSyncLogs, "by_type", "stock_update"),
        &logs,
    )
    .await;
    assert_pages(
        &h,
        index_query(
            Table::XorosoftSyncLogs,
            "by_import_file",
            "incoming/stock-3.csv",
        ),
        &logs[3..4],
    )
    .await;
}

pub async fn performance_logs_page_by_operation_and_bottleneck(h: Harness) {
    let op = OperationId::generate();
    let logs: Vec<_> = (0..5)
        .map(|i| {
            let stages = BTreeMap::from([(Stage::Fetch, 100), (Stage::Push, 400 + i as u64)]);
            SyncPerformanceLog::from_measurements(op, stages, 600, 300, at(i))
        })
        .collect();
    for l in &logs {
        h.store.insert(l).await.expect("insert");
    }
    assert_pages(
        &h,
        index_query(Table::SyncPerformanceLogs, "by_operation", op.to_string()),
        &logs,
    )
    .await;
    assert_pages(
        &h,
        index_query(Table::SyncPerformanceLogs, "by_bottleneck", "push"),
        &logs,
    )
    .await;
}

pub async fn snapshots_past_the_item_size_limit_round_trip(h: Harness) {
    let mut p = product(2000);
    for (i, v) in p.content.variants.iter_mut().enumerate() {
        v.title = format!(
            "Size {i} / Colour {} / Fit regular, long description {i:08}",
            i % 17
        );
    }
    p.content.body_html = "<p>Soft merino, knitted in Portugal. </p>".repeat(500);
    let json_len = serde_json::to_vec(&p).expect("json").len();
    assert!(
        json_len > 400 * 1024,
        "the snapshot is past DynamoDB's item limit ({json_len} bytes)"
    );
    h.store
        .create_product(&p, ChangeSource::Local, &actor("alice"), None)
        .await
        .expect("create a large product");
    assert_eq!(h.store.product(p.id).await.expect("get"), Some(p.clone()));
    let v1 = h
        .store
        .product_version(p.id, 1)
        .await
        .expect("get")
        .expect("version");
    assert_eq!(v1.product_data, p.content);
}

pub async fn a_scan_visits_every_item_once(h: Harness) {
    let mut ids = HashSet::new();
    for _ in 0..11 {
        let p = product(1);
        h.store.insert(&p).await.expect("insert");
        ids.insert(p.id.to_string());
    }
    let mut seen = Vec::new();
    let mut start = None;
    for _ in 0..100 {
        let page = h
            .raw
            .scan(Table::Products, 4, start.as_ref())
            .await
            .expect("scan");
        seen.extend(page.items.iter().filter_map(|i| {
            i.attrs
                .get("id")
                .and_then(Scalar::as_str)
                .map(str::to_owned)
        }));
        match page.next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 11, "each item once");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), ids);
}

pub async fn sort_key_conditions_select_ranges(h: Harness) {
    let p = product(1);
    for n in 1..=12 {
        h.store
            .insert(&version_of(&p, n, None, n as i64))
            .await
            .expect("insert");
    }
    let numbers = |cond: SortCondition| {
        let store = h.store.clone();
        let id = p.id;
        async move {
            let mut query = Query::new(Table::ProductVersions, None, id.to_string());
            query.sk = Some(cond);
            let got: Vec<ProductVersion> = store.query_all(query).await.expect("query");
            got.iter().map(|v| v.version_number).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        numbers(SortCondition::Between(Scalar::N(3), Scalar::N(5))).await,
        vec![3, 4, 5]
    );
    assert_eq!(
        numbers(SortCondition::Gt(Scalar::N(10))).await,
        vec![11, 12]
    );
    assert_eq!(numbers(SortCondition::Le(Scalar::N(2))).await, vec![1, 2]);
    assert_eq!(numbers(SortCondition::Eq(Scalar::N(7))).await, vec![7]);
    let rows = ["WH-A1", "WH-A2", "WH-B1"].map(|wh| XorosoftProduct {
        stock_on_hand: Quantity(1),
        stock_available: Quantity(1),
        ..XorosoftProduct::new("XS-9", Sku::parse("S").expect("sku"), wh, t0())
    });
    for r in &rows {
        h.store.insert(r).await.expect("insert");
    }
    let mut query = Query::new(Table::XorosoftProducts, None, "XS-9");
    query.sk = Some(SortCondition::BeginsWith("WH-A".into()));
    let got: Vec<XorosoftProduct> = h.store.query_all(query).await.expect("query");
    assert_eq!(got, rows[..2].to_vec());
}

pub async fn replace_if_returns_the_current_record_when_it_changed(h: Harness) {
    let mut op = operation(OperationStatus::Pending, 0);
    h.store.insert(&op).await.expect("insert");
    let pending = Condition::Eq("status", Scalar::from("pending"));
    op.move_to(OperationStatus::InProgress, None, at(1))
        .expect("transition");
    h.store
        .replace_if(&op, pending.clone())
        .await
        .expect("first replace");
    let mut late = op.clone();
    late.status = OperationStatus::Cancelled;
    match h.store.replace_if(&late, pending).await {
        Err(ReplaceError::Changed(current)) => assert_eq!(*current, op),
        other => panic!("expected the current record, got {other:?}"),
    }
    let absent = operation(OperationStatus::Pending, 5);
    assert!(matches!(
        h.store
            .replace_if(&absent, Condition::Eq("status", Scalar::from("pending")))
            .await,
        Err(ReplaceError::Repo(RepoError::NotFound { .. }))
    ));
}

pub async fn compliance_requests_are_recorded_once_and_shop_redaction_removes_shop_data(
    h: Harness,
) {
    let data_request = ComplianceRequest::received(
        ComplianceTopic::CustomersDataRequest,
        "wh-1",
        "example.myshopify.com",
        serde_json::json!({"customer": {"id": 7}}),
        t0(),
    );
    assert!(h
        .store
        .record_compliance(&data_request)
        .await
        .expect("record"));
    assert!(!h
        .store
        .record_compliance(&data_request)
        .await
        .expect("redelivery"));
    assert_eq!(data_request.status, ComplianceStatus::Recorded);

    // Some shop data: two products with their versions, an idempotency record.
    for _ in 0..2 {
        let p = product(2);
        h.store
            .create_product(&p, ChangeSource::Local, &actor("alice"), None)
            .await
            .expect("create");
    }
    let redact = ComplianceRequest::received(
        ComplianceTopic::ShopRedact,
        "wh-2",
        "example.myshopify.com",
        serde_json::json!({"shop_id": 1}),
        at(10),
    );
    assert!(h.store.record_compliance(&redact).await.expect("record"));
    assert_eq!(h.store.due_redactions(at(5)).await.expect("due").len(), 0);
    let due = h.store.due_redactions(at(10)).await.expect("due");
    assert_eq!(
        due.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [redact.id.as_str()]
    );

    let done = h
        .store
        .redact_shop(&redact.id, at(11))
        .await
        .expect("redact");
    assert_eq!(done.status, ComplianceStatus::Redacted);
    assert_eq!(done.removed.get("products"), Some(&2));
    assert_eq!(done.removed.get("product_versions"), Some(&2));
    for table in Table::on(h.raw.kind()) {
        let page = h.raw.scan(table, 10, None).await.expect("scan");
        if table == Table::ComplianceRequests {
            assert_eq!(page.items.len(), 2, "the audit records stay");
        } else {
            assert!(page.items.is_empty(), "{table} still has items");
        }
    }
    // Done once: a second run is refused and nothing is due any more.
    assert!(h.store.redact_shop(&redact.id, at(12)).await.is_err());
    assert!(h
        .store
        .due_redactions(at(20))
        .await
        .expect("due")
        .is_empty());
    // Customer requests cannot trigger a redaction.
    assert!(h.store.redact_shop(&data_request.id, at(12)).await.is_err());
}

pub async fn batched_product_commits_answer_each_commit(h: Harness) {
    let alice = actor("alice");
    let new: Vec<Product> = (0..40).map(|_| product(1)).collect();
    let mut commits: Vec<ProductCommit> = new
        .iter()
        .map(|p| ProductCommit {
            product: p.clone(),
            expected_version: None,
            version: Some(VersionStamp::first(
                p,
                ChangeSource::Shopify,
                alice.clone(),
                None,
            )),
            staging: None,
            actor: alice.clone(),
            now: t0(),
        })
        .collect();
    let answers = h.store.commit_products(&mut commits).await.expect("batch");
    assert_eq!(answers.len(), 40);
    assert!(answers.iter().all(Result::is_ok));
    for p in &new {
        assert_eq!(
            h.store
                .product(p.id)
                .await
                .expect("read")
                .expect("stored")
                .version,
            1
        );
    }

    // One stale commit in a batch: it alone is refused, the others land.
    let mut commits = Vec::new();
    for (i, p) in new.iter().take(5).enumerate() {
        let mut next = p.clone();
        let mut content = next.content.clone();
        content.title = format!("v2 {i}");
        let changes = next.change_content(content, at(1));
        let expected = if i == 2 { 7 } else { 1 };
        commits.push(ProductCommit {
            version: Some(VersionStamp::new(
                shopsync_domain::fields::changed_fields(&changes),
                ChangeSource::Shopify,
                alice.clone(),
                None,
                at(1),
            )),
            product: next,
            expected_version: Some(expected),
            staging: None,
            actor: alice.clone(),
            now: at(1),
        });
    }
    let answers = h.store.commit_products(&mut commits).await.expect("batch");
    for (i, answer) in answers.iter().enumerate() {
        if i == 2 {
            assert!(
                matches!(answer, Err(RepoError::VersionConflict { .. })),
                "{answer:?}"
            );
        } else {
            assert!(answer.is_ok(), "{i}: {answer:?}");
        }
    }
    assert_eq!(
        h.store
            .product(new[2].id)
            .await
            .expect("read")
            .expect("stored")
            .version,
        1
    );
    assert_eq!(
        h.store
            .product(new[3].id)
            .await
            .expect("read")
            .expect("stored")
            .content
            .title,
        "v2 3"
    );
}

pub async fn ordering_marks_move_forward_only(h: Harness) {
    let t0 = Utc::now();
    let later = t0 + Duration::seconds(5);
    let expires = t0 + Duration::days(1);
    let key = format!("level:{}", uuid::Uuid::new_v4());
    assert!(h
        .store
        .advance_mark(&key, t0, expires)
        .await
        .expect("first"));
    assert!(
        h.store
            .advance_mark(&key, later, expires)
            .await
            .expect("newer"),
        "a newer time moves the mark"
    );
    assert!(
        h.store
            .advance_mark(&key, later, expires)
            .await
            .expect("same"),
        "the same time again (a retried delivery) passes"
    );
    assert!(
        !h.store
            .advance_mark(&key, t0, expires)
            .await
            .expect("older"),
        "an older time is refused"
    );
    // Typed records scan too.
    let p = product(1);
    h.store.insert(&p).await.expect("insert");
    let page = h
        .store
        .scan::<Product>(100, None)
        .await
        .expect("typed scan");
    assert!(page.items.iter().any(|q| q.id == p.id));
}
