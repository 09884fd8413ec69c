//! Xorosoft's stock and price files, read as a spreadsheet may have left them: UTF-8 with or
//! without a byte-order mark or Windows-1252 (Excel's), CRLF or LF, RFC 4180 quoting, header
//! names in any case and spacing with their common aliases, columns in any order, unknown
//! columns ignored. Rows stream one at a time; each is either a typed [`XorosoftRow`] or a
//! [`RowError`] naming its line, column, value and reason. A file that cannot be an import
//! at all (empty, no rows, no item number column) is a [`Refusal`], before any row is read.

mod columns;
mod dedupe;
mod encoding;
mod reader;
mod row;

pub use columns::Column;
pub use dedupe::SeenItems;
pub use encoding::Encoding;
pub use reader::{Options, Reader, Refusal, ResumePoint};
pub use row::{RowError, XorosoftRow};
