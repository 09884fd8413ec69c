//! Xorosoft files as spreadsheets and exports leave them: the sample in the project's
//! fixtures, refusals, row errors, encodings, and any file the `csv` crate writes from valid
//! rows read back to the same rows.

use proptest::prelude::*;
use shopsync_xorosoft::{Encoding, Options, Reader, Refusal, RowError, XorosoftRow};

const SAMPLE: &[u8] = include_bytes!("../../../tests/fixtures/xorosoft/stock-sample.csv");

fn read(bytes: &[u8]) -> Result<Vec<Result<XorosoftRow, RowError>>, Refusal> {
    Ok(Reader::new(bytes, Options::default())?.collect())
}

fn valid(bytes: &[u8]) -> Vec<XorosoftRow> {
    read(bytes)
        .expect("not refused")
        .into_iter()
        .map(|row| row.expect("valid"))
        .collect()
}

#[test]
fn the_sample_reads_as_excel_wrote_it() {
    let rows = valid(SAMPLE);
    assert_eq!(rows.len(), 4);
    let first = &rows[0];
    assert_eq!(first.line, 2);
    assert_eq!(
        (first.store_code.as_str(), first.item_number.as_str()),
        ("MAIN", "TEE-RED-S")
    );
    assert_eq!(first.location_code.as_deref(), Some("A-01"));
    assert_eq!(
        first.upc.as_deref(),
        Some("012345678905"),
        "leading zero kept"
    );
    assert_eq!(first.description.as_deref(), Some("Tee, red, S"));
    assert_eq!(
        (
            first.on_hand,
            first.allocated,
            first.available,
            first.on_order
        ),
        (Some(14), Some(2), Some(12), Some(40))
    );
    assert_eq!(
        first.unit_cost.map(|m| m.to_string()).as_deref(),
        Some("4.10")
    );
    assert_eq!(
        first.standard_price.map(|m| m.to_string()).as_deref(),
        Some("19.99")
    );
    assert_eq!(first.currency.as_deref(), Some("USD"));
    assert_eq!(
        first.last_modified.map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-11-05T15:15:00+00:00")
    );
    assert_eq!(rows[2].available, Some(-1), "allocated past its stock");
    assert_eq!(
        (rows[3].store_code.as_str(), rows[3].item_number.as_str()),
        ("OUTLET", "TEE-RED-S"),
        "the same item in another store is another row"
    );
    let reader = Reader::new(SAMPLE, Options::default()).unwrap();
    assert_eq!(reader.encoding(), Encoding::Utf8);
}

#[test]
fn files_that_cannot_be_an_import_are_refused_whole() {
    assert_eq!(read(b"").unwrap_err(), Refusal::Empty);
    assert_eq!(read(b"\r\n").unwrap_err(), Refusal::NoHeader);
    assert_eq!(
        read(b"StoreCode,ItemNumber,AvailableQty\r\n").unwrap_err(),
        Refusal::NoRows
    );
    let refused = read(b"Store,Description,Qty\nMAIN,Tee,4\n").unwrap_err();
    assert!(matches!(refused, Refusal::NoItemNumber { .. }));
    assert!(
        refused.to_string().contains("Store, Description, Qty"),
        "{refused}"
    );
}

#[test]
fn a_workbook_or_a_file_separated_otherwise_is_refused_saying_what_it_is() {
    let refusal = |bytes: &[u8]| read(bytes).unwrap_err().to_string();
    let workbook = refusal(b"PK\x03\x04\x14\x00\x06\x00xl/workbook.xml");
    assert!(workbook.contains("Excel workbook (.xlsx)"), "{workbook}");
    assert!(refusal(b"\xD0\xCF\x11\xE0\xA1\xB1").contains("old Excel workbook (.xls)"));
    let utf16: Vec<u8> = "\u{feff}ItemNumber,AvailableQty\r\nA-1,4\r\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert!(refusal(&utf16).contains("UTF-16"), "{}", refusal(&utf16));
    assert!(refusal(b"Item\x00Number,Qty\nA,1\n").contains("binary"));
    let stray = read(b"ItemNumber,AvailableQty\nA\x00B,1\nC,2\n").unwrap();
    assert_eq!(stray.len(), 2, "a NUL in a row is that row's business");
    let semicolons = refusal(b"StoreCode;ItemNumber;AvailableQty\nMAIN;A-1;4\n");
    assert!(
        semicolons.contains("separated by semicolons"),
        "{semicolons}"
    );
    assert!(refusal(b"ItemNumber\tAvailableQty\nA-1\t4\n").contains("separated by tabs"));
    // A comma file whose item column is missing still says so.
    assert!(matches!(
        read(b"Store;Code,Qty\nMAIN,4\n").unwrap_err(),
        Refusal::NoItemNumber { .. }
    ));
}

