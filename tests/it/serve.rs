//! `mnist-cnn serve` on an ephemeral loopback port: predictions for real MNIST test digits sent
//! as pixels, as PNG and as base64 pictures; the metrics; every kind of bad request; batching
//! under concurrent load; and Ctrl-C finishing the requests in flight.

use crate::common::server::{connect, read_response, request, Server};
use crate::common::*;
use base64::Engine;
use mnist_cnn::data::Mnist;
use mnist_cnn::io::checkpoint;
use mnist_cnn::model::Predictor;
use serde_json::{json, Value};
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use tch::{Device, Kind};

const DIGITS: usize = 40;

/// A tutorial model trained on 10,000 MNIST images (a few seconds).
fn trained_model(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    train_on_real_mnist(
        &run,
        &["--limit", "10000", "--batch-size", "64", "--no-report"],
    );
    run.join("model.ot")
}

/// The first `n` test digits as 0–255 pixel values, their labels, and the model's own
/// probabilities for them.
fn test_digits(model: &Path, n: usize) -> (Vec<Vec<u8>>, Vec<i64>, Vec<Vec<f32>>) {
    let mnist = Mnist::load(&real_mnist_dir()).unwrap();
    let images = mnist.test.images.narrow(0, 0, n as i64);
    let labels = Vec::<i64>::try_from(mnist.test.labels.narrow(0, 0, n as i64)).unwrap();
    let classifier = checkpoint::load(model, Device::Cpu).unwrap();
    let probabilities = tch::no_grad(|| classifier.log_probabilities(&images).exp());
    let pixels = (0..n as i64)
        .map(|i| {
            let bytes = (images.get(i).flatten(0, -1) * 255.0)
                .round()
                .to_kind(Kind::Uint8);
            Vec::<u8>::try_from(bytes).unwrap()
        })
        .collect();
    let probabilities = (0..n as i64)
        .map(|i| Vec::<f32>::try_from(probabilities.get(i)).unwrap())
        .collect();
    (pixels, labels, probabilities)
}

fn png(pixels: &[u8]) -> Vec<u8> {
    let picture = image::GrayImage::from_raw(28, 28, pixels.to_vec()).unwrap();
    let mut bytes = Cursor::new(Vec::new());
    picture
        .write_to(&mut bytes, image::ImageFormat::Png)
        .unwrap();
    bytes.into_inner()
}

fn probabilities(answer: &Value) -> Vec<f64> {
    answer["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect()
}

fn assert_close(a: &[f64], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - f64::from(*y)).abs() < 1e-4, "{what}: {a:?} vs {b:?}");
    }
}

