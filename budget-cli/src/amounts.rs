//! Amounts given on the command line (limits, prices, costs), checked before anything is sent, so a
//! typo is refused naming its argument instead of as a position in a JSON body the user never wrote.
//! They are sent as the text given, so every digit reaches the API.

/// A clap value parser: `raw` if it is a decimal number as the API reads one.
pub fn decimal(raw: &str) -> Result<String, String> {
    budget_events::money::parse_decimal(raw.trim()).map(|_| raw.trim().to_string()).map_err(|e| e.to_string())
}
