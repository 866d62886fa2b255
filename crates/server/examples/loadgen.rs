//! An open-loop HTTP load generator for the ingest benchmarks: sends one POST body at a
//! fixed rate over keep-alive connections and reports latency percentiles measured from
//! each request's *scheduled* send time (so a stalled server cannot hide its queueing:
//! no coordinated omission).
//!
//! ```text
//! cargo run --release -p sundial-server --example loadgen -- \
//!     ADDR PATH BODY_FILE RATE_PER_SEC DURATION_SECS [CONNECTIONS]
//! ```
//!
//! Prints one JSON object: requests scheduled, answered 200, errors, achieved rate and
//! latency p50 / p90 / p99 / p99.9 / max in milliseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    ok: u64,
    errors: u64,
}

fn arg(args: &[String], i: usize, name: &str) -> String {
    args.get(i)
        .cloned()
        .unwrap_or_else(|| panic!("missing argument {i}: {name}"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = arg(&args, 1, "ADDR");
    let path = arg(&args, 2, "PATH");
    let body = std::fs::read(arg(&args, 3, "BODY_FILE")).expect("read body file");
    let rate: f64 = arg(&args, 4, "RATE").parse().expect("rate");
    let secs: f64 = arg(&args, 5, "DURATION").parse().expect("duration");
    let connections: usize = args.get(6).map_or(64, |c| c.parse().expect("connections"));

    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(&body);
    let request = Arc::new(request);
    let stats = Arc::new(Mutex::new(Stats::default()));

    // The scheduler hands out send times; idle connections take them.
    let (tx, rx) = mpsc::channel::<Instant>(1_000_000);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (rx, request, stats, addr) = (rx.clone(), request.clone(), stats.clone(), addr.clone());
        workers.push(tokio::spawn(async move {
            let mut conn: Option<TcpStream> = None;
            let mut buf = vec![0_u8; 64 * 1024];
            loop {
                let Some(scheduled) = rx.lock().await.recv().await else {
                    return;
                };
                let ok = match send(&mut conn, &addr, &request, &mut buf).await {
                    Ok(status) => status == 200,
                    Err(_) => {
                        conn = None;
                        false
                    }
                };
                let latency = scheduled.elapsed().as_micros() as u64;
                let mut s = stats.lock().await;
                s.latencies_us.push(latency);
                if ok {
                    s.ok += 1;
                } else {
                    s.errors += 1;
                }
            }
        }));
    }
    let started = Instant::now();
    let total = (rate * secs) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    for i in 0..total {
        let at = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        if tx.send(at).await.is_err() {
            break;
        }
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut s = stats.lock().await;
    s.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        let n = s.latencies_us.len();
        if n == 0 {
            return 0.0;
        }
        let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
        s.latencies_us[i] as f64 / 1000.0
    };
    println!(
        "{{\"scheduled\":{total},\"ok\":{},\"errors\":{},\"achieved_per_sec\":{:.1},\
         \"p50_ms\":{:.2},\"p90_ms\":{:.2},\"p99_ms\":{:.2},\"p999_ms\":{:.2},\"max_ms\":{:.2}}}",
        s.ok,
        s.errors,
        (s.ok + s.errors) as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        pct(1.0),
    );
}

/// Sends the request on the connection (opening it if needed) and reads one answer
/// (Content-Length framing, as axum answers). Returns the status.
async fn send(
    conn: &mut Option<TcpStream>,
    addr: &str,
    request: &[u8],
    buf: &mut [u8],
) -> std::io::Result<u16> {
    if conn.is_none() {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        *conn = Some(stream);
    }
    let Some(stream) = conn.as_mut() else {
        return Err(std::io::Error::other("no connection"));
    };
    stream.write_all(request).await?;
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        filled += n;
        let text = &buf[..filled];
        if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&text[..end]).to_ascii_lowercase();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if filled >= end + 4 + length {
                return Ok(status);
            }
        }
        if filled == buf.len() {
            return Err(std::io::Error::other("answer too large"));
        }
    }
}
