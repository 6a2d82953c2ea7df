//! Tables for people; `--json` prints the API's JSON as is, for machines.

use std::sync::atomic::{AtomicBool, Ordering};

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};

/// `--wide`: tables as wide as their content, whatever the terminal.
static WIDE: AtomicBool = AtomicBool::new(false);

pub fn set_wide(wide: bool) {
    WIDE.store(wide, Ordering::Relaxed);
}

pub fn is_wide() -> bool {
    WIDE.load(Ordering::Relaxed)
}

/// `--precise`: times with every digit and full ids, instead of to the second and short ids.
static PRECISE: AtomicBool = AtomicBool::new(false);

pub fn set_precise(precise: bool) {
    PRECISE.store(precise, Ordering::Relaxed);
}

pub fn is_precise() -> bool {
    PRECISE.load(Ordering::Relaxed)
}

/// An id as tables show it: its last 8 characters (every command takes them, see `crate::ids`), or
/// whole with `--wide` or `--precise`.
pub fn short_id(id: impl std::fmt::Display) -> String {
    let id = id.to_string();
    if WIDE.load(Ordering::Relaxed) || PRECISE.load(Ordering::Relaxed) {
        id
    } else {
        id[id.len().saturating_sub(crate::ids::SHORT)..].to_string()
    }
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
        // Ids and times are never broken across lines (one is copied, the other read at a glance);
        // the other columns wrap around them.
        for (i, header) in headers.iter().enumerate() {
            if keeps_whole(header) {
                if let Some(column) = t.column_mut(i) {
                    column.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
                }
            }
        }
    }
    t
}

/// The terminal's width in columns (`COLUMNS`, or the terminal's own), or `None` with `--wide` or
/// when printing to a pipe with no `COLUMNS`: then lines are as long as their content.
pub fn terminal_width() -> Option<usize> {
    if is_wide() {
        return None;
    }
    table(&[]).width().map(usize::from)
}

/// Whether `t` fits the terminal at its content's width. Squeezed below it a table breaks words and
/// figures across lines ("$3.6" over "6004"), so a command with a narrower form prints that instead.
pub fn fits(t: &Table) -> bool {
    let Some(width) = terminal_width() else { return true };
    let columns = t.column_max_content_widths();
    // Each cell's padding (a space either side) and one border left of every column and at the end.
    let natural: usize = columns.iter().map(|w| usize::from(*w) + 3).sum::<usize>() + 1;
    natural <= width
}

/// `phrases` joined by spaces into lines that fit the terminal, broken only between phrases (a
/// phrase wider than the terminal stands alone), each line after the first indented by `indent`.
pub fn paragraph(phrases: &[String], indent: &str) -> String {
    wrap(phrases, indent, terminal_width().unwrap_or(usize::MAX))
}

fn wrap(phrases: &[String], indent: &str, width: usize) -> String {
    let mut lines: Vec<String> = vec![String::new()];
    for phrase in phrases {
        let line = lines.last_mut().expect("one line at least");
        let used = line.chars().count();
        if used == 0 {
            line.push_str(phrase);
        } else if used + 1 + phrase.chars().count() <= width {
            line.push(' ');
            line.push_str(phrase);
        } else {
            lines.push(format!("{indent}{phrase}"));
        }
    }
    lines.join("\n")
}

/// `t` as it fits the terminal. Its columns wrap where each can have its widest figure and some room
/// for its text (see [`unbreakable`]); where they cannot, `allocate list` in 80 columns gave its Model
/// column one letter a line and broke "10,000" into "10,00" over "0", so each row is printed as a
/// record instead, a line per column, as psql's expanded display does. With `--wide` or no known
/// width, the table as wide as its content.
pub fn fitted(mut t: Table) -> String {
    let Some(width) = terminal_width() else { return t.to_string() };
    let (least, whole) = least_widths(&t);
    if !fits_within(&least, width) && t.row_iter().next().is_some() {
        return records(&t, width);
    }
    for (i, least) in least.iter().enumerate() {
        if let (false, Some(column), Ok(least)) = (whole[i], t.column_mut(i), u16::try_from(least + 2)) {
            column.set_constraint(comfy_table::ColumnConstraint::LowerBoundary(comfy_table::Width::Fixed(least)));
        }
    }
    t.to_string()
}

/// Whether [`fitted`] prints `t` as a table: every word and figure of it whole in the terminal.
pub fn fits_words(t: &Table) -> bool {
    terminal_width().is_none_or(|width| fits_within(&least_widths(t).0, width))
}