#[test]
fn headers_in_any_case_order_and_alias_with_a_bom_and_unknown_columns() {
    let file =
        "\u{feff}Qty Available,sku,colour,STORE CODE,Item UPC\r\nLF,07,red,MAIN,000123456789\r\n";
    let rows = read(file.as_bytes()).unwrap();
    // `LF` is not a quantity: a row error naming the column by its Xorosoft name.
    let error = rows[0].clone().unwrap_err();
    assert_eq!(
        (error.line, error.column.as_str(), error.value.as_str()),
        (2, "AvailableQty", "LF")
    );
    let file =
        "\u{feff}Qty Available,sku,colour,STORE CODE,Item UPC\r\n5,07,red,MAIN,000123456789\r\n";
    let row = &valid(file.as_bytes())[0];
    assert_eq!(
        (
            row.item_number.as_str(),
            row.store_code.as_str(),
            row.available,
            row.upc.as_deref()
        ),
        ("07", "MAIN", Some(5), Some("000123456789"))
    );
}

#[test]
fn every_bad_value_is_a_row_error_naming_line_column_value_and_reason() {
    let file = "\
StoreCode,ItemNumber,ItemUPC,OnHandQty,UnitCost,CurrencyCode,LastModified
MAIN,A-1,1.23457E+11,3,1.00,USD,11/05/2026 03:15:00 PM
MAIN,A-2,012345678905,3.5,1.00,USD,
MAIN,A-3,,3,-1.00,USD,
MAIN,A-4,,3,1.00,US Dollars,
MAIN,A-5,,3,1.00,USD,31/12/2026
,A-6,,3,1.00,USD,
MAIN,,,3,1.00,USD,
MAIN,A-8,,3,1.00,USD,2026-11-05T10:00:00Z
";
    let rows = read(file.as_bytes()).unwrap();
    let expect = [
        (2, "ItemUPC", "1.23457E+11", "scientific notation"),
        (3, "OnHandQty", "3.5", "not a whole number"),
        (4, "UnitCost", "-1.00", "negative"),
        (5, "CurrencyCode", "US Dollars", "not a currency code"),
        (6, "LastModified", "31/12/2026", "not a time"),
        (7, "StoreCode", "", "empty"),
        (8, "ItemNumber", "", "empty"),
    ];
    for (row, (line, column, value, reason)) in rows.iter().zip(expect) {
        let error = row.clone().expect_err("an error");
        assert_eq!(
            (error.line, error.column.as_str(), error.value.as_str()),
            (line, column, value)
        );
        assert!(error.reason.contains(reason), "{error}");
    }
    assert!(rows[7].is_ok(), "ISO 8601 is taken");
}

#[test]
fn a_row_with_several_bad_values_names_the_first_in_the_layouts_order() {
    let file = "\
StoreCode,ItemNumber,OnHandQty,UnitCost,CurrencyCode,LastModified
MAIN,A-1,many,-2.00,US Dollars,31/12/2026
MAIN,A-2,3,-2.00,US Dollars,31/12/2026
MAIN,A-3,3,2.00,US Dollars,31/12/2026
";
    let rows = read(file.as_bytes()).unwrap();
    let named: Vec<&str> = rows
        .iter()
        .map(|row| row.as_ref().map_or_else(|e| e.column.as_str(), |_| "none"))
        .collect();
    assert_eq!(named, ["OnHandQty", "UnitCost", "CurrencyCode"]);
}

