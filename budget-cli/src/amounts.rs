//! Amounts given on the command line (limits, prices, costs, token counts, days), checked before
//! anything is sent, so a typo is refused naming its argument instead of as a position in a JSON body
//! the user never wrote. Decimals are sent as the text given, so every digit reaches the API.
//!
//! The arguments using these parsers take negative numbers as values (`allow_negative_numbers`), so
//! that `--tokens -3` is refused as a negative amount, not as an unknown option `-3` with clap's tip to
//! pass it after `--`.

/// A clap value parser: `raw` if it is a decimal number of zero or more as the API reads one.
pub fn decimal(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let value = budget_events::money::parse_decimal(raw).map_err(|e| e.to_string())?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(format!("`{raw}` is negative; amounts are zero or more"));
    }
    Ok(raw.to_string())
}

/// A clap value parser: a whole number of zero or more that fits `T`.
pub fn count<T: TryFrom<u64>>(raw: &str) -> Result<T, String> {
    let raw = raw.trim();
    let value: u64 = match raw.parse::<i128>() {
        Ok(n) if n < 0 => return Err(format!("`{raw}` is negative; expected a whole number of 0 or more")),
        Ok(n) => u64::try_from(n).map_err(|_| format!("`{raw}` is too big"))?,
        Err(_) => return Err(format!("`{raw}` is not a whole number")),
    };
    T::try_from(value).map_err(|_| format!("`{raw}` is too big"))
}

/// A clap value parser: a number of days from 1 to `MAX`, the range the API takes for that argument.
pub fn days<const MAX: u32>(raw: &str) -> Result<u32, String> {
    let raw = raw.trim();
    raw.parse::<u32>()
        .ok()
        .filter(|days| (1..=MAX).contains(days))
        .ok_or_else(|| format!("`{raw}` is not a number of days; use 1 to {MAX}"))
}

#[cfg(test)]
mod tests {
    use super::{count, days, decimal};

    #[test]
    fn amounts_are_zero_or_more() {
        assert_eq!(decimal(" 10.50 ").as_deref(), Ok("10.50"));
        assert_eq!(decimal("0").as_deref(), Ok("0"));
        assert_eq!(decimal("-5"), Err("`-5` is negative; amounts are zero or more".into()));
        assert!(decimal("abc").unwrap_err().contains("is not a decimal number"));
        assert_eq!(count::<i64>("200000"), Ok(200_000));
        assert_eq!(count::<i64>("-3"), Err("`-3` is negative; expected a whole number of 0 or more".into()));
        assert_eq!(count::<i64>("1.5"), Err("`1.5` is not a whole number".into()));
        assert_eq!(count::<u32>("5000000000"), Err("`5000000000` is too big".into()));
    }

    #[test]
    fn days_are_refused_with_the_range_the_api_takes() {
        assert_eq!(days::<3660>("7"), Ok(7));
        assert_eq!(days::<3660>(" 3660 "), Ok(3660));
        // "0 or more" was the wrong fix for `--days -3`: the API then refused 0.
        for raw in ["-3", "0", "3661", "1.5", "week"] {
            assert_eq!(days::<3660>(raw), Err(format!("`{}` is not a number of days; use 1 to 3660", raw.trim())));
        }
        assert_eq!(days::<365>("400"), Err("`400` is not a number of days; use 1 to 365".into()));
    }
}
