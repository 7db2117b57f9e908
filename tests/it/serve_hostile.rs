//! `mnist-cnn serve` against clients that try to take it down from one machine: maximal lists
//! in a loop, clients that leave, idle sockets, pictures that decode to gigapixels, requests for
//! other hosts, and errors the HTTP layer writes. Outcomes only (statuses, counts, bodies); the
//! latency and memory figures come from `examples/load_test.rs --mode flood|bodies`.

use crate::common::server::{connect, read_response, request, Server};
use crate::common::*;
use base64::Engine;
use serde_json::{json, Value};
use std::io::{Cursor, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A tutorial model trained one epoch on 64 generated images: answers are not the point.
fn small_model(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    write_small_mnist(&data, 64, 16);
    let run = dir.join("run");
    assert_success(&train_small(&data, &run, &["--no-report"]));
    run.join("model.ot")
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

fn list_body(items: usize) -> Vec<u8> {
    let item = json!({ "pixels": vec![0; 784] });
    Value::Array(vec![item; items]).to_string().into_bytes()
}

fn post(addr: SocketAddr, body: &[u8]) -> u16 {
    request(
        addr,
        "POST",
        "/v1/predict",
        &[("Content-Type", "application/json")],
        body,
    )
    .status
}

/// Four clients post 1,024-item lists in a loop while a fifth asks for one digit every 100 ms,
/// and a sixth sends lists and leaves before the answer. The single digits are answered; lists
/// that do not fit are refused whole; the leaver's fields still queued are dropped; and the
/// metrics count exactly what was computed.
#[test]
fn a_flood_of_maximal_lists_leaves_single_digits_served_and_counts_exactly() {
    let scratch = tempfile::tempdir().unwrap();
    let model = small_model(scratch.path());
    let server = Server::start(&[&model], &["--threads", "1"]);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let body = Arc::new(list_body(1024));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let (stop, body) = (stop.clone(), body.clone());
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(post(addr, &body));
                }
                statuses
            })
        })
        .collect();
    let leaver = {
        let (stop, body) = (stop.clone(), body.clone());
        std::thread::spawn(move || {
            // It leaves at different times after sending, so that on a fast machine as on a
            // slow one some departure falls between the hand-over and the last field computed.
            for wait_ms in [30, 60, 100, 150, 250, 400] {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let mut stream = connect(addr);
                let head = format!(
                    "POST /v1/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: \
                     application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(&body).unwrap();
                std::thread::sleep(Duration::from_millis(wait_ms));
                drop(stream);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let single = json!({ "pixels": vec![0; 784] }).to_string().into_bytes();
    let mut single_statuses = Vec::new();
    for _ in 0..50 {
        single_statuses.push(post(addr, &single));
        std::thread::sleep(Duration::from_millis(100));
    }
    leaver.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let flood: Vec<u16> = flooders
        .into_iter()
        .flat_map(|f| f.join().unwrap())
        .collect();

    let served = single_statuses.iter().filter(|&&s| s == 200).count();
    assert!(
        served * 100 >= single_statuses.len() * 95,
        "one digit at a time: {served} of {} answered: {single_statuses:?}",
        single_statuses.len()
    );
    let accepted = flood.iter().filter(|&&s| s == 200).count();
    let refused = flood.iter().filter(|&&s| s == 503).count();
    assert!(accepted > 0, "no maximal list was served: {flood:?}");
    assert_eq!(
        accepted + refused,
        flood.len(),
        "lists get 200 or 503: {flood:?}"
    );

    let text = server.get("/metrics").text();
    let computed = metric(&text, "mnist_cnn_batch_size_sum");
    let answered = metric(&text, "mnist_cnn_predictions_total");
    let unclaimed = metric(&text, "mnist_cnn_fields_unclaimed_total");
    let dropped = metric(&text, "mnist_cnn_fields_dropped_total");
    assert_eq!(
        computed,
        answered + unclaimed,
        "computed fields are answered or unclaimed, nothing else:\n{text}"
    );
    assert!(
        answered >= (accepted * 1024 + served) as f64,
        "{answered} answered for {accepted} lists and {served} digits"
    );
    assert!(dropped > 0.0, "the leaver's queued fields were computed");
    eprintln!(
        "flood: {accepted} lists served, {refused} refused; {served} of 50 digits; \
         {dropped} fields dropped, {unclaimed} unclaimed"
    );
}

/// 1,100 idle connections from 127.0.0.2 take at most their address's share: 127.0.0.1 is
/// still served, and the connections past the share are told why (429, as JSON).
#[test]
fn idle_sockets_from_one_address_leave_others_served() {
    mnist_cnn::runtime::allow_open_files(4096);
    let scratch = tempfile::tempdir().unwrap();
    let model = small_model(scratch.path());
    let server = Server::start(
        &[&model],
        &["--threads", "1", "--max-connections-per-client", "256"],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let addr = server.addr;
    let mut idle = runtime.block_on(async move {
        let mut sockets = Vec::new();
        for _ in 0..1100 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            sockets.push(socket.connect(addr).await.unwrap());
        }
        sockets
    });
    let health = server.get("/healthz");
    assert_eq!(health.status, 200, "{}", health.text());
    let digit = json!({ "pixels": vec![0; 784] }).to_string().into_bytes();
    assert_eq!(post(addr, &digit), 200);
    let mut last = idle.pop().unwrap().into_std().unwrap();
    last.set_nonblocking(false).unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let refused = read_response(&mut last);
    assert_eq!(refused.status, 429);
    assert!(refused
        .error()
        .contains("too many connections from your address"));
    drop(idle);
    drop(runtime);
}

/// 165 pictures of 8,192 × 8,192 (a few KB each as PNG) would take minutes of CPU to decode:
/// the request is refused on their headers, and nothing is decoded.
#[test]
fn a_request_of_many_huge_pictures_is_refused_before_decoding() {
    let scratch = tempfile::tempdir().unwrap();
    let model = small_model(scratch.path());
    let server = Server::start(&[&model], &["--threads", "1", "--max-body", "134217728"]);
    let mut picture = image::GrayImage::new(8192, 8192);
    for y in 3000..5000 {
        for x in 4000..4200 {
            picture.put_pixel(x, y, image::Luma([255]));
        }
    }
    let mut png = Cursor::new(Vec::new());
    picture.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(png.into_inner());
    let items = vec![json!({ "image": encoded }); 165];
    let response = server.post_json(&Value::Array(items));
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(
        response.error().contains("at most 67108864 are decoded"),
        "{}",
        response.error()
    );
    let text = server.get("/metrics").text();
    assert_eq!(metric(&text, "mnist_cnn_pictures_decoded_total"), 0.0);
    assert_eq!(metric(&text, "mnist_cnn_batch_size_sum"), 0.0);
}

/// Every error the tool writes is JSON, also for routes and methods axum answers itself.
#[test]
fn every_error_answer_is_json_and_foreign_hosts_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let model = small_model(scratch.path());
    let server = Server::start(&[&model], &["--threads", "1"]);
    let addr = server.addr;
    for (method, path, status) in [
        ("DELETE", "/", 405),
        ("POST", "/healthz", 405),
        ("PUT", "/v1/predict", 405),
        ("GET", "/v1/predict", 405),
        ("GET", "/nothing/here", 404),
        ("POST", "/metrics", 405),
    ] {
        let response = request(addr, method, path, &[], b"");
        assert_eq!(response.status, status, "{method} {path}");
        assert!(
            response
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{method} {path}: {:?}",
            response.headers
        );
        assert!(!response.error().is_empty(), "{method} {path}");
        if status == 405 {
            assert!(response.header("allow").is_some(), "{method} {path}");
        }
    }

    // DNS rebinding: a page at evil.example resolved to 127.0.0.1 still sends its own name.
    for host in ["evil.example", "evil.example:80", "localhost.evil.example"] {
        let mut stream = connect(addr);
        let head = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let response = read_response(&mut stream);
        assert_eq!(response.status, 421, "Host {host}");
        assert!(response.error().contains("--allow-host"));
    }
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost:1\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).status, 200);
    let allowed = Server::start(&[&model], &["--threads", "1", "--allow-host", "box.lan"]);
    let mut stream = connect(allowed.addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: box.lan:8080\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).status, 200);
}

