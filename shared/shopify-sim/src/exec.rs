//! A small GraphQL executor over a validated document: selection projection (aliases,
//! fragments, `__typename`), argument evaluation, Shopify's cost model, and bulk (JSONL)
//! output where nested connections become lines with `__parentId`.

use apollo_compiler::executable::{Field, Selection, SelectionSet};
use apollo_compiler::schema::ExtendedType;
use apollo_compiler::{ast, ExecutableDocument, Node, Schema};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// What a resolver answers for one field.
pub enum Out<N> {
    /// A leaf (scalar, enum, list of scalars) or null.
    Json(Value),
    /// An object to project further.
    Node(N),
    /// A list of outputs.
    List(Vec<Out<N>>),
}

/// A leaf value a resolver gives without building a JSON value: written straight into a
/// bulk export line (where a 100k-product export writes millions of them), or turned into a
/// [`Value`] for an ordinary response.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf<'a> {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A borrowed string.
    Str(&'a str),
    /// A string built for the answer.
    Text(String),
    /// A list of strings.
    Strs(&'a [String]),
    /// `gid://shopify/{kind}/{id}`.
    Gid(&'static str, u64),
    /// `gid://shopify/{kind}/{id}?{param}={value}`.
    GidWith(&'static str, u64, &'static str, u64),
    /// A time, RFC 3339 to the second in UTC (`2026-11-24T10:00:00Z`).
    Time(DateTime<Utc>),
}

impl Leaf<'_> {
    /// The leaf as a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Leaf::Null => Value::Null,
            Leaf::Bool(b) => Value::Bool(*b),
            Leaf::Int(n) => Value::from(*n),
            Leaf::Str(s) => Value::from(*s),
            Leaf::Text(s) => Value::from(s.as_str()),
            Leaf::Strs(items) => Value::from(items.to_vec()),
            Leaf::Gid(..) | Leaf::GidWith(..) | Leaf::Time(_) => {
                let mut text = Vec::new();
                self.write_text(&mut text);
                Value::String(String::from_utf8_lossy(&text).into_owned())
            }
        }
    }

    /// Writes the leaf as JSON.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Leaf::Null => out.extend_from_slice(b"null"),
            Leaf::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Leaf::Int(n) => write_json(out, n),
            Leaf::Str(s) => write_json(out, *s),
            Leaf::Text(s) => write_json(out, s.as_str()),
            Leaf::Strs(items) => write_json(out, items),
            // Their text never needs escaping.
            Leaf::Gid(..) | Leaf::GidWith(..) | Leaf::Time(_) => {
                out.push(b'"');
                self.write_text(out);
                out.push(b'"');
            }
        }
    }

    /// The text of an id or a time, unquoted.
    fn write_text(&self, out: &mut Vec<u8>) {
        match self {
            Leaf::Gid(kind, id) => {
                out.extend_from_slice(b"gid://shopify/");
                out.extend_from_slice(kind.as_bytes());
                out.push(b'/');
                write_json(out, id);
            }
            Leaf::GidWith(kind, id, param, value) => {
                Leaf::Gid(kind, *id).write_text(out);
                out.push(b'?');
                out.extend_from_slice(param.as_bytes());
                out.push(b'=');
                write_json(out, value);
            }
            Leaf::Time(at) => write_time(out, *at),
            _ => {}
        }
    }
}

