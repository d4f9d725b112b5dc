//! Starvation bench: a normal client's `DescribeRegions` latency while many idle and
//! half-sent connections are held open against the server (the slow-loris attack), against a
//! baseline measured in the same run with none held.
//!
//! `cargo bench -p server --bench idle` holds 10,000 connections (from 40 loopback
//! addresses, 250 each, under the per-peer cap); client and server share this process, so it
//! needs an open-file limit above 40,000 (`ulimit -n 65536` first). `STOCKADE_BENCH_QUICK=1` (and `cargo test`) holds 200.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::{Control, Limits};
use server::http::{serve, HttpLimits};
use server::{app, auth, AppState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const AK: &str = "LTAIidlebenchkey";
const SK: &str = "idlebenchsecret";

async fn connect(from: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(addr).await
}

/// One `DescribeRegions` on a fresh connection: its latency, and whether it was answered 200.
async fn describe_regions(addr: SocketAddr) -> (Duration, bool) {
    let started = Instant::now();
    let mut stream = connect([127, 0, 0, 1], addr).await.expect("connect");
    let query = auth::signed_v1_query(
        "GET",
        AK,
        SK,
        [("Action".to_string(), "DescribeRegions".to_string())],
    );
    let request = format!("GET /?{query} HTTP/1.1\r\nhost: stockade\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    (started.elapsed(), answer.starts_with(b"HTTP/1.1 200"))
}

/// p50 and p99 of `n` sequential requests, in milliseconds, and how many failed.
async fn latencies(addr: SocketAddr, n: usize) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        let (t, ok) = describe_regions(addr).await;
        times.push(t.as_secs_f64() * 1000.0);
        failed += usize::from(!ok);
    }
    times.sort_by(f64::total_cmp);
    (times[n / 2], times[(n * 99 / 100).min(n - 1)], failed)
}

fn main() {
    if let Ok(spec) = std::env::var("STOCKADE_IDLE_HOLD") {
        return hold(&spec);
    }
    // `cargo test` runs benches without `--bench`: a smoke run then.
    let quick =
        std::env::var("STOCKADE_BENCH_QUICK").is_ok() || !std::env::args().any(|a| a == "--bench");
    let held_target = if quick { 200 } else { 10_000 };
    let samples = if quick { 50 } else { 1000 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let control = Control::open(dir.path(), Limits::default()).unwrap();
        control
            .create_account("bench", Some((AK.into(), SK.into())))
            .unwrap();
        let state = Arc::new(AppState::new(Arc::new(control), vec!["cn-hangzhou".into()]));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = HttpLimits {
            header_read_timeout: Duration::from_secs(60),
            ..HttpLimits::default()
        }
        .within_descriptors(server::http::descriptor_limit());
        println!("limits: {limits:?}");
        tokio::spawn(serve(listener, app(state), limits, std::future::pending()));
        let (base50, base99, base_failed) = latencies(addr, samples).await;
        // The attack, from another process (the descriptors are its own): idle connections
        // and half-sent requests, 250 per loopback address.
        let mut attacker = std::process::Command::new(std::env::current_exe().unwrap())
            .env("STOCKADE_IDLE_HOLD", format!("{addr} {held_target}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("attacker process");
        let mut report = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(attacker.stdout.take().unwrap()),
            &mut report,
        )
        .unwrap();
        let held: usize = report
            .trim()
            .parse()
            .expect("the attacker reports what it holds");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (p50, p99, failed) = latencies(addr, samples).await;
        println!("\nDescribeRegions on a fresh connection, {samples} sequential requests");
        println!("| connections held | p50 ms | p99 ms | refused or failed |");
        println!("|---:|---:|---:|---:|");
        println!("| 0 (baseline, same run) | {base50:.2} | {base99:.2} | {base_failed} |");
        println!("| {held} | {p50:.2} | {p99:.2} | {failed} |");
        println!("p99 ratio to baseline: {:.2}x", p99 / base99);
        drop(attacker.stdin.take());
        let _ = attacker.wait();
    });
}

/// The attacker: holds `count` connections to `addr`, reports how many it got, and keeps
/// them until its input closes.
fn hold(spec: &str) {
    let (addr, count) = spec.split_once(' ').unwrap();
    let (addr, count): (SocketAddr, usize) = (addr.parse().unwrap(), count.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut held = Vec::with_capacity(count);
        for k in 0..count {
            let from = [127, 0, 1 + (k / 250) as u8, 2];
            let Ok(mut s) = connect(from, addr).await else {
                break;
            };
            if k % 2 == 0 {
                let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: sto").await;
            }
            held.push(s);
        }
        println!("{}", held.len());
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        drop(held);
    });
}
