//! A load generator for `mnist-cnn serve`, in three modes; each prints one JSON line.
//!
//! - `--mode steady` (the default): C clients, each on its own keep-alive connection, send
//!   MNIST test digits to POST /v1/predict back to back for a fixed time: requests per second,
//!   latency percentiles and errors. Bounded in time and requests (--max-requests); every
//!   non-200 answer counts as an error.
//! - `--mode flood`: four clients post 1,024-item lists in a loop while a fifth asks for one
//!   digit every 100 ms and a sixth times GET /healthz every 100 ms: how the single digits and
//!   /healthz fare (statuses, median and p99 latency) and how many lists were served or refused.
//! - `--mode bodies --pid PID`: four 16 MiB bodies of tiny lists (`[[0],[0],…]`) at once, with
//!   the server's resident memory sampled from /proc/PID/status every 20 ms until 10 s after the
//!   last answer, and /healthz timed meanwhile: peak RSS, RSS 10 s later, /healthz latency.
//!
//! ```text
//! cargo run --release --example load_test -- --url http://127.0.0.1:8080 \
//!     [--mode steady|flood|bodies] [--concurrency 32] [--seconds 60] [--png] \
//!     [--data data/mnist] [--pid PID]
//! ```

use anyhow::{bail, ensure, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Options {
    mode: String,
    pid: Option<u32>,
    address: String,
    concurrency: usize,
    seconds: f64,
    max_requests: u64,
    png: bool,
    data: PathBuf,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        mode: "steady".to_owned(),
        pid: None,
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
            "--mode" => options.mode = value()?,
            "--pid" => options.pid = Some(value()?.parse()?),
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
            Ok(answer) => {
                match answer.status {
                    200 => latencies.push(started.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
                if answer.closes {
                    connection = None; // the server ends every connection after a while
                }
            }
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
) -> Result<Answer> {
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
    let (mut length, mut closes) = (0usize, false);
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
            if name.eq_ignore_ascii_case("connection") {
                closes = value.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    let mut answer = vec![0; length];
    reader.read_exact(&mut answer)?;
    Ok(Answer { status, closes })
}

/// An answer's status, and whether the server closes the connection after it.
struct Answer {
    status: u16,
    closes: bool,
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
    match options.mode.as_str() {
        "steady" => steady(&options),
        "flood" => flood(&options),
        "bodies" => big_bodies(&options),
        other => bail!("--mode {other}: steady, flood or bodies"),
    }
}

/// One request on a fresh connection (`Connection: close`): its status and latency.
fn once(address: &str, method: &str, path: &str, body: &[u8]) -> (u16, Duration) {
    let started = Instant::now();
    let status = (|| -> Result<u16> {
        let mut stream = TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        // The server may answer (413, 503) and close before taking the whole body.
        let _ = stream.write_all(body);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let line = String::from_utf8_lossy(&answer[..answer.len().min(64)]).into_owned();
        Ok(line
            .split_whitespace()
            .nth(1)
            .context("no status")?
            .parse()?)
    })()
    .unwrap_or(0);
    (status, started.elapsed())
}

fn millis(durations: &mut [Duration], p: f64) -> f64 {
    let mut micros: Vec<u64> = durations.iter().map(|d| d.as_micros() as u64).collect();
    micros.sort_unstable();
    percentile(&micros, p)
}

/// Times GET /healthz every 100 ms until `stop`.
fn probe_health(address: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let mut latencies = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            latencies.push(once(&address, "GET", "/healthz", b"").1);
            std::thread::sleep(Duration::from_millis(100));
        }
        latencies
    })
}

fn flood(options: &Options) -> Result<()> {
    let item = serde_json::json!({ "pixels": vec![0; 784] });
    let list = Arc::new(
        serde_json::Value::Array(vec![item.clone(); 1024])
            .to_string()
            .into_bytes(),
    );
    let single = item.to_string().into_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let (list, stop, address) = (list.clone(), stop.clone(), options.address.clone());
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(once(&address, "POST", "/v1/predict", &list).0);
                }
                statuses
            })
        })
        .collect();
    let health = probe_health(options.address.clone(), stop.clone());
    std::thread::sleep(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs_f64(options.seconds);
    let (mut answered, mut statuses) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        let (status, latency) = once(&options.address, "POST", "/v1/predict", &single);
        statuses.push(status);
        if status == 200 {
            answered.push(latency);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let lists: Vec<u16> = flooders
        .into_iter()
        .flat_map(|f| f.join().unwrap())
        .collect();
    let mut health = health.join().unwrap();
    println!(
        "{}",
        serde_json::json!({
            "mode": "flood",
            "single_requests": statuses.len(),
            "single_answered": answered.len(),
            "single_p50_ms": millis(&mut answered, 50.0),
            "single_p99_ms": millis(&mut answered, 99.0),
            "lists_served": lists.iter().filter(|&&s| s == 200).count(),
            "lists_refused_503": lists.iter().filter(|&&s| s == 503).count(),
            "lists_other": lists.iter().filter(|&&s| s != 200 && s != 503).count(),
            "healthz_p50_ms": millis(&mut health, 50.0),
            "healthz_p99_ms": millis(&mut health, 99.0),
            "healthz_max_ms": millis(&mut health, 100.0),
        })
    );
    Ok(())
}

/// The server's resident memory, MiB.
fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}

fn big_bodies(options: &Options) -> Result<()> {
    let pid = options
        .pid
        .context("--mode bodies needs --pid (the server's)")?;
    // 4,194,303 items of 4 bytes: just under 16 MiB, the default --max-body.
    let items = (16 << 20) / 4 - 1;
    let mut body = Vec::with_capacity(16 << 20);
    body.push(b'[');
    for i in 0..items {
        body.extend_from_slice(if i + 1 < items { b"[0]," } else { b"[0]]" });
    }
    let body = Arc::new(body);
    let before = rss_mib(pid)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak: f64 = 0.0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_mib(pid).unwrap_or(0.0));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let health = probe_health(options.address.clone(), stop.clone());
    let started = Instant::now();
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (body, address) = (body.clone(), options.address.clone());
            std::thread::spawn(move || once(&address, "POST", "/v1/predict", &body))
        })
        .collect();
    let answers: Vec<(u16, Duration)> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    let burst = started.elapsed();
    std::thread::sleep(Duration::from_secs(10));
    let after = rss_mib(pid)?;
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let mut health = health.join().unwrap();
    println!(
        "{}",
        serde_json::json!({
            "mode": "bodies",
            "body_bytes": body.len(),
            "statuses": answers.iter().map(|a| a.0).collect::<Vec<_>>(),
            "slowest_answer_ms": answers.iter().map(|a| a.1.as_millis()).max(),
            "burst_s": (burst.as_secs_f64() * 100.0).round() / 100.0,
            "rss_before_mib": before.round(),
            "rss_peak_mib": peak.round(),
            "rss_10s_after_mib": after.round(),
            "healthz_p50_ms": millis(&mut health, 50.0),
            "healthz_max_ms": millis(&mut health, 100.0),
        })
    );
    Ok(())
}

fn steady(options: &Options) -> Result<()> {
    let (bodies, content_type) = bodies(options)?;
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
