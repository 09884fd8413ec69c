//! The storage conformance suite: the same cases against the embedded store and DynamoDB.
//!
//! The DynamoDB run is `#[ignore]`d in a plain `cargo test`; `scripts/test.sh` starts moto's
//! server and runs it with `--include-ignored`, where a missing endpoint fails.

mod cases;
mod harness;
mod template;

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::cases::$case(crate::harness::embedded().await).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[ignore = "needs a DynamoDB endpoint: run scripts/test.sh"]
                async fn $case() {
                    crate::cases::$case(crate::harness::dynamodb().await).await;
                }
            )*
        }
    };
}

conformance!(
    ordering_marks_move_forward_only,
    batched_product_commits_answer_each_commit,
    compliance_requests_are_recorded_once_and_shop_redaction_removes_shop_data,
    create_if_absent_refuses_a_second_create,
    reading_an_absent_item_gives_none,
    a_failed_condition_returns_the_current_item,
    comparisons_on_missing_attributes_are_false,
    conditional_delete_removes_only_when_the_condition_holds,
    a_multi_item_write_is_all_or_nothing,
    independent_groups_are_each_all_or_nothing,
    a_taken_key_refuses_the_whole_transaction_in_any_position,
    a_multi_item_write_rejects_duplicates_and_oversize,
    creating_a_product_writes_its_first_version,
    an_optimistic_update_advances_version_and_snapshot,
    a_stale_update_is_a_typed_conflict_that_writes_nothing,
    fifty_concurrent_updates_lose_nothing,
    a_lock_refuses_others_until_its_lease_expires,
    only_the_holder_releases_a_lock,
    a_lock_keeps_its_reason_and_an_override_releases_it_for_anyone,
    expired_locks_are_found_and_cleared_and_held_ones_kept,
    a_locked_product_refuses_other_writers_but_not_its_holder,
    idempotency_blocks_a_second_start_while_in_progress,
    idempotency_replays_a_completed_result,
    idempotency_refuses_the_same_key_with_another_payload,
    idempotency_lets_an_expired_in_progress_record_be_retaken,
    idempotency_treats_an_expired_record_as_absent,
    idempotency_abandon_lets_a_retry_run,
    a_completion_commits_with_its_work_once_without_a_claim,
    products_are_found_by_shopify_and_xorosoft_id,
    lookups_asked_together_are_answered_each_in_order,
    reads_by_key_asked_together_are_answered_each_in_order,
    shopify_products_are_read_by_their_expected_id_then_by_index,
    pending_push_index_is_sparse_and_ordered,
    locks_are_listed_by_owner,
    categories_and_their_versions_are_stored,
    staging_rows_page_by_operation,
    staging_rows_page_by_product_and_status,
    applying_a_staged_row_twice_changes_nothing,
    a_create_is_stored_without_listing_its_fields_and_read_back_whole,
    a_create_keeps_its_content_unless_it_is_its_first_versions,
    operations_page_by_status_and_newest_first,
    conflicts_page_by_status_product_and_operation,
    rollbacks_page_by_original_operation,
    versions_page_by_product_in_both_directions,
    versions_page_by_operation,
    xorosoft_products_page_by_sku_and_product,
    xorosoft_logs_page_by_type_and_file,
    performance_logs_page_by_operation_and_bottleneck,
    snapshots_past_the_item_size_limit_round_trip,
    a_scan_visits_every_item_once,
    sort_key_conditions_select_ranges,
    replace_if_returns_the_current_record_when_it_changed,
);

/// Scalars round-trip through JSON as DynamoDB's S and N: strings stay strings (even when
/// they look like numbers), integers stay integers, anything else is refused.
#[test]
fn scalars_read_strings_and_integers_only() {
    use shopsync_store::item::Scalar;
    let parsed: Vec<Scalar> = serde_json::from_str(r#"["a", "12", 12, -3]"#).unwrap();
    assert_eq!(
        parsed,
        vec![
            Scalar::S("a".into()),
            Scalar::S("12".into()),
            Scalar::N(12),
            Scalar::N(-3)
        ]
    );
    assert_eq!(
        serde_json::to_string(&parsed).unwrap(),
        r#"["a","12",12,-3]"#
    );
    for bad in ["1.5", "true", "null", "18446744073709551615", "[1]"] {
        assert!(serde_json::from_str::<Scalar>(bad).is_err(), "{bad}");
    }
}
