//! Short-lived marks in `idempotency_records` (TTL `expires_at`): "this happened recently",
//! e.g. the fingerprint of content shopsync just pushed, so its webhook echo is recognised.

use crate::backend::StoreError;
use crate::item::{Condition, Item, Key, Scalar, WriteOp};
use crate::repo::{RepoError, Store};
use crate::schema::Table;
use chrono::{DateTime, Utc};

const EXPIRES: &str = "expires_at";

fn conflict_opened_key(product: shopsync_domain::ProductId) -> String {
    format!("conflict-opened:{product}")
}

/// The mark of a conflict opened on `product` at `at`, kept a day.
fn conflict_opened_item(product: shopsync_domain::ProductId, at: DateTime<Utc>) -> Item {
    Item {
        attrs: [
            ("key".to_owned(), Scalar::from(conflict_opened_key(product))),
            ("status".to_owned(), Scalar::from("mark")),
            ("at".to_owned(), Scalar::N(at.timestamp_millis())),
            (
                EXPIRES.to_owned(),
                Scalar::N((at + chrono::Duration::days(1)).timestamp()),
            ),
        ]
        .into(),
        doc: None,
    }
}

impl Store {
    /// Remembers `key` until `expires_at` (overwrites an earlier mark).
    pub async fn remember(&self, key: &str, expires_at: DateTime<Utc>) -> Result<(), RepoError> {
        let item = Item {
            attrs: [
                ("key".to_owned(), Scalar::from(key)),
                ("status".to_owned(), Scalar::from("mark")),
                (EXPIRES.to_owned(), Scalar::N(expires_at.timestamp())),
            ]
            .into(),
            doc: None,
        };
        Ok(self
            .backend()
            .put(Table::IdempotencyRecords, item, None)
            .await?)
    }

    /// The write that marks a conflict opened on `product` at `at` (kept a day), to go with
    /// the conflict's own write, before it or in its transaction. Read by key, consistently,
    /// it tells an up-sync that a conflict may be missing from the index of a product's
    /// conflicts, which lags behind the table on DynamoDB (see
    /// [`Store::conflict_opened_at`]).
    pub fn conflict_opened_write(
        product: shopsync_domain::ProductId,
        at: DateTime<Utc>,
    ) -> WriteOp {
        WriteOp::Put {
            table: Table::IdempotencyRecords,
            item: conflict_opened_item(product, at),
            condition: None,
        }
    }

    /// Marks a conflict opened on `product` at `at` (see [`Store::conflict_opened_write`]).
    pub async fn mark_conflict_opened(
        &self,
        product: shopsync_domain::ProductId,
        at: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        Ok(self
            .backend()
            .put(
                Table::IdempotencyRecords,
                conflict_opened_item(product, at),
                None,
            )
            .await?)
    }

    /// Clears the mark of a conflict opened on `product` at `at`, once a person has settled
    /// that conflict (they saw it, so the index shows it): kept if a conflict was opened on
    /// the product since (the mark moved on), so its grace still holds the push.
    pub async fn clear_conflict_opened(
        &self,
        product: shopsync_domain::ProductId,
        at: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let condition = Condition::Eq("at", Scalar::N(at.timestamp_millis()));
        match self
            .backend()
            .delete(
                Table::IdempotencyRecords,
                &Key::pk(conflict_opened_key(product)),
                Some(condition),
            )
            .await
        {
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// When a conflict was last opened on `product`, if within the mark's day.
    pub async fn conflict_opened_at(
        &self,
        product: shopsync_domain::ProductId,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, RepoError> {
        let item = self
            .backend()
            .get(
                Table::IdempotencyRecords,
                &Key::pk(conflict_opened_key(product)),
            )
            .await?;
        Ok(item
            .filter(|i| {
                i.attrs
                    .get(EXPIRES)
                    .and_then(Scalar::as_i64)
                    .is_some_and(|expires| expires > now.timestamp())
            })
            .and_then(|i| i.attrs.get("at").and_then(Scalar::as_i64))
            .and_then(DateTime::<Utc>::from_timestamp_millis))
    }

    /// Whether `key` was remembered and has not expired at `now`.
    pub async fn remembered(&self, key: &str, now: DateTime<Utc>) -> Result<bool, RepoError> {
        let item = self
            .backend()
            .get(Table::IdempotencyRecords, &Key::pk(key))
            .await?;
        Ok(item
            .and_then(|i| i.attrs.get(EXPIRES).and_then(Scalar::as_i64))
            .is_some_and(|expires| expires > now.timestamp()))
    }

    /// The check, for a transaction, that `key` is not remembered at `now` (never remembered,
    /// or expired): refused, exactly when [`Store::remembered`] would answer `true`. Carried
    /// by the writes it guards, it costs no read of its own.
    pub fn not_remembered(key: &str, now: DateTime<Utc>) -> WriteOp {
        WriteOp::Check {
            table: Table::IdempotencyRecords,
            key: Key::pk(key),
            condition: Condition::Or(vec![
                Condition::ItemAbsent,
                Condition::NotExists(EXPIRES),
                Condition::Le(EXPIRES, Scalar::N(now.timestamp())),
            ]),
        }
    }

    /// Moves the mark `key` to `at` (epoch ms) unless it already stands later: `true` if it
    /// stands at `at` now. Orders deliveries that may arrive late (a newer one has already
    /// been taken, so an older one must not be), while the same delivery retried passes again.
    pub async fn advance_mark(
        &self,
        key: &str,
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        let at_ms = at.timestamp_millis();
        let item = Item {
            attrs: [
                ("key".to_owned(), Scalar::from(key)),
                ("status".to_owned(), Scalar::from("mark")),
                ("at".to_owned(), Scalar::N(at_ms)),
                (EXPIRES.to_owned(), Scalar::N(expires_at.timestamp())),
            ]
            .into(),
            doc: None,
        };
        let newer = Condition::Or(vec![
            Condition::ItemAbsent,
            Condition::NotExists("at"),
            Condition::Le("at", Scalar::N(at_ms)),
        ]);
        match self
            .backend()
            .put(Table::IdempotencyRecords, item, Some(newer))
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
