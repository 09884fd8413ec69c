//! Every document the client can send validates against Shopify's real Admin 2026-07 schema.

use apollo_compiler::{ExecutableDocument, Schema};
use shopsync_shopify::documents;
use std::io::Read;

fn schema() -> apollo_compiler::validation::Valid<Schema> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shopify-sim/schema/admin-2026-07.graphql.gz");
    let mut sdl = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut sdl)
        .unwrap();
    Schema::parse_and_validate(sdl, "admin-2026-07.graphql").unwrap()
}

fn validate(
    schema: &apollo_compiler::validation::Valid<Schema>,
    name: &str,
    text: &str,
) -> Result<(), String> {
    ExecutableDocument::parse_and_validate(schema, text, name)
        .map(|_| ())
        .map_err(|e| e.errors.to_string())
}

#[test]
fn every_client_document_validates_against_the_real_schema() {
    let schema = schema();
    assert!(documents::ALL.len() >= 16);
    let mut names = std::collections::BTreeSet::new();
    for document in documents::ALL {
        assert!(
            names.insert(document.name),
            "duplicate name {}",
            document.name
        );
        if let Err(errors) = validate(&schema, document.name, document.text) {
            panic!("{} is invalid:\n{errors}", document.name);
        }
        assert_eq!(
            document.mutation,
            document.text.trim_start().starts_with("mutation"),
            "{}",
            document.name
        );
    }
    for filter in [None, Some("2026-11-24T10:00:00Z")] {
        let query = documents::bulk_products_query(filter);
        if let Err(errors) = validate(&schema, "bulk", &query) {
            panic!("bulk query ({filter:?}) is invalid:\n{errors}");
        }
    }
}

#[test]
fn the_validator_rejects_what_shopify_would_reject() {
    let schema = schema();
    let invalid = [
        // Unknown field.
        "query { products(first: 1) { nodes { id colour } } }",
        // ignoreCompareQuantity was removed in 2026-04.
        "mutation { inventorySetQuantities(input: {name: \"available\", reason: \"correction\", ignoreCompareQuantity: true, quantities: []}) { userErrors { message } } }",
        // Wrong argument type.
        "query { products(first: \"ten\") { nodes { id } } }",
        // Undeclared variable.
        "query { product(id: $id) { id } }",
    ];
    for text in invalid {
        assert!(validate(&schema, "bad", text).is_err(), "accepted: {text}");
    }
}
