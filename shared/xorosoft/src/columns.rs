//! The columns of a Xorosoft file and the header names each is known by.

/// A column shopsync reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// `StoreCode`: the warehouse (a Shopify location by configuration).
    StoreCode,
    /// `LocationCode`: the bin inside the warehouse.
    LocationCode,
    /// `ItemNumber`: Xorosoft's item id, the SKU.
    ItemNumber,
    /// `BasePartNumber`: the style the item is a variant of.
    BasePartNumber,
    /// `ItemUPC`: the barcode.
    ItemUpc,
    /// `ItemDescription`.
    ItemDescription,
    /// `OnHandQty`: physically on hand.
    OnHandQty,
    /// `AllocatedQty`: promised to orders.
    AllocatedQty,
    /// `AvailableQty`: on hand less allocated (what Shopify calls available).
    AvailableQty,
    /// `QtyOnPO`: on purchase orders.
    QtyOnPo,
    /// `UnitCost`.
    UnitCost,
    /// `StandardUnitPrice`: the retail price.
    StandardUnitPrice,
    /// `WholesalePrice` (kept on the record only).
    WholesalePrice,
    /// `CurrencyCode` of the prices.
    CurrencyCode,
    /// `LastModified`.
    LastModified,
}

impl Column {
    /// Every column, in the order Xorosoft writes them.
    pub const ALL: [Column; 15] = [
        Column::StoreCode,
        Column::LocationCode,
        Column::ItemNumber,
        Column::BasePartNumber,
        Column::ItemUpc,
        Column::ItemDescription,
        Column::OnHandQty,
        Column::AllocatedQty,
        Column::AvailableQty,
        Column::QtyOnPo,
        Column::UnitCost,
        Column::StandardUnitPrice,
        Column::WholesalePrice,
        Column::CurrencyCode,
        Column::LastModified,
    ];

    /// The name Xorosoft's templates give it.
    pub fn name(self) -> &'static str {
        match self {
            Column::StoreCode => "StoreCode",
            Column::LocationCode => "LocationCode",
            Column::ItemNumber => "ItemNumber",
            Column::BasePartNumber => "BasePartNumber",
            Column::ItemUpc => "ItemUPC",
            Column::ItemDescription => "ItemDescription",
            Column::OnHandQty => "OnHandQty",
            Column::AllocatedQty => "AllocatedQty",
            Column::AvailableQty => "AvailableQty",
            Column::QtyOnPo => "QtyOnPO",
            Column::UnitCost => "UnitCost",
            Column::StandardUnitPrice => "StandardUnitPrice",
            Column::WholesalePrice => "WholesalePrice",
            Column::CurrencyCode => "CurrencyCode",
            Column::LastModified => "LastModified",
        }
    }

    /// The other names a header may give it (compared as [`normalise`] leaves them).
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Column::StoreCode => &["store", "warehouse", "warehousecode", "storeid"],
            Column::LocationCode => &["location", "bin", "binlocation", "bincode"],
            Column::ItemNumber => &["sku", "item", "itemno", "itemcode", "itemsku"],
            Column::BasePartNumber => &["basepart", "basesku", "style", "parentsku"],
            Column::ItemUpc => &["upc", "barcode", "upccode", "ean", "gtin"],
            Column::ItemDescription => &["description", "itemname", "name"],
            Column::OnHandQty => &["onhand", "qtyonhand", "quantityonhand"],
            Column::AllocatedQty => &["allocated", "qtyallocated", "committed"],
            Column::AvailableQty => &["available", "qtyavailable", "quantityavailable"],
            Column::QtyOnPo => &["onpo", "onorder", "qtyonorder", "quantityonorder"],
            Column::UnitCost => &["cost", "costprice", "itemcost"],
            Column::StandardUnitPrice => &["price", "retailprice", "standardprice", "unitprice"],
            Column::WholesalePrice => &["wholesale", "wholesaleunitprice"],
            Column::CurrencyCode => &["currency"],
            Column::LastModified => &["modified", "lastmodifieddate", "updatedat", "lastupdated"],
        }
    }

    /// The column a header names, if shopsync reads it: case, spaces, underscores, hyphens
    /// and dots do not count (`Item Number`, `item_number` and `ITEMNUMBER` are one).
    pub fn of_header(header: &str) -> Option<Column> {
        let wanted = normalise(header);
        Column::ALL.into_iter().find(|column| {
            normalise(column.name()) == wanted || column.aliases().contains(&wanted.as_str())
        })
    }
}

/// A header name as compared: lower case, without spaces, underscores, hyphens, dots or a
/// byte-order mark.
pub fn normalise(header: &str) -> String {
    header
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '.' | '\u{feff}' | '\t'))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_match_in_any_case_and_spacing_and_by_alias() {
        for (header, column) in [
            ("ItemNumber", Column::ItemNumber),
            ("Item Number", Column::ItemNumber),
            ("item_number", Column::ItemNumber),
            ("SKU", Column::ItemNumber),
            ("UPC", Column::ItemUpc),
            ("Item UPC", Column::ItemUpc),
            ("Qty Available", Column::AvailableQty),
            ("Available", Column::AvailableQty),
            ("QtyOnPO", Column::QtyOnPo),
            ("\u{feff}StoreCode", Column::StoreCode),
        ] {
            assert_eq!(Column::of_header(header), Some(column), "{header}");
        }
        assert_eq!(Column::of_header("Colour"), None);
        for column in Column::ALL {
            assert_eq!(Column::of_header(column.name()), Some(column));
        }
    }

    #[test]
    fn no_alias_names_two_columns() {
        let mut names = std::collections::HashMap::new();
        for column in Column::ALL {
            for name in std::iter::once(normalise(column.name()))
                .chain(column.aliases().iter().map(|a| a.to_string()))
            {
                assert_eq!(normalise(&name), name, "aliases are stored normalised");
                if let Some(other) = names.insert(name.clone(), column) {
                    panic!("{name} names both {other:?} and {column:?}");
                }
            }
        }
    }
}
