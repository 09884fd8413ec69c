//! Shopify's real Admin 2026-07 schema, embedded, and a cache of validated documents.

use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};

const SCHEMA_GZ: &[u8] = include_bytes!("../schema/admin-2026-07.graphql.gz");

/// The schema plus validated documents, keyed by their text.
pub struct SchemaHost {
    /// The validated schema.
    pub schema: Valid<Schema>,
    documents: Mutex<HashMap<String, Arc<Valid<ExecutableDocument>>>>,
}

/// Why the embedded schema could not be loaded (a build problem, not an input problem).
#[derive(Debug, thiserror::Error)]
#[error("embedded Admin schema: {0}")]
pub struct SchemaError(String);

impl SchemaHost {
    /// The process-wide host (the schema takes about a second to parse in a debug build).
    pub fn shared() -> Result<&'static SchemaHost, SchemaError> {
        static HOST: OnceLock<Result<SchemaHost, String>> = OnceLock::new();
        HOST.get_or_init(|| Self::load().map_err(|e| e.0))
            .as_ref()
            .map_err(|e| SchemaError(e.clone()))
    }

    fn load() -> Result<SchemaHost, SchemaError> {
        let mut sdl = String::new();
        flate2::read::GzDecoder::new(SCHEMA_GZ)
            .read_to_string(&mut sdl)
            .map_err(|e| SchemaError(e.to_string()))?;
        let schema = Schema::parse_and_validate(sdl, "admin-2026-07.graphql")
            .map_err(|e| SchemaError(e.errors.to_string()))?;
        Ok(SchemaHost {
            schema,
            documents: Mutex::new(HashMap::new()),
        })
    }

    /// Parses and validates `text` (cached), or the validation messages Shopify-style.
    pub fn document(&self, text: &str) -> Result<Arc<Valid<ExecutableDocument>>, Vec<String>> {
        if let Some(doc) = self.lock().get(text) {
            return Ok(doc.clone());
        }
        let doc = ExecutableDocument::parse_and_validate(&self.schema, text, "query.graphql")
            .map_err(|e| {
                e.errors
                    .iter()
                    .map(|d| d.to_json().message)
                    .collect::<Vec<_>>()
            })?;
        let doc = Arc::new(doc);
        let mut cache = self.lock();
        if cache.len() > 1000 {
            cache.clear();
        }
        cache.insert(text.to_owned(), doc.clone());
        Ok(doc)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Valid<ExecutableDocument>>>> {
        self.documents.lock().unwrap_or_else(|p| p.into_inner())
    }
}
