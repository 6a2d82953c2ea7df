//! `budget export`: usage records for finance, streamed from the API to a file or standard output.

use std::io::Write;
use std::path::PathBuf;

use crate::client::Client;
use crate::output::count;

pub async fn run(
    client: &Client,
    since: Option<String>,
    until: Option<String>,
    format: String,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let csv = format == "csv";
    let mut query: Vec<(&str, String)> = vec![("format", format)];
    if let Some(s) = since {
        query.push(("since", s));
    }
    if let Some(u) = until {
        query.push(("until", u));
    }
    let mut response = client.get_stream("/api/export", &query).await?;
    let mut sink: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let (mut bytes, mut rows) = (0usize, Rows::default());
    // Chunk by chunk: the export is never held whole in memory.
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len();
        rows.count(&chunk, csv);
        match sink.write_all(&chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    sink.flush()?;
    if let Some(path) = output {
        let rows = rows.ends.saturating_sub(usize::from(csv)); // a CSV's first line is its header
        let bytes = count(bytes, "byte");
        eprintln!("Wrote {} ({bytes}) to {}", count(rows, "row"), path.display());
    }
    Ok(())
}

/// Counts the lines of an export as it streams by. A CSV field in quotes may hold a line break (RFC
/// 4180), which ends no row; a JSON line never holds one.
#[derive(Default)]
struct Rows {
    ends: usize,
    quoted: bool,
}

impl Rows {
    fn count(&mut self, chunk: &[u8], csv: bool) {
        for &b in chunk {
            match b {
                b'"' if csv => self.quoted = !self.quoted, // `""` inside quotes toggles twice
                b'\n' if !self.quoted => self.ends += 1,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_break_in_a_quoted_csv_field_ends_no_row() {
        let mut rows = super::Rows::default();
        for chunk in ["a,b\n1,\"x\n", "y \"\"z\"\"\"\n2,w\n"] {
            rows.count(chunk.as_bytes(), true);
        }
        assert_eq!(rows.ends, 3, "the header and two rows");
        let mut lines = super::Rows::default();
        lines.count(b"{\"a\":\"\\\"\"}\n{}\n", false);
        assert_eq!(lines.ends, 2);
    }
}
