//! The text encoding of a file: UTF-8 (with or without a byte-order mark), or Windows-1252,
//! what Excel writes on Windows when it saves "CSV" rather than "CSV UTF-8".

use std::borrow::Cow;

/// How a file's bytes are read as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8.
    Utf8,
    /// Windows-1252: the file's start is not valid UTF-8.
    Windows1252,
}

/// The characters of Windows-1252's bytes 0x80..=0x9F (the rest of its upper half is
/// Latin-1's); the five bytes it leaves undefined read as U+FFFD.
const HIGH: [char; 32] = [
    '€', '\u{fffd}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{fffd}', 'Ž',
    '\u{fffd}', '\u{fffd}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{fffd}',
    'ž', 'Ÿ',
];

/// `bytes` read as Windows-1252.
pub fn windows_1252(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9f => HIGH[usize::from(b - 0x80)],
            _ => char::from(b),
        })
        .collect()
}

impl Encoding {
    /// Its name (`utf-8`, `windows-1252`).
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1252 => "windows-1252",
        }
    }

    /// The encoding of a name [`Encoding::name`] gives.
    pub fn of_name(name: &str) -> Option<Encoding> {
        match name {
            "utf-8" => Some(Encoding::Utf8),
            "windows-1252" => Some(Encoding::Windows1252),
            _ => None,
        }
    }

    /// The encoding of a file that starts with `start`: UTF-8 unless `start` holds a byte
    /// sequence UTF-8 cannot (a sequence cut by the end of `start` does not count).
    pub fn sniff(start: &[u8]) -> Encoding {
        match std::str::from_utf8(start) {
            Ok(_) => Encoding::Utf8,
            // Cut at the end of the sample: only the sequence's start was seen.
            Err(e) if e.error_len().is_none() => Encoding::Utf8,
            Err(_) => Encoding::Windows1252,
        }
    }

    /// A field's text, and whether it had to be read as Windows-1252 although the file was
    /// taken for UTF-8.
    pub fn decode<'a>(self, bytes: &'a [u8]) -> (Cow<'a, str>, bool) {
        match self {
            Encoding::Utf8 => match std::str::from_utf8(bytes) {
                Ok(text) => (Cow::Borrowed(text), false),
                Err(_) => (Cow::Owned(windows_1252(bytes)), true),
            },
            Encoding::Windows1252 => match std::str::from_utf8(bytes) {
                // ASCII reads the same either way; spare the copy.
                Ok(text) if text.is_ascii() => (Cow::Borrowed(text), false),
                _ => (Cow::Owned(windows_1252(bytes)), false),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_bytes_read_as_windows_1252_and_utf8_as_itself() {
        assert_eq!(windows_1252(b"Caf\xe9 \x80 \x93dash\x94"), "Café € “dash”");
        assert_eq!(Encoding::sniff("Café".as_bytes()), Encoding::Utf8);
        assert_eq!(Encoding::sniff(b"Caf\xe9,1"), Encoding::Windows1252);
        // A multi-byte character cut by the end of the sample is still UTF-8.
        let cut = &"é".as_bytes()[..1];
        assert_eq!(Encoding::sniff(cut), Encoding::Utf8);
        assert_eq!(Encoding::Utf8.decode(b"T\xe9e").0, "Tée");
        assert!(Encoding::Utf8.decode(b"T\xe9e").1, "a fallback is reported");
        assert_eq!(
            Encoding::Windows1252.decode(b"plain"),
            (Cow::Borrowed("plain"), false)
        );
    }
}
