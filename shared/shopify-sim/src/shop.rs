//! The simulated shop: in-memory catalog, inventory, locations, collections, background
//! operations, and the resolvers and mutations the client uses, with Shopify's semantics where
//! they bite (productSet list replacement, 250-item inputs, changeFromQuantity compare-and-set,
//! idempotency keys, bulk JSONL).

use crate::exec::{Args, Exec, Leaf, Out, Resolve};
use crate::schema::SchemaHost;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;

/// First id handed out: above 2^53, so any float round trip shows up as a wrong id.
pub const ID_BASE: u64 = 9_007_199_254_740_993;

/// A variant.
#[derive(Debug, Clone, PartialEq)]
pub struct SimVariant {
    /// Id.
    pub id: u64,
    /// Title (option values joined).
    pub title: String,
    /// SKU.
    pub sku: Option<String>,
    /// Barcode.
    pub barcode: Option<String>,
    /// Price.
    pub price: String,
    /// Compare-at price.
    pub compare_at_price: Option<String>,
    /// Position, 1-based.
    pub position: i64,
    /// (option name, value).
    pub options: Vec<(String, String)>,
    /// Inventory item id.
    pub item_id: u64,
    /// Unit cost.
    pub unit_cost: Option<String>,
    /// Available quantity per location id.
    pub levels: BTreeMap<u64, i64>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
}

/// A product.
#[derive(Debug, Clone, PartialEq)]
pub struct SimProduct {
    /// Id.
    pub id: u64,
    /// Title.
    pub title: String,
    /// Handle.
    pub handle: String,
    /// Description HTML.
    pub description_html: String,
    /// Vendor.
    pub vendor: String,
    /// Product type.
    pub product_type: String,
    /// ACTIVE, DRAFT, ARCHIVED.
    pub status: String,
    /// Tags.
    pub tags: Vec<String>,
    /// (option name, values).
    pub options: Vec<(String, Vec<String>)>,
    /// Variants in position order.
    pub variants: Vec<SimVariant>,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
}

/// A location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimLocation {
    /// Id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Active.
    pub active: bool,
}

/// A collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCollection {
    /// Id.
    pub id: u64,
    /// Title.
    pub title: String,
    /// Handle.
    pub handle: String,
    /// Description HTML.
    pub description_html: String,
    /// Sort order (`MANUAL`, `BEST_SELLING`, ...).
    pub sort_order: String,
    /// A smart collection's rules: (column, relation, condition); `None` for a custom one.
    pub rules: Option<Vec<(String, String, String)>>,
    /// Its products, in order.
    pub products: Vec<u64>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
}

impl Shop {
    /// Edits a collection (its `updatedAt` moves on; a collections/update webhook goes out).
    pub fn edit_collection(&mut self, id: u64, edit: impl FnOnce(&mut SimCollection)) -> bool {
        let Some(collection) = self.collections.get_mut(&id) else {
            return false;
        };
        edit(collection);
        collection.updated_at =
            Utc::now().max(collection.updated_at + chrono::Duration::seconds(1));
        let body = json!({
            "id": collection.id,
            "title": collection.title,
            "handle": collection.handle,
            "body_html": collection.description_html,
            "sort_order": collection.sort_order.to_lowercase(),
            "updated_at": collection.updated_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        });
        self.outbox.push(OutEvent {
            topic: "collections/update".into(),
            body,
        });
        true
    }

    /// The collections.
    pub fn collections(&self) -> impl Iterator<Item = &SimCollection> {
        self.collections.values()
    }
}

/// A bulk operation.
#[derive(Debug, Clone)]
pub struct BulkOp {
    id: u64,
    /// `QUERY` or `MUTATION`.
    kind: &'static str,
    status: &'static str,
    query: String,
    objects: u64,
    roots: u64,
    polls: u32,
    created_at: DateTime<Utc>,
    /// The JSONL result, in the parts it was built in.
    pub data: Vec<bytes::Bytes>,
    /// How long building the result took (Shopify's side of a bulk export).
    pub built_in: std::time::Duration,
}

impl BulkOp {
    /// The result's size in bytes.
    pub fn size(&self) -> usize {
        self.data.iter().map(bytes::Bytes::len).sum()
    }
}

/// An asynchronous productSet.
#[derive(Debug, Clone)]
pub struct ProductOp {
    id: u64,
    product: Option<u64>,
    errors: Vec<UserErr>,
    polls: u32,
}

/// A webhook subscription.
#[derive(Debug, Clone)]
pub struct Sub {
    id: u64,
    topic: String,
    uri: String,
}

#[derive(Debug, Clone, PartialEq)]
struct UserErr {
    code: Option<&'static str>,
    field: Vec<String>,
    message: String,
}

fn user_err(code: Option<&'static str>, field: &[&str], message: impl Into<String>) -> UserErr {
    UserErr {
        code,
        field: field.iter().map(|f| (*f).to_owned()).collect(),
        message: message.into(),
    }
}

/// A change that produces a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct OutEvent {
    /// Topic, e.g. `products/update`.
    pub topic: String,
    /// REST-style body, as Shopify sends.
    pub body: Value,
}

