//! The router's counters and histograms in Prometheus' text format (`/v1/metrics`): requests and
//! their outcome by route, failovers and errors by provider and reason, latency and
//! time-to-first-token histograms, tokens.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Latency bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.counts[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

const HELP: [(&str, &str, &str); 8] = [
    (
        "candlelight_requests_total",
        "counter",
        "Tries by route and outcome.",
    ),
    (
        "candlelight_failovers_total",
        "counter",
        "Requests moved to the next route, by the route left and why.",
    ),
    (
        "candlelight_tokens_total",
        "counter",
        "Tokens by route and kind (prompt, completion).",
    ),
    (
        "candlelight_unanswered_total",
        "counter",
        "Requests no route could answer (503).",
    ),
    (
        "candlelight_coalesced_total",
        "counter",
        "Requests answered by an identical one in flight.",
    ),
    (
        "candlelight_cache_total",
        "counter",
        "The answer cache: answers of deterministic requests kept, served (every route failed), evicted.",
    ),
    (
        "candlelight_request_duration_seconds",
        "histogram",
        "From request to last byte, by route.",
    ),
    (
        "candlelight_time_to_first_token_seconds",
        "histogram",
        "From request to first token, by route.",
    ),
];

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, name: &'static str, labels: Labels, n: u64) {
        *self.counters.entry((name, labels)).or_default() += n;
    }

    /// One try on `route` ended with `outcome` (ok, busy, failed, key_rejected, client_error).
    pub fn tried(&mut self, route: &str, outcome: &str) {
        self.add(
            "candlelight_requests_total",
            vec![("route", route.into()), ("outcome", outcome.into())],
            1,
        );
    }

    pub fn failed_over(&mut self, from: &str, reason: &str) {
        self.add(
            "candlelight_failovers_total",
            vec![("from", from.into()), ("reason", reason.into())],
            1,
        );
    }

    pub fn unanswered(&mut self) {
        self.add("candlelight_unanswered_total", Vec::new(), 1);
    }

    pub fn coalesced(&mut self) {
        self.add("candlelight_coalesced_total", Vec::new(), 1);
    }

    /// The answer cache: `event` is kept, served or evicted.
    pub fn cache(&mut self, event: &str, n: u64) {
        self.add("candlelight_cache_total", vec![("event", event.into())], n);
    }

    pub fn tokens(&mut self, route: &str, prompt: u64, completion: u64) {
        self.add(
            "candlelight_tokens_total",
            vec![("route", route.into()), ("kind", "prompt".into())],
            prompt,
        );
        self.add(
            "candlelight_tokens_total",
            vec![("route", route.into()), ("kind", "completion".into())],
            completion,
        );
    }

    /// A finished request: total time, and time to its first token when it streamed one.
    pub fn timed(&mut self, route: &str, seconds: f64, first_token_seconds: Option<f64>) {
        let labels = vec![("route", route.to_string())];
        self.histograms
            .entry(("candlelight_request_duration_seconds", labels.clone()))
            .or_default()
            .observe(seconds);
        if let Some(t) = first_token_seconds {
            self.histograms
                .entry(("candlelight_time_to_first_token_seconds", labels))
                .or_default()
                .observe(t);
        }
    }

    /// The text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, labels), v) in &self.counters {
                if *n == name {
                    let _ = writeln!(out, "{name}{} {v}", label_set(labels, None));
                }
            }
            for ((n, labels), h) in &self.histograms {
                if *n != name {
                    continue;
                }
                let mut cumulative = 0;
                for (bound, c) in BUCKETS.iter().zip(&h.counts) {
                    cumulative += c;
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        label_set(labels, Some(&bound.to_string()))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    label_set(labels, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{} {}", label_set(labels, None), h.sum);
                let _ = writeln!(out, "{name}_count{} {}", label_set(labels, None), h.count);
            }
        }
        out
    }
}

fn label_set(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    parts.extend(le.map(|le| format!("le=\"{le}\"")));
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
