//! Logging and OpenTelemetry for the binaries (`central`, `edge-agent`, `onshi-sim`); the
//! libraries only use the `tracing` and `opentelemetry` APIs, which do nothing until a binary
//! calls [`init`].
//!
//! Logs always go to stderr through `tracing-subscriber`'s fmt layer, filtered by `RUST_LOG`
//! (default `info`); traces take the spans at `info` and above whatever `RUST_LOG` says. Only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or a signal's own
//! `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`) is set, and `OTEL_SDK_DISABLED` is not
//! `true`, spans are exported as OTLP/gRPC traces (through `tracing-opentelemetry`) and the
//! `opentelemetry` instruments as OTLP/gRPC metrics; the W3C trace-context propagator is
//! installed then too. Otherwise nothing is built: no exporter, no export thread, no channel,
//! and every instrument is the API's no-op.
//!
//! Honoured variables (read from the map the binary passes in, never from the process
//! environment directly): `OTEL_SDK_DISABLED`, `OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` (and the
//! per-signal ones: only `grpc` is built in; anything else is refused with a message),
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER` (`none` turns a signal off),
//! `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds).
//!
//! A binary that serves a Prometheus scrape endpoint asks for it with [`Options::prometheus`]:
//! the meter provider is then built whatever the OTEL_* variables say, with a reader that keeps
//! a Prometheus rendering ([`prometheus::PrometheusText`]) beside the OTLP one, if any.

pub mod prometheus;
pub mod stop;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What [`init`] reads from the environment map, resolved. `None` endpoints: that signal is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelSettings {
    pub traces_endpoint: Option<String>,
    pub metrics_endpoint: Option<String>,
    pub service_name: String,
    pub resource_attributes: Vec<(String, String)>,
    pub timeout: Duration,
    pub span_delay: Duration,
    pub metric_interval: Duration,
}

impl OtelSettings {
    /// Reads the OTEL_* variables; `Ok(None)` when nothing is to be exported.
    pub fn from_env(
        default_service_name: &str,
        env: &HashMap<String, String>,
    ) -> anyhow::Result<Option<Self>> {
        let get = |key: &str| env.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let endpoint = |signal: &str, exporter_var: &str| -> anyhow::Result<Option<String>> {
            if get(exporter_var).is_some_and(|v| v.eq_ignore_ascii_case("none")) {
                return Ok(None);
            }
            let Some(endpoint) = get(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))
                .or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"))
            else {
                return Ok(None);
            };
            let protocol = get(&format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"))
                .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
                .unwrap_or("grpc");
            if protocol != "grpc" {
                bail!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only grpc is built in; send to a \
                     collector's OTLP/gRPC port (4317) or unset the variable"
                );
            }
            Ok(Some(endpoint.to_string()))
        };
        let traces_endpoint = endpoint("TRACES", "OTEL_TRACES_EXPORTER")?;
        let metrics_endpoint = endpoint("METRICS", "OTEL_METRICS_EXPORTER")?;
        if traces_endpoint.is_none() && metrics_endpoint.is_none() {
            return Ok(None);
        }
        let millis = |key: &str, default: u64| -> anyhow::Result<Duration> {
            match get(key) {
                None => Ok(Duration::from_millis(default)),
                Some(v) => v
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .with_context(|| format!("{key}={v}: expected milliseconds")),
            }
        };
        let mut resource_attributes = Vec::new();
        let mut service_name = None;
        for pair in get("OTEL_RESOURCE_ATTRIBUTES")
            .unwrap_or("")
            .split(',')
            .filter(|p| !p.trim().is_empty())
        {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("OTEL_RESOURCE_ATTRIBUTES: {pair:?} is not key=value"))?;
            let (key, value) = (key.trim().to_string(), value.trim().to_string());
            if key == "service.name" {
                service_name = Some(value);
            } else {
                resource_attributes.push((key, value));
            }
        }
        Ok(Some(Self {
            traces_endpoint,
            metrics_endpoint,
            service_name: get("OTEL_SERVICE_NAME")
                .map(str::to_string)
                .or(service_name)
                .unwrap_or_else(|| default_service_name.to_string()),
            resource_attributes,
            timeout: millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
            span_delay: millis("OTEL_BSP_SCHEDULE_DELAY", 5_000)?,
            metric_interval: millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000)?,
        }))
    }
}

/// What a binary asks for beyond the OTEL_* variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Keep a Prometheus rendering of the metrics for a scrape endpoint.
    pub prometheus: bool,
}

/// Flushes and stops the exporters when dropped (at the end of `main`, inside the runtime).
#[must_use = "dropping the guard stops the exporters"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    prometheus: Option<prometheus::PrometheusText>,
}

impl TelemetryGuard {
    /// Whether anything is exported.
    pub fn exporting(&self) -> bool {
        self.tracer_provider.is_some() || self.meter_provider.is_some()
    }

    /// The Prometheus rendering, when [`Options::prometheus`] asked for it.
    pub fn prometheus(&self) -> Option<prometheus::PrometheusText> {
        self.prometheus.clone()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: flushing traces at exit: {error}");
        }
        if let Some(provider) = self.meter_provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: flushing metrics at exit: {error}");
        }
    }
}