fn fits_within(least: &[usize], width: usize) -> bool {
    // Each column's padding (a space either side) and border, and the table's last border.
    least.iter().map(|w| w + 3).sum::<usize>() < width
}

/// Each column's narrowest width that breaks no word, and whether it is kept whole (ids, times).
fn least_widths(t: &Table) -> (Vec<usize>, Vec<bool>) {
    let columns = t.column_iter().count();
    let whole: Vec<bool> = (0..columns).map(|i| t.column(i).is_some_and(|c| c.constraint().is_some())).collect();
    let mut least = vec![1usize; columns];
    // A heading wraps between its words ("Input" over "tokens") without harm.
    if let Some(header) = t.header() {
        for (i, cell) in header.cell_iter().enumerate().take(columns) {
            least[i] = least[i].max(cell.content().split_whitespace().map(|w| w.chars().count()).max().unwrap_or(0));
        }
    }
    for row in t.row_iter() {
        for (i, cell) in row.cell_iter().enumerate().take(columns) {
            least[i] = least[i].max(unbreakable(&cell.content(), whole[i]));
        }
    }
    (least, whole)
}

/// The narrowest a cell can be printed without breaking a figure: its widest figure, and for its text
/// (a model's name, an alert's message) [`TEXT`] columns or all of it if shorter, beyond which a name
/// may wrap (`meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo`); all of it where it keeps whole (ids,
/// times).
fn unbreakable(content: &str, whole: bool) -> usize {
    let lines = content.lines();
    if whole {
        return lines.map(|l| l.chars().count()).max().unwrap_or(0);
    }
    let word = |w: &str| if is_figure(w) { w.chars().count() } else { w.chars().count().min(TEXT) };
    let widest_word = content.split_whitespace().map(word).max().unwrap_or(0);
    let longest_line = lines.map(|l| l.chars().count()).max().unwrap_or(0);
    // A sentence (an alert's message, a recommendation) squeezed to a name's room reads a few words a
    // line: it gets [`PROSE`] columns, or the table is printed as records.
    let sentence = longest_line > 2 * TEXT && content.contains(char::is_whitespace);
    widest_word.max(longest_line.min(if sentence { PROSE } else { TEXT }))
}

/// A number, amount, percentage, date or time: broken across lines, "10,000" reads as "10,00" and "0".
fn is_figure(word: &str) -> bool {
    word.chars().any(|c| c.is_ascii_digit()) && word.chars().all(|c| c.is_ascii_digit() || "$,.%-+:()/×".contains(c))
}

/// The least room a cell's text gets before its table is printed as records instead.
const TEXT: usize = 18;

/// The least room a sentence gets (see [`unbreakable`]).
const PROSE: usize = 30;

/// Every row of `t` as a record: a line per column, `Header  value`, values wrapped between words
/// within `width`, a blank line between rows. Empty cells are left out.
fn records(t: &Table, width: usize) -> String {
    let labels: Vec<String> = t
        .header()
        .map(|h| h.cell_iter().map(|c| c.content().split_whitespace().collect::<Vec<_>>().join(" ")).collect())
        .unwrap_or_default();
    let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let indent = " ".repeat(label_width + 2);
    let mut out = Vec::new();
    for (n, row) in t.row_iter().enumerate() {
        if n > 0 {
            out.push(String::new());
        }
        for (label, cell) in labels.iter().zip(row.cell_iter()) {
            let content = cell.content();
            for (i, line) in content.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                let head = if i == 0 { format!("{label:<label_width$}  ") } else { indent.clone() };
                let mut words: Vec<String> = line.split_whitespace().map(String::from).collect();
                words[0].insert_str(0, &head);
                out.push(wrap(&words, &indent, width));
            }
        }
    }
    out.join("\n")
}

fn keeps_whole(header: &str) -> bool {
    matches!(header, "Policy" | "Alert" | "Allocation" | "Key" | "Id" | "Record" | "Resets") || header.contains("(UTC)")
}

pub fn right(value: impl ToString) -> Cell {
    Cell::new(value.to_string()).set_alignment(CellAlignment::Right)
}

pub fn print_json(value: &serde_json::Value) {
    emit(&serde_json::to_string_pretty(value).expect("JSON values print"));
}

