//! Values with units in scenario files: durations, sizes and rates.
//!
//! Each type parses from a string such as `"90s"`, `"3.6KB"` or `"4/h"` and
//! reports what it accepts when the string is invalid.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A duration written with units: `250ms`, `90s`, `5m`, `8h`, `2d` or `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(pub Duration);

const DURATION_HELP: &str = "use numbers with the units ms, s, m, h or d, such as \"250ms\", \"90s\", \"5m\", \"8h\" or \"1h30m\"";

impl FromStr for Span {
    type Err = String;

    /// Parses one or more number-and-unit parts, such as `90s` or `1h30m`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("invalid duration {text:?}: {DURATION_HELP}");
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(invalid());
        }
        let mut seconds = 0.0;
        while !rest.is_empty() {
            let split = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let value: f64 = rest[..split].parse().map_err(|_| invalid())?;
            rest = &rest[split..];
            let (unit_seconds, unit_length) = if rest.starts_with("ms") {
                (0.001, 2)
            } else {
                match rest.chars().next() {
                    Some('s') => (1.0, 1),
                    Some('m') => (60.0, 1),
                    Some('h') => (3600.0, 1),
                    Some('d') => (86_400.0, 1),
                    _ => return Err(invalid()),
                }
            };
            rest = &rest[unit_length..];
            seconds += value * unit_seconds;
        }
        if !seconds.is_finite() || seconds > 365.0 * 86_400.0 {
            return Err(format!(
                "invalid duration {text:?}: at most 365d is allowed"
            ));
        }
        // Round to whole milliseconds so that "0.1s" and "100ms" are equal.
        let millis = (seconds * 1000.0).round() as u64;
        Ok(Self(Duration::from_millis(millis)))
    }
}

impl fmt::Display for Span {
    /// Prints the largest unit that divides the duration exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", format_duration(self.0))
    }
}

/// Formats a duration with the largest unit that divides it exactly, or in
/// seconds with millisecond precision.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    if millis < 1000 {
        format!("{millis}ms")
    } else {
        format!("{:.3}s", duration.as_secs_f64())
    }
}

/// Splits `"3.6KB"` into `(3.6, "KB")`: a non-negative decimal number and
/// the unit after it; `None` when the text does not start with a number.
fn number_and_unit(text: &str) -> Option<(f64, &str)> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    Some((number.parse().ok()?, unit.trim()))
}

/// A size in bytes: `512B`, `3.6KB` (1000 bytes), `4KiB` (1024 bytes), `1MB`, `1MiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Size(pub u64);

const SIZE_HELP: &str =
    "use a number with a unit B, KB, KiB, MB or MiB, such as \"512B\", \"3.6KB\" or \"1MiB\"";

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("invalid size {text:?}: {SIZE_HELP}");
        let (value, unit) = number_and_unit(text).ok_or_else(invalid)?;
        let multiplier = match unit {
            "B" => 1.0,
            "KB" => 1e3,
            "KiB" => 1024.0,
            "MB" => 1e6,
            "MiB" => 1024.0 * 1024.0,
            _ => return Err(invalid()),
        };
        let bytes = value * multiplier;
        if !bytes.is_finite() || bytes > 1e9 {
            return Err(format!("invalid size {text:?}: at most 1GB is allowed"));
        }
        Ok(Self(bytes.round() as u64))
    }
}

/// An average event rate: `4/h`, `30/m`, `0.5/s` or `100/d`.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Default)]
pub struct Rate {
    /// Events per second.
    pub per_second: f64,
}

const RATE_HELP: &str = "use a count per unit s, m, h or d, such as \"4/h\" or \"0.5/s\"";

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (count, unit) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("invalid rate {text:?}: {RATE_HELP}"))?;
        let count: f64 = count
            .trim()
            .parse()
            .map_err(|_| format!("invalid rate {text:?}: {RATE_HELP}"))?;
        let seconds = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(format!("invalid rate {text:?}: {RATE_HELP}")),
        };
        if !count.is_finite() || count < 0.0 {
            return Err(format!(
                "invalid rate {text:?}: the count must be 0 or more"
            ));
        }
        Ok(Self {
            per_second: count / seconds,
        })
    }
}

