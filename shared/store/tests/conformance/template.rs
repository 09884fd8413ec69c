//! `infra/template.yaml` against the table definitions (`schema.rs`), both ways: a table,
//! index, key, key type or TTL in one and not the other is a difference, so the deployed
//! tables and what `shopsync migrate` creates and verifies cannot drift apart. Every table
//! also keeps the catalog safe: on-demand, point-in-time recovery, encryption, deletion
//! protection, and Retain when the stack is deleted or the table replaced.

use serde_norway::Value;
use shopsync_store::schema::{KeySchema, KeyType, Table, TableDef};
use std::collections::{BTreeMap, BTreeSet};

const TEMPLATE: &str = include_str!("../../../../infra/template.yaml");

fn template() -> Value {
    serde_norway::from_str(TEMPLATE).expect("infra/template.yaml is YAML")
}

/// A value without its CloudFormation tag (`!Sub "..."` reads as the string).
fn untagged(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => untagged(&tagged.value),
        other => other,
    }
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = value;
    for step in path {
        at = untagged(at).get(*step)?;
    }
    untagged(at).as_str()
}

/// A key: partition attribute and type, sort attribute and type.
type KeyShape = (String, String, Option<(String, String)>);

/// A change made to a parsed template, to show the comparison finds it.
type Drift = Box<dyn Fn(&mut Value)>;

/// One table as both sides can describe it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    key: KeyShape,
    indexes: BTreeMap<String, KeyShape>,
    ttl: Option<String>,
}

fn type_name(kind: KeyType) -> String {
    match kind {
        KeyType::S => "S".into(),
        KeyType::N => "N".into(),
    }
}

fn schema_key(key: &KeySchema) -> KeyShape {
    (
        key.pk.name.into(),
        type_name(key.pk.kind),
        key.sk.map(|sk| (sk.name.to_string(), type_name(sk.kind))),
    )
}

fn schema_shape(def: &TableDef) -> Shape {
    Shape {
        key: schema_key(&def.key),
        indexes: def
            .indexes
            .iter()
            .map(|index| (index.name.to_string(), schema_key(&index.key)))
            .collect(),
        ttl: def.ttl_attr.map(str::to_string),
    }
}

