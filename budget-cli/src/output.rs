//! Tables for people; `--json` prints the API's JSON as is, for machines.

use std::sync::atomic::{AtomicBool, Ordering};

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};

/// `--wide`: tables as wide as their content, whatever the terminal.
static WIDE: AtomicBool = AtomicBool::new(false);

pub fn set_wide(wide: bool) {
    WIDE.store(wide, Ordering::Relaxed);
}

/// A table that fits the terminal: its width (or `COLUMNS`), wrapping cells that do not fit; with
/// `--wide`, or when printing to a pipe with no `COLUMNS`, as wide as its content.
pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header(headers.iter().map(Cell::new));
    if !WIDE.load(Ordering::Relaxed) {
        t.set_content_arrangement(ContentArrangement::Dynamic);
        if let Some(width) = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<u16>().ok()) {
            t.set_width(width);
        }
    }
    t
}

pub fn right(value: impl ToString) -> Cell {
    Cell::new(value.to_string()).set_alignment(CellAlignment::Right)
}

pub fn print_json(value: &serde_json::Value) {
    emit(&serde_json::to_string_pretty(value).expect("JSON values print"));
}

/// `1234567` → `1,234,567`.
pub use budget_events::display::thousands;

/// A time as the API writes it (RFC 3339, UTC, `Z`).
pub fn utc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Prints a line to stdout. A reader that went away (`budget status | head`) ends the command quietly
/// instead of a panic.
pub fn emit(line: &str) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        panic!("cannot write to stdout: {e}");
    }
}

/// `println!` through [`emit`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::output::emit(&format!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_grouped() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(1200), "1,200");
        assert_eq!(super::thousands(-1234567), "-1,234,567");
    }
}
