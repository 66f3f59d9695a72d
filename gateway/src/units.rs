//! Durations and sizes as the config file spells them: humantime durations (`"60s"`, `"1h"`)
//! and nginx-style sizes (`1024`, `"8k"`, `"8M"`, `"8G"`), with their serde helpers.
//!
//! A leaf module: the config sections (`config`) and the route overrides (`routes`) both
//! parse these, and neither has to import the other for it.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses an nginx-style size: `1024`, `8k`, `8M`, `8G` (case-insensitive, powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, mult) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1024),
        (i, 'm' | 'M') => (&text[..i], 1024 * 1024),
        (i, 'g' | 'G') => (&text[..i], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// `#[serde(with = "…")]` for a humantime [`Duration`].
pub(crate) mod duration {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(default, with = "…")]` for an optional humantime [`Duration`].
pub(crate) mod opt_duration {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

/// `#[serde(default, with = "…")]` for an optional nginx-style size (a number or a string).
pub(crate) mod opt_size {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(u64),
        Text(String),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Some(n)),
            Raw::Text(t) => super::parse_size(&t)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("`{t}` is not a size like 8M"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_nginx() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("8k"), Some(8192));
        assert_eq!(parse_size("8M"), Some(8 << 20));
        assert_eq!(parse_size("8g"), Some(8 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("M"), None);
    }
}