/// `at` as `YYYY-MM-DDTHH:MM:SSZ` (what `to_rfc3339_opts(Secs, true)` gives for years
/// 0–9999), without a formatter.
fn write_time(out: &mut Vec<u8>, at: DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let year = at.year();
    if !(0..=9999).contains(&year) {
        out.extend_from_slice(
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .as_bytes(),
        );
        return;
    }
    let two = |out: &mut Vec<u8>, n: u32| {
        out.push(b'0' + (n / 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    let year = year as u32;
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, at.month());
    out.push(b'-');
    two(out, at.day());
    out.push(b'T');
    two(out, at.hour());
    out.push(b':');
    two(out, at.minute());
    out.push(b':');
    two(out, at.second());
    out.push(b'Z');
}

/// Resolves fields of the objects one executor walks.
pub trait Resolve {
    /// The object representation.
    type Node: Clone;
    /// The GraphQL type name of `node`.
    fn typename(&self, node: &Self::Node) -> &'static str;
    /// The GID of `node`, if it has one (bulk `__parentId`).
    fn gid(&self, node: &Self::Node) -> Option<Leaf<'static>>;
    /// The cost `node` adds when returned: 1 for objects, 2 for connections, 0 for wrappers.
    fn weight(&self, node: &Self::Node) -> f64;
    /// The nodes of a connection object, for bulk output.
    fn connection_nodes(&self, node: &Self::Node) -> Option<Vec<Self::Node>>;
    /// A field of `node` that takes no arguments and selects nothing, when the resolver
    /// answers it as a [`Leaf`]; `None`: it is resolved with [`Resolve::field`].
    fn leaf<'s>(&'s self, _node: &'s Self::Node, _name: &str) -> Option<Leaf<'s>> {
        None
    }
    /// One field of `node`.
    fn field(
        &self,
        node: &Self::Node,
        name: &str,
        args: &Args<'_>,
    ) -> Result<Out<Self::Node>, String>;
}

/// Argument values of one field, with variables substituted and defaults applied.
pub struct Args<'d> {
    field: &'d Field,
    vars: &'d Map<String, Value>,
}

impl<'d> Args<'d> {
    /// The arguments of `field` under `vars`.
    pub fn new(field: &'d Field, vars: &'d Map<String, Value>) -> Self {
        Self { field, vars }
    }

    /// The argument's value; `None` when absent or null.
    pub fn get(&self, name: &str) -> Option<Value> {
        let value = self.field.argument_by_name(name).ok()?;
        match to_json(value, self.vars) {
            Value::Null => None,
            v => Some(v),
        }
    }

    /// An integer argument.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(|v| v.as_i64())
    }

    /// A string argument.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).and_then(|v| v.as_str().map(str::to_owned))
    }

    /// A typed argument.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, String> {
        self.get(name)
            .map(|v| serde_json::from_value(v).map_err(|e| format!("argument {name}: {e}")))
            .transpose()
    }
}

/// Converts a literal or variable reference to JSON.
pub fn to_json(value: &ast::Value, vars: &Map<String, Value>) -> Value {
    match value {
        ast::Value::Null => Value::Null,
        ast::Value::Enum(name) => Value::String(name.to_string()),
        ast::Value::Variable(name) => vars.get(name.as_str()).cloned().unwrap_or(Value::Null),
        ast::Value::String(s) => Value::String(s.clone()),
        ast::Value::Float(f) => f
            .try_to_f64()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ast::Value::Int(i) => i
            .as_str()
            .parse::<i64>()
            .map(|n| Value::Number(n.into()))
            .unwrap_or(Value::Null),
        ast::Value::Boolean(b) => Value::Bool(*b),
        ast::Value::List(items) => Value::Array(items.iter().map(|v| to_json(v, vars)).collect()),
        ast::Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), to_json(v, vars)))
                .collect(),
        ),
    }
}

/// A field error, Shopify-style.
#[derive(Debug, Clone)]
pub struct FieldError {
    /// Message.
    pub message: String,
    /// Response path.
    pub path: Vec<String>,
}

struct Deferred<'d, N> {
    nodes: Vec<N>,
    selection: &'d SelectionSet,
}

/// One execution of one operation.
pub struct Exec<'d, R: Resolve> {
    doc: &'d ExecutableDocument,
    schema: &'d Schema,
    vars: &'d Map<String, Value>,
    resolver: R,
    path: Vec<&'d str>,
    /// Field errors so far.
    pub errors: Vec<FieldError>,
    /// Actual cost so far.
    pub cost: f64,
    deferred: Option<Vec<Deferred<'d, R::Node>>>,
}

impl<'d, R: Resolve> Exec<'d, R> {
    /// An executor for `doc` with coerced `vars`.
    pub fn new(
        doc: &'d ExecutableDocument,
        schema: &'d Schema,
        vars: &'d Map<String, Value>,
        resolver: R,
    ) -> Self {
        Self {
            doc,
            schema,
            vars,
            resolver,
            path: Vec::new(),
            errors: Vec::new(),
            cost: 0.0,
            deferred: None,
        }
    }