/// A command budget: `1000/10m` allows 1000 commands per 10 minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Commands per window.
    pub commands: u32,
    /// The window.
    pub window: Duration,
}

const BUDGET_HELP: &str = "use commands per window, such as \"1000/10m\" or \"50/1s\"";

impl FromStr for Budget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (count, window) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("invalid command budget {text:?}: {BUDGET_HELP}"))?;
        let commands: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("invalid command budget {text:?}: {BUDGET_HELP}"))?;
        let window: Span = window
            .parse()
            .map_err(|_| format!("invalid command budget {text:?}: {BUDGET_HELP}"))?;
        if commands == 0 || window.0.is_zero() {
            return Err(format!(
                "invalid command budget {text:?}: commands and window must be above zero"
            ));
        }
        Ok(Self {
            commands,
            window: window.0,
        })
    }
}

macro_rules! deserialize_from_str {
    ($($type:ty => $expecting:literal),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl de::Visitor<'_> for Visitor {
                    type Value = $type;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$type, E> {
                        text.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
    )*};
}

deserialize_from_str! {
    Span => "a duration string such as \"90s\", \"5m\" or \"8h\"",
    Size => "a size string such as \"512B\", \"3.6KB\" or \"1MiB\"",
    Rate => "a rate string such as \"4/h\" or \"0.5/s\"",
    Budget => "a command budget string such as \"1000/10m\"",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let cases = [
            ("250ms", 250),
            ("90s", 90_000),
            ("5m", 300_000),
            ("8h", 28_800_000),
            ("2d", 172_800_000),
            ("1.5h", 5_400_000),
            ("0.1s", 100),
            ("1h30m", 5_400_000),
            ("2m30s500ms", 150_500),
        ];
        for (text, millis) in cases {
            assert_eq!(
                text.parse::<Span>(),
                Ok(Span(Duration::from_millis(millis))),
                "{text}"
            );
        }
    }

    #[test]
    fn duration_without_unit_is_rejected() {
        let error = "90".parse::<Span>().unwrap_err();
        assert!(error.contains("invalid duration \"90\""), "{error}");
        assert!(error.contains("\"5m\""), "{error}");
        assert!("5x".parse::<Span>().is_err());
        assert!("-5m".parse::<Span>().is_err());
        assert!("".parse::<Span>().is_err());
        assert!("1h30".parse::<Span>().is_err());
        assert!("h".parse::<Span>().is_err());
    }

    #[test]
    fn durations_format_with_largest_unit() {
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.500s");
        assert_eq!(format_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn sizes_parse_decimal_and_binary_units() {
        assert_eq!("3.6KB".parse::<Size>(), Ok(Size(3600)));
        assert_eq!("4KiB".parse::<Size>(), Ok(Size(4096)));
        assert_eq!("1MiB".parse::<Size>(), Ok(Size(1_048_576)));
        assert!("4kb".parse::<Size>().is_err());
    }

    #[test]
    fn rates_parse_per_unit() {
        assert_eq!("3600/h".parse::<Rate>().unwrap().per_second, 1.0);
        assert_eq!("0.5/s".parse::<Rate>().unwrap().per_second, 0.5);
        assert!("4".parse::<Rate>().is_err());
        assert!("4/w".parse::<Rate>().is_err());
    }

    #[test]
    fn budgets_parse() {
        assert_eq!(
            "1000/10m".parse::<Budget>(),
            Ok(Budget {
                commands: 1000,
                window: Duration::from_secs(600)
            })
        );
        assert!("0/1m".parse::<Budget>().is_err());
        assert!("10".parse::<Budget>().is_err());
    }
}
