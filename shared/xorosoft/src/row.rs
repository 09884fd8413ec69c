//! One row of a Xorosoft file, typed, and the error a row that is not one gets.

use crate::columns::Column;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use shopsync_domain::Money;
use std::str::FromStr;

/// A valid row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XorosoftRow {
    /// The file's line the row starts on (the header is line 1).
    pub line: u64,
    /// The warehouse (`StoreCode`).
    pub store_code: String,
    /// The bin inside it (`LocationCode`).
    pub location_code: Option<String>,
    /// Xorosoft's item id (`ItemNumber`), as text: leading zeros kept.
    pub item_number: String,
    /// The style the item is a variant of (`BasePartNumber`).
    pub base_part_number: Option<String>,
    /// The barcode (`ItemUPC`), as text.
    pub upc: Option<String>,
    /// `ItemDescription`.
    pub description: Option<String>,
    /// `OnHandQty`.
    pub on_hand: Option<i64>,
    /// `AllocatedQty`.
    pub allocated: Option<i64>,
    /// `AvailableQty`: what Shopify's available is set from.
    pub available: Option<i64>,
    /// `QtyOnPO`.
    pub on_order: Option<i64>,
    /// `UnitCost`.
    pub unit_cost: Option<Money>,
    /// `StandardUnitPrice`: the retail price.
    pub standard_price: Option<Money>,
    /// `WholesalePrice`.
    pub wholesale_price: Option<Money>,
    /// `CurrencyCode` of the prices.
    pub currency: Option<String>,
    /// `LastModified`.
    pub last_modified: Option<DateTime<Utc>>,
    /// Why this row's cost and prices cannot be taken (they are in another currency than the
    /// shop's); its stock still counts.
    pub price_error: Option<RowError>,
}

/// A row that is not valid: where, what and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, {column}: `{value}` {reason}")]
pub struct RowError {
    /// The file's line the row starts on.
    pub line: u64,
    /// The column (its Xorosoft name), or `row` for the row as a whole.
    pub column: String,
    /// The value as the file has it.
    pub value: String,
    /// Why it is not taken.
    pub reason: String,
}

/// The fields of one row, by column, as text.
pub(crate) type Fields<'a> = [Option<&'a str>; Column::ALL.len()];

/// How the fields of a row are read.
pub(crate) struct RowRules<'a> {
    /// The shop's currency, when known.
    pub shop_currency: Option<&'a str>,
    /// The zone of `MM/DD/YYYY` times.
    pub timezone: chrono_tz::Tz,
    /// The StoreCode of a file without that column.
    pub default_store_code: &'a str,
}

fn field<'a>(fields: &Fields<'a>, column: Column) -> Option<&'a str> {
    fields[column as usize]
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

