//! The soak loop shared by `benches/soak.rs` (1,000,000 tasks) and
//! `tests/soak.rs` (its short form): tiny tasks through the in-process
//! instance executor, every result checked against its input, resident
//! memory sampled as it goes.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sandpool::{Pool, Task};
use serde_bytes::ByteBuf;

/// Tasks after which the baseline is taken: by then every worker, pool
/// slot and allocator arena the run needs is warm.
pub const WARM_UP: u64 = 10_000;

/// The allowed growth over the baseline, in percent.
pub const MAX_GROWTH_PERCENT: f64 = 10.0;

/// One RSS sample.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub tasks: u64,
    pub rss: u64,
    pub elapsed: Duration,
}

/// What a soak run measured.
#[derive(Debug)]
pub struct Soak {
    pub samples: Vec<Sample>,
    pub baseline: u64,
    pub end: u64,
    pub peak_after_warm_up: u64,
    pub elapsed: Duration,
}

impl Soak {
    /// Growth of the final RSS over the baseline, in percent.
    pub fn growth_percent(&self) -> f64 {
        (self.end as f64 - self.baseline as f64) * 100.0 / self.baseline as f64
    }

    /// Whether the end is within the allowed growth.
    pub fn passes(&self) -> bool {
        self.growth_percent() <= MAX_GROWTH_PERCENT
    }

    /// The samples and the verdict, as printed by the benchmark.
    pub fn report(&self) -> String {
        let mut out = String::from("   tasks      RSS (MiB)   elapsed\n");
        for s in &self.samples {
            out.push_str(&format!(
                "{:>9}  {:>12.2}  {:>8.1}s\n",
                s.tasks,
                s.rss as f64 / (1 << 20) as f64,
                s.elapsed.as_secs_f64()
            ));
        }
        let total = self.samples.last().map_or(0, |s| s.tasks);
        out.push_str(&format!(
            "baseline after {WARM_UP} tasks: {:.2} MiB; end after {total}: {:.2} MiB ({:+.2}%); \
             peak after warm-up {:.2} MiB; {:.0} tasks/s\nverdict: {} (limit +{MAX_GROWTH_PERCENT}%)\n",
            self.baseline as f64 / (1 << 20) as f64,
            self.end as f64 / (1 << 20) as f64,
            self.growth_percent(),
            self.peak_after_warm_up as f64 / (1 << 20) as f64,
            total as f64 / self.elapsed.as_secs_f64().max(1e-9),
            if self.passes() { "PASS" } else { "FAIL" },
        ));
        out
    }
}

/// Resident set size of this process, in bytes.
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(1) as u64
}

/// The built echo guest.
pub fn echo_guest() -> PathBuf {
    let dir = std::env::var_os("SANDPOOL_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/guest/wasm32-wasip1/release/examples")
        });
    let path = dir.join("echo.wasm");
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-guests.sh",
        path.display()
    );
    path
}

/// Runs `tasks` echo tasks of 8 bytes each on a 2-worker pool, sampling RSS
/// about `samples` times (and at the end of the warm-up).
pub fn run(tasks: u64, samples: u64) -> Soak {
    assert!(tasks > WARM_UP, "a soak needs more than {WARM_UP} tasks");
    let task: Task<ByteBuf, ByteBuf> = Task::from_file(echo_guest()).expect("echo loads");
    let pool = Pool::builder(task).workers(2).build().expect("pool starts");
    let every = (tasks / samples.max(1)).max(1);
    let started = Instant::now();
    let mut out = Vec::new();
    let mut baseline = 0;
    let mut peak = 0;
    let inputs = (0..tasks).map(|i| ByteBuf::from(i.to_le_bytes().to_vec()));
    for (i, result) in pool.map(inputs).enumerate() {
        let done = i as u64 + 1;
        let value = result.unwrap_or_else(|e| panic!("task {i} failed: {e}"));
        assert_eq!(
            value.as_slice(),
            (i as u64).to_le_bytes(),
            "task {i}'s result"
        );
        if done == WARM_UP || done.is_multiple_of(every) || done == tasks {
            let sample = Sample {
                tasks: done,
                rss: rss(),
                elapsed: started.elapsed(),
            };
            if done == WARM_UP {
                baseline = sample.rss;
            }
            if done > WARM_UP {
                peak = peak.max(sample.rss);
            }
            out.push(sample);
        }
    }
    pool.shutdown(true, false);
    let end = out.last().map_or(0, |s| s.rss);
    Soak {
        samples: out,
        baseline,
        end,
        peak_after_warm_up: peak,
        elapsed: started.elapsed(),
    }
}
