//! The server's counters and histograms, rendered in the Prometheus text exposition format
//! (version 0.0.4) for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Request latency buckets, seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Batch size buckets, fields per forward pass.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A cumulative histogram as Prometheus defines it.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations in each bucket (not cumulative), the last one past every bound.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    fn observe(&mut self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
    }

    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count());
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

#[derive(Debug)]
struct State {
    /// Responses by (route, status code).
    responses: BTreeMap<(String, u16), u64>,
    predict_latency: Histogram,
    batch_size: Histogram,
    inference_seconds: Histogram,
    /// Fields computed and answered to a client still waiting.
    answered: u64,
    /// Fields of requests whose clients went away before they were computed (never computed).
    dropped: u64,
    /// Fields computed for clients that had gone by the time the answer was ready.
    unclaimed: u64,
    /// Pictures decoded.
    decoded: u64,
}

/// What became of the requests after a batch, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Fields answered to clients still waiting.
    pub answered: usize,
    /// Fields computed for clients that had gone by the time their answer was ready.
    pub unclaimed: usize,
}

/// Requests dropped because their clients had gone.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned {
    /// Fields never computed.
    pub dropped: usize,
    /// Fields computed before the client was found gone.
    pub unclaimed: usize,
}

/// How many forward passes the model thread ran, and how many fields they held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchCount {
    pub batches: u64,
    pub fields: usize,
}

/// Everything `/metrics` reports. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                responses: BTreeMap::new(),
                predict_latency: Histogram::new(LATENCY_BUCKETS),
                batch_size: Histogram::new(BATCH_BUCKETS),
                inference_seconds: Histogram::new(LATENCY_BUCKETS),
                answered: 0,
                dropped: 0,
                unclaimed: 0,
                decoded: 0,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic elsewhere while holding the lock leaves plain numbers behind: keep counting.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    /// One response sent: its route (`/v1/predict`, …, or `other`), status and latency.
    pub fn observe_response(&self, route: &str, status: u16, latency: Duration) {
        self.with(|s| {
            *s.responses.entry((route.to_owned(), status)).or_default() += 1;
            if route == "/v1/predict" {
                s.predict_latency.observe(latency.as_secs_f64());
            }
        });
    }

    /// What became of the requests a batch completed.
    pub fn observe_settled(&self, settled: Settled) {
        self.with(|s| {
            s.answered += settled.answered as u64;
            s.unclaimed += settled.unclaimed as u64;
        });
    }

    /// Requests dropped because their clients went away.
    pub fn observe_abandoned(&self, abandoned: Abandoned) {
        self.with(|s| {
            s.dropped += abandoned.dropped as u64;
            s.unclaimed += abandoned.unclaimed as u64;
        });
    }

    /// Pictures decoded (after every check on their headers).
    pub fn observe_decoded(&self) {
        self.with(|s| s.decoded += 1);
    }

    /// Fields answered so far.
    pub fn answered(&self) -> u64 {
        self.with(|s| s.answered)
    }

    pub fn observe_batch(&self, size: usize) {
        self.with(|s| s.batch_size.observe(size as f64));
    }

    pub fn observe_inference(&self, elapsed: Duration) {
        self.with(|s| s.inference_seconds.observe(elapsed.as_secs_f64()));
    }

    /// The forward passes so far and the fields in them.
    pub fn batches(&self) -> BatchCount {
        self.with(|s| BatchCount {
            batches: s.batch_size.count(),
            fields: s.batch_size.sum as usize,
        })
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        self.with(|s| {
            let mut out = String::new();
            render_responses(&mut out, &s.responses);
            s.predict_latency.render(
                &mut out,
                "mnist_cnn_predict_request_duration_seconds",
                "Time from request to response on /v1/predict.",
            );
            s.batch_size.render(
                &mut out,
                "mnist_cnn_batch_size",
                "Fields per forward pass of the model.",
            );
            s.inference_seconds.render(
                &mut out,
                "mnist_cnn_inference_duration_seconds",
                "Time of one forward pass.",
            );
            for (name, help, value) in [
                (
                    "mnist_cnn_predictions_total",
                    "Fields (pictures or pixel lists) computed and answered.",
                    s.answered,
                ),
                (
                    "mnist_cnn_fields_dropped_total",
                    "Fields never computed because their client went away first.",
                    s.dropped,
                ),
                (
                    "mnist_cnn_fields_unclaimed_total",
                    "Fields computed for clients that had gone when the answer was ready.",
                    s.unclaimed,
                ),
                (
                    "mnist_cnn_pictures_decoded_total",
                    "Pictures decoded (each request's pixel budget checked on the headers first).",
                    s.decoded,
                ),
            ] {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
                );
            }
            out
        })
    }
}

/// The responses sent, by route and status, and the errors among them, by route.
fn render_responses(out: &mut String, responses: &BTreeMap<(String, u16), u64>) {
    out.push_str(
        "# HELP mnist_cnn_http_requests_total HTTP responses sent, by route and status.\n\
         # TYPE mnist_cnn_http_requests_total counter\n",
    );
    for ((route, status), count) in responses {
        let _ = writeln!(
            out,
            "mnist_cnn_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
        );
    }
    out.push_str(
        "# HELP mnist_cnn_http_request_errors_total HTTP responses with a 4xx or 5xx \
         status, by route.\n# TYPE mnist_cnn_http_request_errors_total counter\n",
    );
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
    for ((route, status), count) in responses {
        if *status >= 400 {
            *errors.entry(route).or_default() += count;
        }
    }
    for (route, count) in errors {
        let _ = writeln!(
            out,
            "mnist_cnn_http_request_errors_total{{route=\"{route}\"}} {count}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let mut h = Histogram::new(&[1.0, 2.0, 4.0]);
        for v in [0.5, 1.0, 3.0, 9.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        for line in [
            "x_bucket{le=\"1\"} 2",
            "x_bucket{le=\"2\"} 2",
            "x_bucket{le=\"4\"} 3",
            "x_bucket{le=\"+Inf\"} 4",
            "x_sum 13.5",
            "x_count 4",
            "# TYPE x histogram",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing:\n{out}");
        }
    }

    #[test]
    fn responses_and_errors_are_counted_by_route_and_status() {
        let metrics = Metrics::new();
        metrics.observe_response("/v1/predict", 200, Duration::from_millis(3));
        metrics.observe_response("/v1/predict", 200, Duration::from_millis(4));
        metrics.observe_response("/v1/predict", 413, Duration::from_millis(1));
        metrics.observe_response("/healthz", 200, Duration::from_millis(1));
        metrics.observe_batch(3);
        metrics.observe_settled(Settled {
            answered: 3,
            unclaimed: 0,
        });
        metrics.observe_abandoned(Abandoned {
            dropped: 5,
            unclaimed: 0,
        });
        let text = metrics.render();
        for line in [
            "mnist_cnn_http_requests_total{route=\"/v1/predict\",status=\"200\"} 2",
            "mnist_cnn_http_requests_total{route=\"/v1/predict\",status=\"413\"} 1",
            "mnist_cnn_http_requests_total{route=\"/healthz\",status=\"200\"} 1",
            "mnist_cnn_http_request_errors_total{route=\"/v1/predict\"} 1",
            "mnist_cnn_predict_request_duration_seconds_count 3",
            "mnist_cnn_batch_size_bucket{le=\"4\"} 1",
            "mnist_cnn_predictions_total 3",
            "mnist_cnn_fields_dropped_total 5",
            "mnist_cnn_fields_unclaimed_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert_eq!(
            metrics.batches(),
            BatchCount {
                batches: 1,
                fields: 3
            }
        );
    }
}