/// With a key, every route but / and /healthz needs it; off loopback, no key means no server
/// (unless --insecure-public); the key may come from the environment.
#[test]
fn an_api_key_is_enforced_and_required_off_loopback() {
    let scratch = tempfile::tempdir().unwrap();
    let model = small_model(scratch.path());
    let key_file = scratch.path().join("key");
    std::fs::write(&key_file, "s3cret-key-for-the-test\n").unwrap();
    let server = Server::start(
        &[&model],
        &[
            "--threads",
            "1",
            "--api-key-file",
            key_file.to_str().unwrap(),
        ],
    );
    let digit = json!({ "pixels": vec![0; 784] }).to_string().into_bytes();
    let json = ("Content-Type", "application/json");
    let predict =
        |headers: &[(&str, &str)]| request(server.addr, "POST", "/v1/predict", headers, &digit);
    let without = predict(&[json]);
    assert_eq!(without.status, 401);
    assert_eq!(without.header("www-authenticate"), Some("Bearer"));
    assert!(without.error().contains("Authorization: Bearer"));
    let wrong = predict(&[json, ("Authorization", "Bearer s3cret-key-for-the-tesT")]);
    assert_eq!(wrong.status, 401);
    let right = predict(&[json, ("Authorization", "Bearer s3cret-key-for-the-test")]);
    assert_eq!(right.status, 200, "{}", right.text());
    assert_eq!(server.get("/metrics").status, 401);
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/").status, 200);

    let model_arg = model.to_str().unwrap();
    let public = mnist_cnn(&["serve", "--model", model_arg, "--addr", "0.0.0.0:0"]);
    assert_eq!(public.status.code(), Some(1));
    let err = stderr(&public);
    assert!(
        err.contains("a non-loopback address needs an API key")
            && err.contains("--insecure-public"),
        "{err}"
    );
    let weak = tool()
        .args(["serve", "--model", model_arg, "--addr", "0.0.0.0:0"])
        .env("MNIST_CNN_API_KEY", "short")
        .output()
        .unwrap();
    assert_eq!(weak.status.code(), Some(1));
    assert!(stderr(&weak).contains("MNIST_CNN_API_KEY: the key has 5 characters"));
    let missing = mnist_cnn(&[
        "serve",
        "--model",
        model_arg,
        "--api-key-file",
        "/nonexistent/key",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("--api-key-file"),
        "{}",
        stderr(&missing)
    );
}

/// Under an open-file limit below what --max-connections needs, `serve` still starts, and says
/// so at once, naming the limit and the flag (rather than refusing connections unexplained
/// later).
#[test]
fn serve_warns_when_the_open_file_limit_is_below_max_connections() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let scratch = tempfile::tempdir().unwrap();
    let model = scratch.path().join("model.ot");
    save_fresh_model(&model);
    let mut command = tool();
    command
        .args(["serve", "--model", model.to_str().unwrap()])
        .args(["--addr", "127.0.0.1:0", "--device", "cpu"])
        .args(["--max-connections", "1024"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the child only calls setrlimit, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let mut child = command.spawn().unwrap();
    let mut address = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    assert!(address.starts_with("http://"), "{address:?}");
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("open-file limit is 256") && log.contains("--max-connections 1024"),
        "{log}"
    );
}

/// Four addresses each open 16 connections with a 4 KB receive buffer, send 1,000 pipelined
/// `GET /` and never read. The server holds 64 connections at most (16 per address), so they
/// take every slot; each is closed once its answers have waited the client timeout (2 s here)
/// unread, and a fifth address is answered (with the defaults, once 35-40 s of nothing).
#[test]
fn clients_that_never_read_lose_their_connections_and_a_fifth_is_served() {
    let scratch = tempfile::tempdir().unwrap();
    let model = small_model(scratch.path());
    let server = Server::start(
        &[&model],
        &[
            "--threads",
            "1",
            "--max-connections",
            "64",
            "--max-connections-per-client",
            "16",
            "--client-timeout",
            "2",
        ],
    );
    let addr = server.addr;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let pipelined = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").repeat(1000);
    let hogs = runtime.block_on(async {
        let mut sockets = Vec::new();
        for client in 2..6 {
            for _ in 0..16 {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.set_recv_buffer_size(4096).unwrap();
                socket
                    .bind(format!("127.0.0.{client}:0").parse().unwrap())
                    .unwrap();
                let stream = socket.connect(addr).await.unwrap().into_std().unwrap();
                // As much as the socket takes without a reader; the rest is never sent.
                let mut rest = pipelined.as_bytes();
                while !rest.is_empty() {
                    match (&stream).write(rest) {
                        Ok(n) => rest = &rest[n..],
                        Err(_) => break, // full (would block): the client stops sending
                    }
                }
                sockets.push(stream);
            }
        }
        sockets
    });
    // The fifth address: on a fresh connection, within the test's patience.
    let fifth = std::thread::spawn(move || {
        let socket = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(60));
        let mut stream = socket.unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let head = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        read_response(&mut stream)
    });
    let health = fifth.join().unwrap();
    assert_eq!(health.status, 200, "{}", health.text());
    drop(hogs);
    drop(runtime);
}

