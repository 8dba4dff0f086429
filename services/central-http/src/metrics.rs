//! The Prometheus scrape endpoint: `GET /metrics` on plain HTTP.

use tokio::net::TcpListener;

/// Serves `GET /metrics` on `listener` with what `render` returns (the last rendering of the
/// metrics), in a task of its own until the process ends.
pub fn serve(listener: TcpListener, render: impl Fn() -> String + Clone + Send + Sync + 'static) {
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    });
}
