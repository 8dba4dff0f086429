//! The Prometheus scrape endpoint: `GET /metrics` on plain HTTP, under the same listener limits
//! as every other listener (`fleet_tls::listen::serve_http_with`).

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
    // Bounded like every listener: a scraper or two connect here, never thousands.
    let limits = fleet_tls::listen::ListenerLimits {
        max_connections: CONNECTIONS,
        ..fleet_tls::listen::ListenerLimits::DEFAULT
    };
    tokio::spawn(fleet_tls::listen::serve_http_with(
        listener,
        router,
        limits,
        std::future::pending(),
    ));
}

/// Connections the endpoint holds at once (its scrapers, and a person's curl).
const CONNECTIONS: usize = 16;