/// The tables of a template, by logical name (the TableName after `${TablePrefix}`), and
/// what in them is not as a table of shopsync must be.
fn template_tables(template: &Value) -> (BTreeMap<String, Shape>, Vec<String>) {
    let mut tables = BTreeMap::new();
    let mut problems = Vec::new();
    let Some(resources) = untagged(template)
        .get("Resources")
        .and_then(Value::as_mapping)
    else {
        return (tables, vec!["the template has no Resources".into()]);
    };
    for (logical_id, resource) in resources {
        let id = logical_id.as_str().unwrap_or("?");
        if text(resource, &["Type"]) != Some("AWS::DynamoDB::Table") {
            continue;
        }
        let props = untagged(resource).get("Properties").map(untagged);
        let Some(props) = props else {
            problems.push(format!("{id}: no Properties"));
            continue;
        };
        let Some(name) = text(props, &["TableName"]).and_then(|n| n.strip_prefix("${TablePrefix}"))
        else {
            problems.push(format!(
                "{id}: TableName is not !Sub \"${{TablePrefix}}<name>\""
            ));
            continue;
        };
        for (field, expected) in [
            ("DeletionPolicy", "Retain"),
            ("UpdateReplacePolicy", "Retain"),
        ] {
            if text(resource, &[field]) != Some(expected) {
                problems.push(format!("{name}: {field} is not {expected}"));
            }
        }
        let flag = |path: &[&str]| {
            let mut at = props;
            for step in path {
                match untagged(at).get(*step) {
                    Some(next) => at = next,
                    None => return false,
                }
            }
            untagged(at).as_bool() == Some(true)
        };
        if text(props, &["BillingMode"]) != Some("PAY_PER_REQUEST") {
            problems.push(format!("{name}: not on-demand (PAY_PER_REQUEST)"));
        }
        for path in [
            &["DeletionProtectionEnabled"][..],
            &[
                "PointInTimeRecoverySpecification",
                "PointInTimeRecoveryEnabled",
            ][..],
            &["SSESpecification", "SSEEnabled"][..],
        ] {
            if !flag(path) {
                problems.push(format!("{name}: {} is not true", path.join(".")));
            }
        }
        let types: BTreeMap<String, String> = props
            .get("AttributeDefinitions")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|d| {
                Some((
                    text(d, &["AttributeName"])?.to_string(),
                    text(d, &["AttributeType"])?.to_string(),
                ))
            })
            .collect();
        let mut used = BTreeSet::new();
        let mut key_of = |schema: Option<&Value>, what: &str| {
            key_schema(
                schema,
                &types,
                &mut used,
                &mut problems,
                &format!("{name} {what}"),
            )
        };
        let Some(key) = key_of(props.get("KeySchema"), "table") else {
            continue;
        };
        let mut indexes = BTreeMap::new();
        let mut projections = Vec::new();
        for index in props
            .get("GlobalSecondaryIndexes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let index_name = text(index, &["IndexName"]).unwrap_or("?").to_string();
            if text(index, &["Projection", "ProjectionType"]) != Some("ALL") {
                projections.push(format!("{name}.{index_name}: projection is not ALL"));
            }
            if let Some(index_key) = key_of(untagged(index).get("KeySchema"), &index_name) {
                indexes.insert(index_name, index_key);
            }
        }
        problems.extend(projections);
        if props.get("LocalSecondaryIndexes").is_some() {
            problems.push(format!(
                "{name}: local secondary indexes are not in schema.rs"
            ));
        }
        for attr in types.keys().filter(|a| !used.contains(*a)) {
            problems.push(format!("{name}: {attr} is defined but keys nothing"));
        }
        let ttl = match untagged(props).get("TimeToLiveSpecification") {
            Some(spec) if flag(&["TimeToLiveSpecification", "Enabled"]) => {
                text(spec, &["AttributeName"]).map(str::to_string)
            }
            _ => None,
        };
        if tables
            .insert(name.to_string(), Shape { key, indexes, ttl })
            .is_some()
        {
            problems.push(format!("{name}: declared twice"));
        }
    }
    (tables, problems)
}

/// A key schema's (partition, type, sort and type), with every attribute it names marked as
/// `used`; what is wrong with it goes to `problems`.
fn key_schema(
    schema: Option<&Value>,
    types: &BTreeMap<String, String>,
    used: &mut BTreeSet<String>,
    problems: &mut Vec<String>,
    what: &str,
) -> Option<KeyShape> {
    let elements: Vec<(String, String)> = schema
        .and_then(|s| untagged(s).as_sequence())
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                text(e, &["AttributeName"])?.to_string(),
                text(e, &["KeyType"])?.to_string(),
            ))
        })
        .collect();
    let mut typed = |attr: &str| {
        used.insert(attr.to_string());
        types.get(attr).cloned().unwrap_or_else(|| {
            problems.push(format!("{what}: {attr} has no AttributeDefinition"));
            "?".into()
        })
    };
    match elements.as_slice() {
        [(pk, hash)] if hash == "HASH" => Some((pk.clone(), typed(pk), None)),
        [(pk, hash), (sk, range)] if hash == "HASH" && range == "RANGE" => {
            Some((pk.clone(), typed(pk), Some((sk.clone(), typed(sk)))))
        }
        other => {
            problems.push(format!("{what}: key schema {other:?}"));
            None
        }
    }
}

