//! Progress bars on stderr. They show only when stderr is a terminal; otherwise (logs, CI,
//! pipes) the callers write plain `tracing` lines instead.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Whether progress bars are drawn (stderr is a terminal).
pub fn bars_visible() -> bool {
    std::io::stderr().is_terminal()
}

fn new_bar(length: Option<u64>) -> ProgressBar {
    let bar = match length {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::new_spinner(),
    };
    let target = if bars_visible() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    bar.set_draw_target(target);
    bar
}

/// A download bar: bytes, rate and ETA.
pub fn bytes_bar(length: Option<u64>, name: &str) -> ProgressBar {
    let bar = new_bar(length);
    let template = if length.is_some() {
        "{prefix:>28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
    } else {
        "{prefix:>28} {spinner} {bytes} {bytes_per_sec}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_owned());
    bar
}

/// A training bar: batches, the running loss and images/s in the message, ETA.
pub fn steps_bar(steps: u64, prefix: &str) -> ProgressBar {
    let bar = new_bar(Some(steps));
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} batches  {msg}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_owned());
    bar
}
