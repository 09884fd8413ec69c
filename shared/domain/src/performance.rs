//! Performance logs (`sync_performance_logs`): where the time of an operation went.

use crate::ids::{OperationId, PerformanceLogId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The stages of a sync whose time is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading from Shopify or a file.
    Fetch,
    /// Comparing and merging.
    Diff,
    /// Writing staging rows.
    Stage,
    /// Applying staged changes to products.
    Apply,
    /// Writing to Shopify.
    Push,
    /// Other store writes (logs, cursors).
    Persist,
}

/// Performance metrics of one operation (or one step of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncPerformanceLog {
    /// Id.
    pub id: PerformanceLogId,
    /// The operation measured.
    pub sync_operation_id: OperationId,
    /// Milliseconds per stage.
    pub stage_durations_ms: BTreeMap<Stage, u64>,
    /// The spec's `total_duration`, in milliseconds.
    pub total_duration_ms: u64,
    /// The spec's `api_calls_count`.
    pub api_calls_count: u64,
    /// Shopify query cost spent.
    pub api_cost_points: u64,
    /// Time spent waiting for Shopify's rate limit, in milliseconds.
    pub throttle_wait_ms: u64,
    /// Items handled.
    pub items_processed: u64,
    /// The spec's `items_per_second`.
    pub items_per_second: f64,
    /// The spec's `bottleneck_stage`: the stage with the largest share of time.
    pub bottleneck_stage: Option<Stage>,
    /// When recorded.
    pub recorded_at: DateTime<Utc>,
}

impl SyncPerformanceLog {
    /// Builds a log from measured stage times, deriving throughput and the bottleneck.
    pub fn from_measurements(
        sync_operation_id: OperationId,
        stage_durations_ms: BTreeMap<Stage, u64>,
        total_duration_ms: u64,
        items_processed: u64,
        now: DateTime<Utc>,
    ) -> Self {
        let bottleneck_stage = stage_durations_ms
            .iter()
            .filter(|(_, ms)| **ms > 0)
            .max_by_key(|(_, ms)| **ms)
            .map(|(s, _)| *s);
        let items_per_second = if total_duration_ms == 0 {
            0.0
        } else {
            items_processed as f64 * 1000.0 / total_duration_ms as f64
        };
        Self {
            id: PerformanceLogId::generate(),
            sync_operation_id,
            stage_durations_ms,
            total_duration_ms,
            api_calls_count: 0,
            api_cost_points: 0,
            throttle_wait_ms: 0,
            items_processed,
            items_per_second,
            bottleneck_stage,
            recorded_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bottleneck_is_the_slowest_stage() {
        let stages = BTreeMap::from([(Stage::Fetch, 700), (Stage::Push, 900), (Stage::Diff, 50)]);
        let log = SyncPerformanceLog::from_measurements(
            OperationId::generate(),
            stages,
            2000,
            500,
            Utc::now(),
        );
        assert_eq!(log.bottleneck_stage, Some(Stage::Push));
        assert_eq!(log.items_per_second, 250.0);
        let empty = SyncPerformanceLog::from_measurements(
            OperationId::generate(),
            BTreeMap::new(),
            0,
            0,
            Utc::now(),
        );
        assert_eq!(
            (empty.bottleneck_stage, empty.items_per_second),
            (None, 0.0)
        );
    }
}
