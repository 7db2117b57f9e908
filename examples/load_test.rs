//! A load generator for `mnist-cnn serve`: C clients, each on its own keep-alive connection,
//! send MNIST test digits to POST /v1/predict back to back for a fixed time; prints one JSON
//! line with requests per second, latency percentiles and errors.
//!
//!   cargo run --release --example load_test -- --url http://127.0.0.1:8080 \
//!       --concurrency 32 --seconds 60 [--png] [--data data/mnist]
//!
//! Bounded in time and requests (--max-requests); every non-200 answer counts as an error.

use anyhow::{bail, ensure, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Options {
    address: String,
    concurrency: usize,
    seconds: f64,
    max_requests: u64,
    png: bool,
    data: PathBuf,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        address: "127.0.0.1:8080".to_owned(),
        concurrency: 1,
        seconds: 10.0,
        max_requests: 10_000_000,
        png: false,
        data: PathBuf::from("data/mnist"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => {
                let url = value()?;
                options.address = url
                    .strip_prefix("http://")
                    .context("--url must start with http://")?
                    .trim_end_matches('/')
                    .to_owned();
            }
            "--concurrency" => options.concurrency = value()?.parse()?,
            "--seconds" => options.seconds = value()?.parse()?,
            "--max-requests" => options.max_requests = value()?.parse()?,
            "--data" => options.data = value()?.into(),
            "--png" => options.png = true,
            other => bail!("unknown flag {other}"),
        }
    }
    ensure!(options.concurrency >= 1, "--concurrency must be at least 1");
    Ok(options)
}

/// Request bodies: the first 1,000 MNIST test digits, as pixel JSON or as PNG.
fn bodies(options: &Options) -> Result<(Vec<Vec<u8>>, &'static str)> {
    let mnist = mnist_cnn::data::Mnist::load(&options.data)?;
    let n = 1000.min(mnist.test.len()) as i64;
    let pixels = (mnist.test.images.narrow(0, 0, n) * 255.0)
        .round()
        .to_kind(tch::Kind::Uint8)
        .flatten(0, -1);
    let pixels = Vec::<u8>::try_from(pixels)?;
    let bodies = pixels
        .chunks(784)
        .map(|digit| {
            if options.png {
                let picture = image::GrayImage::from_raw(28, 28, digit.to_vec()).expect("28×28");
                let mut bytes = std::io::Cursor::new(Vec::new());
                picture
                    .write_to(&mut bytes, image::ImageFormat::Png)
                    .expect("PNG in memory");
                bytes.into_inner()
            } else {
                serde_json::json!({ "pixels": digit })
                    .to_string()
                    .into_bytes()
            }
        })
        .collect();
    Ok((
        bodies,
        if options.png {
            "image/png"
        } else {
            "application/json"
        },
    ))
}

/// One client: a keep-alive connection, requests back to back until the deadline. Returns
/// the latency of each successful request, in microseconds, and the error count.
fn client(
    address: &str,
    bodies: &[Vec<u8>],
    content_type: &str,
    offset: usize,
    deadline: Instant,
    budget: &AtomicU64,
) -> (Vec<u64>, u64) {
    let (mut latencies, mut errors) = (Vec::new(), 0);
    let mut connection: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut i = offset;
    while Instant::now() < deadline && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
        let body = &bodies[i % bodies.len()];
        i += 1;
        if connection.is_none() {
            connection = TcpStream::connect(address).ok().and_then(|stream| {
                stream.set_nodelay(true).ok()?;
                let reader = BufReader::new(stream.try_clone().ok()?);
                Some((stream, reader))
            });
        }
        let Some((stream, reader)) = connection.as_mut() else {
            errors += 1;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let started = Instant::now();
        match round_trip(stream, reader, address, body, content_type) {
            Ok(200) => latencies.push(started.elapsed().as_micros() as u64),
            Ok(_) => errors += 1,
            Err(_) => {
                errors += 1;
                connection = None;
            }
        }
    }
    (latencies, errors)
}

/// Sends one request and reads its answer; returns the status.
fn round_trip(
    stream: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    address: &str,
    body: &[u8],
    content_type: &str,
) -> Result<u16> {
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()?;
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse()?;
            }
        }
    }
    let mut answer = vec![0; length];
    reader.read_exact(&mut answer)?;
    Ok(status)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank] as f64 / 1000.0
}

fn main() -> Result<()> {
    let options = parse_options()?;
    let (bodies, content_type) = bodies(&options)?;
    let bodies = Arc::new(bodies);
    let budget = Arc::new(AtomicU64::new(options.max_requests));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(options.seconds);
    let workers: Vec<_> = (0..options.concurrency)
        .map(|c| {
            let (bodies, budget) = (bodies.clone(), budget.clone());
            let address = options.address.clone();
            std::thread::spawn(move || {
                client(&address, &bodies, content_type, c * 37, deadline, &budget)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (l, e) = worker.join().expect("client thread");
        latencies.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    println!(
        "{}",
        serde_json::json!({
            "concurrency": options.concurrency,
            "payload": content_type,
            "seconds": (seconds * 10.0).round() / 10.0,
            "requests": latencies.len(),
            "errors": errors,
            "requests_per_second": (latencies.len() as f64 / seconds).round(),
            "p50_ms": percentile(&latencies, 50.0),
            "p99_ms": percentile(&latencies, 99.0),
        })
    );
    Ok(())
}