/// Every difference between the template's tables and schema.rs's, both ways.
fn differences(template: &Value) -> Vec<String> {
    let (deployed, mut problems) = template_tables(template);
    // Local-only tables (the local host's) are not deployed.
    let defined: BTreeMap<String, Shape> = Table::on("dynamodb")
        .map(|t| (t.name().to_string(), schema_shape(t.def())))
        .collect();
    for (name, shape) in &defined {
        let Some(in_template) = deployed.get(name) else {
            problems.push(format!("{name}: in schema.rs, not in the template"));
            continue;
        };
        if in_template.key != shape.key {
            problems.push(format!(
                "{name}: key {:?} in the template, {:?} in schema.rs",
                in_template.key, shape.key
            ));
        }
        if in_template.ttl != shape.ttl {
            problems.push(format!(
                "{name}: TTL {:?} in the template, {:?} in schema.rs",
                in_template.ttl, shape.ttl
            ));
        }
        for (index, key) in &shape.indexes {
            match in_template.indexes.get(index) {
                None => problems.push(format!("{name}.{index}: in schema.rs, not in the template")),
                Some(k) if k != key => problems.push(format!(
                    "{name}.{index}: keys {k:?} in the template, {key:?} in schema.rs"
                )),
                Some(_) => {}
            }
        }
        for index in in_template.indexes.keys() {
            if !shape.indexes.contains_key(index) {
                problems.push(format!("{name}.{index}: in the template, not in schema.rs"));
            }
        }
    }
    for name in deployed.keys() {
        if !defined.contains_key(name) {
            problems.push(format!("{name}: in the template, not in schema.rs"));
        }
    }
    problems
}

#[test]
fn the_template_declares_exactly_the_tables_of_schema_rs() {
    let problems = differences(&template());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The comparison finds each kind of drift (a check that cannot fail proves nothing).
#[test]
fn every_kind_of_drift_is_found() {
    fn table_props<'a>(template: &'a mut Value, logical_id: &str) -> &'a mut Value {
        template["Resources"][logical_id]
            .get_mut("Properties")
            .expect("properties")
    }
    let drifts: Vec<(&str, Drift)> = vec![
        (
            "a table only in schema.rs",
            Box::new(|t| {
                t["Resources"]
                    .as_mapping_mut()
                    .unwrap()
                    .remove("SyncRollbacksTable");
            }),
        ),
        (
            "a table only in the template",
            Box::new(|t| {
                let mut extra = t["Resources"]["SyncRollbacksTable"].clone();
                extra["Properties"]["TableName"] = Value::String("${TablePrefix}extra".into());
                t["Resources"]
                    .as_mapping_mut()
                    .unwrap()
                    .insert("ExtraTable".into(), extra);
            }),
        ),
        (
            "an index only in schema.rs",
            Box::new(|t| {
                let indexes = table_props(t, "ProductsTable")["GlobalSecondaryIndexes"]
                    .as_sequence_mut()
                    .unwrap();
                indexes.pop();
            }),
        ),
        (
            "a sort key's type",
            Box::new(|t| {
                for d in table_props(t, "ProductVersionsTable")["AttributeDefinitions"]
                    .as_sequence_mut()
                    .unwrap()
                {
                    if d["AttributeName"] == "version_number" {
                        d["AttributeType"] = "S".into();
                    }
                }
            }),
        ),
        (
            "a TTL only in schema.rs",
            Box::new(|t| {
                table_props(t, "IdempotencyRecordsTable")
                    .as_mapping_mut()
                    .unwrap()
                    .remove("TimeToLiveSpecification");
            }),
        ),
        (
            "a table that a deleted stack would drop",
            Box::new(|t| {
                t["Resources"]["ProductsTable"]["DeletionPolicy"] = "Delete".into();
            }),
        ),
        (
            "a table without deletion protection",
            Box::new(|t| {
                table_props(t, "ProductsTable")["DeletionProtectionEnabled"] = false.into();
            }),
        ),
    ];
    for (what, drift) in drifts {
        let mut changed = template();
        drift(&mut changed);
        assert!(
            !differences(&changed).is_empty(),
            "{what}: not found as a difference"
        );
    }
}