/// Request bodies count against one server-wide budget while they arrive, pictures and JSON
/// alike: with four maximal bodies held (their Content-Length declared, their bytes slow to
/// come), the next body is refused at once with 503 and Retry-After, nothing read; once they are
/// gone, bodies are taken again.
#[test]
fn bodies_held_at_once_are_bounded_server_wide() {
    let scratch = tempfile::tempdir().unwrap();
    let model = small_model(scratch.path());
    let max_body = 16 << 20;
    let server = Server::start(&[&model], &["--threads", "1", "--client-timeout", "30"]);
    let addr = server.addr;
    let slow: Vec<std::net::TcpStream> = (0..4)
        .map(|i| {
            let mut stream = connect(addr);
            let content_type = ["image/png", "application/json"][i % 2];
            let head = format!(
                "POST /v1/predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
                 Content-Length: {max_body}\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&[0u8; 1024]).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let digit = json!({ "pixels": vec![0; 784] }).to_string().into_bytes();
    let refused = request(
        addr,
        "POST",
        "/v1/predict",
        &[("Content-Type", "application/json")],
        &digit,
    );
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("Retry-After"), Some("1"));
    assert!(
        refused.error().contains("request bodies"),
        "{}",
        refused.text()
    );
    drop(slow);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(post(addr, &digit), 200);
}
