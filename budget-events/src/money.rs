//! Money: an exact USD amount with up to 18 decimal places, below 10^10 USD.
//!
//! It exists so that no float ever touches a cost. JSON carries it as a number written with its exact
//! decimal digits (`0.0064`, never `0.006400000000000001`); input is accepted as a number or a string,
//! and anything outside those bounds is refused instead of rounded.
//!
//! Why 18 and 10: rust_decimal holds 28 significant digits, and a record's cost must keep 18 decimals
//! (a token at 2.5e-11 USD is still money: 100,000 of them are 2.5e-6). The columns are unconstrained
//! `NUMERIC` (schema/0014), so the bound is this type's. Sums of amounts (accounts, rollups, windows)
//! are exact while below 2^96 / 10^18 ≈ 7.9 × 10^10 USD; beyond it rust_decimal keeps 28 significant
//! digits, dropping the last decimals rather than failing (see `sums_beyond_28_digits_round` below).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Digits after the point an amount keeps.
pub const MONEY_SCALE: u32 = 18;
/// Digits before the point an amount may have (28 - 18: rust_decimal's 28 digits in all).
pub const MONEY_INTEGER_DIGITS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("`{0}` is not a decimal number")]
    NotANumber(String),
    #[error("{0} has more than {MONEY_SCALE} decimal places; round it to at most {MONEY_SCALE}")]
    TooPrecise(String),
    #[error("{0} is too large; amounts must be below 10^{MONEY_INTEGER_DIGITS} USD")]
    TooLarge(String),
    /// A number rust_decimal cannot hold: more significant digits than its 28.
    #[error("{0} has more digits than a decimal holds (28 significant digits); round it")]
    TooManyDigits(String),
    /// A number rust_decimal cannot hold: beyond its range.
    #[error("{0} is too large for a decimal (the largest is 79228162514264337593543950335)")]
    OutOfRange(String),
    #[error("{0} is negative; amounts must be zero or more")]
    Negative(Decimal),
}

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// A non-negative amount that fits the ledger columns.
    pub fn new(value: Decimal) -> Result<Self, MoneyError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(MoneyError::Negative(value));
        }
        Self::new_signed(value).map(|m| Money(m.0.abs()))
    }

    /// Like [`Money::new`] but allows negative amounts (differences, adjustments).
    pub fn new_signed(value: Decimal) -> Result<Self, MoneyError> {
        let value = value.normalize();
        if value.scale() > MONEY_SCALE {
            return Err(MoneyError::TooPrecise(value.to_string()));
        }
        if value.abs() >= Decimal::from(10u64.pow(MONEY_INTEGER_DIGITS)) {
            return Err(MoneyError::TooLarge(value.to_string()));
        }
        Ok(Money(value))
    }

    pub fn amount(self) -> Decimal {
        self.0
    }

    /// Sum; `None` when the total would no longer fit a money column.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).and_then(|d| Money::new_signed(d).ok())
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // A number a decimal cannot hold is outside an amount's bounds too: refused by those.
        let parsed = parse_decimal(s).map_err(|e| match e {
            MoneyError::TooManyDigits(text) => MoneyError::TooPrecise(text),
            MoneyError::OutOfRange(text) => MoneyError::TooLarge(text),
            other => other,
        })?;
        Money::new(parsed)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_decimal(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = decimal_text(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Writes a decimal as a JSON number with exactly its digits (serde_json's `arbitrary_precision`).
pub fn serialize_decimal<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    let number = serde_json::Number::from_str(&value.normalize().to_string()).map_err(serde::ser::Error::custom)?;
    number.serialize(serializer)
}

/// Reads a JSON number or string as the exact text of a decimal.
fn decimal_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::String(s) => Ok(s),
        other => {
            Err(serde::de::Error::custom(format!("expected a decimal number (or a string holding one), found {other}")))
        }
    }
}

/// `#[serde(with = "budget_events::money::decimal_json")]` for plain `Decimal` fields that must be
/// exact JSON numbers too (prices per token, percentages).
/// A decimal written as text, with every digit kept (`1.50`, `2.5e-7`): how the API reads an amount,
/// and how the CLI checks one before sending it.
pub fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
    let parsed = if text.contains(['e', 'E']) { Decimal::from_scientific(text) } else { Decimal::from_str_exact(text) };
    parsed.map_err(|_| unreadable(text))
}

/// Why rust_decimal could not read `text`: a number it cannot hold is refused as too large or too
/// long (so the fix is named: "round it"), anything else as not a number.
fn unreadable(text: &str) -> MoneyError {
    let owned = || text.to_string();
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => {
            let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return MoneyError::NotANumber(owned());
            }
            // Beyond an i64 the number is out of range (or zero) whatever its mantissa.
            (m, e.parse::<i64>().unwrap_or(if e.starts_with('-') { i64::MIN / 2 } else { i64::MAX / 2 }))
        }
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let is_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !is_digits(whole) || !is_digits(fraction) {
        return MoneyError::NotANumber(owned());
    }
    // Digits before the point once the exponent has moved it (leading zeros do not count).
    let significant_whole = whole.trim_start_matches('0').len() as i64;
    let before_point = if significant_whole > 0 {
        significant_whole + exponent
    } else {
        // 0.00ddd: the first significant digit's place, moved by the exponent.
        let zeros = fraction.len() - fraction.trim_start_matches('0').len();
        -(zeros as i64) + exponent
    };
    if before_point > 28 {
        MoneyError::OutOfRange(owned())
    } else {
        MoneyError::TooManyDigits(owned())
    }
}

