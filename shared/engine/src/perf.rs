//! Stage timings of an operation, its performance log, and the CloudWatch EMF line.

use chrono::{DateTime, Utc};
use shopsync_domain::{OperationId, Stage, SyncOperation, SyncPerformanceLog};
use shopsync_shopify::ClientCounters;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Time spent per stage. Staging and applying a change are one transaction, so their time is
/// reported under `apply`; `stage` is the time spent writing rows that wait (conflicts,
/// deletes for review).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageTimes {
    spent: BTreeMap<Stage, Duration>,
}

impl StageTimes {
    /// Adds the time since `started` to `stage`.
    pub fn add(&mut self, stage: Stage, started: Instant) {
        *self.spent.entry(stage).or_default() += started.elapsed();
    }

    /// Adds `spent` to `stage` (time measured elsewhere, e.g. by a task reading ahead).
    pub fn add_spent(&mut self, stage: Stage, spent: Duration) {
        *self.spent.entry(stage).or_default() += spent;
    }

    /// Adds another set of timings.
    pub fn absorb(&mut self, other: &StageTimes) {
        for (stage, spent) in &other.spent {
            *self.spent.entry(*stage).or_default() += *spent;
        }
    }

    /// Timings from milliseconds per stage (as stored between steps).
    pub fn from_millis(millis: &BTreeMap<Stage, u64>) -> Self {
        Self {
            spent: millis
                .iter()
                .map(|(s, ms)| (*s, Duration::from_millis(*ms)))
                .collect(),
        }
    }

    /// Milliseconds per stage.
    pub fn millis(&self) -> BTreeMap<Stage, u64> {
        self.spent
            .iter()
            .map(|(s, d)| (*s, u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
            .collect()
    }
}

/// The performance log of an operation from its timings and the Shopify client's counters
/// over the operation (`after - before`).
pub fn performance_log(
    operation: OperationId,
    times: &StageTimes,
    total: Duration,
    items: u64,
    before: ClientCounters,
    after: ClientCounters,
    now: DateTime<Utc>,
) -> SyncPerformanceLog {
    let mut log = SyncPerformanceLog::from_measurements(
        operation,
        times.millis(),
        u64::try_from(total.as_millis()).unwrap_or(u64::MAX),
        items,
        now,
    );
    log.api_calls_count = after.api_calls.saturating_sub(before.api_calls);
    log.api_cost_points = (after.cost_used - before.cost_used).max(0.0).round() as u64;
    log.throttle_wait_ms = u64::try_from(
        after
            .throttle_wait
            .saturating_sub(before.throttle_wait)
            .as_millis(),
    )
    .unwrap_or(u64::MAX);
    log
}

/// The log as one CloudWatch Embedded Metric Format line (printed to stdout in Lambda, where
/// CloudWatch turns it into metrics).
pub fn emf_line(log: &SyncPerformanceLog, operation: &SyncOperation) -> String {
    let operation_type = shopsync_domain::status::status_name(operation.operation_type);
    let mut metrics = vec![
        serde_json::json!({"Name": "ItemsPerSecond", "Unit": "Count/Second"}),
        serde_json::json!({"Name": "TotalDurationMs", "Unit": "Milliseconds"}),
        serde_json::json!({"Name": "ApiCalls", "Unit": "Count"}),
        serde_json::json!({"Name": "ThrottleWaitMs", "Unit": "Milliseconds"}),
    ];
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": log.recorded_at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "shopsync",
                "Dimensions": [["OperationType"]],
                "Metrics": [],
            }],
        },
        "OperationType": operation_type,
        "OperationId": operation.operation_uuid.to_string(),
        "ItemsPerSecond": log.items_per_second,
        "TotalDurationMs": log.total_duration_ms,
        "ApiCalls": log.api_calls_count,
        "ThrottleWaitMs": log.throttle_wait_ms,
        "BottleneckStage": log.bottleneck_stage.map(shopsync_domain::status::status_name),
    });
    for (stage, ms) in &log.stage_durations_ms {
        let name = format!(
            "Stage{}Ms",
            capitalise(&shopsync_domain::status::status_name(*stage))
        );
        metrics.push(serde_json::json!({"Name": name, "Unit": "Milliseconds"}));
        line[name] = serde_json::json!(ms);
    }
    line["_aws"]["CloudWatchMetrics"][0]["Metrics"] = serde_json::Value::Array(metrics);
    line.to_string()
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