/// Sets up logging and, when the OTEL_* variables ask for it, OTLP export. Call once, early in
/// `main`, from inside the tokio runtime (the gRPC exporter's channel lives on it); keep the
/// guard until the end.
pub fn init(
    default_service_name: &str,
    env: &HashMap<String, String>,
) -> anyhow::Result<TelemetryGuard> {
    init_with(default_service_name, env, Options::default())
}

/// [`init`] with what the binary asks for beyond the OTEL_* variables.
pub fn init_with(
    default_service_name: &str,
    env: &HashMap<String, String>,
    options: Options,
) -> anyhow::Result<TelemetryGuard> {
    let filter = || {
        env.get("RUST_LOG")
            .and_then(|v| EnvFilter::try_new(v).ok())
            .unwrap_or_else(|| EnvFilter::new("info"))
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter());
    let settings = match OtelSettings::from_env(default_service_name, env) {
        Ok(settings) => settings,
        Err(error) => {
            tracing_subscriber::registry().with(fmt).try_init()?;
            return Err(error);
        }
    };
    let settings = match settings {
        Some(settings) => settings,
        None if options.prometheus => OtelSettings {
            traces_endpoint: None,
            metrics_endpoint: None,
            service_name: default_service_name.to_string(),
            resource_attributes: Vec::new(),
            timeout: Duration::from_secs(10),
            span_delay: Duration::from_secs(5),
            metric_interval: Duration::from_secs(15),
        },
        None => {
            tracing_subscriber::registry().with(fmt).try_init()?;
            return Ok(TelemetryGuard::default());
        }
    };
    let guard = build(&settings, options)?;
    // Spans at info and above are traced whatever RUST_LOG says: quieter logs must not cut the
    // traces, and the HTTP/2 and gRPC internals (the exporter's own among them) stay out.
    let otel = guard.tracer_provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("onshi-fleet"))
            .with_filter(EnvFilter::new("info"))
    });
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()?;
    tracing::info!(
        service = %settings.service_name,
        traces = settings.traces_endpoint.is_some(),
        metrics = settings.metrics_endpoint.is_some(),
        prometheus = options.prometheus,
        "telemetry export set up (OTLP/gRPC where an endpoint is set)"
    );
    Ok(guard)
}

fn build(settings: &OtelSettings, options: Options) -> anyhow::Result<TelemetryGuard> {
    let resource = Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .with_attributes(
            settings
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut guard = TelemetryGuard::default();
    if let Some(endpoint) = &settings.traces_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(settings.timeout)
            .build()
            .context("building the OTLP span exporter")?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(settings.span_delay)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.clone())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        guard.tracer_provider = Some(provider);
    }
    if settings.metrics_endpoint.is_some() || options.prometheus {
        let mut provider = SdkMeterProvider::builder().with_resource(resource);
        if let Some(endpoint) = &settings.metrics_endpoint {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(settings.timeout)
                .build()
                .context("building the OTLP metric exporter")?;
            provider = provider.with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(settings.metric_interval)
                    .build(),
            );
        }
        if options.prometheus {
            let text = prometheus::PrometheusText::default();
            let exporter = prometheus::PrometheusExporter { text: text.clone() };
            provider = provider.with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(settings.metric_interval)
                    .build(),
            );
            guard.prometheus = Some(text);
        }
        let provider = provider.build();
        opentelemetry::global::set_meter_provider(provider.clone());
        guard.meter_provider = Some(provider);
    }
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        assert_eq!(OtelSettings::from_env("central", &env(&[])).unwrap(), None);
        assert_eq!(
            OtelSettings::from_env("central", &env(&[("OTEL_SERVICE_NAME", "x")])).unwrap(),
            None
        );
    }

    #[test]
    fn the_sdk_can_be_disabled_and_signals_turned_off() {
        let disabled = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(OtelSettings::from_env("central", &disabled).unwrap(), None);
        let no_traces = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]);
        let settings = OtelSettings::from_env("central", &no_traces)
            .unwrap()
            .unwrap();
        assert_eq!(settings.traces_endpoint, None);
        assert_eq!(
            settings.metrics_endpoint.as_deref(),
            Some("http://127.0.0.1:4317")
        );
    }

    #[test]
    fn standard_variables_are_read_from_the_map() {
        let settings = OtelSettings::from_env(
            "central",
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:4317"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.name=c1, deployment.environment=prod",
                ),
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            settings.traces_endpoint.as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(
            settings.metrics_endpoint.as_deref(),
            Some("http://metrics:4317")
        );
        assert_eq!(settings.service_name, "c1");
        assert_eq!(
            settings.resource_attributes,
            vec![("deployment.environment".into(), "prod".into())]
        );
        assert_eq!(settings.span_delay, Duration::from_millis(100));
        assert_eq!(settings.metric_interval, Duration::from_millis(250));
    }

    #[test]
    fn only_grpc_is_accepted() {
        let error = OtelSettings::from_env(
            "central",
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("only grpc"), "{error}");
    }

    #[test]
    fn init_without_an_endpoint_builds_no_exporter() {
        let guard = init("central", &env(&[])).unwrap();
        assert!(!guard.exporting());
    }
}