#[test]
fn a_last_line_cut_mid_row_is_an_error_not_a_silent_drop() {
    let file = "StoreCode,ItemNumber,AvailableQty,ItemDescription\r\nMAIN,A-1,4,\"Tee\"\r\nMAIN,A-2,7,\"Tee, r";
    let rows = read(file.as_bytes()).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].is_ok());
    let cut = rows[1].clone().unwrap_err();
    assert_eq!(cut.line, 3);
    assert_eq!(
        cut.value, "MAIN,A-2,7,\"Tee, r\"",
        "the row is shown as its line reads"
    );
    // A bare inch mark in an earlier row (not RFC 4180, read as written) is no cut.
    let file = "StoreCode,ItemNumber,AvailableQty,ItemDescription\nMAIN,A-1,4,TV 55\" wide\nMAIN,A-2,5,Tee\n";
    let rows = read(file.as_bytes()).unwrap();
    assert_eq!(
        rows[0].clone().unwrap().description.as_deref(),
        Some("TV 55\" wide")
    );
    assert!(rows[1].is_ok(), "{:?}", rows[1]);
    let file = "StoreCode,ItemNumber,AvailableQty,ItemDescription\nMAIN,A-1,4,Tee\nMAIN,A-2";
    let cut = read(file.as_bytes()).unwrap()[1].clone().unwrap_err();
    assert_eq!((cut.line, cut.column.as_str()), (3, "row"));
    assert_eq!(cut.value, "MAIN,A-2", "the fields keep their commas");
    assert!(
        cut.reason.contains("has 2 fields where the header has 4"),
        "{cut}"
    );
}

#[test]
fn the_same_item_twice_in_one_store_makes_both_rows_errors() {
    let file = "StoreCode,ItemNumber,AvailableQty\nMAIN,A-1,4\nOUTLET,A-1,2\nMAIN,A-2,1\nMAIN,A-1,9\nMAIN,A-1,8\n";
    let mut reader = Reader::new(file.as_bytes(), Options::default()).unwrap();
    let rows: Vec<_> = reader.by_ref().collect();
    assert!(rows[0].is_ok() && rows[1].is_ok() && rows[2].is_ok());
    for at in [3, 4] {
        let error = rows[at].clone().unwrap_err();
        assert!(error.reason.contains("first on line 2"), "{error}");
    }
    assert_eq!(
        reader.repeated_first_lines(),
        &[2],
        "the first row is to be withdrawn too"
    );
    assert_eq!(reader.items_seen(), 3);
}

#[test]
fn a_file_saved_by_excel_as_windows_1252_reads_as_such() {
    let file = b"StoreCode,ItemNumber,ItemDescription,AvailableQty\r\nMAIN,CAF-1,Caf\xe9 \x93noir\x94,4\r\n";
    let mut reader = Reader::new(&file[..], Options::default()).unwrap();
    assert_eq!(reader.encoding(), Encoding::Windows1252);
    let row = reader.next().unwrap().unwrap();
    assert_eq!(row.description.as_deref(), Some("Café “noir”"));
}

#[test]
fn prices_in_another_currency_are_refused_and_the_stock_still_counts() {
    let options = Options {
        shop_currency: Some("USD".into()),
        ..Options::default()
    };
    let file = "StoreCode,ItemNumber,AvailableQty,StandardUnitPrice,CurrencyCode\nMAIN,A-1,4,10.00,CAD\nMAIN,A-2,5,11.00,usd\n";
    let rows: Vec<_> = Reader::new(file.as_bytes(), options)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let refused = rows[0].price_error.as_ref().expect("a price error");
    assert!(refused.reason.contains("USD"), "{refused}");
    assert_eq!(rows[0].available, Some(4));
    assert!(
        rows[1].price_error.is_none(),
        "the shop's currency in any case"
    );
}

/// A valid row as a test writes it: the fields of the file's columns.
#[derive(Debug, Clone)]
struct Written {
    store: String,
    item: String,
    upc: Option<String>,
    description: String,
    on_hand: i64,
    available: i64,
    cost_cents: u32,
    price_cents: u32,
    month: u32,
    day: u32,
    hour: u32,
}

fn written() -> impl Strategy<Value = Written> {
    (
        "[A-Z]{1,6}",
        "[0-9A-Z][0-9A-Z-]{0,12}",
        proptest::option::of("[0-9]{12}"),
        // Commas, quotes, line breaks and accents: what quoting has to carry.
        "[ a-zA-Z0-9,\"'é\n]{0,24}",
        -1_000i64..100_000,
        -1_000i64..100_000,
        0u32..1_000_000,
        0u32..1_000_000,
        (1u32..=12, 1u32..=28, 0u32..24),
    )
        .prop_map(
            |(
                store,
                item,
                upc,
                description,
                on_hand,
                available,
                cost_cents,
                price_cents,
                (month, day, hour),
            )| Written {
                store,
                item,
                upc,
                description,
                on_hand,
                available,
                cost_cents,
                price_cents,
                month,
                day,
                hour,
            },
        )
}

