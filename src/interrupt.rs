//! Ctrl-C and SIGTERM during training: the first one asks the training loop to stop after the
//! current step (it then saves and exits with 128 + the signal number); a second one exits at
//! once, since the files on disk are always complete (every write is atomic).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

struct Flags {
    requested: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// Starts listening for SIGINT and SIGTERM (idempotent).
pub fn install() -> anyhow::Result<()> {
    if FLAGS.get().is_some() {
        return Ok(());
    }
    let flags = Flags {
        requested: Arc::new(AtomicBool::new(false)),
        signal: Arc::new(AtomicUsize::new(0)),
    };
    #[cfg(unix)]
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
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

/// Training stopped because of a signal.
#[derive(Debug)]
pub struct Interrupted {
    pub signal: i32,
    /// The epoch that was under way (its partial work is dropped).
    pub epoch: usize,
}

impl Interrupted {
    pub fn signal_name(&self) -> &'static str {
        match self.signal {
            2 => "SIGINT (Ctrl-C)",
            15 => "SIGTERM",
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
        write!(
            f,
            "interrupted by {} during epoch {}",
            self.signal_name(),
            self.epoch
        )
    }
}

impl std::error::Error for Interrupted {}
