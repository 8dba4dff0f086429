//! The Prometheus text exposition of the process's metrics, for a scrape endpoint.
//!
//! A small exporter behind the SDK's own `PeriodicReader` (no experimental SDK features, no
//! extra crates): at each collection it renders the metrics as Prometheus text (format 0.0.4)
//! and keeps the result; a scrape returns the last rendering, at most one interval old.
//! Counters are cumulative, as Prometheus expects; names are the instruments' own
//! (`<namespace>_<name>_<unit>[_total]`).

use std::fmt::{Display, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;

/// The last rendering of the metrics; cheap to clone, shared with the scrape handler.
#[derive(Debug, Clone, Default)]
pub struct PrometheusText(Arc<Mutex<String>>);

impl PrometheusText {
    /// The metrics as Prometheus text, as of the last collection.
    pub fn render(&self) -> String {
        self.0.lock().map(|text| text.clone()).unwrap_or_default()
    }
}

#[derive(Debug)]
pub(crate) struct PrometheusExporter {
    pub(crate) text: PrometheusText,
}

impl PushMetricExporter for PrometheusExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let rendered = encode(metrics);
        if let Ok(mut text) = self.text.0.lock() {
            *text = rendered;
        }
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

fn encode(metrics: &ResourceMetrics) -> String {
    let mut out = String::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            let name = sanitize(metric.name());
            match metric.data() {
                AggregatedMetrics::F64(data) => write_metric(&mut out, &name, metric, data),
                AggregatedMetrics::U64(data) => write_metric(&mut out, &name, metric, data),
                AggregatedMetrics::I64(data) => write_metric(&mut out, &name, metric, data),
            }
        }
    }
    out
}

fn write_metric<T: Copy + Display>(
    out: &mut String,
    name: &str,
    metric: &opentelemetry_sdk::metrics::data::Metric,
    data: &MetricData<T>,
) {
    let kind = match data {
        MetricData::Gauge(_) => "gauge",
        MetricData::Sum(sum) if sum.is_monotonic() => "counter",
        MetricData::Sum(_) => "gauge",
        MetricData::Histogram(_) => "histogram",
        // Not used by onshi-fleet's instruments; left out rather than misreported.
        MetricData::ExponentialHistogram(_) => return,
    };
    if !metric.description().is_empty() {
        let _ = writeln!(out, "# HELP {name} {}", escape_help(metric.description()));
    }
    let _ = writeln!(out, "# TYPE {name} {kind}");
    match data {
        MetricData::Gauge(gauge) => {
            for point in gauge.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(point.attributes(), None),
                    point.value()
                );
            }
        }
        MetricData::Sum(sum) => {
            for point in sum.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(point.attributes(), None),
                    point.value()
                );
            }
        }
        MetricData::Histogram(histogram) => {
            for point in histogram.data_points() {
                let mut cumulative = 0u64;
                let counts: Vec<u64> = point.bucket_counts().collect();
                for (bound, count) in point.bounds().zip(&counts) {
                    cumulative += count;
                    let le = bound.to_string();
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        labels(point.attributes(), Some(&le))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    labels(point.attributes(), Some("+Inf")),
                    point.count()
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    labels(point.attributes(), None),
                    point.sum()
                );
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    labels(point.attributes(), None),
                    point.count()
                );
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn labels<'a>(attributes: impl Iterator<Item = &'a KeyValue>, le: Option<&str>) -> String {
    let mut pairs: Vec<String> = attributes
        .map(|kv| {
            format!(
                "{}=\"{}\"",
                sanitize(kv.key.as_str()),
                escape_value(&kv.value.to_string())
            )
        })
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

/// Prometheus names and label names: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn escape_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

    #[tokio::test]
    async fn counters_gauges_and_histograms_render_as_prometheus_text() {
        let text = PrometheusText::default();
        let reader = PeriodicReader::builder(PrometheusExporter { text: text.clone() })
            .with_interval(Duration::from_secs(3600))
            .build();
        let provider = SdkMeterProvider::builder().with_reader(reader).build();
        let meter = provider.meter("test");
        let counter = meter
            .u64_counter("central_acks_total")
            .with_description("Acks")
            .build();
        counter.add(3, &[KeyValue::new("result", "stored")]);
        let histogram = meter
            .f64_histogram("central_commit_duration_seconds")
            .with_boundaries(vec![0.1, 1.0])
            .build();
        histogram.record(0.05, &[]);
        histogram.record(0.5, &[]);
        let gauge = meter
            .i64_up_down_counter("central_agents_connected")
            .build();
        gauge.add(2, &[]);
        provider.force_flush().unwrap();
        let rendered = text.render();
        for line in [
            "# TYPE central_acks_total counter",
            "central_acks_total{result=\"stored\"} 3",
            "# TYPE central_commit_duration_seconds histogram",
            "central_commit_duration_seconds_bucket{le=\"0.1\"} 1",
            "central_commit_duration_seconds_bucket{le=\"1\"} 2",
            "central_commit_duration_seconds_bucket{le=\"+Inf\"} 2",
            "central_commit_duration_seconds_count 2",
            "# TYPE central_agents_connected gauge",
            "central_agents_connected 2",
        ] {
            assert!(
                rendered.lines().any(|l| l == line),
                "{line:?} missing in:\n{rendered}"
            );
        }
        provider.shutdown().unwrap();
    }
}
