//! Shopify simulator (in progress).
