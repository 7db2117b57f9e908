//! The download path, against a loopback HTTP server started by the test: a mirror that does not
//! have the files, a mirror that serves corrupt ones (rejected, the next mirror tried), and a good
//! mirror serving the real MNIST.

use crate::common::*;
use flate2::{write::GzEncoder, Compression};
use mnist_cnn::data::{fetch::sha256_hex, MNIST_FILES};
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A tiny HTTP/1.1 server on an ephemeral loopback port: GET of a known path answers 200 with
/// its body, anything else 404. Counts the requests it answers.
struct LoopbackServer {
    port: u16,
    requests: Arc<AtomicUsize>,
}

impl LoopbackServer {
    fn start(routes: HashMap<String, Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let routes = Arc::new(routes);
        let counter = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = routes.clone();
                counter.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || answer(stream, &routes));
            }
        });
        Self { port, requests }
    }

    fn url(&self, mirror: &str) -> String {
        format!("http://127.0.0.1:{}/{mirror}/", self.port)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn answer(stream: TcpStream, routes: &HashMap<String, Vec<u8>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let mut stream = stream;
    let (status, body): (&str, &[u8]) = match routes.get(path) {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", b"not here"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// The real files, gzipped once per test binary.
fn real_gz_files() -> &'static HashMap<&'static str, Vec<u8>> {
    static FILES: OnceLock<HashMap<&'static str, Vec<u8>>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = real_mnist_dir();
        MNIST_FILES
            .iter()
            .map(|f| (f.name, gzip(&fs::read(dir.join(f.name)).unwrap())))
            .collect()
    })
}

/// Routes for three mirrors: `missing` (404 for everything), `corrupt` (a file with one changed
/// byte for the images, a truncated gzip for the labels), and `good` (the real files).
fn mirror_routes() -> HashMap<String, Vec<u8>> {
    let dir = real_mnist_dir();
    let mut routes = HashMap::new();
    for file in MNIST_FILES {
        let gz = &real_gz_files()[file.name];
        routes.insert(format!("/good/{}.gz", file.name), gz.clone());
        let corrupt = if file.name.contains("images") {
            let mut raw = fs::read(dir.join(file.name)).unwrap();
            raw[1000] ^= 0x40; // still a valid idx file: only the digest can tell
            gzip(&raw)
        } else {
            gz[..gz.len() / 2].to_vec()
        };
        routes.insert(format!("/corrupt/{}.gz", file.name), corrupt);
    }
    routes
}

#[test]
fn corrupt_mirrors_are_rejected_and_the_next_mirror_is_used() {
    let server = LoopbackServer::start(mirror_routes());
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().join("mnist");
    let dir_arg = dir.to_str().unwrap();
    let (missing, corrupt, good) = (
        server.url("missing"),
        server.url("corrupt"),
        server.url("good"),
    );
    let output = mnist_cnn(&[
        "data", "--dir", dir_arg, "--mirror", &missing, "--mirror", &corrupt, "--mirror", &good,
    ]);
    assert_success(&output);
    let err = stderr(&output);
    assert!(
        err.contains(&format!("rejected {missing}train-images-idx3-ubyte.gz")),
        "{err}"
    );
    assert!(
        err.contains(&format!("rejected {corrupt}train-images-idx3-ubyte.gz")),
        "{err}"
    );
    assert!(
        err.contains("SHA-256"),
        "the corrupt image file was not caught by its digest: {err}"
    );
    assert!(
        err.contains("decompress"),
        "the truncated gzip was not caught: {err}"
    );
    assert_eq!(
        stdout(&output).matches(&good).count(),
        4,
        "{}",
        stdout(&output)
    );
    for file in MNIST_FILES {
        let bytes = fs::read(dir.join(file.name)).unwrap();
        assert_eq!(sha256_hex(&bytes), file.sha256, "{}", file.name);
    }
    assert_eq!(
        file_names(&dir).len(),
        4,
        "left-over files: {:?}",
        file_names(&dir)
    );

    // Valid files are left alone: no request is made the second time.
    let before = server.requests();
    let again = mnist_cnn(&["data", "--dir", dir_arg, "--mirror", &missing]);
    assert_success(&again);
    assert_eq!(stdout(&again).matches("already present").count(), 4);
    assert_eq!(server.requests(), before);
}

#[test]
fn when_every_mirror_fails_nothing_is_written_and_each_failure_is_reported() {
    let server = LoopbackServer::start(mirror_routes());
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().join("mnist");
    let (missing, corrupt) = (server.url("missing"), server.url("corrupt"));
    let output = mnist_cnn(&[
        "data",
        "--dir",
        dir.to_str().unwrap(),
        "--mirror",
        &missing,
        "--mirror",
        &corrupt,
    ]);
    assert_clean_failure(
        &output,
        &[
            "could not get train-images-idx3-ubyte",
            &missing,
            &corrupt,
            "404",
        ],
    );
    assert!(file_names(&dir).is_empty(), "{:?}", file_names(&dir));
}

#[test]
fn an_unreachable_mirror_is_skipped() {
    // A port that was just free: connecting is refused at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = LoopbackServer::start(mirror_routes());
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().join("mnist");
    let dead = format!("http://127.0.0.1:{port}/mnist/");
    let output = mnist_cnn(&[
        "data",
        "--dir",
        dir.to_str().unwrap(),
        "--mirror",
        &dead,
        "--mirror",
        &server.url("good"),
    ]);
    assert_success(&output);
    assert!(stderr(&output).contains(&format!("rejected {dead}")));
}
