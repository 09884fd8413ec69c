//! Cost values are hidden from viewers (products, staged rows and conflicts alike).

use serde_json::Value;

/// Whether a field name or field path names a cost (`cost`, `cost_price`, `unit_cost`,
/// `variants/{key}/cost`).
fn is_cost(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    matches!(last, "cost" | "cost_price" | "unit_cost")
}

/// Removes every cost from a JSON answer: fields named as a cost, change entries keyed by a
/// cost's path, the values of a conflict on a cost (its `field_name` stays, so a viewer
/// sees that there is one), and the value of an import's row error in its cost column
/// (`UnitCost`; the line and reason stay).
pub fn hide_costs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| !is_cost(key));
            let on_cost = map
                .get("field_name")
                .and_then(Value::as_str)
                .is_some_and(is_cost);
            if on_cost {
                for key in ["base_value", "local_value", "remote_value", "resolution"] {
                    if map.contains_key(key) {
                        map.insert(key.into(), Value::Null);
                    }
                }
            }
            let in_cost_column = map
                .get("column")
                .and_then(Value::as_str)
                .is_some_and(|column| column.eq_ignore_ascii_case("UnitCost"));
            if in_cost_column && map.contains_key("value") {
                map.insert("value".into(), Value::Null);
            }
            map.values_mut().for_each(hide_costs);
        }
        Value::Array(items) => items.iter_mut().for_each(hide_costs),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn costs_go_wherever_they_are_and_nothing_else_does() {
        let mut answer = json!({
            "product": {"title": "Hat", "variants": [{"sku": "H", "price": "9.00", "cost": "4.00"}]},
            "staging": [{"change_data": {"variants/v1/cost": {"old": "3.00", "new": "4.00"}, "title": {"old": "a", "new": "b"}}}],
            "conflicts": [
                {"field_name": "variants/v1/cost", "local_value": "4.00", "remote_value": "5.00", "status": "open"},
                {"field_name": "title", "local_value": "a", "remote_value": "b"}
            ],
            "record": {"cost_price": "1.00", "unit_cost": "1.00", "stock_available": 3},
            "row_errors": [
                {"line": 4, "column": "UnitCost", "value": "12,50", "reason": "is not a decimal amount"},
                {"line": 5, "column": "OnHandQty", "value": "x", "reason": "is not a whole number"}
            ]
        });
        hide_costs(&mut answer);
        assert_eq!(
            answer,
            json!({
                "product": {"title": "Hat", "variants": [{"sku": "H", "price": "9.00"}]},
                "staging": [{"change_data": {"title": {"old": "a", "new": "b"}}}],
                "conflicts": [
                    {"field_name": "variants/v1/cost", "local_value": null, "remote_value": null, "status": "open"},
                    {"field_name": "title", "local_value": "a", "remote_value": "b"}
                ],
                "record": {"stock_available": 3},
                "row_errors": [
                    {"line": 4, "column": "UnitCost", "value": null, "reason": "is not a decimal amount"},
                    {"line": 5, "column": "OnHandQty", "value": "x", "reason": "is not a whole number"}
                ]
            })
        );
    }
}
