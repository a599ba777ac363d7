//! Resource limits for one task: deadline, fuel, memory, output and log size.
//! A pool has default limits; a single submission may override them. Both
//! isolation levels use this one type (it crosses to worker processes as is).

use std::time::Duration;

/// What one task may use. Every limit failure fails only that task.
///
/// ```
/// use std::time::Duration;
/// let limits = sandpool::Limits::default()
///     .timeout(Duration::from_secs(2))
///     .memory(64 << 20)
///     .max_output(1 << 20);
/// assert_eq!(limits.memory, 64 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Wall-clock deadline per task, enforced by epoch interruption
    /// (resolution about 1 ms). `None`: no deadline. Default: 60 s.
    pub timeout: Option<Duration>,
    /// Fuel (roughly, wasm instructions) per task. `None`: unmetered (the
    /// default). Metering costs CPU time, so pools enable it only when asked.
    pub fuel: Option<u64>,
    /// Cap on a task's linear memory in bytes. Default: 256 MiB.
    pub memory: u64,
    /// Cap on a task's encoded output in bytes. Default: 64 MiB.
    pub max_output: u64,
    /// Cap on captured stdout and on captured stderr per task, in bytes;
    /// the rest is counted and dropped. Default: 64 KiB.
    pub max_log: usize,
    /// Cap on a task's capability calls (`PoolBuilder::capability`); the
    /// call past it fails the task with [`Error::Capability`](crate::Error::Capability).
    /// Default: 10,000.
    #[serde(default = "default_max_calls")]
    pub max_calls: u32,
    /// Cap on the request bytes a task sends to capabilities, all calls
    /// together. Default: 16 MiB.
    #[serde(default = "default_max_call_request")]
    pub max_call_request: u64,
    /// Cap on the response bytes a task receives from capabilities, all
    /// calls together. Default: 64 MiB.
    #[serde(default = "default_max_call_response")]
    pub max_call_response: u64,
}

fn default_max_calls() -> u32 {
    10_000
}

fn default_max_call_request() -> u64 {
    16 << 20
}

fn default_max_call_response() -> u64 {
    64 << 20
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Some(Duration::from_secs(60)),
            fuel: None,
            memory: 256 << 20,
            max_output: 64 << 20,
            max_log: 64 << 10,
            max_calls: default_max_calls(),
            max_call_request: default_max_call_request(),
            max_call_response: default_max_call_response(),
        }
    }
}

impl Limits {
    /// Sets the wall-clock deadline.
    ///
    /// ```
    /// let l = sandpool::Limits::default().timeout(std::time::Duration::from_millis(50));
    /// assert_eq!(l.timeout, Some(std::time::Duration::from_millis(50)));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Removes the wall-clock deadline.
    ///
    /// ```
    /// assert_eq!(sandpool::Limits::default().no_timeout().timeout, None);
    /// ```
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Sets the fuel budget (requires a pool built with fuel metering).
    ///
    /// ```
    /// assert_eq!(sandpool::Limits::default().fuel(1_000_000).fuel, Some(1_000_000));
    /// ```
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = Some(fuel);
        self
    }

    /// Sets the linear-memory cap in bytes.
    ///
    /// ```
    /// assert_eq!(sandpool::Limits::default().memory(1 << 20).memory, 1 << 20);
    /// ```
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }

    /// Sets the output-size cap in bytes.
    ///
    /// ```
    /// assert_eq!(sandpool::Limits::default().max_output(10).max_output, 10);
    /// ```
    pub fn max_output(mut self, bytes: u64) -> Self {
        self.max_output = bytes;
        self
    }

    /// Sets the per-stream cap on captured stdout/stderr in bytes.
    ///
    /// ```
    /// assert_eq!(sandpool::Limits::default().max_log(0).max_log, 0);
    /// ```
    pub fn max_log(mut self, bytes: usize) -> Self {
        self.max_log = bytes;
        self
    }

    /// Sets the cap on capability calls per task.
    ///
    /// ```
    /// assert_eq!(sandpool::Limits::default().max_calls(3).max_calls, 3);
    /// ```
    pub fn max_calls(mut self, calls: u32) -> Self {
        self.max_calls = calls;
        self
    }

    /// Sets the cap on capability request bytes per task (all calls together).
    ///
    /// ```
    /// assert_eq!(sandpool::Limits::default().max_call_request(10).max_call_request, 10);
    /// ```
    pub fn max_call_request(mut self, bytes: u64) -> Self {
        self.max_call_request = bytes;
        self
    }

    /// Sets the cap on capability response bytes per task (all calls together).
    ///
    /// ```
    /// assert_eq!(sandpool::Limits::default().max_call_response(10).max_call_response, 10);
    /// ```
    pub fn max_call_response(mut self, bytes: u64) -> Self {
        self.max_call_response = bytes;
        self
    }
}