#[test]
fn predictions_for_mnist_digits_sent_as_pixels_and_as_pictures() {
    let scratch = tempfile::tempdir().unwrap();
    let model = trained_model(scratch.path());
    let (digits, labels, expected) = test_digits(&model, DIGITS);
    let server = Server::start(&[&model], &["--threads", "1"]);

    // One request per digit, pixels as JSON: the model's own answer, and the input echoed.
    let mut correct = 0;
    for (i, pixels) in digits.iter().enumerate() {
        let response = server.post_json(&json!({ "pixels": pixels }));
        assert_eq!(response.status, 200, "{}", response.text());
        let answer = response.json();
        assert_close(&probabilities(&answer), &expected[i], &format!("digit {i}"));
        let digit = answer["digit"].as_i64().unwrap();
        correct += usize::from(digit == labels[i]);
        let input = answer["input"].as_array().unwrap();
        assert_eq!(input.len(), 28);
        let echoed = input[14][14].as_f64().unwrap();
        assert!((echoed - f64::from(pixels[14 * 28 + 14]) / 255.0).abs() < 1e-3);
    }
    assert!(correct >= DIGITS * 9 / 10, "{correct} of {DIGITS} right");

    // All of them in one request: a list of answers in order, the same ones.
    let list: Vec<Value> = digits.iter().map(|p| json!({ "pixels": p })).collect();
    let response = server.post_json(&Value::Array(list));
    assert_eq!(response.status, 200, "{}", response.text());
    let answers = response.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(answers.len(), DIGITS);
    for (i, answer) in answers.iter().enumerate() {
        assert_close(
            &probabilities(answer),
            &expected[i],
            &format!("list item {i}"),
        );
    }

    // As PNG files: the same answers as `mnist-cnn predict` on the same files, whether posted
    // as image/png or as base64 items of a JSON list.
    let pictures: Vec<PathBuf> = digits
        .iter()
        .take(20)
        .enumerate()
        .map(|(i, pixels)| {
            let path = scratch.path().join(format!("{i:02}.png"));
            std::fs::write(&path, png(pixels)).unwrap();
            path
        })
        .collect();
    let mut args = vec!["predict", "--json", "--device", "cpu", "--model"];
    args.push(model.to_str().unwrap());
    args.extend(pictures.iter().map(|p| p.to_str().unwrap()));
    let output = mnist_cnn(&args);
    assert_success(&output);
    let predicted = stdout_json(&output);
    let mut items = Vec::new();
    for (i, path) in pictures.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        let response = server.post("image/png", &bytes);
        assert_eq!(response.status, 200, "{}", response.text());
        let answer = response.json();
        assert_eq!(answer["digit"], predicted[i]["digit"], "picture {i}");
        let p = predicted[i]["probability"].as_f64().unwrap();
        assert!((answer["probability"].as_f64().unwrap() - p).abs() < 1e-4);
        items.push(json!({ "image": base64::engine::general_purpose::STANDARD.encode(&bytes) }));
    }
    let response = server.post_json(&Value::Array(items));
    assert_eq!(response.status, 200, "{}", response.text());
    for (i, answer) in response.json()["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(answer["digit"], predicted[i]["digit"], "base64 picture {i}");
    }

    // As a multipart/form-data upload, built as curl -F and requests.post(files=…) build it:
    // one file is answered as one picture, several as a list, text fields are read past.
    let form = |files: &[&PathBuf]| {
        let mut body =
            b"--bNd\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n".to_vec();
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy();
            body.extend(
                format!(
                "--bNd\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n\
                 Content-Type: image/png\r\n\r\n"
            )
                .bytes(),
            );
            body.extend(std::fs::read(path).unwrap());
            body.extend(b"\r\n");
        }
        body.extend(b"--bNd--\r\n");
        server.post("multipart/form-data; boundary=bNd", &body)
    };
    let one = form(&[&pictures[3]]);
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json()["digit"], predicted[3]["digit"]);
    let several = form(&[&pictures[0], &pictures[1], &pictures[2]]);
    assert_eq!(several.status, 200, "{}", several.text());
    let answers = several.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(answers.len(), 3);
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["digit"], predicted[i]["digit"], "form file {i}");
    }
    let none = form(&[]);
    assert_eq!(none.status, 422, "{}", none.text());
    assert!(none.error().contains("no file"), "{}", none.error());

    // The page and the health check.
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().contains("<canvas id=\"pad\""));
    assert!(
        !page.text().contains("http://") && !page.text().contains("https://"),
        "page loads something from the network"
    );
    let health = server.get("/healthz").json();
    assert_eq!(health["status"], "ok");
    assert_eq!(
        health["model"]["models"],
        json!([{ "file": "model.ot", "architecture": "tutorial" }])
    );
    let text = server.get("/healthz").text();
    assert!(
        !text.contains(&*model.parent().unwrap().to_string_lossy()),
        "/healthz shows where the model lies: {text}"
    );
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
}