/// A decimal as a JSON number with its exact digits (normalized: `1.50` → `1.5`), for building JSON
/// by hand (`json!`), where the serde helpers above do not reach.
pub fn json_number(d: Decimal) -> serde_json::Value {
    serde_json::from_str(&d.normalize().to_string()).expect("a decimal is a JSON number")
}

pub mod decimal_json {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_decimal(value, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        let text = decimal_text(deserializer)?;
        super::parse_decimal(&text).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

/// Like [`decimal_json`], for `Option<Decimal>` fields.
pub mod optional_decimal_json {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<Decimal>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => serialize_decimal(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal>, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Null => Ok(None),
            other => decimal_json::deserialize(other).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn json_round_trip_keeps_exact_digits() {
        let m: Money = serde_json::from_str("0.0064").unwrap();
        assert_eq!(m.amount(), dec!(0.0064));
        assert_eq!(serde_json::to_string(&m).unwrap(), "0.0064");
        let s: Money = serde_json::from_str("\"12.5\"").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "12.5");
        let sum = m.checked_add(s).unwrap();
        assert_eq!(sum.amount(), dec!(12.5064));
    }

    #[test]
    fn scientific_notation_is_exact() {
        let m: Money = serde_json::from_str("6.4e-3").unwrap();
        assert_eq!(m.amount(), dec!(0.0064));
    }

    #[test]
    fn refuses_what_does_not_fit_instead_of_rounding() {
        assert!(matches!("-1".parse::<Money>(), Err(MoneyError::Negative(_))));
        assert!(matches!("0.0000000000000000001".parse::<Money>(), Err(MoneyError::TooPrecise(_))));
        assert_eq!("0.000000000000000001".parse::<Money>().unwrap().amount(), dec!(0.000000000000000001));
        assert!(matches!("10000000000".parse::<Money>(), Err(MoneyError::TooLarge(_))));
        assert!("9999999999.999999999999999999".parse::<Money>().is_ok());
        assert!(matches!("abc".parse::<Money>(), Err(MoneyError::NotANumber(_))));
        assert!(serde_json::from_str::<Money>("true").is_err());
        // Trailing zeros beyond the scale are not extra precision.
        assert_eq!("1.50000000000000".parse::<Money>().unwrap().amount(), dec!(1.5));
    }

    #[test]
    fn a_number_too_long_or_too_large_for_a_decimal_is_refused_for_that_not_as_no_number() {
        // Money: its own bounds, whatever rust_decimal could have held.
        let refused = |text: &str| text.parse::<Money>().unwrap_err().to_string();
        assert_eq!(
            refused("0.123456789012345678901234567890"),
            "0.123456789012345678901234567890 has more than 18 decimal places; round it to at most 18"
        );
        assert_eq!(
            refused("79228162514264337593543950336"),
            "79228162514264337593543950336 is too large; amounts must be below 10^10 USD"
        );
        assert_eq!(refused("1e30"), "1e30 is too large; amounts must be below 10^10 USD");
        assert_eq!(refused("1E-40"), "1E-40 has more than 18 decimal places; round it to at most 18");
        // Any decimal (prices per token, percentages): a decimal's own bounds.
        assert_eq!(
            parse_decimal("0.123456789012345678901234567890").unwrap_err().to_string(),
            "0.123456789012345678901234567890 has more digits than a decimal holds (28 significant digits); round it"
        );
        assert_eq!(
            parse_decimal("1e30").unwrap_err().to_string(),
            "1e30 is too large for a decimal (the largest is 79228162514264337593543950335)"
        );
        for text in ["abc", "1.2.3", "", "-", ".", "1e", "1e+", "0x10", "--1", "1e5.5"] {
            assert!(matches!(parse_decimal(text), Err(MoneyError::NotANumber(_))), "{text:?}");
        }
    }

    #[test]
    fn sums_beyond_28_digits_round() {
        // Exact while the sum has at most 28 digits…
        let big = Money::new(dec!(9999999999.999999999999999999)).unwrap().amount();
        let tiny = dec!(0.000000000000000001);
        assert_eq!(big * dec!(7) + tiny, dec!(69999999999.999999999999999994));
        // …and beyond it the last decimals go, rather than a panic that would stop a projection.
        let sum = big * dec!(8) + tiny;
        assert_eq!(sum.round_dp(10), dec!(80000000000.0000000000));
    }
}
