//! Compliance requests: recording them, and carrying out a shop/redact.

use crate::backend::StoreError;
use crate::item::{Condition, Item, Key, Scalar};
use crate::repo::{ReplaceError, RepoError, Store};
use crate::schema::{Table, TableDef};
use chrono::{DateTime, Utc};
use shopsync_domain::status::status_name;
use shopsync_domain::{ComplianceRequest, ComplianceStatus};

/// The key of a stored item under `def`.
fn key_of(def: &TableDef, item: &Item) -> Option<Key> {
    let pk = item.attrs.get(def.key.pk.name)?.clone();
    match def.key.sk {
        Some(sk) => Some(Key::pk_sk(pk, item.attrs.get(sk.name)?.clone())),
        None => Some(Key::pk(pk)),
    }
}

impl Store {
    /// Records a request; a redelivery of the same request (same id) records nothing and
    /// answers `false`.
    pub async fn record_compliance(&self, request: &ComplianceRequest) -> Result<bool, RepoError> {
        match self.insert(request).await {
            Ok(()) => Ok(true),
            Err(RepoError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every recorded request (there are few).
    pub async fn compliance_requests(&self) -> Result<Vec<ComplianceRequest>, RepoError> {
        let mut all = Vec::new();
        let mut next = None;
        loop {
            let page = self
                .backend()
                .scan(Table::ComplianceRequests, 100, next.as_ref())
                .await?;
            for item in &page.items {
                all.push(crate::repo::decode(item)?);
            }
            match page.next {
                Some(token) => next = Some(token),
                None => return Ok(all),
            }
        }
    }

    /// Shop redactions due at `now`.
    pub async fn due_redactions(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<ComplianceRequest>, RepoError> {
        Ok(self
            .compliance_requests()
            .await?
            .into_iter()
            .filter(|r| r.redaction_due(now))
            .collect())
    }

    /// Carries out a scheduled shop/redact: removes every item of every table except the
    /// compliance records themselves, then marks the request redacted with what was removed.
    /// Running it again after a crash finishes the job; a request not scheduled is refused.
    pub async fn redact_shop(
        &self,
        request_id: &str,
        now: DateTime<Utc>,
    ) -> Result<ComplianceRequest, RepoError> {
        let key = Key::pk(request_id);
        let mut request: ComplianceRequest =
            self.get(&key).await?.ok_or_else(|| RepoError::NotFound {
                table: Table::ComplianceRequests,
                key: request_id.to_owned(),
            })?;
        if request.status != ComplianceStatus::RedactionScheduled {
            return Err(RepoError::Store(StoreError::Invalid(format!(
                "compliance request {request_id} is {}, not a scheduled shop redaction",
                status_name(request.status)
            ))));
        }
        // The audit records stay, and the local host's queue holds no shop data.
        for table in Table::on(self.backend().kind()) {
            if matches!(table, Table::ComplianceRequests | Table::LocalJobs) {
                continue;
            }
            let def = table.def();
            let mut removed = 0u64;
            loop {
                // Deleting while paging would skip items; always read the first page again.
                let page = self.backend().scan(table, 100, None).await?;
                if page.items.is_empty() {
                    break;
                }
                for item in &page.items {
                    let Some(key) = key_of(def, item) else {
                        continue;
                    };
                    match self.backend().delete(table, &key, None).await {
                        Ok(()) | Err(StoreError::ConditionFailed { .. }) => removed += 1,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            *request.removed.entry(table.name().to_owned()).or_default() += removed;
        }
        request.status = ComplianceStatus::Redacted;
        request.completed_at = Some(now);
        let expected = Condition::Eq(
            "status",
            Scalar::from(status_name(ComplianceStatus::RedactionScheduled).as_str()),
        );
        match self.replace_if(&request, expected).await {
            Ok(()) => Ok(request),
            // Another run finished first: its record stands.
            Err(ReplaceError::Changed(current)) => Ok(*current),
            Err(ReplaceError::Repo(e)) => Err(e),
        }
    }
}
