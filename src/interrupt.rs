//! Ctrl-C, SIGTERM and SIGHUP (a dropped SSH session) during training: the first one asks the
//! training loop to stop after the current step (it then saves the state after that step and exits with 128 + the signal
//! number); a second one exits at once, since the files on disk are always complete (every
//! write is atomic).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

struct Flags {
    requested: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// The signals that stop a run after its current step, with its state saved.
#[cfg(unix)]
const STOPPING: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

/// Starts listening for SIGINT, SIGTERM and SIGHUP (idempotent).
pub fn install() -> anyhow::Result<()> {
    if FLAGS.get().is_some() {
        return Ok(());
    }
    let flags = Flags {
        requested: Arc::new(AtomicBool::new(false)),
        signal: Arc::new(AtomicUsize::new(0)),
    };
    #[cfg(unix)]
    for signal in STOPPING {
        // Order matters: the conditional exit must see the flag before this signal sets it.
        signal_hook::flag::register_conditional_shutdown(
            signal,
            128 + signal,
            flags.requested.clone(),
        )?;
        signal_hook::flag::register_usize(signal, flags.signal.clone(), signal as usize)?;
        signal_hook::flag::register(signal, flags.requested.clone())?;
    }
    let _ = FLAGS.set(flags);
    Ok(())
}

/// The signal that asked to stop, if one did.
pub fn requested() -> Option<i32> {
    let flags = FLAGS.get()?;
    if flags.requested.load(Ordering::Relaxed) {
        Some(flags.signal.load(Ordering::Relaxed) as i32)
    } else {
        None
    }
}

/// Where a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPoint {
    /// The epoch under way, or just completed.
    pub epoch: usize,
    /// Steps done in that epoch when it stopped within it; `None` when the epoch was complete.
    pub steps_done: Option<usize>,
}

impl std::fmt::Display for StopPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.steps_done {
            Some(steps) => write!(f, "step {steps} of epoch {}", self.epoch),
            None => write!(f, "the end of epoch {}", self.epoch),
        }
    }
}

/// Training stopped because of a signal, with the state after `at` saved.
#[derive(Debug)]
pub struct Interrupted {
    pub signal: i32,
    pub at: StopPoint,
}

/// A testing aid: `MNIST_CNN_SIGNAL_AT_STEP=N` (or `N:SIGNAL`, the number of INT, TERM or HUP)
/// makes the training loop send itself SIGINT (or SIGNAL) right after step N of the run,
/// counted from 1 across epochs, so that tests can interrupt at an exact step through the real
/// signal path. Any other signal number is ignored, with a warning.
pub const SIGNAL_AT_STEP_VARIABLE: &str = "MNIST_CNN_SIGNAL_AT_STEP";

/// A testing aid of its own name, since nothing can catch it: `MNIST_CNN_KILL_AT_STEP=N` kills
/// the process (SIGKILL, as `kill -9` or a power cut) right after step N of the run.
pub const KILL_AT_STEP_VARIABLE: &str = "MNIST_CNN_KILL_AT_STEP";

/// The step of a test variable, read once per variable.
fn step_of(variable: &str) -> Option<usize> {
    std::env::var(variable).ok()?.trim().parse().ok()
}

/// The (step, signal) of [`SIGNAL_AT_STEP_VARIABLE`], read once.
fn signal_at_step() -> Option<(usize, i32)> {
    static ASKED: OnceLock<Option<(usize, i32)>> = OnceLock::new();
    *ASKED.get_or_init(|| {
        let value = std::env::var(SIGNAL_AT_STEP_VARIABLE).ok()?;
        let (step, signal) = value.split_once(':').unwrap_or((&value, "2"));
        let signal: i32 = signal.trim().parse().ok()?;
        // Only the signals a run handles; any other is ignored rather than sent.
        #[cfg(unix)]
        if !STOPPING.contains(&signal) {
            tracing::warn!(
                "{SIGNAL_AT_STEP_VARIABLE}: signal {signal} is not INT (2), TERM (15) or HUP (1); \
                 ignored"
            );
            return None;
        }
        Some((step.trim().parse().ok()?, signal))
    })
}

/// The step of [`KILL_AT_STEP_VARIABLE`], read once.
fn kill_at_step() -> Option<usize> {
    static ASKED: OnceLock<Option<usize>> = OnceLock::new();
    *ASKED.get_or_init(|| step_of(KILL_AT_STEP_VARIABLE))
}

/// Sends the signal [`SIGNAL_AT_STEP_VARIABLE`] asks for, or the kill [`KILL_AT_STEP_VARIABLE`]
/// asks for, when `run_step` is its step.
pub fn raise_if_asked_at_step(run_step: usize) {
    #[cfg(unix)]
    if kill_at_step() == Some(run_step) {
        let _ = signal_hook::low_level::raise(signal_hook::consts::SIGKILL);
    }
    #[cfg(unix)]
    if let Some((step, signal)) = signal_at_step() {
        if step == run_step {
            // raise() runs the handler before it returns, so the flag is set on return.
            let _ = signal_hook::low_level::raise(signal);
        }
    }
}

impl Interrupted {
    pub fn signal_name(&self) -> &'static str {
        match self.signal {
            2 => "SIGINT (Ctrl-C)",
            15 => "SIGTERM",
            1 => "SIGHUP (the terminal went away)",
            _ => "a signal",
        }
    }

    /// The conventional exit status: 128 + the signal number (130 for Ctrl-C, 143 for TERM).
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {} after {}", self.signal_name(), self.at)
    }
}

impl std::error::Error for Interrupted {}
