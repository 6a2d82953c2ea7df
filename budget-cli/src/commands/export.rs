//! `budget export`: usage records for finance, streamed from the API to a file or standard output.

use std::io::Write;
use std::path::PathBuf;

use crate::client::Client;

pub async fn run(
    client: &Client,
    since: Option<String>,
    until: Option<String>,
    format: String,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
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
    let mut bytes = 0usize;
    // Chunk by chunk: the export is never held whole in memory.
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len();
        match sink.write_all(&chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    sink.flush()?;
    if let Some(path) = output {
        eprintln!("wrote {bytes} bytes to {}", path.display());
    }
    Ok(())
}