    /// The fields of `set` that apply to objects of type `typename`, fragments expanded.
    pub fn collect(&self, set: &'d SelectionSet, typename: &str, out: &mut Vec<&'d Node<Field>>) {
        for selection in &set.selections {
            match selection {
                Selection::Field(field) => out.push(field),
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = self.doc.fragments.get(&spread.fragment_name) {
                        if self.applies(fragment.selection_set.ty.as_str(), typename) {
                            self.collect(&fragment.selection_set, typename, out);
                        }
                    }
                }
                Selection::InlineFragment(inline) => {
                    let applies = inline
                        .type_condition
                        .as_ref()
                        .is_none_or(|c| self.applies(c.as_str(), typename));
                    if applies {
                        self.collect(&inline.selection_set, typename, out);
                    }
                }
            }
        }
    }

    fn applies(&self, condition: &str, typename: &str) -> bool {
        condition == typename || self.schema.is_subtype(condition, typename)
    }

    /// Projects `node` through `set`.
    pub fn object(&mut self, node: &R::Node, set: &'d SelectionSet) -> Value {
        let typename = self.resolver.typename(node);
        let mut fields = Vec::new();
        self.collect(set, typename, &mut fields);
        let mut out = Map::new();
        for field in fields {
            let key = field.response_key().as_str();
            if field.name == "__typename" {
                out.insert(key.to_owned(), Value::String(typename.to_owned()));
                continue;
            }
            if let Some(leaf) = self.leaf(node, field) {
                out.insert(key.to_owned(), leaf.to_value());
                continue;
            }
            let args = Args {
                field,
                vars: self.vars,
            };
            self.path.push(key);
            let resolved = self.resolver.field(node, field.name.as_str(), &args);
            match resolved {
                Ok(value) => {
                    if let Some(v) = self.complete(value, field) {
                        out.insert(key.to_owned(), v);
                    }
                }
                Err(message) => {
                    self.error(message);
                    out.insert(key.to_owned(), Value::Null);
                }
            }
            self.path.pop();
        }
        Value::Object(out)
    }

    /// `field` of `node` as a leaf, when it takes no arguments, selects nothing and the
    /// resolver answers it so.
    fn leaf<'s>(&'s self, node: &'s R::Node, field: &Field) -> Option<Leaf<'s>> {
        if !field.arguments.is_empty() || !field.selection_set.selections.is_empty() {
            return None;
        }
        self.resolver.leaf(node, field.name.as_str())
    }

    /// Records a field error at the current path.
    fn error(&mut self, message: String) {
        self.errors.push(FieldError {
            message,
            path: self.path.iter().map(|p| (*p).to_owned()).collect(),
        });
    }

    fn complete(&mut self, out: Out<R::Node>, field: &'d Node<Field>) -> Option<Value> {
        match out {
            Out::Json(v) => Some(v),
            Out::List(items) => Some(Value::Array(
                items
                    .into_iter()
                    .filter_map(|i| self.complete(i, field))
                    .collect(),
            )),
            Out::Node(node) => {
                if self.defer(&node, field) {
                    return None;
                }
                self.cost += self.resolver.weight(&node);
                Some(self.object(&node, &field.selection_set))
            }
        }
    }

    /// Runs `set` on `root` in bulk mode: every connection's nodes become JSONL lines, child
    /// lines carrying `__parentId`, each parent before its children. Returns the lines
    /// written and how many of them are top-level objects.
    pub fn bulk(&mut self, root: &R::Node, set: &'d SelectionSet, out: &mut Vec<u8>) -> (u64, u64) {
        self.bulk_part(root, set, out, (0, 1))
    }

    /// The part of [`Exec::bulk`]'s lines that the `share`-th of `shares` equal runs of
    /// top-level objects make (executors on several threads each write one part; the parts
    /// in order are the whole export).
    pub fn bulk_part(
        &mut self,
        root: &R::Node,
        set: &'d SelectionSet,
        out: &mut Vec<u8>,
        (share, shares): (usize, usize),
    ) -> (u64, u64) {
        self.deferred = Some(Vec::new());
        let _ = self.object(root, set);
        let pending = self.deferred.take().unwrap_or_default();
        let shares = shares.max(1);
        let (mut lines, mut roots) = (0, 0);
        for mut d in pending {
            let count = d.nodes.len();
            let (from, to) = (count * share / shares, count * (share + 1) / shares);
            d.nodes.truncate(to);
            d.nodes.drain(..from.min(to));
            roots += d.nodes.len() as u64;
            lines += self.emit(d, None, out);
        }
        (lines, roots)
    }

    fn emit(
        &mut self,
        deferred: Deferred<'d, R::Node>,
        parent: Option<&Leaf<'static>>,
        out: &mut Vec<u8>,
    ) -> u64 {
        let mut lines = 0;
        for node in deferred.nodes {
            let saved = self.deferred.replace(Vec::new());
            self.write_object(&node, deferred.selection, parent, out);
            out.push(b'\n');
            lines += 1;
            let children = std::mem::replace(&mut self.deferred, saved).unwrap_or_default();
            if children.is_empty() {
                continue;
            }
            let id = self.resolver.gid(&node);
            for child in children {
                lines += self.emit(child, id.as_ref(), out);
            }
        }
        lines
    }

    /// Writes `node` projected through `set` as one JSON object straight to `out`, its fields
    /// in selection order as GraphQL orders a response (Shopify's export lines start with
    /// `id` when it is selected first). Connections met on the way are deferred (bulk mode);
    /// `parent`, when given, is written last as `__parentId`, as Shopify writes it. A
    /// response key selected twice is written once.
    fn write_object(
        &mut self,
        node: &R::Node,
        set: &'d SelectionSet,
        parent: Option<&Leaf<'static>>,
        out: &mut Vec<u8>,
    ) {
        let typename = self.resolver.typename(node);
        let mut fields = Vec::new();
        self.collect(set, typename, &mut fields);
        let mut written: Vec<&str> = Vec::with_capacity(fields.len());
        out.push(b'{');
        for field in fields {
            let key = field.response_key().as_str();
            if written.contains(&key) {
                continue;
            }
            if field.name == "__typename" {
                write_key(out, key, written.is_empty());
                write_json(out, typename);
                written.push(key);
                continue;
            }
            if let Some(leaf) = self.leaf(node, field) {
                write_key(out, key, written.is_empty());
                written.push(key);
                leaf.write(out);
                continue;
            }
            let args = Args {
                field,
                vars: self.vars,
            };
            self.path.push(key);
            match self.resolver.field(node, field.name.as_str(), &args) {
                Ok(Out::Node(child)) if self.defer(&child, field) => {}
                Ok(value) => {
                    write_key(out, key, written.is_empty());
                    written.push(key);
                    self.write_out(value, field, out);
                }
                Err(message) => {
                    self.error(message);
                    write_key(out, key, written.is_empty());
                    written.push(key);
                    out.extend_from_slice(b"null");
                }
            }
            self.path.pop();
        }
        if let Some(parent) = parent {
            write_key(out, "__parentId", written.is_empty());
            parent.write(out);
        }
        out.push(b'}');
    }

    /// Writes one resolved value of `field` to `out` (see [`Exec::write_object`]).
    fn write_out(&mut self, value: Out<R::Node>, field: &'d Node<Field>, out: &mut Vec<u8>) {
        match value {
            Out::Json(v) => write_json(out, &v),
            Out::List(items) => {
                out.push(b'[');
                let mut first = true;
                for item in items {
                    if let Out::Node(node) = &item {
                        if self.defer(node, field) {
                            continue;
                        }
                    }
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    self.write_out(item, field, out);
                }
                out.push(b']');
            }
            Out::Node(node) => {
                self.cost += self.resolver.weight(&node);
                self.write_object(&node, &field.selection_set, None, out);
            }
        }
    }

    /// In bulk mode, takes a connection's nodes to be written as lines of their own (and
    /// answers `true`); anything else is written in place.
    fn defer(&mut self, node: &R::Node, field: &'d Node<Field>) -> bool {
        if self.deferred.is_none() {
            return false;
        }
        let Some(nodes) = self.resolver.connection_nodes(node) else {
            return false;
        };
        let selection = node_selection(&field.selection_set).unwrap_or(&field.selection_set);
        if let Some(deferred) = self.deferred.as_mut() {
            deferred.push(Deferred { nodes, selection });
        }
        true
    }

    /// Shopify's requested cost of `set`: objects 1, connections 2 + first × (1 + node
    /// selection), lists fetched by `ids` once per id, scalars 0; a mutation root field 10.
    pub fn requested_cost(
        &self,
        set: &'d SelectionSet,
        mutation_root: bool,
    ) -> Result<f64, String> {
        let mut total = 0.0;
        for field in self.all_fields(set) {
            if mutation_root {
                total += 10.0;
                continue;
            }
            total += self.field_cost(field)?;
        }
        Ok(total)
    }

    fn all_fields(&self, set: &'d SelectionSet) -> Vec<&'d Node<Field>> {
        let mut out = Vec::new();
        for selection in &set.selections {
            match selection {
                Selection::Field(f) => out.push(f),
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = self.doc.fragments.get(&spread.fragment_name) {
                        out.extend(self.all_fields(&fragment.selection_set));
                    }
                }
                Selection::InlineFragment(inline) => {
                    out.extend(self.all_fields(&inline.selection_set))
                }
            }
        }
        out
    }

    fn field_cost(&self, field: &'d Node<Field>) -> Result<f64, String> {
        let named = field.definition.ty.inner_named_type();
        match self.schema.types.get(named) {
            Some(ExtendedType::Scalar(_) | ExtendedType::Enum(_)) | None => return Ok(0.0),
            _ => {}
        }
        let args = Args {
            field,
            vars: self.vars,
        };
        if named.as_str().ends_with("Connection") {
            let first = args
                .int("first")
                .or_else(|| args.int("last"))
                .ok_or_else(|| {
                    format!(
                        "you must provide one of first or last for the {} connection",
                        field.name
                    )
                })?;
            if !(0..=250).contains(&first) {
                return Err(format!(
                    "the {} connection's first/last must be between 0 and 250, got {first}",
                    field.name
                ));
            }
            let node_cost = match node_selection(&field.selection_set) {
                Some(set) => self.requested_cost(set, false)?,
                None => 0.0,
            };
            return Ok(2.0 + first as f64 * (1.0 + node_cost));
        }
        let inner = self.requested_cost(&field.selection_set, false)?;
        let times = args
            .get("ids")
            .and_then(|v| v.as_array().map(|a| a.len() as f64))
            .unwrap_or(1.0);
        Ok(times * (1.0 + inner))
    }
}

