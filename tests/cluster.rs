//! Scale-out over NATS JetStream, against a real nats-server (installed by
//! scripts/install-nats.sh): `sandpool worker --nats` processes and
//! `sandpool run --nats` collectors, killed and stalled on purpose.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;
#[path = "common/nats.rs"]
mod nats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nats::Server;

fn sandpool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sandpool"))
}

fn doc_stats() -> PathBuf {
    common::guest("doc_stats")
}

/// A `sandpool worker --nats` process, its stderr kept in a file.
struct Worker {
    child: Child,
    log: PathBuf,
}

fn worker(url: &str, dir: &Path, n: usize, env: &[(&str, &str)], extra: &[&str]) -> Worker {
    let jobs = if extra.contains(&"--jobs") {
        None
    } else {
        Some("2")
    };
    let log = dir.join(format!("worker-{n}.log"));
    let mut cmd = sandpool();
    cmd.args(["worker", "--nats", url])
        .args(jobs.map(|j| ["--jobs", j]).iter().flatten())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    Worker {
        child: cmd.spawn().expect("start a worker"),
        log,
    }
}

impl Worker {
    fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn stopped(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    }

    /// Ctrl-C, wait, and the counters of its last line.
    fn stop(mut self) -> String {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGINT);
        let status = wait_for(&mut self.child, Duration::from_secs(30));
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "worker exited with {status}: {log}");
        log
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(child: &mut Child, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("process still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn collector(url: &str, inputs: &Path, out: &Path, log: &Path) -> Child {
    sandpool()
        .args(["run", "--nats", url])
        .arg(doc_stats())
        .arg(inputs)
        .arg("-o")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("start the collector")
}

/// `n` small text inputs, some in subfolders.
fn make_inputs(dir: &Path, n: usize) -> PathBuf {
    let inputs = dir.join("in");
    for i in 0..n {
        let sub = inputs.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("doc {i}.txt")),
            format!(
                "document {i}: the cat sat on the mat {}\n",
                "x ".repeat(i % 7)
            ),
        )
        .unwrap();
    }
    inputs
}

/// Every file under `dir` (relative path → bytes).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn count_outputs(dir: &Path) -> usize {
    fn walk(d: &Path) -> usize {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            walk(&e.path())
                        } else {
                            usize::from(e.file_name().to_string_lossy().ends_with(".json"))
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(dir)
}

/// The local run of the same job, for comparison.
fn local_run(inputs: &Path, out: &Path) -> ExitStatus {
    sandpool()
        .args(["run", "--quiet"])
        .arg(doc_stats())
        .arg(inputs)
        .arg("-o")
        .arg(out)
        .status()
        .expect("local run")
}

/// Strips the lock file (local to each run) from a tree.
fn outputs(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut t = tree(dir);
    t.retain(|p, _| !p.to_string_lossy().starts_with(".sandpool-lock"));
    t
}