/// The shop's state.
#[derive(Default)]
pub struct Shop {
    products: BTreeMap<u64, SimProduct>,
    by_updated: BTreeSet<(i64, u64)>,
    items: HashMap<u64, (u64, u64)>,
    locations: Vec<SimLocation>,
    collections: BTreeMap<u64, SimCollection>,
    bulk_ops: HashMap<u64, BulkOp>,
    product_ops: HashMap<u64, ProductOp>,
    subs: Vec<Sub>,
    idempotency: HashMap<String, (String, MutOut)>,
    next_id: u64,
    /// Changes waiting to be sent as webhooks.
    pub outbox: Vec<OutEvent>,
    /// Scripted "sales" applied just before the next inventory write (stale quantities).
    pub pending_sales: VecDeque<i64>,
    /// Base URL for bulk result downloads and staged uploads.
    pub base_url: String,
    /// Files uploaded to staged targets (bulk mutation variables), by key.
    staged: HashMap<String, bytes::Bytes>,
    /// Sales injected as faults: (inventory item, location, units sold).
    pub sales: Vec<(u64, u64, i64)>,
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

fn parse_gid(text: &str, kind: &str) -> Option<u64> {
    let rest = text.strip_prefix("gid://shopify/")?;
    let (k, id) = rest.split_once('/')?;
    if k != kind {
        return None;
    }
    id.split('?').next()?.parse().ok()
}

impl Shop {
    /// An empty shop with `locations` locations.
    pub fn new(locations: usize) -> Self {
        let mut shop = Shop {
            next_id: ID_BASE,
            ..Shop::default()
        };
        for i in 0..locations.max(1) {
            let id = shop.new_id();
            shop.locations.push(SimLocation {
                id,
                name: if i == 0 {
                    "Warehouse".into()
                } else {
                    format!("Store {i}")
                },
                active: true,
            });
        }
        shop
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Location ids.
    pub fn location_ids(&self) -> Vec<u64> {
        self.locations.iter().map(|l| l.id).collect()
    }

    /// A product by id.
    pub fn product(&self, id: u64) -> Option<&SimProduct> {
        self.products.get(&id)
    }

    /// All products by id.
    pub fn products(&self) -> impl Iterator<Item = &SimProduct> {
        self.products.values()
    }

    /// Number of products.
    pub fn product_count(&self) -> usize {
        self.products.len()
    }

    /// The shop's locations.
    pub fn locations(&self) -> &[SimLocation] {
        &self.locations
    }

    /// The available quantity of an inventory item at a location.
    pub fn level(&self, item: u64, location: u64) -> Option<i64> {
        let (p, v) = self.items.get(&item)?;
        let variant = self.products.get(p)?.variants.iter().find(|x| x.id == *v)?;
        variant.levels.get(&location).copied()
    }

    /// Changes a quantity as a sale or an admin edit in Shopify would (sends the webhook).
    pub fn adjust_level(&mut self, item: u64, location: u64, delta: i64) -> Option<i64> {
        let (p, v) = *self.items.get(&item)?;
        let now = Utc::now();
        let variant = self
            .products
            .get_mut(&p)?
            .variants
            .iter_mut()
            .find(|x| x.id == v)?;
        let level = variant.levels.get_mut(&location)?;
        *level += delta;
        let value = *level;
        self.outbox.push(level_event(item, location, value, now));
        Some(value)
    }

    /// Edits a product as a merchant would in Shopify's admin (sends products/update).
    pub fn edit_product(&mut self, id: u64, edit: impl FnOnce(&mut SimProduct)) -> bool {
        let Some(mut product) = self.products.get(&id).cloned() else {
            return false;
        };
        edit(&mut product);
        self.store_product(product, "products/update");
        true
    }

    fn store_product(&mut self, mut product: SimProduct, topic: &str) {
        let now = Utc::now().max(product.updated_at);
        if let Some(old) = self.products.get(&product.id) {
            self.by_updated
                .remove(&(old.updated_at.timestamp_millis(), old.id));
            for v in &old.variants {
                self.items.remove(&v.item_id);
            }
        }
        product.updated_at = now;
        for v in &product.variants {
            self.items.insert(v.item_id, (product.id, v.id));
        }
        self.by_updated.insert((now.timestamp_millis(), product.id));
        self.outbox.push(OutEvent {
            topic: topic.into(),
            body: rest_product(&product),
        });
        self.products.insert(product.id, product);
    }

    /// Deletes a product (sends products/delete).
    pub fn delete_product(&mut self, id: u64) -> bool {
        let Some(old) = self.products.remove(&id) else {
            return false;
        };
        self.by_updated
            .remove(&(old.updated_at.timestamp_millis(), id));
        for v in &old.variants {
            self.items.remove(&v.item_id);
        }
        self.outbox.push(OutEvent {
            topic: "products/delete".into(),
            body: json!({ "id": id }),
        });
        true
    }

    /// Adds `count` generated products with `variants` variants each, stocked at every
    /// location (no webhooks: this is the shop as it was before shopsync arrived).
    pub fn seed(&mut self, count: usize, variants: usize, rng: &mut fastrand::Rng) {
        let locations = self.location_ids();
        let sizes = ["XS", "S", "M", "L", "XL", "XXL"];
        let colours = [
            "Red", "Blue", "Green", "Black", "White", "Grey", "Navy", "Olive",
        ];
        let vendors = ["Acme", "Globex", "Initech", "Umbrella", "Hooli"];
        for _ in 0..count {
            let id = self.new_id();
            let n = self.products.len() + 1;
            let now = Utc::now();
            let variant_count = variants.max(1);
            let mut product_variants = Vec::with_capacity(variant_count);
            let mut sizes_used = Vec::new();
            let mut colours_used = Vec::new();
            for i in 0..variant_count {
                let size = sizes[i % sizes.len()].to_owned();
                let colour = colours[(i / sizes.len()) % colours.len()].to_owned();
                let colour = if i / sizes.len() >= colours.len() {
                    format!("{colour} {}", i / (sizes.len() * colours.len()))
                } else {
                    colour
                };
                if !sizes_used.contains(&size) {
                    sizes_used.push(size.clone());
                }
                if !colours_used.contains(&colour) {
                    colours_used.push(colour.clone());
                }
                let variant_id = self.new_id();
                let item_id = self.new_id();
                let cents = rng.u32(500..20_000);
                product_variants.push(SimVariant {
                    id: variant_id,
                    title: format!("{size} / {colour}"),
                    sku: Some(format!("SKU-{n:06}-{i:03}")),
                    barcode: Some(format!(
                        "{:013}",
                        rng.u64(1_000_000_000_000..9_999_999_999_999)
                    )),
                    price: format!("{}.{:02}", cents / 100, cents % 100),
                    compare_at_price: None,
                    position: i as i64 + 1,
                    options: vec![("Size".into(), size), ("Colour".into(), colour)],
                    item_id,
                    unit_cost: Some(format!("{}.{:02}", cents / 250, cents % 100)),
                    levels: locations.iter().map(|l| (*l, rng.i64(0..100))).collect(),
                    updated_at: now,
                });
            }
            let product = SimProduct {
                id,
                title: format!("Product {n}"),
                handle: format!("product-{n}"),
                description_html: format!("<p>Generated product {n}</p>"),
                vendor: vendors[n % vendors.len()].into(),
                product_type: "Apparel".into(),
                status: "ACTIVE".into(),
                tags: vec![format!("batch-{}", n % 10)],
                options: vec![("Size".into(), sizes_used), ("Colour".into(), colours_used)],
                variants: product_variants,
                created_at: now,
                updated_at: now,
            };
            for v in &product.variants {
                self.items.insert(v.item_id, (id, v.id));
            }
            self.by_updated.insert((now.timestamp_millis(), id));
            self.products.insert(id, product);
        }
        if self.collections.is_empty() {
            // Two custom collections of every 2nd and every 3rd product, and a smart one of
            // every 5th (as its rule would choose them).
            let ids: Vec<u64> = self.products.keys().copied().collect();
            for (i, (title, every, smart)) in [
                ("Summer", 2, false),
                ("Winter", 3, false),
                ("Sale", 5, true),
            ]
            .into_iter()
            .enumerate()
            {
                let id = self.new_id();
                self.collections.insert(
                    id,
                    SimCollection {
                        id,
                        title: title.into(),
                        handle: title.to_lowercase(),
                        description_html: format!("<p>{title}</p>"),
                        sort_order: if smart { "BEST_SELLING" } else { "MANUAL" }.into(),
                        rules: smart
                            .then(|| vec![("TAG".into(), "EQUALS".into(), title.to_lowercase())]),
                        products: ids.iter().copied().step_by(every).collect(),
                        updated_at: Utc::now() - chrono::Duration::minutes(i as i64),
                    },
                );
            }
        }
    }
}

fn level_event(item: u64, location: u64, available: i64, at: DateTime<Utc>) -> OutEvent {
    OutEvent {
        topic: "inventory_levels/update".into(),
        body: json!({
            "inventory_item_id": item,
            "location_id": location,
            "available": available,
            "updated_at": timestamp(at),
            "admin_graphql_api_id": format!("gid://shopify/InventoryLevel/{location}?inventory_item_id={item}"),
        }),
    }
}

/// The REST-style product body Shopify sends with products/create and products/update:
/// full variants for the first 100, every variant in `variant_gids`.
pub fn rest_product(p: &SimProduct) -> Value {
    let variants: Vec<Value> = p
        .variants
        .iter()
        .take(100)
        .map(|v| {
            let opt = |i: usize| v.options.get(i).map(|(_, value)| value.clone());
            json!({
                "id": v.id,
                "product_id": p.id,
                "title": v.title,
                "price": v.price,
                "compare_at_price": v.compare_at_price,
                "sku": v.sku,
                "barcode": v.barcode,
                "position": v.position,
                "option1": opt(0),
                "option2": opt(1),
                "option3": opt(2),
                "inventory_item_id": v.item_id,
                "inventory_quantity": v.levels.values().sum::<i64>(),
                "updated_at": timestamp(v.updated_at),
                "admin_graphql_api_id": gid("ProductVariant", v.id),
            })
        })
        .collect();
    json!({
        "id": p.id,
        "admin_graphql_api_id": gid("Product", p.id),
        "title": p.title,
        "body_html": p.description_html,
        "vendor": p.vendor,
        "product_type": p.product_type,
        "handle": p.handle,
        "status": p.status.to_lowercase(),
        "tags": p.tags.join(", "),
        "created_at": timestamp(p.created_at),
        "updated_at": timestamp(p.updated_at),
        "options": p.options.iter().enumerate().map(|(i, (name, values))| json!({"name": name, "position": i + 1, "values": values})).collect::<Vec<_>>(),
        "variants": variants,
        "variant_gids": p.variants.iter().map(|v| json!({"admin_graphql_api_id": gid("ProductVariant", v.id), "updated_at": timestamp(v.updated_at)})).collect::<Vec<_>>(),
    })
}

// ------------------------------------------------------------------ resolver

/// Page info of a connection.
#[derive(Clone, Debug, Default)]
pub struct PageInfo {
    has_next: bool,
    /// The first and last cursors, encoded only when asked for (a bulk export builds a
    /// connection per product and per variant and never asks).
    start: Option<String>,
    end: Option<String>,
}

/// A field value of a generic object.
#[derive(Clone)]
pub enum FieldValue<'a> {
    /// A leaf.
    Json(Value),
    /// An object.
    Object(SimNode<'a>),
    /// A list of objects.
    Objects(Vec<SimNode<'a>>),
}

/// An object the resolver can project.
#[derive(Clone)]
pub enum SimNode<'a> {
    /// The query root.
    Query,
    /// A product.
    Product(&'a SimProduct),
    /// A variant.
    Variant(&'a SimProduct, &'a SimVariant),
    /// A variant's inventory item.
    Item(&'a SimProduct, &'a SimVariant),
    /// A level: variant, location, available.
    Level(&'a SimProduct, &'a SimVariant, u64, i64),
    /// A location.
    Location(&'a SimLocation),
    /// A product's option (its index).
    ProductOption(&'a SimProduct, usize),
    /// A variant's selected option: name and value.
    SelectedOption(&'a (String, String)),
    /// An amount in the shop's currency.
    Money(&'a str),
    /// A collection.
    Collection(&'a SimCollection),
    /// A bulk operation.
    Bulk(&'a BulkOp),
    /// An asynchronous productSet.
    ProductOp(&'a ProductOp),
    /// A webhook subscription.
    Sub(&'a Sub),
    /// A connection page.
    Conn(Rc<Vec<(String, SimNode<'a>)>>, PageInfo),
    /// An edge.
    Edge(Rc<(String, SimNode<'a>)>),
    /// Page info.
    PageInfo(PageInfo),
    /// Any other object: type name and fields.
    Object(&'static str, Rc<Vec<(&'static str, FieldValue<'a>)>>),
}

/// The resolver over a shop.
pub struct View<'a> {
    /// The shop.
    pub shop: &'a Shop,
}

/// An object of type `typename` with these fields.
fn object<'a>(typename: &'static str, fields: Vec<(&'static str, FieldValue<'a>)>) -> SimNode<'a> {
    SimNode::Object(typename, Rc::new(fields))
}

/// A leaf field value.
fn json_field(value: impl Into<Value>) -> FieldValue<'static> {
    FieldValue::Json(value.into())
}

fn user_errors<'a>(typename: &'static str, errors: &[UserErr]) -> FieldValue<'a> {
    FieldValue::Objects(
        errors
            .iter()
            .map(|e| {
                object(
                    typename,
                    vec![
                        (
                            "code",
                            json_field(e.code.map(Value::from).unwrap_or(Value::Null)),
                        ),
                        ("field", json_field(json!(e.field))),
                        ("message", json_field(e.message.clone())),
                    ],
                )
            })
            .collect(),
    )
}

fn encode_cursor(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn decode_cursor(cursor: &str) -> Result<String, String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| format!("Invalid cursor `{cursor}`"))
}

/// Pages a small in-memory list: the items after `after`, at most `first`.
fn paginate<'a>(
    items: Vec<(String, SimNode<'a>)>,
    args: &Args<'_>,
) -> Result<Out<SimNode<'a>>, String> {
    let first = page_size(args)?;
    let start = match args.string("after") {
        Some(after) => {
            let after = decode_cursor(&after)?;
            items
                .iter()
                .position(|(c, _)| *c == after)
                .map(|i| i + 1)
                .ok_or("Invalid cursor")?
        }
        None => 0,
    };
    let rest: Vec<(String, SimNode<'a>)> = items.into_iter().skip(start).take(first + 1).collect();
    Ok(connection(rest, first))
}

fn page_size(args: &Args<'_>) -> Result<usize, String> {
    match args.int("first").or_else(|| args.int("last")) {
        Some(n) if (0..=250).contains(&n) => Ok(n as usize),
        Some(n) => Err(format!("first/last must be between 0 and 250, got {n}")),
        // Bulk queries page without limits.
        None => Ok(usize::MAX - 1),
    }
}

fn connection<'a>(mut items: Vec<(String, SimNode<'a>)>, first: usize) -> Out<SimNode<'a>> {
    let has_next = items.len() > first;
    items.truncate(first);
    let info = PageInfo {
        has_next,
        start: items.first().map(|(c, _)| c.clone()),
        end: items.last().map(|(c, _)| c.clone()),
    };
    Out::Node(SimNode::Conn(Rc::new(items), info))
}

fn unsupported(typename: &str, field: &str) -> String {
    format!("the shopsync simulator does not implement {typename}.{field}")
}

/// Parsed `updated_at` bounds of a search query (second granularity, like Shopify).
#[derive(Debug, Default, Clone, Copy)]
struct UpdatedFilter {
    after_secs: Option<i64>,
    from_secs: Option<i64>,
    before_secs: Option<i64>,
}

impl UpdatedFilter {
    fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut filter = UpdatedFilter::default();
        let Some(query) = query else {
            return Ok(filter);
        };
        for term in query.split_whitespace() {
            let Some(rest) = term.strip_prefix("updated_at:") else {
                continue;
            };
            let (op, value) = if let Some(v) = rest.strip_prefix(">=") {
                (">=", v)
            } else if let Some(v) = rest.strip_prefix('>') {
                (">", v)
            } else if let Some(v) = rest.strip_prefix('<') {
                ("<", v)
            } else {
                continue;
            };
            let value = value.trim_matches(|c| c == '\'' || c == '"');
            let at = DateTime::parse_from_rfc3339(value)
                .map_err(|e| format!("invalid updated_at `{value}`: {e}"))?
                .timestamp();
            match op {
                ">" => filter.after_secs = Some(at),
                ">=" => filter.from_secs = Some(at),
                _ => filter.before_secs = Some(at),
            }
        }
        Ok(filter)
    }

    fn accepts(&self, at: DateTime<Utc>) -> bool {
        let secs = at.timestamp();
        self.after_secs.is_none_or(|a| secs > a)
            && self.from_secs.is_none_or(|a| secs >= a)
            && self.before_secs.is_none_or(|b| secs < b)
    }
}

impl<'a> View<'a> {
    fn products(&self, args: &Args<'_>) -> Result<Out<SimNode<'a>>, String> {
        let first = page_size(args)?;
        if args.get("reverse").and_then(|v| v.as_bool()) == Some(true) {
            return Err(unsupported("QueryRoot", "products(reverse: true)"));
        }
        let filter = UpdatedFilter::parse(args.string("query").as_deref())?;
        let after = args
            .string("after")
            .map(|c| decode_cursor(&c))
            .transpose()?;
        let sort = args.string("sortKey").unwrap_or_else(|| "ID".into());
        let mut page = Vec::new();
        match sort.as_str() {
            "UPDATED_AT" => {
                let start = match after.as_deref() {
                    Some(c) => {
                        let (ms, id) = c
                            .strip_prefix("u:")
                            .and_then(|r| r.split_once(':'))
                            .and_then(|(m, i)| {
                                Some((m.parse::<i64>().ok()?, i.parse::<u64>().ok()?))
                            })
                            .ok_or("Invalid cursor")?;
                        std::ops::Bound::Excluded((ms, id))
                    }
                    None => match filter.after_secs.or(filter.from_secs) {
                        Some(secs) => std::ops::Bound::Included((secs * 1000, 0)),
                        None => std::ops::Bound::Unbounded,
                    },
                };
                for (ms, id) in self
                    .shop
                    .by_updated
                    .range((start, std::ops::Bound::Unbounded))
                {
                    let Some(p) = self.shop.products.get(id) else {
                        continue;
                    };
                    if !filter.accepts(p.updated_at) {
                        if filter
                            .before_secs
                            .is_some_and(|b| p.updated_at.timestamp() >= b)
                        {
                            break;
                        }
                        continue;
                    }
                    page.push((format!("u:{ms}:{id}"), SimNode::Product(p)));
                    if page.len() > first {
                        break;
                    }
                }
            }
            "ID" => {
                let start = match after.as_deref() {
                    Some(c) => std::ops::Bound::Excluded(
                        c.strip_prefix("i:")
                            .and_then(|i| i.parse::<u64>().ok())
                            .ok_or("Invalid cursor")?,
                    ),
                    None => std::ops::Bound::Unbounded,
                };
                for (id, p) in self
                    .shop
                    .products
                    .range((start, std::ops::Bound::Unbounded))
                {
                    if !filter.accepts(p.updated_at) {
                        continue;
                    }
                    page.push((format!("i:{id}"), SimNode::Product(p)));
                    if page.len() > first {
                        break;
                    }
                }
            }
            other => {
                return Err(unsupported(
                    "QueryRoot",
                    &format!("products(sortKey: {other})"),
                ))
            }
        }
        Ok(connection(page, first))
    }

    fn node_by_gid(&self, id: &str) -> Option<SimNode<'a>> {
        let shop = self.shop;
        if let Some(pid) = parse_gid(id, "Product") {
            return shop.products.get(&pid).map(SimNode::Product);
        }
        if let Some(vid) = parse_gid(id, "ProductVariant") {
            return shop.products.values().find_map(|p| {
                p.variants
                    .iter()
                    .find(|v| v.id == vid)
                    .map(|v| SimNode::Variant(p, v))
            });
        }
        if let Some(item) = parse_gid(id, "InventoryItem") {
            let (p, v) = shop.items.get(&item)?;
            let product = shop.products.get(p)?;
            let variant = product.variants.iter().find(|x| x.id == *v)?;
            return Some(SimNode::Item(product, variant));
        }
        if let Some(loc) = parse_gid(id, "Location") {
            return shop
                .locations
                .iter()
                .find(|l| l.id == loc)
                .map(SimNode::Location);
        }
        if let Some(c) = parse_gid(id, "Collection") {
            return shop.collections.get(&c).map(SimNode::Collection);
        }
        if let Some(b) = parse_gid(id, "BulkOperation") {
            return shop.bulk_ops.get(&b).map(SimNode::Bulk);
        }
        None
    }
}

impl<'a> Resolve for View<'a> {
    type Node = SimNode<'a>;

    fn typename(&self, node: &SimNode<'a>) -> &'static str {
        match node {
            SimNode::Query => "QueryRoot",
            SimNode::Product(_) => "Product",
            SimNode::Variant(..) => "ProductVariant",
            SimNode::Item(..) => "InventoryItem",
            SimNode::Level(..) => "InventoryLevel",
            SimNode::Location(_) => "Location",
            SimNode::ProductOption(..) => "ProductOption",
            SimNode::SelectedOption(_) => "SelectedOption",
            SimNode::Money(_) => "MoneyV2",
            SimNode::Collection(_) => "Collection",
            SimNode::Bulk(_) => "BulkOperation",
            SimNode::ProductOp(_) => "ProductSetOperation",
            SimNode::Sub(_) => "WebhookSubscription",
            SimNode::Conn(..) => "Connection",
            SimNode::Edge(_) => "Edge",
            SimNode::PageInfo(_) => "PageInfo",
            SimNode::Object(name, _) => name,
        }
    }

    fn gid(&self, node: &SimNode<'a>) -> Option<Leaf<'static>> {
        Some(match node {
            SimNode::Product(p) => Leaf::Gid("Product", p.id),
            SimNode::Variant(_, v) => Leaf::Gid("ProductVariant", v.id),
            SimNode::Item(_, v) => Leaf::Gid("InventoryItem", v.item_id),
            SimNode::Level(_, v, loc, _) => {
                Leaf::GidWith("InventoryLevel", *loc, "inventory_item_id", v.item_id)
            }
            SimNode::Location(l) => Leaf::Gid("Location", l.id),
            SimNode::Collection(c) => Leaf::Gid("Collection", c.id),
            _ => return None,
        })
    }

    fn weight(&self, node: &SimNode<'a>) -> f64 {
        match node {
            SimNode::Conn(..) => 2.0,
            SimNode::Edge(_) | SimNode::PageInfo(_) | SimNode::Query => 0.0,
            _ => 1.0,
        }
    }

    fn connection_nodes(&self, node: &SimNode<'a>) -> Option<Vec<SimNode<'a>>> {
        match node {
            SimNode::Conn(items, _) => Some(items.iter().map(|(_, n)| n.clone()).collect()),
            _ => None,
        }
    }

    fn leaf<'s>(&'s self, node: &'s SimNode<'a>, name: &str) -> Option<Leaf<'s>> {
        let text = |s: &'s Option<String>| s.as_deref().map_or(Leaf::Null, Leaf::Str);
        Some(match node {
            SimNode::Product(p) => match name {
                "id" => Leaf::Gid("Product", p.id),
                "legacyResourceId" => Leaf::Text(p.id.to_string()),
                "title" => Leaf::Str(&p.title),
                "handle" => Leaf::Str(&p.handle),
                "descriptionHtml" => Leaf::Str(&p.description_html),
                "vendor" => Leaf::Str(&p.vendor),
                "productType" => Leaf::Str(&p.product_type),
                "status" => Leaf::Str(&p.status),
                "tags" => Leaf::Strs(&p.tags),
                "createdAt" => Leaf::Time(p.created_at),
                "updatedAt" => Leaf::Time(p.updated_at),
                "totalInventory" => {
                    Leaf::Int(p.variants.iter().flat_map(|v| v.levels.values()).sum())
                }
                _ => return None,
            },
            SimNode::ProductOption(p, i) => {
                let (option, values) = p.options.get(*i)?;
                match name {
                    "id" => Leaf::Text(format!("gid://shopify/ProductOption/{}{}", p.id, i)),
                    "name" => Leaf::Str(option),
                    "position" => Leaf::Int(*i as i64 + 1),
                    "values" => Leaf::Strs(values),
                    _ => return None,
                }
            }
            SimNode::Variant(p, v) => match name {
                "id" => Leaf::Gid("ProductVariant", v.id),
                "legacyResourceId" => Leaf::Text(v.id.to_string()),
                "title" => Leaf::Str(&v.title),
                "displayName" => Leaf::Text(format!("{} - {}", p.title, v.title)),
                "sku" => text(&v.sku),
                "barcode" => text(&v.barcode),
                "price" => Leaf::Str(&v.price),
                "compareAtPrice" => text(&v.compare_at_price),
                "position" => Leaf::Int(v.position),
                "updatedAt" => Leaf::Time(v.updated_at),
                "inventoryQuantity" => Leaf::Int(v.levels.values().sum()),
                _ => return None,
            },
            SimNode::SelectedOption((option, value)) => match name {
                "name" => Leaf::Str(option),
                "value" => Leaf::Str(value),
                _ => return None,
            },
            SimNode::Item(_, v) => match name {
                "id" => Leaf::Gid("InventoryItem", v.item_id),
                "legacyResourceId" => Leaf::Text(v.item_id.to_string()),
                "sku" => text(&v.sku),
                "tracked" => Leaf::Bool(true),
                _ => return None,
            },
            SimNode::Money(amount) => match name {
                "amount" => Leaf::Str(amount),
                "currencyCode" => Leaf::Str("USD"),
                _ => return None,
            },
            SimNode::Level(_, v, loc, _) => match name {
                "id" => Leaf::GidWith("InventoryLevel", *loc, "inventory_item_id", v.item_id),
                _ => return None,
            },
            SimNode::Location(l) => match name {
                "id" => Leaf::Gid("Location", l.id),
                "name" => Leaf::Str(&l.name),
                "isActive" => Leaf::Bool(l.active),
                "legacyResourceId" => Leaf::Text(l.id.to_string()),
                _ => return None,
            },
            _ => return None,
        })
    }

    fn field(
        &self,
        node: &SimNode<'a>,
        name: &str,
        args: &Args<'_>,
    ) -> Result<Out<SimNode<'a>>, String> {
        let shop = self.shop;
        let json = |v: Value| Ok(Out::Json(v));
        match node {
            SimNode::Query => {
                match name {
                    "products" => self.products(args),
                    "product" | "node" | "productVariant" | "inventoryItem" | "location"
                    | "collection" | "bulkOperation" => {
                        let id = args.string("id").unwrap_or_default();
                        Ok(self
                            .node_by_gid(&id)
                            .map(Out::Node)
                            .unwrap_or(Out::Json(Value::Null)))
                    }
                    "nodes" => {
                        let ids = args
                            .get("ids")
                            .and_then(|v| v.as_array().cloned())
                            .unwrap_or_default();
                        if ids.len() > 250 {
                            return Err(format!("Input array size of {} is greater than the maximum allowed of 250.", ids.len()));
                        }
                        Ok(Out::List(
                            ids.iter()
                                .map(|id| {
                                    self.node_by_gid(id.as_str().unwrap_or_default())
                                        .map(Out::Node)
                                        .unwrap_or(Out::Json(Value::Null))
                                })
                                .collect(),
                        ))
                    }
                    "locations" => paginate(
                        shop.locations
                            .iter()
                            .map(|l| (l.id.to_string(), SimNode::Location(l)))
                            .collect(),
                        args,
                    ),
                    "collections" => {
                        let filter = UpdatedFilter::parse(args.string("query").as_deref())?;
                        let mut all: Vec<&SimCollection> = shop
                            .collections
                            .values()
                            .filter(|c| filter.accepts(c.updated_at))
                            .collect();
                        if args.string("sortKey").as_deref() == Some("UPDATED_AT") {
                            all.sort_by_key(|c| (c.updated_at, c.id));
                        }
                        paginate(
                            all.into_iter()
                                .map(|c| (c.id.to_string(), SimNode::Collection(c)))
                                .collect(),
                            args,
                        )
                    }
                    "productOperation" => {
                        let id = args.string("id").unwrap_or_default();
                        let op = parse_gid(&id, "ProductSetOperation")
                            .and_then(|i| shop.product_ops.get(&i));
                        Ok(op
                            .map(|o| Out::Node(SimNode::ProductOp(o)))
                            .unwrap_or(Out::Json(Value::Null)))
                    }
                    "currentBulkOperation" => Ok(shop
                        .bulk_ops
                        .values()
                        .filter(|b| b.kind == args.string("type").as_deref().unwrap_or("QUERY"))
                        .max_by_key(|b| b.id)
                        .map(|b| Out::Node(SimNode::Bulk(b)))
                        .unwrap_or(Out::Json(Value::Null))),
                    "webhookSubscriptions" => paginate(
                        shop.subs
                            .iter()
                            .map(|s| (s.id.to_string(), SimNode::Sub(s)))
                            .collect(),
                        args,
                    ),
                    other => Err(unsupported("QueryRoot", other)),
                }
            }
            SimNode::Product(p) => match name {
                "options" => Ok(Out::List(
                    (0..p.options.len())
                        .map(|i| Out::Node(SimNode::ProductOption(p, i)))
                        .collect(),
                )),
                "variantsCount" => Ok(Out::Node(object(
                    "Count",
                    vec![
                        ("count", json_field(p.variants.len() as i64)),
                        ("precision", json_field("EXACT")),
                    ],
                ))),
                "variants" => paginate(
                    p.variants
                        .iter()
                        .map(|v| (v.id.to_string(), SimNode::Variant(p, v)))
                        .collect(),
                    args,
                ),
                other => Err(unsupported("Product", other)),
            },
            SimNode::Variant(p, v) => match name {
                "selectedOptions" => Ok(Out::List(
                    v.options
                        .iter()
                        .map(|option| Out::Node(SimNode::SelectedOption(option)))
                        .collect(),
                )),
                "inventoryItem" => Ok(Out::Node(SimNode::Item(p, v))),
                "product" => Ok(Out::Node(SimNode::Product(p))),
                other => Err(unsupported("ProductVariant", other)),
            },
            SimNode::Item(p, v) => match name {
                "unitCost" => Ok(match &v.unit_cost {
                    Some(c) => Out::Node(SimNode::Money(c)),
                    None => Out::Json(Value::Null),
                }),
                "variant" => Ok(Out::Node(SimNode::Variant(p, v))),
                "inventoryLevels" => paginate(
                    v.levels
                        .iter()
                        .map(|(loc, q)| (loc.to_string(), SimNode::Level(p, v, *loc, *q)))
                        .collect(),
                    args,
                ),
                "inventoryLevel" => {
                    let loc = args
                        .string("locationId")
                        .and_then(|l| parse_gid(&l, "Location"));
                    Ok(match loc.and_then(|l| v.levels.get(&l).map(|q| (l, *q))) {
                        Some((l, q)) => Out::Node(SimNode::Level(p, v, l, q)),
                        None => Out::Json(Value::Null),
                    })
                }
                other => Err(unsupported("InventoryItem", other)),
            },
            SimNode::Level(p, v, loc, q) => match name {
                "location" => Ok(shop
                    .locations
                    .iter()
                    .find(|l| l.id == *loc)
                    .map(|l| Out::Node(SimNode::Location(l)))
                    .unwrap_or(Out::Json(Value::Null))),
                "item" => Ok(Out::Node(SimNode::Item(p, v))),
                "quantities" => {
                    let names: Vec<String> = args.parse("names")?.unwrap_or_default();
                    Ok(Out::List(
                        names
                            .into_iter()
                            .map(|n| {
                                let quantity = match n.as_str() {
                                    "available" | "on_hand" => *q,
                                    _ => 0,
                                };
                                Out::Node(object(
                                    "InventoryQuantity",
                                    vec![
                                        ("name", json_field(n)),
                                        ("quantity", json_field(quantity)),
                                    ],
                                ))
                            })
                            .collect(),
                    ))
                }
                other => Err(unsupported("InventoryLevel", other)),
            },
            SimNode::Location(_)
            | SimNode::ProductOption(..)
            | SimNode::SelectedOption(_)
            | SimNode::Money(_) => Err(unsupported(self.typename(node), name)),
            SimNode::Collection(c) => match name {
                "id" => json(gid("Collection", c.id).into()),
                "title" => json(c.title.clone().into()),
                "handle" => json(c.handle.clone().into()),
                "updatedAt" => json(timestamp(c.updated_at).into()),
                "descriptionHtml" => json(c.description_html.clone().into()),
                "sortOrder" => json(c.sort_order.clone().into()),
                // One conditions source per collection: a custom collection's holds its
                // manual selections, a smart one's its rules.
                "sources" => Ok(Out::List(vec![Out::Node(object(
                    "CollectionConditionsSource",
                    vec![
                        ("id", json_field(gid("CollectionConditionsSource", c.id))),
                        ("title", json_field(c.title.clone())),
                        ("shareable", json_field(false)),
                    ],
                ))])),
                "ruleSet" => Ok(match &c.rules {
                    None => Out::Json(Value::Null),
                    Some(rules) => Out::Node(object(
                        "CollectionRuleSet",
                        vec![
                            ("appliedDisjunctively", json_field(false)),
                            (
                                "rules",
                                FieldValue::Objects(
                                    rules
                                        .iter()
                                        .map(|(column, relation, condition)| {
                                            object(
                                                "CollectionRule",
                                                vec![
                                                    ("column", json_field(column.clone())),
                                                    ("relation", json_field(relation.clone())),
                                                    ("condition", json_field(condition.clone())),
                                                ],
                                            )
                                        })
                                        .collect(),
                                ),
                            ),
                        ],
                    )),
                }),
                "products" => {
                    // Only the page is built (a collection may hold most of the catalog).
                    let first = page_size(args)?;
                    let start = match args.string("after") {
                        Some(after) => {
                            let after: u64 = decode_cursor(&after)?
                                .parse()
                                .map_err(|_| "Invalid cursor".to_owned())?;
                            c.products
                                .iter()
                                .position(|id| *id == after)
                                .map(|i| i + 1)
                                .ok_or("Invalid cursor")?
                        }
                        None => 0,
                    };
                    let page = c
                        .products
                        .iter()
                        .skip(start)
                        .filter_map(|id| shop.products.get(id))
                        .take(first.saturating_add(1))
                        .map(|p| (p.id.to_string(), SimNode::Product(p)))
                        .collect();
                    Ok(connection(page, first))
                }
                other => Err(unsupported("Collection", other)),
            },
            SimNode::Bulk(b) => match name {
                "id" => json(gid("BulkOperation", b.id).into()),
                "status" => json(b.status.into()),
                "errorCode" => json(Value::Null),
                "objectCount" => json(b.objects.to_string().into()),
                "rootObjectCount" => json(b.roots.to_string().into()),
                "fileSize" => json(b.size().to_string().into()),
                "query" => json(b.query.clone().into()),
                "type" => json(b.kind.into()),
                "createdAt" => json(timestamp(b.created_at).into()),
                "completedAt" => json(if b.status == "COMPLETED" {
                    timestamp(b.created_at).into()
                } else {
                    Value::Null
                }),
                "url" => json(if b.status == "COMPLETED" && b.size() > 0 {
                    format!("{}/bulk/{}.jsonl", shop.base_url, b.id).into()
                } else {
                    Value::Null
                }),
                "partialDataUrl" => json(Value::Null),
                other => Err(unsupported("BulkOperation", other)),
            },
            SimNode::ProductOp(o) => match name {
                "id" => json(gid("ProductSetOperation", o.id).into()),
                "status" => json(if o.polls >= 2 { "COMPLETE" } else { "ACTIVE" }.into()),
                "product" => Ok(o
                    .product
                    .filter(|_| o.polls >= 2)
                    .and_then(|id| shop.products.get(&id))
                    .map(|p| Out::Node(SimNode::Product(p)))
                    .unwrap_or(Out::Json(Value::Null))),
                "userErrors" => Ok(field_out(user_errors("ProductSetUserError", &o.errors))),
                other => Err(unsupported("ProductSetOperation", other)),
            },
            SimNode::Sub(s) => match name {
                "id" => json(gid("WebhookSubscription", s.id).into()),
                "topic" => json(s.topic.clone().into()),
                "uri" | "callbackUrl" => json(s.uri.clone().into()),
                "format" => json("JSON".into()),
                other => Err(unsupported("WebhookSubscription", other)),
            },
            SimNode::Conn(items, info) => match name {
                "nodes" => Ok(Out::List(
                    items.iter().map(|(_, n)| Out::Node(n.clone())).collect(),
                )),
                "edges" => Ok(Out::List(
                    items
                        .iter()
                        .map(|e| Out::Node(SimNode::Edge(Rc::new(e.clone()))))
                        .collect(),
                )),
                "pageInfo" => Ok(Out::Node(SimNode::PageInfo(info.clone()))),
                other => Err(unsupported("Connection", other)),
            },
            SimNode::Edge(edge) => match name {
                "node" => Ok(Out::Node(edge.1.clone())),
                "cursor" => json(encode_cursor(&edge.0).into()),
                other => Err(unsupported("Edge", other)),
            },
            SimNode::PageInfo(info) => match name {
                "hasNextPage" => json(info.has_next.into()),
                "hasPreviousPage" => json(false.into()),
                "startCursor" => json(
                    info.start
                        .as_deref()
                        .map_or(Value::Null, |c| encode_cursor(c).into()),
                ),
                "endCursor" => json(
                    info.end
                        .as_deref()
                        .map_or(Value::Null, |c| encode_cursor(c).into()),
                ),
                other => Err(unsupported("PageInfo", other)),
            },
            SimNode::Object(typename, fields) => fields
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| field_out(v.clone()))
                .ok_or_else(|| unsupported(typename, name)),
        }
    }
}

fn field_out(value: FieldValue<'_>) -> Out<SimNode<'_>> {
    match value {
        FieldValue::Json(json) => Out::Json(json),
        FieldValue::Object(node) => Out::Node(node),
        FieldValue::Objects(items) => Out::List(items.into_iter().map(Out::Node).collect()),
    }
}

// ------------------------------------------------------------------ mutations

/// What a mutation did, projected after the state change.
#[derive(Debug, Clone, PartialEq)]
pub enum MutOut {
    /// productSet.
    ProductSet {
        /// Product (synchronous).
        product: Option<u64>,
        /// Operation (asynchronous).
        operation: Option<u64>,
        /// Errors.
        errors: Vec<UserErrPublic>,
    },
    /// productUpdate.
    ProductUpdate(Option<u64>, Vec<UserErrPublic>),
    /// productVariantsBulkUpdate.
    VariantsBulk(Option<u64>, Vec<u64>, Vec<UserErrPublic>),
    /// inventorySetQuantities.
    InventorySet(Option<u64>, Vec<UserErrPublic>),
    /// inventoryActivate: the (item, location) level it activated, or errors.
    InventoryActivate(Option<(u64, u64)>, Vec<UserErrPublic>),
    /// bulkOperationRunQuery.
    BulkRun(Option<u64>, Vec<UserErrPublic>),
    /// bulkOperationRunMutation.
    BulkRunMutation(Option<u64>, Vec<UserErrPublic>),
    /// stagedUploadsCreate: each target's (url, key), or errors.
    StagedUploads(Vec<(String, String)>, Vec<UserErrPublic>),
    /// collectionUpdate: the collection, or errors.
    CollectionUpdate(Option<u64>, Vec<UserErrPublic>),
    /// webhookSubscriptionCreate.
    SubCreate(Option<u64>, Vec<UserErrPublic>),
}

/// A user error (public so outcomes can be compared in tests).
pub type UserErrPublic = (Option<&'static str>, Vec<String>, String);

fn public(errors: Vec<UserErr>) -> Vec<UserErrPublic> {
    errors
        .into_iter()
        .map(|e| (e.code, e.field, e.message))
        .collect()
}

fn private(errors: &[UserErrPublic]) -> Vec<UserErr> {
    errors
        .iter()
        .map(|(code, field, message)| UserErr {
            code: *code,
            field: field.clone(),
            message: message.clone(),
        })
        .collect()
}

/// A top-level error of a mutation (refused as a whole, like Shopify's BAD_REQUEST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopLevelError {
    /// Code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

fn bad_request(message: impl Into<String>) -> TopLevelError {
    TopLevelError {
        code: "BAD_REQUEST",
        message: message.into(),
    }
}

/// Refuses any input list longer than 250 items (Shopify's MAX_INPUT_SIZE_EXCEEDED), except
/// where a field documents a larger limit.
pub fn check_input_sizes(value: &Value, path: &str, exempt: &[&str]) -> Result<(), TopLevelError> {
    match value {
        Value::Array(items) => {
            if items.len() > 250 && !exempt.iter().any(|e| path.ends_with(e)) {
                return Err(TopLevelError {
                    code: "MAX_INPUT_SIZE_EXCEEDED",
                    message: format!(
                        "The input array size of {} is greater than the maximum allowed of 250.",
                        items.len()
                    ),
                });
            }
            items
                .iter()
                .try_for_each(|i| check_input_sizes(i, path, exempt))
        }
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| check_input_sizes(v, &format!("{path}.{k}"), exempt)),
        _ => Ok(()),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SetInput {
    id: Option<String>,
    title: Option<String>,
    description_html: Option<String>,
    vendor: Option<String>,
    product_type: Option<String>,
    handle: Option<String>,
    status: Option<String>,
    tags: Option<Vec<String>>,
    product_options: Option<Vec<OptionInput>>,
    variants: Option<Vec<Map<String, Value>>>,
}

#[derive(Deserialize)]
struct OptionInput {
    name: Option<String>,
    values: Option<Vec<NameInput>>,
}

#[derive(Deserialize)]
struct NameInput {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OptionValueInput {
    option_name: Option<String>,
    name: Option<String>,
}

fn text(map: &Map<String, Value>, key: &str) -> Option<Option<String>> {
    map.get(key).map(|v| match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    })
}

const REASONS: &[&str] = &[
    "correction",
    "cycle_count_available",
    "damaged",
    "movement_created",
    "movement_updated",
    "movement_received",
    "movement_canceled",
    "other",
    "promotion",
    "quality_control",
    "received",
    "reservation_created",
    "reservation_deleted",
    "reservation_updated",
    "restock",
    "safety_stock",
    "shrinkage",
];

impl Shop {
    /// Runs one mutation root field.
    pub fn mutate(
        &mut self,
        host: &SchemaHost,
        name: &str,
        args: &Args<'_>,
        idempotency_key: Option<String>,
    ) -> Result<MutOut, TopLevelError> {
        match name {
            "productSet" => self.product_set(args),
            "productUpdate" => self.product_update(args),
            "productVariantsBulkUpdate" => self.variants_bulk_update(args),
            "inventorySetQuantities" => self.inventory_set(args, idempotency_key),
            "inventoryActivate" => Ok(self.inventory_activate(args)),
            "collectionUpdate" => Ok(self.collection_update(args)),
            "bulkOperationRunQuery" => Ok(self.bulk_run(host, args)),
            "bulkOperationRunMutation" => Ok(self.bulk_run_mutation(host, args)),
            "stagedUploadsCreate" => Ok(self.staged_uploads_create(args)),
            "webhookSubscriptionCreate" => self.subscribe(args),
            other => Err(bad_request(format!(
                "the shopsync simulator does not implement mutation {other}"
            ))),
        }
    }

    fn product_set(&mut self, args: &Args<'_>) -> Result<MutOut, TopLevelError> {
        let input: SetInput = args
            .parse("input")
            .map_err(bad_request)?
            .unwrap_or_default();
        let synchronous = args
            .get("synchronous")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        let identifier = args.get("identifier");
        let fail = |errors: Vec<UserErr>| {
            Ok(MutOut::ProductSet {
                product: None,
                operation: None,
                errors: public(errors),
            })
        };
        let by_id = identifier
            .as_ref()
            .and_then(|i| i.get("id"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .or(input.id.clone());
        let existing = match (
            &by_id,
            identifier
                .as_ref()
                .and_then(|i| i.get("handle"))
                .and_then(|v| v.as_str()),
        ) {
            (Some(id), _) => {
                match parse_gid(id, "Product").filter(|p| self.products.contains_key(p)) {
                    Some(p) => Some(p),
                    None => {
                        return fail(vec![user_err(
                            Some("PRODUCT_DOES_NOT_EXIST"),
                            &["identifier", "id"],
                            "Product does not exist",
                        )])
                    }
                }
            }
            (None, Some(handle)) => self
                .products
                .values()
                .find(|p| p.handle == handle)
                .map(|p| p.id),
            (None, None) => None,
        };
        let count = input.variants.as_ref().map_or(0, Vec::len);
        if count > 2048 {
            return fail(vec![user_err(
                Some("VARIANTS_OVER_LIMIT"),
                &["input", "variants"],
                "productSet accepts at most 2048 variants",
            )]);
        }
        if synchronous && count > 100 {
            return fail(vec![user_err(
                Some("VARIANTS_OVER_LIMIT"),
                &["input", "variants"],
                "Synchronous productSet accepts at most 100 variants; use synchronous: false",
            )]);
        }
        let now = Utc::now();
        let mut product = match existing {
            Some(id) => self
                .products
                .get(&id)
                .cloned()
                .ok_or_else(|| bad_request("product vanished"))?,
            None => {
                let Some(title) = input.title.clone() else {
                    return fail(vec![user_err(
                        Some("MISSING_FIELD_REQUIRED"),
                        &["input", "title"],
                        "Title can't be blank",
                    )]);
                };
                let id = self.new_id();
                SimProduct {
                    id,
                    handle: input.handle.clone().unwrap_or_else(|| slug(&title)),
                    title,
                    description_html: String::new(),
                    vendor: String::new(),
                    product_type: String::new(),
                    status: "ACTIVE".into(),
                    tags: Vec::new(),
                    options: Vec::new(),
                    variants: Vec::new(),
                    created_at: now,
                    updated_at: now,
                }
            }
        };
        if let Some(v) = &input.title {
            product.title = v.clone();
        }
        if let Some(v) = &input.description_html {
            product.description_html = v.clone();
        }
        if let Some(v) = &input.vendor {
            product.vendor = v.clone();
        }
        if let Some(v) = &input.product_type {
            product.product_type = v.clone();
        }
        if let Some(v) = &input.handle {
            product.handle = v.clone();
        }
        if let Some(v) = &input.status {
            product.status = v.clone();
        }
        if let Some(v) = &input.tags {
            product.tags = v.clone();
        }
        if let Some(options) = &input.product_options {
            product.options = options
                .iter()
                .map(|o| {
                    (
                        o.name.clone().unwrap_or_default(),
                        o.values
                            .iter()
                            .flatten()
                            .filter_map(|v| v.name.clone())
                            .collect(),
                    )
                })
                .collect();
        }
        if let Some(variants) = &input.variants {
            let mut errors = Vec::new();
            let mut next = Vec::with_capacity(variants.len());
            let mut combos = BTreeSet::new();
            for (i, raw) in variants.iter().enumerate() {
                let index = i.to_string();
                let option_values: Vec<OptionValueInput> = raw
                    .get("optionValues")
                    .cloned()
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|e| bad_request(format!("optionValues: {e}")))?
                    .unwrap_or_default();
                let options: Vec<(String, String)> = option_values
                    .into_iter()
                    .map(|o| {
                        (
                            o.option_name.unwrap_or_default(),
                            o.name.unwrap_or_default(),
                        )
                    })
                    .collect();
                if !combos.insert(options.clone()) {
                    errors.push(user_err(
                        Some("DUPLICATED_VALUE"),
                        &["input", "variants", &index],
                        "The variant already exists with these option values",
                    ));
                    continue;
                }
                let existing_variant = match raw.get("id").and_then(|v| v.as_str()) {
                    Some(id) => match parse_gid(id, "ProductVariant")
                        .and_then(|vid| product.variants.iter().find(|v| v.id == vid))
                    {
                        Some(v) => Some(v.clone()),
                        None => {
                            errors.push(user_err(
                                Some("PRODUCT_VARIANT_DOES_NOT_EXIST"),
                                &["input", "variants", &index, "id"],
                                "Variant does not exist on this product",
                            ));
                            continue;
                        }
                    },
                    None => None,
                };
                let mut variant = match existing_variant {
                    Some(v) => v,
                    None => {
                        let id = self.new_id();
                        let item_id = self.new_id();
                        SimVariant {
                            id,
                            title: String::new(),
                            sku: None,
                            barcode: None,
                            price: "0.00".into(),
                            compare_at_price: None,
                            position: 0,
                            options: Vec::new(),
                            item_id,
                            unit_cost: None,
                            levels: self
                                .locations
                                .iter()
                                .filter(|l| l.active)
                                .map(|l| (l.id, 0))
                                .collect(),
                            updated_at: now,
                        }
                    }
                };
                if !options.is_empty() {
                    variant.options = options;
                }
                variant.title = variant
                    .options
                    .iter()
                    .map(|(_, v)| v.as_str())
                    .collect::<Vec<_>>()
                    .join(" / ");
                if let Some(v) = text(raw, "sku") {
                    variant.sku = v;
                }
                if let Some(v) = text(raw, "barcode") {
                    variant.barcode = v;
                }
                if let Some(v) = text(raw, "price") {
                    variant.price = v.unwrap_or_else(|| "0.00".into());
                }
                if let Some(v) = text(raw, "compareAtPrice") {
                    variant.compare_at_price = v;
                }
                if let Some(item) = raw.get("inventoryItem").and_then(|v| v.as_object()) {
                    if let Some(v) = text(item, "sku") {
                        variant.sku = v;
                    }
                    if let Some(v) = text(item, "cost") {
                        variant.unit_cost = v;
                    }
                }
                if let Some(quantities) = raw.get("inventoryQuantities").and_then(|v| v.as_array())
                {
                    for q in quantities {
                        let loc = q
                            .get("locationId")
                            .and_then(|v| v.as_str())
                            .and_then(|l| parse_gid(l, "Location"));
                        let qty = q.get("quantity").and_then(|v| v.as_i64());
                        if let (Some(loc), Some(qty)) = (loc, qty) {
                            variant.levels.insert(loc, qty);
                        }
                    }
                }
                variant.position = raw
                    .get("position")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(i as i64 + 1);
                variant.updated_at = now;
                next.push(variant);
            }
            if product.options.is_empty() {
                let mut options: Vec<(String, Vec<String>)> = Vec::new();
                for v in &next {
                    for (name, value) in &v.options {
                        match options.iter_mut().find(|(n, _)| n == name) {
                            Some((_, values)) if !values.contains(value) => {
                                values.push(value.clone())
                            }
                            Some(_) => {}
                            None => options.push((name.clone(), vec![value.clone()])),
                        }
                    }
                }
                product.options = options;
            }
            for (i, v) in next.iter().enumerate() {
                let names: BTreeSet<&str> = v.options.iter().map(|(n, _)| n.as_str()).collect();
                let wanted: BTreeSet<&str> =
                    product.options.iter().map(|(n, _)| n.as_str()).collect();
                if names != wanted {
                    errors.push(user_err(
                        Some("OPTION_VALUES_MISSING"),
                        &["input", "variants", &i.to_string(), "optionValues"],
                        "Each variant needs exactly one value per product option",
                    ));
                }
            }
            if !errors.is_empty() {
                return fail(errors);
            }
            next.sort_by_key(|v| v.position);
            product.variants = next;
        }
        if product.variants.is_empty() {
            let id = self.new_id();
            let item_id = self.new_id();
            product.options = vec![("Title".into(), vec!["Default Title".into()])];
            product.variants.push(SimVariant {
                id,
                title: "Default Title".into(),
                sku: None,
                barcode: None,
                price: "0.00".into(),
                compare_at_price: None,
                position: 1,
                options: vec![("Title".into(), "Default Title".into())],
                item_id,
                unit_cost: None,
                levels: self.locations.iter().map(|l| (l.id, 0)).collect(),
                updated_at: now,
            });
        }
        let id = product.id;
        let topic = if existing.is_some() {
            "products/update"
        } else {
            "products/create"
        };
        self.store_product(product, topic);
        if synchronous {
            return Ok(MutOut::ProductSet {
                product: Some(id),
                operation: None,
                errors: Vec::new(),
            });
        }
        let op = self.new_id();
        self.product_ops.insert(
            op,
            ProductOp {
                id: op,
                product: Some(id),
                errors: Vec::new(),
                polls: 0,
            },
        );
        Ok(MutOut::ProductSet {
            product: None,
            operation: Some(op),
            errors: Vec::new(),
        })
    }

    fn product_update(&mut self, args: &Args<'_>) -> Result<MutOut, TopLevelError> {
        let Some(input) = args.get("product").and_then(|v| v.as_object().cloned()) else {
            return Err(bad_request("productUpdate needs the `product` argument"));
        };
        let id = input
            .get("id")
            .and_then(|v| v.as_str())
            .and_then(|i| parse_gid(i, "Product"));
        let Some(mut product) = id.and_then(|i| self.products.get(&i).cloned()) else {
            return Ok(MutOut::ProductUpdate(
                None,
                public(vec![user_err(None, &["id"], "Product does not exist")]),
            ));
        };
        let set = |field: &mut String, key: &str| {
            if let Some(v) = text(&input, key) {
                *field = v.unwrap_or_default();
            }
        };
        set(&mut product.title, "title");
        set(&mut product.description_html, "descriptionHtml");
        set(&mut product.vendor, "vendor");
        set(&mut product.product_type, "productType");
        set(&mut product.handle, "handle");
        set(&mut product.status, "status");
        if let Some(tags) = input.get("tags").and_then(|v| v.as_array()) {
            product.tags = tags
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect();
        }
        let pid = product.id;
        self.store_product(product, "products/update");
        Ok(MutOut::ProductUpdate(Some(pid), Vec::new()))
    }

    fn variants_bulk_update(&mut self, args: &Args<'_>) -> Result<MutOut, TopLevelError> {
        let pid = args
            .string("productId")
            .and_then(|i| parse_gid(&i, "Product"));
        let Some(mut product) = pid.and_then(|p| self.products.get(&p).cloned()) else {
            return Ok(MutOut::VariantsBulk(
                None,
                Vec::new(),
                public(vec![user_err(
                    Some("PRODUCT_DOES_NOT_EXIST"),
                    &["productId"],
                    "Product does not exist",
                )]),
            ));
        };
        let inputs: Vec<Map<String, Value>> = args
            .parse("variants")
            .map_err(bad_request)?
            .unwrap_or_default();
        let mut errors = Vec::new();
        let mut targets = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let index = i.to_string();
            match input.get("id").and_then(|v| v.as_str()) {
                None => errors.push(user_err(
                    Some("PRODUCT_VARIANT_ID_MISSING"),
                    &["variants", &index, "id"],
                    "Variant id is missing",
                )),
                Some(id) => match parse_gid(id, "ProductVariant")
                    .filter(|v| product.variants.iter().any(|x| x.id == *v))
                {
                    Some(v) => targets.push((v, input)),
                    None => errors.push(user_err(
                        Some("PRODUCT_VARIANT_DOES_NOT_EXIST"),
                        &["variants", &index, "id"],
                        "Product variant does not exist",
                    )),
                },
            }
        }
        if !errors.is_empty() {
            return Ok(MutOut::VariantsBulk(None, Vec::new(), public(errors)));
        }
        let now = Utc::now();
        let mut updated = Vec::new();
        for (vid, input) in targets {
            if let Some(v) = product.variants.iter_mut().find(|x| x.id == vid) {
                if let Some(p) = text(input, "price") {
                    v.price = p.unwrap_or_else(|| "0.00".into());
                }
                if let Some(p) = text(input, "compareAtPrice") {
                    v.compare_at_price = p;
                }
                if let Some(b) = text(input, "barcode") {
                    v.barcode = b;
                }
                if let Some(item) = input.get("inventoryItem").and_then(|x| x.as_object()) {
                    if let Some(s) = text(item, "sku") {
                        v.sku = s;
                    }
                    if let Some(c) = text(item, "cost") {
                        v.unit_cost = c;
                    }
                }
                v.updated_at = now;
                updated.push(vid);
            }
        }
        let id = product.id;
        self.store_product(product, "products/update");
        Ok(MutOut::VariantsBulk(Some(id), updated, Vec::new()))
    }

    fn inventory_set(
        &mut self,
        args: &Args<'_>,
        key: Option<String>,
    ) -> Result<MutOut, TopLevelError> {
        let Some(key) = key else {
            return Err(bad_request(
                "inventorySetQuantities requires an idempotency key: add @idempotent(key: \"...\") (required since 2026-04)",
            ));
        };
        let input = args.get("input").unwrap_or(Value::Null);
        let fingerprint = input.to_string();
        if let Some((seen, outcome)) = self.idempotency.get(&key) {
            if *seen == fingerprint {
                return Ok(outcome.clone());
            }
            return Ok(MutOut::InventorySet(
                None,
                public(vec![user_err(
                    Some("IDEMPOTENCY_KEY_PARAMETER_MISMATCH"),
                    &["input"],
                    "The same idempotency key was used with different parameters",
                )]),
            ));
        }
        // A sale lands between shopsync's read and this write.
        if let Some(units) = self.pending_sales.pop_front() {
            let first = input
                .get("quantities")
                .and_then(|q| q.get(0))
                .and_then(|q| {
                    Some((
                        q.get("inventoryItemId")?.as_str()?.to_owned(),
                        q.get("locationId")?.as_str()?.to_owned(),
                    ))
                });
            if let Some((item, loc)) = first {
                if let (Some(item), Some(loc)) = (
                    parse_gid(&item, "InventoryItem"),
                    parse_gid(&loc, "Location"),
                ) {
                    if self.adjust_level(item, loc, -units).is_some() {
                        self.sales.push((item, loc, units));
                    }
                }
            }
        }
        let outcome = self.apply_inventory(&input);
        self.idempotency.insert(key, (fingerprint, outcome.clone()));
        Ok(outcome)
    }

    /// collectionUpdate: a collection's title, handle, description and sort order, and the
    /// manual selections of its conditions source (up to 250 added and 250 removed a call; a
    /// smart collection's membership follows its rules and takes no selection). Every product
    /// named must exist; an error changes nothing. A change moves `updatedAt` on and sends
    /// collections/update.
    fn collection_update(&mut self, args: &Args<'_>) -> MutOut {
        let fail = |field: &[&str], message: &str| {
            MutOut::CollectionUpdate(None, public(vec![user_err(None, field, message)]))
        };
        let Some(input) = args.get("collection").and_then(|v| v.as_object().cloned()) else {
            return fail(&["collection"], "The collection input is required.");
        };
        let id = input
            .get("id")
            .and_then(|v| v.as_str())
            .and_then(|v| parse_gid(v, "Collection"));
        let Some(current) = id.and_then(|id| self.collections.get(&id)).cloned() else {
            return fail(&["collection", "id"], "Collection does not exist");
        };
        let mut changed = current.clone();
        for (key, field) in [
            ("title", &mut changed.title),
            ("handle", &mut changed.handle),
            ("descriptionHtml", &mut changed.description_html),
            ("sortOrder", &mut changed.sort_order),
        ] {
            if let Some(value) = text(&input, key) {
                *field = value.unwrap_or_default();
            }
        }
        if changed.title.trim().is_empty() {
            return fail(&["collection", "title"], "Title can't be blank");
        }
        let updates = input
            .get("sourcesToUpdate")
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default();
        for (index, update) in updates.iter().enumerate() {
            let position = index.to_string();
            // Refuses the call, naming the field under this source update.
            let refuse = |rest: &[&str], message: String| {
                let mut path = vec!["collection", "sourcesToUpdate", position.as_str()];
                path.extend_from_slice(rest);
                let path = path.into_iter().map(str::to_owned).collect();
                MutOut::CollectionUpdate(None, vec![(None, path, message)])
            };
            let Some(source) = update.get("condition") else {
                return refuse(
                    &[],
                    "Only conditions sources can be updated here.".to_owned(),
                );
            };
            let source_id = source
                .get("id")
                .and_then(|v| v.as_str())
                .and_then(|v| parse_gid(v, "CollectionConditionsSource"));
            if source_id != Some(current.id) {
                return refuse(&["condition", "id"], "Source does not exist".to_owned());
            }
            let inclusion = source.get("inclusion");
            let selections = |key: &str| -> Vec<Value> {
                inclusion
                    .and_then(|i| i.get(key))
                    .and_then(|v| v.as_array())
                    .cloned()
                    .unwrap_or_default()
            };
            let (adding, removing) = (
                selections("selectionsToAdd"),
                selections("selectionsToRemove"),
            );
            if (!adding.is_empty() || !removing.is_empty()) && current.rules.is_some() {
                return refuse(
                    &["condition", "inclusion"],
                    "Can't manually select products in a smart collection.".to_owned(),
                );
            }
            for (key, list) in [
                ("selectionsToAdd", &adding),
                ("selectionsToRemove", &removing),
            ] {
                if list.len() > 250 {
                    return refuse(
                        &["condition", "inclusion", key],
                        format!(
                            "Input array size of {} is greater than the maximum allowed of 250.",
                            list.len()
                        ),
                    );
                }
                for (at, selection) in list.iter().enumerate() {
                    let product = selection
                        .get("productId")
                        .and_then(|v| v.as_str())
                        .and_then(|v| parse_gid(v, "Product"))
                        .filter(|p| self.products.contains_key(p));
                    let Some(product) = product else {
                        let at = at.to_string();
                        return refuse(
                            &["condition", "inclusion", key, at.as_str(), "productId"],
                            "Product does not exist".to_owned(),
                        );
                    };
                    if key == "selectionsToAdd" {
                        if !changed.products.contains(&product) {
                            changed.products.push(product);
                        }
                    } else {
                        changed.products.retain(|p| *p != product);
                    }
                }
            }
        }
        let id = current.id;
        if changed != current {
            self.edit_collection(id, |collection| *collection = changed);
        }
        MutOut::CollectionUpdate(Some(id), Vec::new())
    }

    /// Stocks an item at a location (with `available`, or 0); an item stocked there already
    /// keeps its quantity, as Shopify's does.
    fn inventory_activate(&mut self, args: &Args<'_>) -> MutOut {
        let fail = |code: &'static str, field: &str, message: &str| {
            MutOut::InventoryActivate(None, public(vec![user_err(Some(code), &[field], message)]))
        };
        let item = args
            .string("inventoryItemId")
            .and_then(|v| parse_gid(&v, "InventoryItem"))
            .filter(|item| self.items.contains_key(item));
        let Some(item) = item else {
            return fail(
                "INVALID_INVENTORY_ITEM",
                "inventoryItemId",
                "The specified inventory item could not be found.",
            );
        };
        let location = args
            .string("locationId")
            .and_then(|v| parse_gid(&v, "Location"))
            .filter(|loc| self.locations.iter().any(|x| x.id == *loc));
        let Some(location) = location else {
            return fail(
                "INVALID_LOCATION",
                "locationId",
                "The specified location could not be found.",
            );
        };
        if self.level(item, location).is_none() {
            let available = args.get("available").and_then(|v| v.as_i64()).unwrap_or(0);
            let Some(&(product, variant)) = self.items.get(&item) else {
                return fail(
                    "INVALID_INVENTORY_ITEM",
                    "inventoryItemId",
                    "The specified inventory item could not be found.",
                );
            };
            if let Some(stocked) = self
                .products
                .get_mut(&product)
                .and_then(|p| p.variants.iter_mut().find(|v| v.id == variant))
            {
                stocked.levels.insert(location, available);
            }
            self.outbox
                .push(level_event(item, location, available, Utc::now()));
        }
        MutOut::InventoryActivate(Some((item, location)), Vec::new())
    }

    /// Takes an item out of a location (a merchant unstocking it in the admin), so tests can
    /// make an item that is not stocked where an import sends it.
    pub fn unstock(&mut self, item: u64, location: u64) -> bool {
        let Some(&(product, variant)) = self.items.get(&item) else {
            return false;
        };
        self.products
            .get_mut(&product)
            .and_then(|p| p.variants.iter_mut().find(|v| v.id == variant))
            .is_some_and(|v| v.levels.remove(&location).is_some())
    }

    fn apply_inventory(&mut self, input: &Value) -> MutOut {
        let fail = |errors: Vec<UserErr>| MutOut::InventorySet(None, public(errors));
        let name = input
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if !matches!(name, "available" | "on_hand") {
            return fail(vec![user_err(
                Some("INVALID_NAME"),
                &["input", "name"],
                format!("`{name}` is not a settable quantity name"),
            )]);
        }
        let reason = input
            .get("reason")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if !REASONS.contains(&reason) {
            return fail(vec![user_err(
                Some("INVALID_REASON"),
                &["input", "reason"],
                format!("`{reason}` is not a valid reason"),
            )]);
        }
        let entries = input
            .get("quantities")
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default();
        let mut errors = Vec::new();
        let mut plan = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, entry) in entries.iter().enumerate() {
            let index = i.to_string();
            let field = |f: &str| {
                vec![
                    "input".to_owned(),
                    "quantities".to_owned(),
                    index.clone(),
                    f.to_owned(),
                ]
            };
            let item = entry
                .get("inventoryItemId")
                .and_then(|v| v.as_str())
                .and_then(|v| parse_gid(v, "InventoryItem"));
            let loc = entry
                .get("locationId")
                .and_then(|v| v.as_str())
                .and_then(|v| parse_gid(v, "Location"));
            let quantity = entry.get("quantity").and_then(|v| v.as_i64()).unwrap_or(0);
            let Some(item) = item.filter(|i| self.items.contains_key(i)) else {
                errors.push(UserErr {
                    code: Some("INVALID_INVENTORY_ITEM"),
                    field: field("inventoryItemId"),
                    message: "The specified inventory item could not be found.".into(),
                });
                continue;
            };
            let Some(loc) = loc.filter(|l| self.locations.iter().any(|x| x.id == *l)) else {
                errors.push(UserErr {
                    code: Some("INVALID_LOCATION"),
                    field: field("locationId"),
                    message: "The specified location could not be found.".into(),
                });
                continue;
            };
            if !seen.insert((item, loc)) {
                errors.push(UserErr {
                    code: Some("NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR"),
                    field: field("inventoryItemId"),
                    message: "The same inventory item and location appear twice.".into(),
                });
                continue;
            }
            let Some(current) = self.level(item, loc) else {
                errors.push(UserErr {
                    code: Some("ITEM_NOT_STOCKED_AT_LOCATION"),
                    field: field("locationId"),
                    message: "The item is not stocked at the location.".into(),
                });
                continue;
            };
            match entry.as_object().and_then(|o| o.get("changeFromQuantity")) {
                None => errors.push(UserErr {
                    code: Some("COMPARE_QUANTITY_REQUIRED"),
                    field: field("changeFromQuantity"),
                    message:
                        "changeFromQuantity is required on every entry (null skips the check)."
                            .into(),
                }),
                Some(Value::Null) => plan.push((item, loc, quantity)),
                Some(expected) if expected.as_i64() == Some(current) => {
                    plan.push((item, loc, quantity))
                }
                Some(_) => errors.push(UserErr {
                    code: Some("CHANGE_FROM_QUANTITY_STALE"),
                    field: field("changeFromQuantity"),
                    message: format!("The quantity changed since it was read (now {current})."),
                }),
            }
        }
        if !errors.is_empty() {
            return fail(errors);
        }
        let now = Utc::now();
        for (item, loc, quantity) in plan {
            if let Some(current) = self.level(item, loc) {
                self.adjust_level(item, loc, quantity - current);
            }
            let _ = now;
        }
        let group = self.new_id();
        MutOut::InventorySet(Some(group), Vec::new())
    }

    /// How many bulk mutations may run at once per shop (the API versions shopsync speaks).
    pub const BULK_MUTATIONS_AT_ONCE: usize = 5;

    fn staged_uploads_create(&mut self, args: &Args<'_>) -> MutOut {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Input {
            resource: String,
            filename: String,
            http_method: Option<String>,
        }
        let inputs: Vec<Input> = match args.parse("input") {
            Ok(Some(inputs)) => inputs,
            Ok(None) | Err(_) => {
                return MutOut::StagedUploads(
                    Vec::new(),
                    public(vec![user_err(None, &["input"], "input is required")]),
                )
            }
        };
        let mut targets = Vec::new();
        for (index, input) in inputs.iter().enumerate() {
            if input.resource != "BULK_MUTATION_VARIABLES" {
                return MutOut::StagedUploads(
                    Vec::new(),
                    public(vec![user_err(
                        None,
                        &["input", &index.to_string(), "resource"],
                        format!(
                            "the shopsync simulator stages only BULK_MUTATION_VARIABLES, not {}",
                            input.resource
                        ),
                    )]),
                );
            }
            let method = input.http_method.as_deref().unwrap_or("PUT");
            let key = format!("tmp/sim/bulk/{}/{}", self.new_id(), input.filename);
            let url = format!("{}/staged-uploads/{key}", self.base_url);
            if method != "PUT" {
                return MutOut::StagedUploads(
                    Vec::new(),
                    public(vec![user_err(
                        None,
                        &["input", &index.to_string(), "httpMethod"],
                        "the shopsync simulator takes staged uploads by PUT",
                    )]),
                );
            }
            targets.push((url, key));
        }
        MutOut::StagedUploads(targets, Vec::new())
    }

    /// Stores a file uploaded to a staged target.
    pub fn stage_upload(&mut self, key: &str, body: bytes::Bytes) -> bool {
        if !key.starts_with("tmp/sim/bulk/") {
            return false;
        }
        self.staged.insert(key.to_owned(), body);
        true
    }

    /// bulkOperationRunMutation: runs the mutation once per line of the staged file, as
    /// Shopify does (each line's variables; each line's answer a line of the result, with its
    /// `__lineNumber`), refused while five bulk mutations are still running.
    fn bulk_run_mutation(&mut self, host: &SchemaHost, args: &Args<'_>) -> MutOut {
        let refuse = |code: &'static str, field: &str, message: String| {
            MutOut::BulkRunMutation(None, public(vec![user_err(Some(code), &[field], message)]))
        };
        let running = self
            .bulk_ops
            .values()
            .filter(|b| b.kind == "MUTATION" && b.status != "COMPLETED")
            .count();
        if running >= Self::BULK_MUTATIONS_AT_ONCE {
            return refuse(
                "OPERATION_IN_PROGRESS",
                "mutation",
                format!(
                    "A shop may run {} bulk mutation operations at a time; {running} are running.",
                    Self::BULK_MUTATIONS_AT_ONCE
                ),
            );
        }
        let mutation = args.string("mutation").unwrap_or_default();
        let path = args.string("stagedUploadPath").unwrap_or_default();
        let Some(file) = self.staged.get(&path).cloned() else {
            return refuse(
                "NO_SUCH_FILE",
                "stagedUploadPath",
                format!("no staged upload at {path}"),
            );
        };
        let doc = match host.document(&mutation) {
            Ok(doc) => doc,
            Err(errors) => {
                return refuse(
                    "INVALID_MUTATION",
                    "mutation",
                    format!("Invalid mutation: {}", errors.join("; ")),
                )
            }
        };
        let Ok(operation) = doc.operations.get(None) else {
            return refuse(
                "INVALID_MUTATION",
                "mutation",
                "the bulk mutation must hold exactly one operation".into(),
            );
        };
        if operation.operation_type != apollo_compiler::executable::OperationType::Mutation {
            return refuse(
                "INVALID_MUTATION",
                "mutation",
                "a bulk mutation runs a mutation".into(),
            );
        }
        let building = std::time::Instant::now();
        let mut out = Vec::new();
        let mut lines = 0u64;
        for (number, line) in file.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines += 1;
            let answer = self.bulk_line(host, &doc, operation, line);
            let mut entry = answer;
            entry["__lineNumber"] = Value::from(number as u64);
            out.extend_from_slice(entry.to_string().as_bytes());
            out.push(b'\n');
        }
        self.staged.remove(&path);
        let id = self.new_id();
        self.bulk_ops.insert(
            id,
            BulkOp {
                id,
                kind: "MUTATION",
                status: "CREATED",
                query: mutation,
                objects: lines,
                roots: lines,
                polls: 0,
                created_at: Utc::now(),
                data: vec![bytes::Bytes::from(out)],
                built_in: building.elapsed(),
            },
        );
        MutOut::BulkRunMutation(Some(id), Vec::new())
    }

    /// One line of a bulk mutation: its variables coerced as a request's are, the mutation's
    /// root fields run and projected; `{"data": ...}` or `{"errors": [...]}`.
    fn bulk_line(
        &mut self,
        host: &SchemaHost,
        doc: &apollo_compiler::ExecutableDocument,
        operation: &apollo_compiler::executable::Operation,
        line: &[u8],
    ) -> Value {
        let error = |message: String| json!({"errors": [{"message": message}]});
        let vars: apollo_compiler::response::JsonMap = match serde_json::from_slice(line) {
            Ok(vars) => vars,
            Err(e) => return error(format!("the line is not a JSON object of variables: {e}")),
        };
        let coerced = match apollo_compiler::request::coerce_variable_values(
            &host.schema,
            operation,
            &vars,
        ) {
            Ok(coerced) => coerced,
            Err(e) => return error(e.message().to_string()),
        };
        let vars: Map<String, Value> = serde_json::to_value(&*coerced)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        let mut data = Map::new();
        let mut errors = Vec::new();
        for field in operation
            .selection_set
            .selections
            .iter()
            .filter_map(|s| match s {
                apollo_compiler::executable::Selection::Field(f) => Some(f),
                _ => None,
            })
        {
            let key = field.response_key().to_string();
            match self.mutate(host, field.name.as_str(), &Args::new(field, &vars), None) {
                Ok(outcome) => {
                    let shop: &Shop = self;
                    let mut exec = Exec::new(doc, &host.schema, &vars, View { shop });
                    let payload = shop.payload(&outcome);
                    let value = exec.object(&payload, &field.selection_set);
                    data.insert(key, value);
                }
                Err(top) => {
                    errors.push(json!({"message": top.message, "extensions": {"code": top.code}}));
                    data.insert(key, Value::Null);
                }
            }
        }
        let mut answer = json!({ "data": data });
        if !errors.is_empty() {
            answer["errors"] = Value::Array(errors);
        }
        answer
    }

    fn bulk_run(&mut self, host: &SchemaHost, args: &Args<'_>) -> MutOut {
        let query = args.string("query").unwrap_or_default();
        let doc = match host.document(&query) {
            Ok(doc) => doc,
            Err(errors) => {
                return MutOut::BulkRun(
                    None,
                    public(vec![user_err(
                        Some("INVALID"),
                        &["query"],
                        format!("Invalid bulk query: {}", errors.join("; ")),
                    )]),
                )
            }
        };
        let Ok(operation) = doc.operations.get(None) else {
            return MutOut::BulkRun(
                None,
                public(vec![user_err(
                    Some("INVALID"),
                    &["query"],
                    "Bulk query must hold exactly one operation",
                )]),
            );
        };
        let vars = Map::new();
        let building = std::time::Instant::now();
        let data;
        let (lines, roots);
        {
            // Shopify builds an export on its own servers; the simulator shares the test's
            // cores, so it builds its parts on all of them at once and joins them in order.
            let shares = std::thread::available_parallelism().map_or(1, |n| n.get());
            let shop: &Shop = self;
            let parts: Vec<(Vec<u8>, u64, u64, Option<String>)> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..shares)
                    .map(|share| {
                        let (doc, vars) = (&doc, &vars);
                        scope.spawn(move || {
                            let mut exec = Exec::new(doc, &host.schema, vars, View { shop });
                            // Room for about 4 KB per product line and its children (3 KB with
                            // three variants at two locations), reserved up front instead of
                            // growing a buffer of hundreds of megabytes by copying; pages never
                            // written are never touched.
                            let mut out = Vec::with_capacity(
                                (shop.products.len() / shares + 1).saturating_mul(4096),
                            );
                            let (lines, roots) = exec.bulk_part(
                                &SimNode::Query,
                                &operation.selection_set,
                                &mut out,
                                (share, shares),
                            );
                            let error = exec.errors.first().map(|e| e.message.clone());
                            (out, lines, roots, error)
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|worker| {
                        worker.join().unwrap_or_else(|_| {
                            (Vec::new(), 0, 0, Some("the export build failed".into()))
                        })
                    })
                    .collect()
            });
            if let Some(error) = parts.iter().find_map(|part| part.3.clone()) {
                return MutOut::BulkRun(
                    None,
                    public(vec![user_err(Some("INVALID"), &["query"], error)]),
                );
            }
            lines = parts.iter().map(|part| part.1).sum();
            roots = parts.iter().map(|part| part.2).sum();
            // The parts in order are the file: served one after another, never joined (a
            // copy of hundreds of MB).
            data = parts
                .into_iter()
                .map(|part| bytes::Bytes::from(part.0))
                .filter(|part| !part.is_empty())
                .collect();
        }
        let id = self.new_id();
        self.bulk_ops.insert(
            id,
            BulkOp {
                id,
                kind: "QUERY",
                status: "CREATED",
                query,
                objects: lines,
                roots,
                polls: 0,
                created_at: Utc::now(),
                data,
                built_in: building.elapsed(),
            },
        );
        MutOut::BulkRun(Some(id), Vec::new())
    }

    fn subscribe(&mut self, args: &Args<'_>) -> Result<MutOut, TopLevelError> {
        let topic = args.string("topic").unwrap_or_default();
        let input = args.get("webhookSubscription").unwrap_or(Value::Null);
        let uri = input
            .get("uri")
            .or_else(|| input.get("callbackUrl"))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let Some(uri) = uri else {
            return Ok(MutOut::SubCreate(
                None,
                public(vec![user_err(
                    None,
                    &["webhookSubscription", "uri"],
                    "uri can't be blank",
                )]),
            ));
        };
        if self.subs.iter().any(|s| s.topic == topic && s.uri == uri) {
            return Ok(MutOut::SubCreate(
                None,
                public(vec![user_err(
                    None,
                    &["webhookSubscription", "callbackUrl"],
                    "Address for this topic has already been taken",
                )]),
            ));
        }
        let id = self.new_id();
        self.subs.push(Sub { id, topic, uri });
        Ok(MutOut::SubCreate(Some(id), Vec::new()))
    }

    /// The addresses subscribed to `topic` (REST form, e.g. `products/update`).
    pub fn subscribers(&self, topic: &str) -> Vec<String> {
        let wanted = topic.replace('/', "_").to_uppercase();
        self.subs
            .iter()
            .filter(|s| s.topic == wanted)
            .map(|s| s.uri.clone())
            .collect()
    }

    /// Advances background operations when they are polled (CREATED → RUNNING → COMPLETED;
    /// ACTIVE → COMPLETE), so clients exercise their polling.
    pub fn poll_background(&mut self, field: &str, id: &str) {
        if field == "bulkOperation" || field == "currentBulkOperation" {
            let target =
                parse_gid(id, "BulkOperation").or_else(|| self.bulk_ops.keys().max().copied());
            if let Some(op) = target.and_then(|t| self.bulk_ops.get_mut(&t)) {
                op.polls += 1;
                op.status = match op.polls {
                    0 => "CREATED",
                    1 => "RUNNING",
                    _ => "COMPLETED",
                };
            }
        }
        if field == "productOperation" {
            if let Some(op) =
                parse_gid(id, "ProductSetOperation").and_then(|i| self.product_ops.get_mut(&i))
            {
                op.polls += 1;
            }
        }
    }

    /// How long running every bulk mutation so far took (Shopify's side of bulk pushes).
    pub fn bulk_mutation_time(&self) -> std::time::Duration {
        self.bulk_ops
            .values()
            .filter(|b| b.kind == "MUTATION")
            .map(|b| b.built_in)
            .sum()
    }

    /// Bulk mutations run so far, and the lines they ran.
    pub fn bulk_mutations(&self) -> (usize, u64) {
        let mutations = self.bulk_ops.values().filter(|b| b.kind == "MUTATION");
        mutations.fold((0, 0), |(count, lines), b| (count + 1, lines + b.objects))
    }

    /// How long building every bulk result so far took (Shopify's side of the exports).
    pub fn bulk_build_time(&self) -> std::time::Duration {
        self.bulk_ops.values().map(|b| b.built_in).sum()
    }

    /// Bytes of bulk results the shop holds (it keeps every result, as Shopify keeps them for
    /// a week).
    pub fn bulk_bytes_held(&self) -> usize {
        self.bulk_ops
            .values()
            .flat_map(|b| b.data.iter())
            .map(|part| part.len())
            .sum()
    }

    /// A bulk operation's JSONL, once completed.
    pub fn bulk_data(&self, id: u64) -> Option<bytes::Bytes> {
        self.bulk_parts(id).map(|parts| parts.concat().into())
    }

    /// A completed bulk operation's file as the parts it was built in (in order; shared with
    /// the operation, not copied).
    pub fn bulk_parts(&self, id: u64) -> Option<Vec<bytes::Bytes>> {
        self.bulk_ops
            .get(&id)
            .filter(|b| b.status == "COMPLETED")
            .map(|b| b.data.clone())
    }

    /// The payload object of a mutation outcome.
    pub fn payload<'a>(&'a self, outcome: &MutOut) -> SimNode<'a> {
        let product = |id: &Option<u64>| match id.and_then(|i| self.products.get(&i)) {
            Some(p) => FieldValue::Object(SimNode::Product(p)),
            None => json_field(Value::Null),
        };
        match outcome {
            MutOut::ProductSet {
                product: p,
                operation,
                errors,
            } => object(
                "ProductSetPayload",
                vec![
                    ("product", product(p)),
                    (
                        "productSetOperation",
                        match operation.and_then(|o| self.product_ops.get(&o)) {
                            Some(op) => FieldValue::Object(SimNode::ProductOp(op)),
                            None => json_field(Value::Null),
                        },
                    ),
                    (
                        "userErrors",
                        user_errors("ProductSetUserError", &private(errors)),
                    ),
                ],
            ),
            MutOut::ProductUpdate(p, errors) => object(
                "ProductUpdatePayload",
                vec![
                    ("product", product(p)),
                    ("userErrors", user_errors("UserError", &private(errors))),
                ],
            ),
            MutOut::VariantsBulk(p, variants, errors) => {
                let list = match p.and_then(|i| self.products.get(&i)) {
                    Some(prod) => FieldValue::Objects(
                        prod.variants
                            .iter()
                            .filter(|v| variants.contains(&v.id))
                            .map(|v| SimNode::Variant(prod, v))
                            .collect(),
                    ),
                    None => json_field(Value::Null),
                };
                object(
                    "ProductVariantsBulkUpdatePayload",
                    vec![
                        ("product", product(p)),
                        ("productVariants", list),
                        (
                            "userErrors",
                            user_errors("ProductVariantsBulkUpdateUserError", &private(errors)),
                        ),
                    ],
                )
            }
            MutOut::InventorySet(group, errors) => object(
                "InventorySetQuantitiesPayload",
                vec![
                    (
                        "inventoryAdjustmentGroup",
                        match group {
                            Some(g) => FieldValue::Object(object(
                                "InventoryAdjustmentGroup",
                                vec![("id", json_field(gid("InventoryAdjustmentGroup", *g)))],
                            )),
                            None => json_field(Value::Null),
                        },
                    ),
                    (
                        "userErrors",
                        user_errors("InventorySetQuantitiesUserError", &private(errors)),
                    ),
                ],
            ),
            MutOut::CollectionUpdate(collection, errors) => object(
                "CollectionUpdatePayload",
                vec![
                    (
                        "collection",
                        match collection.and_then(|id| self.collections.get(&id)) {
                            Some(found) => FieldValue::Object(SimNode::Collection(found)),
                            None => json_field(Value::Null),
                        },
                    ),
                    ("job", json_field(Value::Null)),
                    ("userErrors", user_errors("UserError", &private(errors))),
                ],
            ),
            MutOut::InventoryActivate(level, errors) => object(
                "InventoryActivatePayload",
                vec![
                    (
                        "inventoryLevel",
                        match level.and_then(|(item, loc)| {
                            let (p, v) = self.items.get(&item)?;
                            let product = self.products.get(p)?;
                            let variant = product.variants.iter().find(|x| x.id == *v)?;
                            Some(SimNode::Level(
                                product,
                                variant,
                                loc,
                                *variant.levels.get(&loc)?,
                            ))
                        }) {
                            Some(level) => FieldValue::Object(level),
                            None => json_field(Value::Null),
                        },
                    ),
                    ("userErrors", user_errors("UserError", &private(errors))),
                ],
            ),
            MutOut::StagedUploads(targets, errors) => object(
                "StagedUploadsCreatePayload",
                vec![
                    (
                        "stagedTargets",
                        FieldValue::Objects(
                            targets
                                .iter()
                                .map(|(url, key)| {
                                    object(
                                        "StagedMediaUploadTarget",
                                        vec![
                                            ("url", json_field(url.clone())),
                                            ("resourceUrl", json_field(Value::Null)),
                                            (
                                                "parameters",
                                                FieldValue::Objects(vec![
                                                    object(
                                                        "StagedUploadParameter",
                                                        vec![
                                                            ("name", json_field("key")),
                                                            ("value", json_field(key.clone())),
                                                        ],
                                                    ),
                                                    object(
                                                        "StagedUploadParameter",
                                                        vec![
                                                            ("name", json_field("content_type")),
                                                            ("value", json_field("text/jsonl")),
                                                        ],
                                                    ),
                                                ]),
                                            ),
                                        ],
                                    )
                                })
                                .collect(),
                        ),
                    ),
                    ("userErrors", user_errors("UserError", &private(errors))),
                ],
            ),
            MutOut::BulkRun(op, errors) | MutOut::BulkRunMutation(op, errors) => {
                let (payload, error) = match outcome {
                    MutOut::BulkRun(..) => {
                        ("BulkOperationRunQueryPayload", "BulkOperationUserError")
                    }
                    _ => ("BulkOperationRunMutationPayload", "BulkMutationUserError"),
                };
                object(
                    payload,
                    vec![
                        (
                            "bulkOperation",
                            match op.and_then(|o| self.bulk_ops.get(&o)) {
                                Some(b) => FieldValue::Object(SimNode::Bulk(b)),
                                None => json_field(Value::Null),
                            },
                        ),
                        ("userErrors", user_errors(error, &private(errors))),
                    ],
                )
            }
            MutOut::SubCreate(sub, errors) => object(
                "WebhookSubscriptionCreatePayload",
                vec![
                    (
                        "webhookSubscription",
                        match sub.and_then(|s| self.subs.iter().find(|x| x.id == s)) {
                            Some(s) => FieldValue::Object(SimNode::Sub(s)),
                            None => json_field(Value::Null),
                        },
                    ),
                    ("userErrors", user_errors("UserError", &private(errors))),
                ],
            ),
        }
    }
}

fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}
