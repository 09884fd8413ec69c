//! The streaming reader: the header read and judged first, then one row at a time.

use crate::columns::Column;
use crate::dedupe::SeenItems;
use crate::encoding::Encoding;
use crate::row::{Fields, RowError, RowRules, XorosoftRow};
use std::io::{BufRead, BufReader, Read};

/// How much of a file's start decides its encoding.
const SNIFF: usize = 64 * 1024;

/// The file as the CSV reader takes it in, watched on the way: where its line breaks are (so
/// a row's line is known exactly, whatever its line ends and quoted line breaks) and where its
/// quote characters are (the last row holding an odd number of them: a quoted field was cut
/// off). Only what the reader has taken in and not yet placed is kept.
struct Watched<R> {
    inner: R,
    /// Bytes read so far.
    read: u64,
    /// Offsets of line breaks read but not yet counted into `lines_before`.
    breaks: std::collections::VecDeque<u64>,
    /// Line breaks before the last row asked about.
    lines_before: u64,
    /// Offsets of quote characters from the last row asked about on.
    quotes: std::collections::VecDeque<u64>,
    /// Line breaks before this offset are already counted in `lines_before` (a resumed
    /// reader's input starts at the line feed its first row is placed at).
    counted_before: u64,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (at, byte) in buf[..n].iter().enumerate() {
            match byte {
                b'\n' if self.read + at as u64 >= self.counted_before => {
                    self.breaks.push_back(self.read + at as u64)
                }
                b'"' => self.quotes.push_back(self.read + at as u64),
                _ => {}
            }
        }
        self.read += n as u64;
        Ok(n)
    }
}

impl<R> Watched<R> {
    /// The line (1 for the first) a row starting at byte `offset` is on; offsets are asked
    /// about in increasing order.
    fn line_at(&mut self, offset: u64) -> u64 {
        // A CRLF file's row is placed at the line feed that ends the line before it.
        while self.breaks.front().is_some_and(|at| *at <= offset) {
            self.breaks.pop_front();
            self.lines_before += 1;
        }
        while self.quotes.front().is_some_and(|at| *at < offset) {
            self.quotes.pop_front();
        }
        self.lines_before + 1
    }
}

/// Why a file is not imported at all (nothing of it is taken).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Zero bytes.
    #[error("the file is empty")]
    Empty,
    /// No header line.
    #[error("the file has no header line")]
    NoHeader,
    /// A header and no row.
    #[error("the file has only a header: no rows")]
    NoRows,
    /// No column names the item.
    #[error("no ItemNumber column (nor SKU, Item Number or another of its names) among the headers: {}", headers.join(", "))]
    NoItemNumber {
        /// The headers the file has.
        headers: Vec<String>,
    },
    /// Not text at all: a workbook, a PDF, UTF-16 or other binary content.
    #[error("the file is not a CSV text file: it looks like {0}; save it from the spreadsheet as CSV (comma delimited, UTF-8)")]
    NotText(&'static str),
    /// Its fields are separated by another character than a comma.
    #[error("the file's columns are separated by {0}, not commas: save it from the spreadsheet as CSV (comma delimited)")]
    NotCommaSeparated(&'static str),
    /// The file could not be read.
    #[error("the file could not be read: {0}")]
    Unreadable(String),
}

/// What a file's first bytes say it is, when they say it is not text.
fn binary_kind(start: &[u8]) -> Option<&'static str> {
    const KINDS: [(&[u8], &str); 5] = [
        (
            b"PK\x03\x04",
            "an Excel workbook (.xlsx) or another zip archive",
        ),
        (b"\xD0\xCF\x11\xE0", "an old Excel workbook (.xls)"),
        (b"%PDF", "a PDF document"),
        (b"\xFF\xFE", "UTF-16 text (Excel's \"Unicode Text\")"),
        (b"\xFE\xFF", "UTF-16 text"),
    ];
    if let Some((_, kind)) = KINDS.iter().find(|(magic, _)| start.starts_with(magic)) {
        return Some(kind);
    }
    // No header of any of the encodings read here holds a NUL byte (a stray one in a later
    // row is that row's error, not the file's).
    let header = start.split(|&byte| byte == b'\n').next().unwrap_or(start);
    header.contains(&0).then_some("binary data")
}

/// The separator a one-column header was written with, when it is not a comma.
fn other_separator(headers: &[String]) -> Option<&'static str> {
    const SEPARATORS: [(char, &str); 3] = [(';', "semicolons"), ('\t', "tabs"), ('|', "bars")];
    let [only] = headers else { return None };
    SEPARATORS
        .iter()
        .find(|(separator, _)| only.contains(*separator))
        .map(|(_, name)| *name)
}

/// How rows are read.
#[derive(Debug, Clone)]
pub struct Options {
    /// The shop's currency (rows priced in another have their prices refused).
    pub shop_currency: Option<String>,
    /// The zone of `MM/DD/YYYY hh:mm:ss` times (`SHOPSYNC_XOROSOFT_TZ`).
    pub timezone: chrono_tz::Tz,
    /// The StoreCode of a file that has no such column.
    pub default_store_code: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            shop_currency: None,
            timezone: chrono_tz::UTC,
            default_store_code: "DEFAULT".into(),
        }
    }
}

