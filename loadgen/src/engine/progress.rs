//! Progress of a run: counters the workers bump and the progress line reads.

use super::*;

/// Progress counters shared with the progress line.
#[derive(Default, Debug)]
pub struct Progress {
    /// Machines done.
    pub completed: AtomicU64,
    /// Machines that failed.
    pub failed: AtomicU64,
    /// Set to end the run early (Ctrl-C): whatever is still running counts as failed.
    pub stop: Arc<AtomicBool>,
}

impl Progress {
    /// Counters for a run that ends early once `stop` is set (a signal handler's flag).
    pub fn stopped_by(stop: Arc<AtomicBool>) -> Progress {
        Progress {
            stop,
            ..Progress::default()
        }
    }
}

/// A progress bar on standard error while a run goes, if that is a terminal.
pub struct Ticker {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Starts drawing `progress` of `clients` machines, each line led by `label`.
    pub fn start(progress: Arc<Progress>, clients: usize, label: &'static str) -> Ticker {
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let d = done.clone();
            std::thread::spawn(move || {
                while !d.load(Ordering::Relaxed) {
                    let c = progress.completed.load(Ordering::Relaxed);
                    let f = progress.failed.load(Ordering::Relaxed);
                    let width = 40usize;
                    let filled = (((c + f) as usize * width) / clients.max(1)).min(width);
                    eprint!(
                        "\r{label}[{}{}] {c}/{clients} booted, {f} failed ",
                        "#".repeat(filled),
                        " ".repeat(width - filled)
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                eprintln!();
            })
        });
        Ticker { done, thread }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
