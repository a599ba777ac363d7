//! Test hooks of the `sandpool worker` process: make it crash, exit or hang
//! on cue, so the supervisor's handling of each failure can be tested. Only
//! in builds with the `test-faults` feature (the crate's own tests turn it
//! on); elsewhere `Faults` does nothing and reads no environment.

#[cfg(feature = "test-faults")]
pub(crate) use hooks::*;

#[cfg(not(feature = "test-faults"))]
pub(crate) use none::*;

#[cfg(not(feature = "test-faults"))]
mod none {
    use crate::runtime::instance::TaskLogs;

    /// No hooks: this build cannot misbehave on cue.
    #[derive(Debug, Default)]
    pub(crate) struct Faults;

    impl Faults {
        pub(crate) fn from_env() -> Self {
            Faults
        }

        pub(crate) fn at_start(&self) {}

        pub(crate) fn after_task(&self, _logs: &TaskLogs) {}
    }
}

#[cfg(feature = "test-faults")]
mod hooks {
    use crate::runtime::instance::TaskLogs;

    /// Test hook: `ACTION:MARKER` makes the worker misbehave after a task whose
    /// captured stderr contains MARKER. ACTION is `abort` (SIGABRT), `segv`
    /// (SIGSEGV), `exit` (exit status 3) or `hang` (stop answering).
    pub(crate) const FAULT_ENV: &str = "SANDPOOL_WORKER_FAULT";

    /// Test hook: `always`, or a path: the worker aborts during start-up (always,
    /// or while that path exists), to exercise the supervisor's restart limit.
    pub(crate) const FAULT_AT_START_ENV: &str = "SANDPOOL_WORKER_FAULT_AT_START";

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Action {
        Abort,
        Segv,
        Exit,
        Hang,
    }

    /// The test hooks this worker was started with.
    #[derive(Debug, Default)]
    pub(crate) struct Faults {
        after_task: Option<(Action, Vec<u8>)>,
        at_start: Option<std::ffi::OsString>,
    }

    impl Faults {
        pub(crate) fn from_env() -> Self {
            let after_task = std::env::var(FAULT_ENV).ok().and_then(|spec| {
                let (action, marker) = spec.split_once(':')?;
                let action = match action {
                    "abort" => Action::Abort,
                    "segv" => Action::Segv,
                    "exit" => Action::Exit,
                    "hang" => Action::Hang,
                    _ => return None,
                };
                (!marker.is_empty()).then(|| (action, marker.as_bytes().to_vec()))
            });
            Faults {
                after_task,
                at_start: std::env::var_os(FAULT_AT_START_ENV).filter(|v| !v.is_empty()),
            }
        }

        pub(crate) fn at_start(&self) {
            if let Some(spec) = &self.at_start
                && (spec == "always" || std::path::Path::new(spec).exists())
            {
                no_core_dump();
                std::process::abort();
            }
        }

        pub(crate) fn after_task(&self, logs: &TaskLogs) {
            let Some((action, marker)) = &self.after_task else {
                return;
            };
            if !logs
                .stderr
                .bytes
                .windows(marker.len())
                .any(|w| w == marker.as_slice())
            {
                return;
            }
            no_core_dump();
            match action {
                Action::Abort => std::process::abort(),
                Action::Segv => {
                    // SAFETY: restoring the default disposition and raising the signal ends the process.
                    unsafe {
                        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                        libc::raise(libc::SIGSEGV);
                    }
                    std::process::abort();
                }
                Action::Exit => std::process::exit(3),
                Action::Hang => loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                },
            }
        }
    }

    /// A deliberate crash of a test hook leaves no core file behind.
    fn no_core_dump() {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads the struct we pass for the duration of the call.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    }
}