/// Where a reader stopped, enough to go on from there with the same file in another process
/// ([`Reader::resume`]): the next row's byte offset and line, and what the header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// Byte offset of the next row.
    pub offset: u64,
    /// Its line (1 for the header).
    pub line: u64,
    /// The file's headers.
    pub headers: Vec<String>,
    /// The file's encoding.
    pub encoding: Encoding,
}

/// Reads a file's rows one at a time ([`Iterator`]): each a row or a row error.
pub struct Reader<R: Read> {
    /// Where the input started in the file (a resumed reader's input starts mid-file).
    base: u64,
    csv: csv::Reader<BufReader<Watched<R>>>,
    record: csv::ByteRecord,
    /// The column of each position of the header (`None`: ignored).
    columns: Vec<Option<Column>>,
    headers: Vec<String>,
    encoding: Encoding,
    options: Options,
    seen: SeenItems,
    repeated_first_lines: Vec<u64>,
    fallbacks: u64,
    /// The next row, read ahead: to tell a file with rows from one with only a header, and
    /// the last row (which a cut file leaves incomplete) from the others.
    ahead: Option<csv::ByteRecord>,
}

impl<R: Read> Reader<R> {
    /// Reads and judges the header: a file that cannot be an import is refused here.
    pub fn new(input: R, options: Options) -> Result<Self, Refusal> {
        let watched = Watched {
            inner: input,
            read: 0,
            breaks: Default::default(),
            lines_before: 0,
            quotes: Default::default(),
            counted_before: 0,
        };
        let mut buffered = BufReader::with_capacity(SNIFF, watched);
        let start = buffered
            .fill_buf()
            .map_err(|e| Refusal::Unreadable(e.to_string()))?;
        if start.is_empty() {
            return Err(Refusal::Empty);
        }
        if let Some(kind) = binary_kind(start) {
            return Err(Refusal::NotText(kind));
        }
        let encoding = Encoding::sniff(start);
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            // A row with another number of fields than the header is a row error, not a
            // reader failure (a last line cut short, a stray comma).
            .flexible(true)
            .from_reader(buffered);
        let header = csv
            .byte_headers()
            .map_err(|e| Refusal::Unreadable(e.to_string()))?
            .clone();
        let headers: Vec<String> = header
            .iter()
            .map(|h| encoding.decode(h).0.trim().to_owned())
            .collect();
        if headers
            .iter()
            .all(|h| h.trim_start_matches('\u{feff}').is_empty())
        {
            return Err(Refusal::NoHeader);
        }
        let mut columns: Vec<Option<Column>> = Vec::with_capacity(headers.len());
        for name in &headers {
            let column = Column::of_header(name);
            // A column named twice: the first is read.
            columns.push(column.filter(|c| !columns.contains(&Some(*c))));
        }
        if !columns.contains(&Some(Column::ItemNumber)) {
            if let Some(separator) = other_separator(&headers) {
                return Err(Refusal::NotCommaSeparated(separator));
            }
            return Err(Refusal::NoItemNumber { headers });
        }
        let mut first = csv::ByteRecord::new();
        let has_rows = csv
            .read_byte_record(&mut first)
            .map_err(|e| Refusal::Unreadable(e.to_string()))?;
        if !has_rows {
            return Err(Refusal::NoRows);
        }
        Ok(Self {
            base: 0,
            csv,
            record: csv::ByteRecord::new(),
            columns,
            headers,
            encoding,
            options,
            seen: SeenItems::new(),
            repeated_first_lines: Vec::new(),
            fallbacks: 0,
            ahead: Some(first),
        })
    }

    /// Goes on reading a file where [`Reader::resume_point`] said a reader stopped: `input`
    /// starts at `point.offset`; `seen` holds the items the rows before it named (so a later
    /// repeat is still found).
    pub fn resume(input: R, point: &ResumePoint, options: Options, seen: SeenItems) -> Self {
        let watched = Watched {
            inner: input,
            read: point.offset,
            breaks: Default::default(),
            lines_before: point.line.saturating_sub(1),
            quotes: Default::default(),
            counted_before: point.offset + 1,
        };
        let buffered = BufReader::with_capacity(SNIFF, watched);
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(buffered);
        let mut columns: Vec<Option<Column>> = Vec::with_capacity(point.headers.len());
        for name in &point.headers {
            let column = Column::of_header(name);
            columns.push(column.filter(|c| !columns.contains(&Some(*c))));
        }
        let mut first = csv::ByteRecord::new();
        let ahead = match csv.read_byte_record(&mut first) {
            Ok(true) => Some(first),
            _ => None,
        };
        Self {
            base: point.offset,
            csv,
            record: csv::ByteRecord::new(),
            columns,
            headers: point.headers.clone(),
            encoding: point.encoding,
            options,
            seen,
            repeated_first_lines: Vec::new(),
            fallbacks: 0,
            ahead,
        }
    }