/// `1 event`, `1,234 events`, `2 policies` (from any integer the API gives).
pub fn count(n: impl TryInto<i64>, noun: &str) -> String {
    budget_events::display::count(n.try_into().unwrap_or(i64::MAX), noun)
}

/// `1234567` → `1,234,567`.
pub use budget_events::display::thousands;

/// `1234.5678` → `$1,234.5678`, every digit kept.
pub use budget_events::display::dollars;

/// A time in UTC to the second (`2026-11-30 17:14:54`); with `--precise`, as the API writes it
/// (RFC 3339 with every digit).
pub fn utc(t: chrono::DateTime<chrono::Utc>) -> String {
    if PRECISE.load(Ordering::Relaxed) {
        t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    } else {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// A time in a sentence, which names its zone (no column heading says "UTC" there): `2026-12-03
/// 05:55:58 UTC`; with `--precise`, RFC 3339 (which ends in `Z`).
pub fn utc_named(t: chrono::DateTime<chrono::Utc>) -> String {
    if PRECISE.load(Ordering::Relaxed) {
        utc(t)
    } else {
        format!("{} UTC", utc(t))
    }
}

/// A time to come or past, relative to now (`in 6h 27m`, `3d 15h ago`); with `--precise`, the time itself.
pub fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    if PRECISE.load(Ordering::Relaxed) {
        return utc(t);
    }
    relative(t - chrono::Utc::now())
}

/// [`when`] for a span: two units at most, the second never dropped (a weekly window that resets in
/// 3 days and 15 hours read `in 3d`).
fn relative(delta: chrono::TimeDelta) -> String {
    let minutes = delta.num_minutes().abs();
    let span = match minutes {
        0 => "under a minute".to_string(),
        1..=59 => format!("{minutes}m"),
        60..=2879 => format!("{}h {}m", minutes / 60, minutes % 60),
        _ => format!("{}d {}h", minutes / 1440, minutes % 1440 / 60),
    };
    if delta.num_seconds() >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// Prints a line to stdout. A reader that went away (`budget status | head`) ends the command quietly
/// instead of a panic.
pub fn emit(line: &str) {
    emit_bytes(format!("{line}\n").as_bytes());
}

/// Writes `bytes` to stdout as they are, ending the command quietly as [`emit`] does.
pub fn emit_bytes(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
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

    #[test]
    fn figures_never_break_and_text_gets_some_room() {
        for figure in ["10,000", "$0.0816125", "87.5%", "(85%)", "2026-12-04", "17:02:08"] {
            assert!(super::is_figure(figure), "{figure}");
            assert_eq!(super::unbreakable(figure, false), figure.chars().count(), "{figure}");
        }
        for name in ["gpt-4o", "task:task-1", "spend_spike", "-"] {
            assert!(!super::is_figure(name), "{name}");
        }
        // A long name may wrap past the text's room; a sentence gets that room; a kept column all.
        assert_eq!(super::unbreakable("meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo", false), super::TEXT);
        assert_eq!(super::unbreakable("spend in the hour from 2026-12-04 15:00 UTC", false), super::PROSE);
        assert_eq!(super::unbreakable("per_task hard_limit on provider=openai", false), super::PROSE);
        assert_eq!(super::unbreakable("daily hard_limit", false), 16);
        assert_eq!(super::unbreakable("daily warn", false), 10);
        assert_eq!(super::unbreakable("2026-12-04 17:02:08", true), 19);
    }

    #[test]
    fn a_paragraph_breaks_between_phrases_only() {
        let phrases: Vec<String> = ["used $3.660049 of $10 (36.6%),", "reserved $0,", "left $6.339951"]
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(super::wrap(&phrases, "  ", 80), phrases.join(" "));
        assert_eq!(super::wrap(&phrases, "  ", 40), "used $3.660049 of $10 (36.6%),\n  reserved $0, left $6.339951");
    }

    #[test]
    fn relative_times_keep_their_second_unit() {
        let span = |m: i64| super::relative(chrono::TimeDelta::minutes(m) + chrono::TimeDelta::seconds(1));
        assert_eq!(span(0), "in under a minute");
        assert_eq!(span(45), "in 45m");
        assert_eq!(span(15 * 60 + 27), "in 15h 27m");
        assert_eq!(span(3 * 1440 + 15 * 60 + 27), "in 3d 15h");
        assert_eq!(super::relative(-chrono::TimeDelta::minutes(2 * 1440 + 60)), "2d 1h ago");
    }
}