/// The counters move as they should: responses by route and status, errors, pictures, batch
/// sizes, and the latency histogram.
#[test]
fn metrics_count_requests_errors_pictures_and_batches() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 64, 16);
    let run = scratch.path().join("run");
    assert_success(&train_small(&data, &run, &["--no-report"]));
    let server = Server::start(&[&run.join("model.ot")], &["--threads", "1"]);

    let field = |v: u8| json!({ "pixels": vec![v; 784] });
    assert_eq!(server.post_json(&field(0)).status, 200);
    assert_eq!(server.post_json(&field(255)).status, 200);
    let five: Vec<Value> = (0..5).map(|i| field(i * 50)).collect();
    assert_eq!(server.post_json(&Value::Array(five)).status, 200);
    assert_eq!(server.post("text/plain", b"seven").status, 415);
    assert_eq!(
        server.post_json(&json!({ "pixels": [1, 2, 3] })).status,
        422
    );
    assert_eq!(server.get("/healthz").status, 200);

    let response = server.get("/metrics");
    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = response.text();
    let requests = "mnist_cnn_http_requests_total{route=\"/v1/predict\",status=";
    assert_eq!(metric(&text, &format!("{requests}\"200\"}}")), 3.0);
    assert_eq!(metric(&text, &format!("{requests}\"415\"}}")), 1.0);
    assert_eq!(metric(&text, &format!("{requests}\"422\"}}")), 1.0);
    assert_eq!(
        metric(
            &text,
            "mnist_cnn_http_requests_total{route=\"/healthz\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "mnist_cnn_http_request_errors_total{route=\"/v1/predict\"}"
        ),
        2.0
    );
    assert_eq!(metric(&text, "mnist_cnn_predictions_total"), 7.0);
    assert_eq!(metric(&text, "mnist_cnn_batch_size_sum"), 7.0);
    let batches = metric(&text, "mnist_cnn_batch_size_count");
    assert!((3.0..=7.0).contains(&batches), "{batches} batches");
    assert_eq!(
        metric(&text, "mnist_cnn_predict_request_duration_seconds_count"),
        5.0
    );
    assert_eq!(
        metric(
            &text,
            "mnist_cnn_predict_request_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        5.0
    );
}

/// Every kind of bad request gets its own clear 4xx, and the server goes on serving.
#[test]
fn bad_requests_get_clear_4xx_answers_and_the_server_keeps_serving() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 64, 16);
    let run = scratch.path().join("run");
    assert_success(&train_small(&data, &run, &["--no-report"]));
    let mut server = Server::start(
        &[&run.join("model.ot")],
        &[
            "--threads",
            "1",
            "--max-body",
            "100000",
            "--client-timeout",
            "1",
            "--header-timeout",
            "1",
        ],
    );
    let expect = |response: crate::common::server::Response, status: u16, words: &str| {
        assert_eq!(response.status, status, "{}", response.text());
        let error = response.error();
        assert!(error.contains(words), "{status}: {error:?} lacks {words:?}");
    };

    // Too large: declared, and undeclared (chunked).
    expect(
        server.post("image/png", &vec![0u8; 100_001]),
        413,
        "--max-body",
    );
    let mut stream = connect(server.addr);
    let mut chunked = b"POST /v1/predict HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..30 {
        chunked.extend(b"1000\r\n");
        chunked.extend(vec![b' '; 0x1000]);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let _ = stream.write_all(&chunked);
    expect(read_response(&mut stream), 413, "--max-body");

    // Pictures: absurd dimensions, not a picture, blank, empty body.
    expect(
        server.post("image/png", &png_with_header(100_000, 100_000)),
        422,
        "larger than this tool accepts",
    );
    expect(
        server.post("image/png", b"this is not a picture at all"),
        422,
        "not a PNG, JPEG",
    );
    expect(
        server.post("image/png", &[0x89, b'P', b'N', b'G', 13, 10, 26, 10, 0]),
        422,
        "cannot decode",
    );
    let blank = image::GrayImage::new(64, 64);
    let mut bytes = Cursor::new(Vec::new());
    blank.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    expect(server.post("image/png", &bytes.into_inner()), 422, "no ink");
    expect(server.post("image/png", b""), 400, "empty");

    // Content types.
    expect(
        server.post("text/plain", b"{}"),
        415,
        "Content-Type \"text/plain\"",
    );
    expect(
        request(server.addr, "POST", "/v1/predict", &[], b"{}"),
        415,
        "no Content-Type",
    );

    // Forms: no boundary, a broken form, a part that never ends, a picture that is none,
    // more parts than the 1,024 items a request may carry.
    expect(server.post("multipart/form-data", b"x"), 400, "boundary");
    let form = "multipart/form-data; boundary=B";
    expect(server.post(form, b"--B junk"), 400, "line break");
    expect(
        server.post(
            form,
            b"--B\r\nContent-Disposition: form-data; name=\"a\"; filename=\"a.png\"\r\n\r\nno end",
        ),
        400,
        "does not end",
    );
    expect(
        server.post(form, b"--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\nnot a picture\r\n--B--\r\n"),
        422,
        "form field \"image\" (a.png)",
    );
    let many =
        "--B\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n1\r\n".repeat(1100) + "--B--\r\n";
    expect(server.post(form, many.as_bytes()), 413, "parts in one form");

    // JSON: malformed, wrong shapes and values.
    expect(
        server.post("application/json", b"{\"pixels\": [1, 2"),
        400,
        "malformed JSON",
    );
    expect(
        server.post_json(&json!({ "pixels": vec![0; 783] })),
        422,
        "783 values; 784",
    );
    let mut pixels = vec![json!(0); 784];
    pixels[5] = json!(300);
    expect(
        server.post_json(&json!({ "pixels": pixels })),
        422,
        "pixels[5] is 300",
    );
    pixels[5] = json!("x");
    expect(
        server.post_json(&json!({ "pixels": pixels })),
        422,
        "pixels[5]",
    );
    expect(
        server.post_json(&json!({ "pixel": [0] })),
        422,
        "unknown field \"pixel\"",
    );
    expect(
        server.post_json(&json!({ "image": 7 })),
        422,
        "base64 string",
    );
    expect(
        server.post_json(&json!({ "image": "%%%" })),
        422,
        "not base64",
    );
    expect(server.post_json(&json!([])), 422, "empty");
    expect(server.post_json(&json!(42)), 422, "expected");
    let many = vec![json!({ "pixels": [] }); 1025];
    expect(
        server.post_json(&Value::Array(many)),
        413,
        "more than 1024 items",
    );
    let second_bad = json!([{ "pixels": vec![0; 784] }, { "pixels": [1] }]);
    expect(server.post_json(&second_bad), 422, "item 1");

    // Routes and methods.
    let wrong_method = server.get("/v1/predict");
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    expect(wrong_method, 405, "POST");
    expect(server.get("/v2/anything"), 404, "no such endpoint");

    // Slow clients: a body that stops coming gets 408; headers that stop coming get the
    // connection closed. Neither holds the server.
    let mut stream = connect(server.addr);
    stream
        .write_all(b"POST /v1/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"pix")
        .unwrap();
    expect(read_response(&mut stream), 408, "did not arrive within 1 s");
    let mut stream = connect(server.addr);
    stream
        .write_all(b"POST /v1/predict HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let closed = stream.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "the server kept a connection with unfinished headers open: {closed:?}"
    );

    // Still serving, still alive.
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(
        server.post_json(&json!({ "pixels": vec![0; 784] })).status,
        200
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );
}