    /// Where the next row starts (`None`: every row was read).
    pub fn resume_point(&mut self) -> Option<ResumePoint> {
        let offset = self.base + self.ahead.as_ref()?.position()?.byte();
        let line = self.csv.get_mut().get_mut().line_at(offset);
        Some(ResumePoint {
            offset,
            line,
            headers: self.headers.clone(),
            encoding: self.encoding,
        })
    }

    /// The items named so far (to hand to a reader that resumes after this one).
    pub fn into_seen(self) -> SeenItems {
        self.seen
    }

    /// The file's encoding, as its start showed it.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The headers, as the file has them.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The fields of a UTF-8 file that were not valid UTF-8 and were read as Windows-1252.
    pub fn fields_read_as_windows_1252(&self) -> u64 {
        self.fallbacks
    }

    /// The lines of rows whose item a later row named again (both rows are errors: the later
    /// one was answered as one, the first must be withdrawn by whoever took it).
    pub fn repeated_first_lines(&self) -> &[u64] {
        &self.repeated_first_lines
    }

    /// How many distinct items the file has named so far.
    pub fn items_seen(&self) -> usize {
        self.seen.len()
    }

    /// The byte offset where the next row starts (for a checkpoint).
    pub fn byte_offset(&self) -> u64 {
        self.base + self.csv.position().byte()
    }

    /// A row as its line read: its fields decoded and joined by commas, quoted where a field
    /// holds a comma, a quote or a line break (a row error shows the row it refuses).
    fn shown(&self, record: &csv::ByteRecord) -> String {
        let mut line = String::new();
        for (position, bytes) in record.iter().enumerate() {
            if position > 0 {
                line.push(',');
            }
            let (text, _) = self.encoding.decode(bytes);
            if text.contains([',', '"', '\r', '\n']) {
                line.push('"');
                line.push_str(&text.replace('"', "\"\""));
                line.push('"');
            } else {
                line.push_str(&text);
            }
        }
        line
    }

    fn row(&mut self, record: &csv::ByteRecord, last: bool) -> Result<XorosoftRow, RowError> {
        let offset = self.base + record.position().map(|p| p.byte()).unwrap_or(0);
        let line = self.csv.get_mut().get_mut().line_at(offset);
        let watched = self.csv.get_ref().get_ref();
        // The last row: every quote left is its own.
        if last && watched.quotes.len() % 2 == 1 {
            return Err(RowError {
                line,
                column: "row".into(),
                value: self.shown(record),
                reason: "ends inside a quoted field: the file was cut short".into(),
            });
        }
        if record.len() != self.columns.len() {
            return Err(RowError {
                line,
                column: "row".into(),
                value: self.shown(record),
                reason: format!(
                    "has {} fields where the header has {} (a line cut short, or a comma outside quotes)",
                    record.len(),
                    self.columns.len()
                ),
            });
        }
        let mut decoded: Vec<std::borrow::Cow<'_, str>> = Vec::with_capacity(record.len());
        for bytes in record.iter() {
            let (text, fell_back) = self.encoding.decode(bytes);
            self.fallbacks += u64::from(fell_back);
            decoded.push(text);
        }
        let mut fields: Fields<'_> = [None; Column::ALL.len()];
        for (position, column) in self.columns.iter().enumerate() {
            if let Some(column) = column {
                fields[*column as usize] = decoded.get(position).map(|c| c.as_ref());
            }
        }
        let rules = RowRules {
            shop_currency: self.options.shop_currency.as_deref(),
            timezone: self.options.timezone,
            default_store_code: &self.options.default_store_code,
        };
        let row = XorosoftRow::parse(line, &fields, &rules)?;
        if let Some(first) = self.seen.observe(&row.store_code, &row.item_number, line) {
            if !self.repeated_first_lines.contains(&first) {
                self.repeated_first_lines.push(first);
            }
            return Err(RowError {
                line,
                column: Column::ItemNumber.name().into(),
                value: row.item_number,
                reason: format!(
                    "is named again for store {} (first on line {first}): both rows are refused",
                    row.store_code
                ),
            });
        }
        Ok(row)
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<XorosoftRow, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let current = self.ahead.take()?;
        let mut next = std::mem::take(&mut self.record);
        let last = match self.csv.read_byte_record(&mut next) {
            Ok(true) => {
                self.ahead = Some(next);
                false
            }
            Ok(false) => {
                self.record = next;
                true
            }
            Err(e) => {
                self.record = next;
                let line = current
                    .position()
                    .map(|p| self.base + p.byte())
                    .map(|offset| self.csv.get_mut().get_mut().line_at(offset))
                    .unwrap_or(0);
                return Some(Err(RowError {
                    line,
                    column: "row".into(),
                    value: String::new(),
                    reason: format!("or the one after it cannot be read: {e}"),
                }));
            }
        };
        Some(self.row(&current, last))
    }
}