impl XorosoftRow {
    /// The row at `line` from its `fields`.
    pub(crate) fn parse(
        line: u64,
        fields: &Fields<'_>,
        rules: &RowRules<'_>,
    ) -> Result<Self, RowError> {
        let error = |column: Column, value: &str, reason: &str| RowError {
            line,
            column: column.name().to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let text = |column: Column| field(fields, column).map(str::to_owned);
        let item_number = text(Column::ItemNumber)
            .ok_or_else(|| error(Column::ItemNumber, "", "is empty: every row names its item"))?;
        let store_code = match fields[Column::StoreCode as usize] {
            // A file without the column: one warehouse.
            None => rules.default_store_code.to_owned(),
            Some(_) => text(Column::StoreCode).ok_or_else(|| {
                error(Column::StoreCode, "", "is empty: every row names its store")
            })?,
        };
        let upc = match field(fields, Column::ItemUpc) {
            None => None,
            Some(value) => {
                Some(barcode(value).map_err(|reason| error(Column::ItemUpc, value, reason))?)
            }
        };
        let quantity = |column: Column| -> Result<Option<i64>, RowError> {
            field(fields, column)
                .map(|value| {
                    value
                        .strip_prefix('+')
                        .unwrap_or(value)
                        .parse::<i64>()
                        .map_err(|_| error(column, value, "is not a whole number"))
                })
                .transpose()
        };
        let money = |column: Column| -> Result<Option<Money>, RowError> {
            field(fields, column)
                .map(|value| {
                    let amount = rust_decimal::Decimal::from_str(value)
                        .map_err(|_| error(column, value, "is not a decimal amount"))?;
                    Money::new(amount).map_err(|_| error(column, value, "is negative"))
                })
                .transpose()
        };
        // Checked in the layout's column order, so a row's first error is the one named.
        let on_hand = quantity(Column::OnHandQty)?;
        let allocated = quantity(Column::AllocatedQty)?;
        let available = quantity(Column::AvailableQty)?;
        let on_order = quantity(Column::QtyOnPo)?;
        let unit_cost = money(Column::UnitCost)?;
        let standard_price = money(Column::StandardUnitPrice)?;
        let wholesale_price = money(Column::WholesalePrice)?;
        let currency = match field(fields, Column::CurrencyCode) {
            None => None,
            Some(value) if value.len() == 3 && value.chars().all(|c| c.is_ascii_alphabetic()) => {
                Some(value.to_ascii_uppercase())
            }
            Some(value) => {
                return Err(error(
                    Column::CurrencyCode,
                    value,
                    "is not a currency code (three letters, such as USD)",
                ))
            }
        };
        let last_modified = field(fields, Column::LastModified)
            .map(|value| {
                timestamp(value, rules.timezone)
                    .map_err(|reason| error(Column::LastModified, value, &reason))
            })
            .transpose()?;
        let price_error = match (&currency, rules.shop_currency) {
            (Some(row), Some(shop)) if !row.eq_ignore_ascii_case(shop) => Some(error(
                Column::CurrencyCode,
                row,
                &format!("is not the shop's currency ({shop}): this row's cost and prices are not taken, its stock is"),
            )),
            _ => None,
        };
        Ok(XorosoftRow {
            line,
            store_code,
            location_code: text(Column::LocationCode),
            item_number,
            base_part_number: text(Column::BasePartNumber),
            upc,
            description: text(Column::ItemDescription),
            on_hand,
            allocated,
            available,
            on_order,
            unit_cost,
            standard_price,
            wholesale_price,
            currency,
            last_modified,
            price_error,
        })
    }
}

/// A barcode kept as text: 6 to 14 digits (UPC-E to GTIN-14), leading zeros and all.
fn barcode(value: &str) -> Result<String, &'static str> {
    if value.chars().all(|c| c.is_ascii_digit()) && (6..=14).contains(&value.len()) {
        return Ok(value.to_owned());
    }
    let scientific = value.contains(['E', 'e'])
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'E' | 'e' | '+' | '-'));
    if scientific {
        return Err("is in scientific notation: a spreadsheet turned the barcode into a number and lost its digits; export the column as text");
    }
    Err("is not a barcode (6 to 14 digits)")
}

/// A time as Xorosoft writes it: `MM/DD/YYYY hh:mm:ss AM/PM` (seconds optional) in `zone`,
/// or ISO 8601 (with an offset, or in `zone` without one).
fn timestamp(value: &str, zone: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    const LOCAL: [&str; 6] = [
        "%m/%d/%Y %I:%M:%S %p",
        "%m/%d/%Y %I:%M %p",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ];
    let naive = LOCAL
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .ok_or_else(|| "is not a time (MM/DD/YYYY hh:mm:ss AM/PM, or ISO 8601)".to_owned())?;
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| {
            format!("does not exist in {zone} (the hour skipped when clocks go forward)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barcodes_keep_their_zeros_and_scientific_notation_is_refused() {
        assert_eq!(barcode("012345678905").as_deref(), Ok("012345678905"));
        assert!(barcode("1.23457E+11")
            .unwrap_err()
            .contains("scientific notation"));
        assert!(barcode("1.2E11")
            .unwrap_err()
            .contains("scientific notation"));
        assert!(barcode("12345").unwrap_err().contains("6 to 14 digits"));
        assert!(barcode("ABC123456789")
            .unwrap_err()
            .contains("6 to 14 digits"));
    }

    #[test]
    fn times_read_in_the_zone_or_with_their_offset() {
        let utc = chrono_tz::UTC;
        let new_york: chrono_tz::Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            timestamp("11/05/2026 03:15:00 PM", utc)
                .unwrap()
                .to_rfc3339(),
            "2026-11-05T15:15:00+00:00"
        );
        assert_eq!(
            timestamp("11/05/2026 03:15:00 PM", new_york)
                .unwrap()
                .to_rfc3339(),
            "2026-11-05T20:15:00+00:00"
        );
        assert_eq!(
            timestamp("2026-11-05T15:15:00+01:00", new_york)
                .unwrap()
                .to_rfc3339(),
            "2026-11-05T14:15:00+00:00"
        );
        assert!(timestamp("03/08/2026 02:30:00 AM", new_york)
            .unwrap_err()
            .contains("does not exist"));
        assert!(timestamp("13/45/2026", utc).is_err());
    }
}
