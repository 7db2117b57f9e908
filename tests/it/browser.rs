//! The draw-a-digit page in headless Chromium (the system package; scripts/setup.sh installs
//! it): strokes are drawn on the canvas with real mouse events through the Chrome DevTools
//! Protocol, and the page must show the right digit, the ten bars and the 28×28 input.
//!
//! Chromium is found as $MNIST_CNN_CHROMIUM, else `chromium` or `chromium-browser` on PATH.

use crate::common::server::Server;
use crate::common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

fn chromium_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MNIST_CNN_CHROMIUM") {
        return path.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("no chromium on PATH: scripts/setup.sh installs it (apt-get install chromium)");
}

/// Headless Chromium and a DevTools session on one page.
struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn open(url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium_binary())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--window-size=1000,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start chromium");
        // Chromium prints its DevTools address on stderr.
        let (found, address) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = found.send(line[at..].trim().to_owned());
                }
            }
        });
        let endpoint = address
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium did not print its DevTools address");
        let (socket, _) = tungstenite::connect(endpoint.as_str()).expect("DevTools connection");
        let mut browser = Self {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({ "url": url }));
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.wait_until("document.readyState === 'complete' && !!window.mnist");
        browser
    }

    /// Sends a DevTools command (to the page once attached) and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap();
        loop {
            let Message::Text(text) = self.socket.read().unwrap() else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str()).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    fn wait_until(&mut self, condition: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.evaluate(condition) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {condition}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn mouse(&mut self, kind: &str, (x, y): (f64, f64), pressed: bool) {
        self.call(
            "Input.dispatchMouseEvent",
            json!({
                "type": kind, "x": x, "y": y, "button": "left",
                "buttons": if pressed { 1 } else { 0 }, "clickCount": 1,
            }),
        );
    }

    /// The page rectangle of an element: (left, top, width, height).
    fn rect(&mut self, id: &str) -> (f64, f64, f64, f64) {
        let r = self.evaluate(&format!(
            "(() => {{ const r = document.getElementById('{id}').getBoundingClientRect(); \
             return [r.left, r.top, r.width, r.height]; }})()"
        ));
        let v = |i: usize| r[i].as_f64().unwrap();
        (v(0), v(1), v(2), v(3))
    }

    /// Draws strokes given in pad coordinates (0–1), point by point, with the mouse button
    /// held down along each stroke.
    fn draw(&mut self, strokes: &[Stroke]) {
        let (left, top, width, height) = self.rect("pad");
        let at = |(x, y): (f64, f64)| (left + x * width, top + y * height);
        for stroke in strokes {
            self.mouse("mousePressed", at(stroke[0]), true);
            for pair in stroke.windows(2) {
                // Intermediate points, as a hand moving the mouse would send.
                for step in 1..=6 {
                    let t = f64::from(step) / 6.0;
                    let point = (
                        pair[0].0 + t * (pair[1].0 - pair[0].0),
                        pair[0].1 + t * (pair[1].1 - pair[0].1),
                    );
                    self.mouse("mouseMoved", at(point), true);
                }
            }
            self.mouse("mouseReleased", at(*stroke.last().unwrap()), false);
        }
    }

    fn click(&mut self, id: &str) {
        let (left, top, width, height) = self.rect(id);
        let centre = (left + width / 2.0, top + height / 2.0);
        self.mouse("mousePressed", centre, true);
        self.mouse("mouseReleased", centre, false);
    }

    fn text(&mut self, id: &str) -> String {
        self.evaluate(&format!("document.getElementById('{id}').textContent"))
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Points on the pad, 0–1 from the top left, drawn with the button held down.
type Stroke = Vec<(f64, f64)>;

fn ellipse(cx: f64, cy: f64, rx: f64, ry: f64) -> Stroke {
    (0..=36)
        .map(|i| {
            let a = f64::from(i) / 36.0 * std::f64::consts::TAU;
            (cx + rx * a.sin(), cy - ry * a.cos())
        })
        .collect()
}

#[test]
fn the_page_recognises_digits_drawn_stroke_by_stroke() {
    let scratch = tempfile::tempdir().unwrap();
    let run = scratch.path().join("run");
    train_on_real_mnist(&run, &["--batch-size", "64", "--no-report"]);
    let server = Server::start(&[&run.join("model.ot")], &["--threads", "1"]);
    let mut browser = Browser::open(&server.url("/"));
    assert_eq!(browser.text("digit"), "?");

    let digits: [(i64, Vec<Stroke>); 3] = [
        (1, vec![vec![(0.52, 0.15), (0.50, 0.5), (0.48, 0.85)]]),
        (
            7,
            vec![vec![(0.28, 0.2), (0.72, 0.2), (0.58, 0.5), (0.45, 0.85)]],
        ),
        (0, vec![ellipse(0.5, 0.5, 0.22, 0.32)]),
    ];
    for (expected, strokes) in digits {
        browser.draw(&strokes);
        browser.wait_until("window.mnist.sent > 0 && window.mnist.answered === window.mnist.sent");
        let shown = browser.text("digit");
        assert_eq!(
            shown,
            expected.to_string(),
            "drew a {expected}, the page says {shown}"
        );
        let last = browser.evaluate("window.mnist.last");
        assert_eq!(last["digit"], expected);
        // Ten bars, the winner's labelled with its probability; the 28×28 input drawn.
        let bars =
            browser.evaluate("[...document.querySelectorAll('.bar em')].map(e => e.textContent)");
        assert_eq!(bars.as_array().unwrap().len(), 10);
        assert!(
            bars[expected as usize].as_str().unwrap().ends_with('%'),
            "{bars}"
        );
        let ink = browser.evaluate(
            "(() => { const d = document.getElementById('input').getContext('2d')\
             .getImageData(0, 0, 28, 28).data; let s = 0; \
             for (let i = 0; i < d.length; i += 4) s += d[i]; return s; })()",
        );
        assert!(ink.as_f64().unwrap() > 0.0, "the input view is empty");
        browser.click("clear");
        assert_eq!(browser.text("digit"), "?");
    }
}