#[test]
fn sigkilled_workers_and_a_kill9_of_the_server_lose_and_duplicate_nothing() {
    const N: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_inputs(dir.path(), N);
    let mut server = Server::start();
    let url = server.url();
    let wargs = ["--ack-wait", "3s"];
    let mut workers: Vec<Worker> = (0..2)
        .map(|i| worker(&url, dir.path(), i, &[], &wargs))
        .collect();
    let out = dir.path().join("out");
    let mut run = collector(&url, &inputs, &out, &dir.path().join("collector.log"));
    let started = Instant::now();
    let mut next = 2;
    let mut step = 0;
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        let done = count_outputs(&out);
        if started.elapsed() > Duration::from_secs(100) {
            let log = std::fs::read_to_string(dir.path().join("collector.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let workers: Vec<String> = workers
                .iter()
                .map(|w| std::fs::read_to_string(&w.log).unwrap_or_default())
                .collect();
            let slog =
                std::fs::read_to_string(server.store.path().join("server.log")).unwrap_or_default();
            let slog: Vec<&str> = slog
                .lines()
                .filter(|l| !l.contains("[INF]"))
                .take(30)
                .collect();
            panic!(
                "the run did not finish: {done} outputs, step {step}; collector: {tail:?}; workers: {workers:?}; server: {slog:#?}"
            );
        }
        if step == 0 && done >= N / 5 {
            // SIGKILL a worker mid-run; a new one takes its place.
            workers[0].sigkill();
            workers.push(worker(&url, dir.path(), next, &[], &wargs));
            next += 1;
            step = 1;
        } else if step == 1 && done >= N / 2 {
            // kill -9 the server, then start it again on the same store.
            server.kill9();
            std::thread::sleep(Duration::from_millis(500));
            server.restart();
            step = 2;
        } else if step == 2 && done >= N * 7 / 10 {
            workers[1].sigkill();
            workers.push(worker(&url, dir.path(), next, &[], &wargs));
            next += 1;
            step = 3;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(dir.path().join("collector.log")).unwrap();
    assert!(status.success(), "collector: {status}: {log}");
    assert_eq!(step, 3, "every fault was injected mid-run");
    // Exactly the files a local run writes, byte for byte.
    let local = dir.path().join("local");
    assert!(local_run(&inputs, &local).success());
    let (remote, local) = (outputs(&out), outputs(&local));
    assert_eq!(remote.len(), N, "one output per input, nothing else");
    assert!(
        remote
            .keys()
            .all(|p| !p.to_string_lossy().ends_with(".error.json"))
    );
    assert_eq!(remote, local, "the cluster's outputs are the local run's");
}

#[test]
fn a_poison_input_ends_as_an_error_record_after_max_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_inputs(dir.path(), 30);
    std::fs::write(inputs.join("poison.txt"), "kills its worker").unwrap();
    let server = Server::start();
    let url = server.url();
    let env = [("SANDPOOL_NATS_FAULT_ABORT", "poison.txt")];
    // One task at a time: only the poison input is lost when a worker dies.
    let wargs = ["--ack-wait", "1s", "--max-deliver", "3", "--jobs", "1"];
    let mut workers: Vec<Worker> = (0..2)
        .map(|i| worker(&url, dir.path(), i, &env, &wargs))
        .collect();
    let out = dir.path().join("out");
    let mut run = collector(&url, &inputs, &out, &dir.path().join("collector.log"));
    let started = Instant::now();
    let mut next = 2;
    let mut deaths = 0;
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run did not finish"
        );
        // A supervisor restarts workers that die.
        for w in workers.iter_mut() {
            if w.exited() {
                deaths += 1;
                *w = worker(&url, dir.path(), next, &env, &wargs);
                next += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "one input failed");
    assert_eq!(
        deaths, 2,
        "the poison input killed a worker on deliveries 1 and 2"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("poison.txt.error.json")).unwrap()).unwrap();
    assert_eq!(record["error"], "worker_crashed");
    assert_eq!(record["input"], "poison.txt");
    let message = record["message"].as_str().unwrap();
    assert!(message.contains("given up after 3 deliveries"), "{message}");
    let files = outputs(&out);
    assert_eq!(files.len(), 31);
    assert_eq!(
        files
            .keys()
            .filter(|p| p.to_string_lossy().ends_with(".error.json"))
            .count(),
        1
    );
}

#[test]
fn a_worker_that_stalls_past_ack_wait_causes_no_second_output() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_inputs(dir.path(), 200);
    std::fs::write(inputs.join("stall.txt"), "its first worker stops").unwrap();
    let server = Server::start();
    let url = server.url();
    // Whichever worker gets stall.txt first stops itself (SIGSTOP, as a
    // stall would: no heartbeats); its redelivery goes to the other.
    let env = [("SANDPOOL_NATS_FAULT_STOP", "stall.txt")];
    let wargs = ["--ack-wait", "1s"];
    let workers: Vec<Worker> = (0..2)
        .map(|i| worker(&url, dir.path(), i, &env, &wargs))
        .collect();
    let out = dir.path().join("out");
    let mut run = collector(&url, &inputs, &out, &dir.path().join("collector.log"));
    let status = wait_for(&mut run, Duration::from_secs(60));
    assert!(status.success(), "collector: {status}");
    let stalled: Vec<usize> = (0..2).filter(|&i| workers[i].stopped()).collect();
    assert_eq!(stalled.len(), 1, "one worker stalled and is still stopped");
    let before = std::fs::read(out.join("stall.txt.json")).unwrap();
    // The stalled worker wakes up, finishes stall.txt and tries to write its result.
    workers[stalled[0]].signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(2));
    let logs: Vec<String> = workers.into_iter().map(Worker::stop).collect();
    let stalled_log = &logs[stalled[0]];
    let refused: u64 = stalled_log
        .split(" duplicate results refused")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // stall.txt's late result (and those of the tasks it held with it) were refused.
    assert!(refused >= 1, "the late result was refused: {stalled_log}");
    assert_eq!(std::fs::read(out.join("stall.txt.json")).unwrap(), before);
    assert_eq!(outputs(&out).len(), 201);
    let local = dir.path().join("local");
    assert!(local_run(&inputs, &local).success());
    assert_eq!(outputs(&out), outputs(&local));
}