/// Many clients at once: every answer right, and fields from different requests shared
/// forward passes.
#[test]
fn concurrent_requests_are_answered_in_shared_batches() {
    let scratch = tempfile::tempdir().unwrap();
    let model = trained_model(scratch.path());
    let (digits, _, expected) = test_digits(&model, 16);
    let server = Server::start(
        &[&model],
        &[
            "--threads",
            "1",
            "--max-batch",
            "32",
            "--batch-wait-ms",
            "20",
        ],
    );
    let (clients, rounds) = (16, 4);
    let barrier = Arc::new(Barrier::new(clients));
    let digits = Arc::new(digits);
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (barrier, digits, addr) = (barrier.clone(), digits.clone(), server.addr);
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                for _ in 0..rounds {
                    barrier.wait();
                    let body = json!({ "pixels": digits[c] }).to_string();
                    let response = request(
                        addr,
                        "POST",
                        "/v1/predict",
                        &[("Content-Type", "application/json")],
                        body.as_bytes(),
                    );
                    assert_eq!(response.status, 200, "{}", response.text());
                    answers.push(response.json());
                }
                answers
            })
        })
        .collect();
    for (c, worker) in workers.into_iter().enumerate() {
        for answer in worker.join().unwrap() {
            assert_close(
                &probabilities(&answer),
                &expected[c],
                &format!("client {c}"),
            );
        }
    }
    let text = server.get("/metrics").text();
    let fields = metric(&text, "mnist_cnn_batch_size_sum");
    let batches = metric(&text, "mnist_cnn_batch_size_count");
    assert_eq!(fields, (clients * rounds) as f64);
    assert!(
        batches < fields,
        "{batches} forward passes for {fields} requests: no batching"
    );
}

/// Ctrl-C: the listener closes at once, a request already in flight still gets its answer,
/// then the server exits cleanly.
#[test]
fn ctrl_c_finishes_the_requests_in_flight_then_stops() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 64, 16);
    let run = scratch.path().join("run");
    assert_success(&train_small(&data, &run, &["--no-report"]));
    let mut server = Server::start(&[&run.join("model.ot")], &["--threads", "1"]);

    let body = json!({ "pixels": vec![128; 784] }).to_string();
    let (first, second) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = connect(server.addr);
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.signal("-INT");
    // Once the listener is closed, new connections are refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(server.addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stream.write_all(second).unwrap();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.json()["digit"].is_number());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}
