//! The benchmark ceiling: a bare axum endpoint that answers 200 to any POST, on the
//! same stack (axum, hyper, tokio multi-thread runtime) as `sundial serve`.
//!
//! `cargo run --release -p sundial-server --example hello -- 127.0.0.1:18090`

use axum::Router;
use axum::routing::post;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let app = Router::new().route("/api/v1/open_app", post(|| async { "{}" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
