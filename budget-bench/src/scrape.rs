//! Where a phase's time went, from the service's own `/metrics`: the writer's batches (how many
//! items each, how long they waited, how long deciding and committing took, and in which stage) and
//! the HTTP handlers' time, as differences between a scrape before and one after the phase.

use std::collections::BTreeMap;

/// Sums of every sample of `/metrics` by metric name (labels summed over), e.g.
/// `budget_writer_commit_seconds_sum`, and by name and labels as written, e.g.
/// `budget_writer_stage_seconds_sum{stage="load"}`.
#[derive(Debug, Default, Clone)]
pub struct Scrape(BTreeMap<String, f64>);

/// The write path's stages, as `budget_writer_stage_seconds` labels them.
const STAGES: [&str; 4] = ["load", "decide", "append", "commit"];

impl Scrape {
    pub async fn take(http: &reqwest::Client, url: &str, key: &str) -> anyhow::Result<Scrape> {
        let text = http.get(format!("{url}/metrics")).bearer_auth(key).send().await?.text().await?;
        Ok(Scrape::parse(&text))
    }

    pub fn parse(text: &str) -> Scrape {
        let mut sums = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let name = series.split('{').next().unwrap_or(series);
            if let Ok(v) = value.parse::<f64>() {
                *sums.entry(name.to_string()).or_insert(0.0) += v;
                if series != name {
                    *sums.entry(series.to_string()).or_insert(0.0) += v;
                }
            }
        }
        Scrape(sums)
    }

    fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// One line on what happened between `before` and `self`.
    pub fn since(&self, before: &Scrape, phase: &str) -> String {
        let d = |name: &str| self.get(name) - before.get(name);
        let batches = d("budget_writer_batch_items_count");
        let per = |name: &str| if batches > 0.0 { d(name) / batches } else { 0.0 };
        let requests = d("budget_http_request_duration_seconds_count");
        let handler_ms =
            if requests > 0.0 { 1000.0 * d("budget_http_request_duration_seconds_sum") / requests } else { 0.0 };
        let stages = STAGES
            .iter()
            .map(|s| format!("{s} {:.1}", 1000.0 * per(&format!("budget_writer_stage_seconds_sum{{stage=\"{s}\"}}"))))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{phase}: {batches:.0} writer batches of {:.1} items on average; a batch waited {:.1} ms for the writer \
             and took {:.1} ms to decide and commit ({stages} ms); the server spent {handler_ms:.1} ms per request",
            per("budget_writer_batch_items_sum"),
            1000.0 * per("budget_writer_queue_wait_seconds_sum"),
            1000.0 * per("budget_writer_commit_seconds_sum"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_by_name() {
        let s = Scrape::parse("# HELP x\nbudget_writer_batch_items_sum 10\nbudget_writer_batch_items_count 2\nbudget_http_request_duration_seconds_sum{route=\"/a\"} 0.5\nbudget_http_request_duration_seconds_sum{route=\"/b\"} 0.5\nbudget_http_request_duration_seconds_count{route=\"/a\"} 10\n");
        let line = s.since(&Scrape::default(), "p");
        assert!(line.starts_with("p: 2 writer batches of 5.0 items"), "{line}");
        assert!(line.ends_with("100.0 ms per request"), "{line}");
    }

    #[test]
    fn splits_a_batch_by_stage() {
        let s = Scrape::parse(concat!(
            "budget_writer_batch_items_count 4\n",
            "budget_writer_commit_seconds_sum 0.04\n",
            "budget_writer_stage_seconds_sum{stage=\"load\"} 0.008\n",
            "budget_writer_stage_seconds_sum{stage=\"decide\"} 0.004\n",
            "budget_writer_stage_seconds_sum{stage=\"append\"} 0.02\n",
            "budget_writer_stage_seconds_sum{stage=\"commit\"} 0.006\n",
        ));
        let line = s.since(&Scrape::default(), "p");
        assert!(
            line.contains("took 10.0 ms to decide and commit (load 2.0, decide 1.0, append 5.0, commit 1.5 ms)"),
            "{line}"
        );
    }
}
