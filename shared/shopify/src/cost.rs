//! Shopify's query cost model and the throttle status every response carries.
//!
//! Cost model (shopify.dev, "GraphQL Admin API rate limits"): scalars and enums cost 0, objects
//! 1, a connection 2 plus `first` times the cost of one node's selection, a mutation 10. A single
//! query may cost at most [`MAX_QUERY_COST`].

use serde::{Deserialize, Serialize};

/// The most one query may request.
pub const MAX_QUERY_COST: u32 = 1000;
/// What a mutation requests.
pub const MUTATION_COST: u32 = 10;
/// The most items `first` or an input list may carry.
pub const MAX_PAGE: u32 = 250;

/// `extensions.cost` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryCost {
    /// What the query could cost at most; charged up front.
    pub requested_query_cost: f64,
    /// What it did cost (absent when throttled).
    #[serde(default)]
    pub actual_query_cost: Option<f64>,
    /// The bucket after this request.
    pub throttle_status: ThrottleStatus,
}

/// The leaky bucket as Shopify reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleStatus {
    /// Bucket size.
    pub maximum_available: f64,
    /// Points available now.
    pub currently_available: f64,
    /// Points restored per second.
    pub restore_rate: f64,
}

/// Cost of a connection of `first` nodes whose selection costs `node_cost` each.
pub const fn connection(first: u32, node_cost: u32) -> u32 {
    2 + first * node_cost
}

/// The nested shape of a products page: how many variants and levels each product carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductPageShape {
    /// `variants(first:)` per product; products with more are completed by paging.
    pub variants_first: u32,
    /// `inventoryLevels(first:)` per variant (the number of locations that matter).
    pub levels_first: u32,
}

impl Default for ProductPageShape {
    fn default() -> Self {
        Self {
            variants_first: 10,
            levels_first: 3,
        }
    }
}

impl ProductPageShape {
    /// Requested cost of one variant node in the page documents: the variant, its
    /// selectedOptions, inventoryItem and unitCost objects, and its levels connection (a level,
    /// its location and its quantities per node).
    pub const fn variant_cost(levels_first: u32) -> u32 {
        1 + 1 + 1 + 1 + connection(levels_first, 3)
    }

    /// Requested cost of one product node: the product, its options and variantsCount objects,
    /// and the variants connection.
    pub const fn product_cost(&self) -> u32 {
        1 + 1 + 1 + connection(self.variants_first, Self::variant_cost(self.levels_first))
    }

    /// The largest `first` (≤ 250) that keeps a products page at or under the maximum cost;
    /// at least 1.
    pub fn page_size(&self) -> u32 {
        let per_product = self.product_cost().max(1);
        ((MAX_QUERY_COST - 2) / per_product).clamp(1, MAX_PAGE)
    }

    /// Requested cost of a page of `first` products.
    pub const fn page_cost(&self, first: u32) -> u32 {
        connection(first, self.product_cost())
    }

    /// The largest variants page for one product (the product object plus a variants
    /// connection) under the maximum cost.
    pub fn variant_page_size(levels_first: u32) -> u32 {
        ((MAX_QUERY_COST - 1 - 2) / Self::variant_cost(levels_first)).clamp(1, MAX_PAGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_keep_queries_under_the_maximum_cost() {
        for variants_first in [1, 5, 20, 50, 100] {
            for levels_first in [1, 3, 5, 10] {
                let shape = ProductPageShape {
                    variants_first,
                    levels_first,
                };
                let first = shape.page_size();
                if shape.product_cost() + 2 <= MAX_QUERY_COST {
                    assert!(shape.page_cost(first) <= MAX_QUERY_COST, "{shape:?}");
                    assert!(
                        first == MAX_PAGE || shape.page_cost(first + 1) > MAX_QUERY_COST,
                        "{shape:?} page {first} is not the largest"
                    );
                }
                let variants = ProductPageShape::variant_page_size(levels_first);
                let per_page =
                    1 + connection(variants, ProductPageShape::variant_cost(levels_first));
                assert!(per_page <= MAX_QUERY_COST);
            }
        }
    }
}