/// The selection applied to each node of a connection (`nodes { … }` or `edges { node { … } }`).
fn node_selection(set: &SelectionSet) -> Option<&SelectionSet> {
    set.selections.iter().find_map(|s| match s {
        Selection::Field(f) if f.name == "nodes" => Some(&f.selection_set),
        Selection::Field(f) if f.name == "edges" => {
            f.selection_set.selections.iter().find_map(|e| match e {
                Selection::Field(n) if n.name == "node" => Some(&n.selection_set),
                _ => None,
            })
        }
        _ => None,
    })
}

/// Writes `"key":`, after a comma unless it is the object's first.
fn write_key(out: &mut Vec<u8>, key: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    write_json(out, key);
    out.push(b':');
}

/// Writes a JSON value (strings and `Value`s always serialize; `null` stands in if one ever
/// could not).
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_are_written_as_rfc3339_seconds() {
        for at in [
            Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).single(),
            Utc.with_ymd_and_hms(1999, 1, 2, 3, 4, 5).single(),
            Utc.with_ymd_and_hms(9, 12, 31, 23, 59, 59).single(),
            Utc.with_ymd_and_hms(12026, 6, 1, 0, 0, 0).single(),
        ]
        .into_iter()
        .flatten()
        {
            let mut out = Vec::new();
            Leaf::Time(at).write(&mut out);
            let expected = format!(
                "\"{}\"",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            assert_eq!(String::from_utf8_lossy(&out), expected);
            assert_eq!(
                Leaf::Time(at).to_value(),
                Value::String(expected.trim_matches('"').into())
            );
        }
    }

    #[test]
    fn leaves_write_the_json_their_values_serialize_to() {
        let tags = vec!["a \"quoted\" tag".to_owned(), "ünïcode".to_owned()];
        let leaves = [
            Leaf::Null,
            Leaf::Bool(false),
            Leaf::Int(-42),
            Leaf::Str("line\nbreak"),
            Leaf::Text("built".into()),
            Leaf::Strs(&tags),
            Leaf::Gid("Product", 9_007_199_254_740_993),
            Leaf::GidWith("InventoryLevel", 5, "inventory_item_id", 111),
        ];
        for leaf in leaves {
            let mut out = Vec::new();
            leaf.write(&mut out);
            let parsed: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
            assert_eq!(parsed, leaf.to_value(), "{leaf:?}");
        }
        assert_eq!(
            Leaf::GidWith("InventoryLevel", 5, "inventory_item_id", 111).to_value(),
            Value::from("gid://shopify/InventoryLevel/5?inventory_item_id=111")
        );
    }
}
