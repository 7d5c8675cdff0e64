//! Prometheus text exposition format (version 0.0.4): a writer and a fixed-bucket histogram.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets; `+Inf` is added.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// A latency histogram with [`LATENCY_BUCKETS`], lock-free to record into.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Builds one exposition: `# HELP` / `# TYPE` once per metric name, then its samples.
#[derive(Debug, Default)]
pub struct PromWriter {
    out: String,
    declared: Vec<String>,
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl PromWriter {
    fn declare(&mut self, name: &str, kind: &str, help: &str) {
        if !self.declared.iter().any(|d| d == name) {
            let _ = writeln!(self.out, "# HELP {name} {help}");
            let _ = writeln!(self.out, "# TYPE {name} {kind}");
            self.declared.push(name.to_string());
        }
    }

    /// A counter sample; `name` should end in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, l: &[(&str, &str)], v: u64) {
        self.declare(name, "counter", help);
        let _ = writeln!(self.out, "{name}{} {v}", labels(l));
    }

    pub fn gauge(&mut self, name: &str, help: &str, l: &[(&str, &str)], v: f64) {
        self.declare(name, "gauge", help);
        let _ = writeln!(self.out, "{name}{} {v}", labels(l));
    }

    /// A histogram in seconds: cumulative `_bucket{le=…}`, `_sum`, `_count`.
    pub fn histogram(&mut self, name: &str, help: &str, l: &[(&str, &str)], h: &Histogram) {
        self.declare(name, "histogram", help);
        let mut cumulative = 0;
        for (i, bucket) in h.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let mut with_le = l.to_vec();
            with_le.push(("le", &le));
            let _ = writeln!(self.out, "{name}_bucket{} {cumulative}", labels(&with_le));
        }
        let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(self.out, "{name}_sum{} {sum}", labels(l));
        let _ = writeln!(self.out, "{name}_count{} {cumulative}", labels(l));
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(1500)); // 0.002 bucket
        h.observe(Duration::from_millis(30)); // 0.05
        h.observe(Duration::from_secs(9)); // +Inf
        let mut w = PromWriter::default();
        w.histogram("x_seconds", "help", &[("stage", "detect")], &h);
        let text = w.finish();
        assert!(text.contains("# TYPE x_seconds histogram\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{stage=\"detect\",le=\"0.001\"} 0\n"));
        assert!(text.contains("x_seconds_bucket{stage=\"detect\",le=\"0.002\"} 1\n"));
        assert!(text.contains("x_seconds_bucket{stage=\"detect\",le=\"0.05\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{stage=\"detect\",le=\"5\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{stage=\"detect\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("x_seconds_count{stage=\"detect\"} 3\n"));
        assert!(
            text.contains("x_seconds_sum{stage=\"detect\"} 9.0315\n"),
            "{text}"
        );
    }

    #[test]
    fn help_and_type_once_per_name_and_labels_escaped() {
        let mut w = PromWriter::default();
        w.gauge("g", "a gauge", &[("k", "a\"b")], 1.5);
        w.gauge("g", "a gauge", &[("k", "c")], 2.0);
        let text = w.finish();
        assert_eq!(text.matches("# TYPE g gauge").count(), 1);
        assert!(text.contains("g{k=\"a\\\"b\"} 1.5\n"), "{text}");
    }
}