proptest! {
    #[test]
    fn any_file_the_csv_writer_makes_from_valid_rows_reads_back_the_same(
        rows in proptest::collection::vec(written(), 1..30),
        crlf in any::<bool>(),
    ) {
        // One row per store and item, as a valid file has.
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<Written> = rows.into_iter().filter(|r| seen.insert((r.store.clone(), r.item.clone()))).collect();
        let mut writer = csv::WriterBuilder::new()
            .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
            .from_writer(Vec::new());
        writer.write_record(["StoreCode", "ItemNumber", "ItemUPC", "ItemDescription", "OnHandQty", "AvailableQty", "UnitCost", "StandardUnitPrice", "LastModified"]).unwrap();
        for r in &rows {
            let (h12, pm) = match r.hour { 0 => (12, "AM"), 1..=11 => (r.hour, "AM"), 12 => (12, "PM"), h => (h - 12, "PM") };
            writer.write_record([
                r.store.clone(),
                r.item.clone(),
                r.upc.clone().unwrap_or_default(),
                r.description.clone(),
                r.on_hand.to_string(),
                r.available.to_string(),
                format!("{}.{:02}", r.cost_cents / 100, r.cost_cents % 100),
                format!("{}.{:02}", r.price_cents / 100, r.price_cents % 100),
                format!("{:02}/{:02}/2026 {:02}:07:09 {pm}", r.month, r.day, h12),
            ]).unwrap();
        }
        let bytes = writer.into_inner().unwrap();
        let read = valid(&bytes);
        prop_assert_eq!(read.len(), rows.len());
        // Each row's line: after the header and the lines of the rows before it (a quoted
        // description carries its line breaks).
        let mut line = 2;
        for (got, want) in read.iter().zip(&rows) {
            prop_assert_eq!(got.line, line);
            line += 1 + want.description.matches('\n').count() as u64;
            prop_assert_eq!(&got.store_code, &want.store);
            prop_assert_eq!(&got.item_number, &want.item);
            prop_assert_eq!(&got.upc, &want.upc);
            let description = want.description.trim();
            prop_assert_eq!(got.description.as_deref(), (!description.is_empty()).then_some(description));
            prop_assert_eq!((got.on_hand, got.available), (Some(want.on_hand), Some(want.available)));
            prop_assert_eq!(got.unit_cost.map(|m| m.amount()), Some(rust_decimal::Decimal::new(i64::from(want.cost_cents), 2)));
            prop_assert_eq!(got.standard_price.map(|m| m.amount()), Some(rust_decimal::Decimal::new(i64::from(want.price_cents), 2)));
            let at = got.last_modified.expect("a time");
            prop_assert_eq!(at.format("%m/%d %H:%M:%S").to_string(), format!("{:02}/{:02} {:02}:07:09", want.month, want.day, want.hour));
        }
    }
}

/// A file read in pieces, each piece by a reader resumed where the one before stopped (as
/// an import's steps read it), gives the rows and errors one reader gives, at every split.
#[test]
fn a_reader_resumed_anywhere_reads_what_one_reader_reads() {
    let file = "ItemNumber,StoreCode,AvailableQty,ItemUPC\r\n\
        A-1,MAIN,5,\"012345678905\"\r\n\
        A-2,MAIN,x,012345678912\r\n\
        \"A-3\nwrapped\",MAIN,7,\r\n\
        A-1,MAIN,9,\r\n\
        A-4,WEST,1\r\n\
        A-5,WEST,2,\r\n";
    for file in [file.to_owned(), file.replace("\r\n", "\n")] {
        read_in_pieces(&file);
    }
}

fn read_in_pieces(file: &str) {
    let whole: Vec<_> = read(file.as_bytes()).expect("not refused");
    assert_eq!(whole.len(), 6);
    assert_eq!(whole[5].as_ref().map(|row| row.line), Ok(8));
    for split in 1..whole.len() {
        let mut reader = Reader::new(file.as_bytes(), Options::default()).expect("not refused");
        let mut pieces: Vec<_> = reader.by_ref().take(split).collect();
        let point = reader.resume_point().expect("rows remain");
        let repeated = reader.repeated_first_lines().to_vec();
        let seen = reader.into_seen();
        let rest = &file.as_bytes()[point.offset as usize..];
        let mut resumed = Reader::resume(rest, &point, Options::default(), seen);
        pieces.extend(resumed.by_ref());
        assert_eq!(pieces, whole, "split after {split} rows");
        let mut all_repeated = repeated;
        all_repeated.extend(resumed.repeated_first_lines());
        assert_eq!(all_repeated, vec![2], "split after {split} rows");
        assert!(resumed.resume_point().is_none());
    }
}