#[test]
fn an_interrupted_cluster_run_resumes_like_a_local_one() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_inputs(dir.path(), 300);
    let server = Server::start();
    let url = server.url();
    let out = dir.path().join("out");
    // No worker yet: the run submits everything, then is interrupted.
    let log = dir.path().join("first.log");
    let mut first = collector(&url, &inputs, &out, &log);
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    let status = wait_for(&mut first, Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(130),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(count_outputs(&out), 0);
    // Workers run the queued tasks with no collector; the next run collects
    // them (no resubmission runs anything twice) and exits 0.
    let w = worker(&url, dir.path(), 0, &[], &[]);
    std::thread::sleep(Duration::from_secs(1));
    let mut second = collector(&url, &inputs, &out, &dir.path().join("second.log"));
    assert!(wait_for(&mut second, Duration::from_secs(60)).success());
    let log = w.stop();
    assert!(log.contains("300 tasks run, 0 duplicate"), "{log}");
    let local = dir.path().join("local");
    assert!(local_run(&inputs, &local).success());
    assert_eq!(outputs(&out), outputs(&local));
    // A third run finds everything done: nothing submitted.
    let third = sandpool()
        .args(["run", "--nats", &url])
        .arg(doc_stats())
        .arg(&inputs)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(third.status.success());
    let said = String::from_utf8_lossy(&third.stderr);
    assert!(said.contains("300 skipped"), "{said}");
}

#[test]
fn a_bad_url_or_a_server_that_is_down_is_a_clear_error_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_inputs(dir.path(), 3);
    let down = format!("nats://127.0.0.1:{}", nats::free_port());
    let no_js = Server::start_with(false);
    for (url, says) in [
        (down.as_str(), "cannot connect to the NATS server"),
        ("http://[not a host", "cannot connect to the NATS server"),
        (no_js.url().leak() as &str, "JetStream"),
    ] {
        let run = sandpool()
            .args(["run", "--nats", url])
            .arg(doc_stats())
            .arg(&inputs)
            .arg("-o")
            .arg(dir.path().join("out"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "run --nats {url}: {err}");
        assert!(
            err.contains(says) && err.contains("sandpool:"),
            "{url}: {err}"
        );
        let work = sandpool().args(["worker", "--nats", url]).output().unwrap();
        let err = String::from_utf8_lossy(&work.stderr);
        assert_eq!(work.status.code(), Some(2), "worker --nats {url}: {err}");
        assert!(err.contains(says), "{url}: {err}");
    }
}

#[test]
fn raw_and_multi_file_outputs_come_back_as_the_files_a_local_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(inputs.join("sub")).unwrap();
    let commands = [
        ("a.txt", "bytes csv a,b 1,2"),
        ("b.txt", "files 3 10"),
        ("c.txt", "json"),
        ("sub/d.txt", "bytes png not-really-a-png"),
        ("sub/e.txt", "error"),
    ];
    for (name, command) in commands {
        std::fs::write(inputs.join(name), command).unwrap();
    }
    let guest = common::guest("outputs");
    let server = Server::start();
    let url = server.url();
    let w = worker(&url, dir.path(), 0, &[], &[]);
    let out = dir.path().join("out");
    let run = sandpool()
        .args(["run", "--nats", &url])
        .arg(&guest)
        .arg(&inputs)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stderr);
    // One input fails (a guest error): exit 1, as a local run.
    assert_eq!(run.status.code(), Some(1), "{said}");
    let local = dir.path().join("local");
    let status = sandpool()
        .args(["run", "--quiet"])
        .arg(&guest)
        .arg(&inputs)
        .arg("-o")
        .arg(&local)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let (remote, local) = (outputs(&out), outputs(&local));
    assert_eq!(remote, local);
    for name in [
        "a.txt.csv",
        "b.txt.files/part-0.bin",
        "b.txt.files/part-2.bin",
        "c.txt.json",
        "sub/d.txt.png",
        "sub/e.txt.error.json",
    ] {
        assert!(remote.contains_key(Path::new(name)), "{name} in {remote:?}");
    }
    assert_eq!(remote[Path::new("a.txt.csv")], b"a,b 1,2");
    // A second run finds every kind done; only the failed input runs again.
    let again = sandpool()
        .args(["run", "--nats", &url])
        .arg(&guest)
        .arg(&inputs)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("4 skipped"), "{said}");
    w.stop();
    assert_eq!(outputs(&out), remote);
}
