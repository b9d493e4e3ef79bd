//! Sizes written the way PHP writes them: `512M`, `1G`, `128K`, plain bytes,
//! and `-1` for "no explicit limit".

use crate::error::{Error, Result};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * 1024 * 1024;

/// A parsed size: a number of bytes, or `-1`, which clears an explicit limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    Unlimited,
}

/// Parses `"512M"`, `"1g"`, `"128K"`, `"1048576"` or `"-1"`.
///
/// Suffixes are case-insensitive and binary (K = 1024), as in PHP's `memory_limit`.
/// Surrounding whitespace is ignored; anything else is an error that quotes the text.
pub fn parse_size(text: &str) -> Result<Size> {
    let t = text.trim();
    let bad = |why: &str| Error::invalid_argument(format!("invalid size '{text}': {why}"));
    if t == "-1" {
        return Ok(Size::Unlimited);
    }
    if t.is_empty() {
        return Err(bad("empty; expected bytes or a number with K, M or G, like '512M'"));
    }
    let (digits, mult) = match t.as_bytes()[t.len() - 1].to_ascii_uppercase() {
        b'K' => (&t[..t.len() - 1], KIB),
        b'M' => (&t[..t.len() - 1], MIB),
        b'G' => (&t[..t.len() - 1], GIB),
        b'0'..=b'9' => (t, 1),
        _ => return Err(bad("expected bytes or a number with K, M or G, like '512M'")),
    };
    if digits.starts_with('-') {
        return Err(bad("negative sizes are not allowed (only -1, which clears the limit)"));
    }
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expected bytes or a number with K, M or G, like '512M'"));
    }
    let n: u64 = digits.parse().map_err(|_| bad("number too large"))?;
    n.checked_mul(mult).map(Size::Bytes).ok_or_else(|| bad("number too large"))
}

/// Converts a signed byte count as the hosts pass it (`-1` clears) to a [`Size`].
pub fn size_from_i64(bytes: i64) -> Result<Size> {
    match bytes {
        -1 => Ok(Size::Unlimited),
        b if b < 0 => Err(Error::invalid_argument(format!(
            "invalid size {b}: negative sizes are not allowed (only -1, which clears the limit)"
        ))),
        b => Ok(Size::Bytes(b as u64)),
    }
}

/// Formats bytes in the largest unit that divides them exactly: `536870912` -> `"512M"`.
pub fn format_size(bytes: u64) -> String {
    for (unit, suffix) in [(GIB, 'G'), (MIB, 'M'), (KIB, 'K')] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{}", bytes / unit, suffix);
        }
    }
    bytes.to_string()
}

/// Bytes to MiB as an unrounded float (PHP's `memory_get_usage() / 1024 / 1024`).
pub fn to_mb(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_php_sizes() {
        assert_eq!(parse_size("512M").unwrap(), Size::Bytes(512 * MIB));
        assert_eq!(parse_size("1G").unwrap(), Size::Bytes(GIB));
        assert_eq!(parse_size("1g").unwrap(), Size::Bytes(GIB));
        assert_eq!(parse_size("128K").unwrap(), Size::Bytes(128 * KIB));
        assert_eq!(parse_size(" 4096 ").unwrap(), Size::Bytes(4096));
        assert_eq!(parse_size("0").unwrap(), Size::Bytes(0));
        assert_eq!(parse_size("-1").unwrap(), Size::Unlimited);
    }

    #[test]
    fn rejects_bad_sizes_naming_the_text() {
        for bad in ["", "M", "12X", "-5M", "-2", "1.5G", "abc", "99999999999999999999", "17179869184G"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.message().contains(&format!("'{bad}'")), "{bad}: {e}");
        }
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format_size(512 * MIB), "512M");
        assert_eq!(format_size(2 * GIB), "2G");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(3 * KIB), "3K");
        assert_eq!(format_size(0), "0");
        for s in ["512M", "1G", "128K", "1000"] {
            let Size::Bytes(b) = parse_size(s).unwrap() else { panic!() };
            assert_eq!(parse_size(&format_size(b)).unwrap(), Size::Bytes(b));
        }
    }

    #[test]
    fn signed_bytes() {
        assert_eq!(size_from_i64(-1).unwrap(), Size::Unlimited);
        assert_eq!(size_from_i64(10).unwrap(), Size::Bytes(10));
        assert!(size_from_i64(-7).unwrap_err().message().contains("-7"));
    }
}
