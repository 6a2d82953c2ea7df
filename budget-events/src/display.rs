//! Numbers as people read them in messages and tables (alerts, refusals, the CLI), and digests as
//! lowercase hex.

/// `1234567` → `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// `1234.5678` → `$1,234.5678`, `-5` → `-$5`: an amount of dollars with every digit the ledger keeps
/// (trailing zeros dropped), its whole dollars grouped as `thousands` groups counts, so that a table
/// of dollars reads like the token counts beside it and like the dashboard.
pub fn dollars(d: rust_decimal::Decimal) -> String {
    let d = d.normalize();
    let text = d.abs().to_string();
    let (whole, fraction) = text.split_once('.').map_or((text.as_str(), None), |(w, f)| (w, Some(f)));
    // Every amount the ledger holds fits an i64 of whole dollars (a Decimal's 96 bits do not always).
    let whole = whole.parse::<i64>().map_or_else(|_| whole.to_string(), thousands);
    let sign = if d.is_sign_negative() && !d.is_zero() { "-" } else { "" };
    match fraction {
        Some(f) => format!("{sign}${whole}.{f}"),
        None => format!("{sign}${whole}"),
    }
}

/// `1 call`, `1,234 calls`, `2 policies`: a count with its noun, pluralised.
pub fn count(n: i64, noun: &str) -> String {
    let word = match (n, noun) {
        (1, _) => noun.to_string(),
        (_, "policy") => "policies".into(),
        (_, "entry") => "entries".into(),
        _ => format!("{noun}s"),
    };
    format!("{} {word}", thousands(n))
}

/// `a`, `a and b`, `a, b and c`: names in a sentence.
pub fn and_list<S: AsRef<str>>(names: &[S]) -> String {
    match names {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [first @ .., last] => {
            let first: Vec<&str> = first.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", first.join(", "), last.as_ref())
        }
    }
}

/// `[0x0f, 0xa0]` → `0fa0`. API keys and idempotency keys are hashed on every request: a `format!`
/// per byte was 2 % of the server's CPU under single-record load (perf, `budget bench`).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_read_as_a_list() {
        assert_eq!(super::and_list(&["a"]), "a");
        assert_eq!(super::and_list(&["a", "b"]), "a and b");
        assert_eq!(super::and_list(&["a", "b", "c"]), "a, b and c");
    }

    #[test]
    fn counts_are_pluralised() {
        assert_eq!(super::count(1, "call"), "1 call");
        assert_eq!(super::count(0, "call"), "0 calls");
        assert_eq!(super::count(1234, "policy"), "1,234 policies");
    }

    #[test]
    fn groups_of_three() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
        assert_eq!(super::thousands(-1000), "-1,000");
    }

    #[test]
    fn dollars_keep_every_digit_and_group_the_whole_ones() {
        use rust_decimal_macros::dec;
        assert_eq!(super::dollars(dec!(4957.5572707)), "$4,957.5572707");
        assert_eq!(super::dollars(dec!(5000.00)), "$5,000");
        assert_eq!(super::dollars(dec!(0.000123)), "$0.000123");
        assert_eq!(super::dollars(dec!(0)), "$0");
        assert_eq!(super::dollars(dec!(-0.00)), "$0");
        assert_eq!(super::dollars(dec!(-1234567.5)), "-$1,234,567.5");
        assert_eq!(super::dollars(rust_decimal::Decimal::MAX), "$79228162514264337593543950335");
    }

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(super::hex(&[]), "");
    }
}
