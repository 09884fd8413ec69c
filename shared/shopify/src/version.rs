//! Admin API versions (`YYYY-MM`, quarterly).

use std::fmt;
use std::str::FromStr;

/// An Admin API version such as `2026-07`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    year: u16,
    month: u8,
}

/// Why an API version was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiVersionError {
    /// Not of the form `YYYY-MM` with a quarterly month.
    #[error("`{0}` is not a Shopify API version (expected YYYY-MM with month 01, 04, 07 or 10)")]
    Malformed(String),
    /// Older than the oldest version shopsync supports.
    #[error("API version {given} is older than {minimum}, the oldest shopsync supports (inventory writes need changeFromQuantity)")]
    TooOld {
        /// The version asked for.
        given: ApiVersion,
        /// The oldest supported version.
        minimum: ApiVersion,
    },
}

impl ApiVersion {
    /// The version shopsync is built and tested against.
    pub const PINNED: ApiVersion = ApiVersion {
        year: 2026,
        month: 7,
    };
    /// The oldest version shopsync accepts (the one that made `changeFromQuantity` required).
    pub const MINIMUM: ApiVersion = ApiVersion {
        year: 2026,
        month: 4,
    };
}

impl Default for ApiVersion {
    fn default() -> Self {
        Self::PINNED
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for ApiVersion {
    type Err = ApiVersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || ApiVersionError::Malformed(text.to_owned());
        let (year, month) = text.trim().split_once('-').ok_or_else(malformed)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(malformed());
        }
        let year: u16 = year.parse().map_err(|_| malformed())?;
        let month: u8 = month.parse().map_err(|_| malformed())?;
        if ![1, 4, 7, 10].contains(&month) {
            return Err(malformed());
        }
        let version = ApiVersion { year, month };
        if version < Self::MINIMUM {
            return Err(ApiVersionError::TooOld {
                given: version,
                minimum: Self::MINIMUM,
            });
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_supported_versions_and_refuses_old_or_malformed_ones() {
        assert_eq!("2026-07".parse::<ApiVersion>(), Ok(ApiVersion::PINNED));
        assert_eq!(
            "2026-10".parse::<ApiVersion>().map(|v| v.to_string()),
            Ok("2026-10".to_owned())
        );
        assert!(matches!(
            "2026-01".parse::<ApiVersion>(),
            Err(ApiVersionError::TooOld { .. })
        ));
        for bad in ["2026-05", "26-07", "2026/07", "unstable", ""] {
            assert!(
                matches!(
                    bad.parse::<ApiVersion>(),
                    Err(ApiVersionError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }
}
