//! A small OTLP/gRPC receiver for the telemetry tests: the collector's TraceService and
//! MetricsService on 127.0.0.1:0, keeping what the processes export (service, span ids and
//! links; metric names and attributes) for the test to look at.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

/// One received span, with hex ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// (trace id, span id) of each link.
    pub links: Vec<(String, String)>,
}

/// One received metric data point (or, for a metric without points, the metric alone).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPoint {
    pub service: String,
    pub metric: String,
    /// Every attribute as `key=value`.
    pub attributes: Vec<String>,
}

#[derive(Debug, Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
    points: Mutex<Vec<ReceivedPoint>>,
    /// Woken on every export request.
    changed: Notify,
    requests: Mutex<u64>,
}

/// The receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    /// `http://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    received: Arc<Received>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Debug, Clone)]
struct Service(Arc<Received>);

impl OtlpReceiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the OTLP receiver")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let received = Arc::new(Received::default());
        let service = Service(received.clone());
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(service.clone()))
                .add_service(MetricsServiceServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        Ok(Self {
            endpoint,
            received,
            server,
        })
    }

    /// The environment that points a process at this receiver, with short export intervals.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300".into()),
        ]
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().expect("lock").clone()
    }

    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.received.points.lock().expect("lock").clone()
    }

    /// Export requests received so far (traces and metrics, empty or not).
    pub fn requests(&self) -> u64 {
        *self.received.requests.lock().expect("lock")
    }

    /// Waits until `check` finds what it looks for in what was received, woken by each export;
    /// fails after [`crate::patience`].
    pub async fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + crate::patience();
        loop {
            // Registered before the check, so an export between the two is not missed.
            let changed = self.received.changed.notified();
            if let Some(found) = check(self) {
                return found;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "gave up after {:?} waiting for: {what}\nspans: {:#?}\nmetrics: {:?}",
                    crate::patience(),
                    self.spans(),
                    self.points()
                        .iter()
                        .map(|p| format!("{}:{}", p.service, p.metric))
                        .collect::<std::collections::BTreeSet<_>>()
                );
            }
        }
    }
}

fn service_name(resource: Option<&Resource>) -> String {
    resource
        .into_iter()
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == "service.name")
        .map(|kv| value_text(kv.value.as_ref()))
        .unwrap_or_default()
}

fn value_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(attributes: &[KeyValue]) -> Vec<String> {
    attributes
        .iter()
        .map(|kv| format!("{}={}", kv.key, value_text(kv.value.as_ref())))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut found = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = service_name(resource_spans.resource.as_ref());
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    found.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        links: span
                            .links
                            .iter()
                            .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                            .collect(),
                    });
                }
            }
        }
        self.0.spans.lock().expect("lock").extend(found);
        *self.0.requests.lock().expect("lock") += 1;
        self.0.changed.notify_waiters();
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Service {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut found = Vec::new();
        for resource_metrics in request.into_inner().resource_metrics {
            let service = service_name(resource_metrics.resource.as_ref());
            for scope in resource_metrics.scope_metrics {
                for metric in scope.metrics {
                    let point_attributes: Vec<Vec<String>> = match &metric.data {
                        Some(Data::Gauge(g)) => g
                            .data_points
                            .iter()
                            .map(|p| attributes(&p.attributes))
                            .collect(),
                        Some(Data::Sum(s)) => s
                            .data_points
                            .iter()
                            .map(|p| attributes(&p.attributes))
                            .collect(),
                        Some(Data::Histogram(h)) => h
                            .data_points
                            .iter()
                            .map(|p| attributes(&p.attributes))
                            .collect(),
                        Some(Data::ExponentialHistogram(h)) => h
                            .data_points
                            .iter()
                            .map(|p| attributes(&p.attributes))
                            .collect(),
                        Some(Data::Summary(s)) => s
                            .data_points
                            .iter()
                            .map(|p| attributes(&p.attributes))
                            .collect(),
                        None => vec![Vec::new()],
                    };
                    for attributes in point_attributes {
                        found.push(ReceivedPoint {
                            service: service.clone(),
                            metric: metric.name.clone(),
                            attributes,
                        });
                    }
                }
            }
        }
        self.0.points.lock().expect("lock").extend(found);
        *self.0.requests.lock().expect("lock") += 1;
        self.0.changed.notify_waiters();
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}
