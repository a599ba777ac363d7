//! `sandpool run` against the physical floor (benches/floor: only the file
//! work, same threads) and the seed's Python pattern, on tmpfs and on the
//! repository's own file system, runs interleaved; the issue-11 targets as
//! pass/miss lines; the 1M-input peak RSS (opt-in); one-file start-up.
//!
//! `cargo bench -p sandpool --bench cli` (after scripts/build-guests.sh).
//! Environment (all optional):
//! - `SANDPOOL_BENCH_SIZES=10000`: folder sizes (comma-separated);
//! - `SANDPOOL_BENCH_REPEATS=3`: runs of each program per folder (best and median reported);
//! - `SANDPOOL_BENCH_THREADS`: threads of every program (default: the CPU count);
//! - `SANDPOOL_BENCH_TMPFS=/dev/shm`: where the tmpfs folder goes;
//! - `SANDPOOL_BENCH_PYTHON=0`: leave Python out (its ratio lines then say so);
//! - `SANDPOOL_BENCH_1M=1`: also `sandpool run` on 1,000,000 tiny files for its
//!   peak RSS (slow; `SANDPOOL_BENCH_1M_FILES` changes the count).

#[path = "../common/mod.rs"]
mod common;
#[path = "../floor/mod.rs"]
mod floor;
mod programs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::corpus::{write_paragraph_files, write_tiny_files};
use common::machine::{command_line, load_average, print_header};
use common::measure::{measure, thread_cpu_ns};
use common::stats::{median, target_line};
use common::{cpus, env_flag, env_sizes, env_usize, guest, root, sandpool_exe};
use programs::{Program, Summary, count_entries, out_dir, run_once, same_outputs};
use sandpool::__bench::DirectRunner;
use sandpool::{FileInput, Limits, Task};

/// The settings of one benchmark run.
pub struct Setup {
    wasm: PathBuf,
    cache: PathBuf,
    /// The floor compiled on its own ([`build_floor`]); `None`: run it in this binary.
    floor_exe: Option<PathBuf>,
    threads: usize,
    repeats: usize,
    programs: Vec<Program>,
}

/// Compiles benches/floor/main.rs with `rustc -O` (`$RUSTC` if set) into
/// `dir`; `None` (and a note) if that fails, and the floor then runs as a
/// child of this benchmark's own binary, which starts ~1.5 ms slower.
fn build_floor(dir: &Path) -> Option<PathBuf> {
    let exe = dir.join("floor");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let built = std::process::Command::new(&rustc)
        .args([
            "--edition",
            "2024",
            "-C",
            "opt-level=3",
            "-C",
            "strip=symbols",
            "-o",
        ])
        .arg(&exe)
        .arg(root().join("benches/floor/main.rs"))
        .status()
        .is_ok_and(|s| s.success());
    if built {
        Some(exe)
    } else {
        eprintln!("cli: the floor could not be compiled with {rustc}");
        None
    }
}

/// The file system type of `path` (as `stat -f` names it).
fn fs_type(path: &Path) -> String {
    command_line("stat", &["-f", "-c", "%T", &path.display().to_string()])
}

/// The task's own time per file, in process, one thread, CPU time: doc_stats
/// in a fresh instance per file (and in one reused instance), on the files
/// of `inputs` (at most `limit` of them), each encoded as `sandpool run` sends it.
fn wasm_us_per_file(wasm: &Path, inputs: &Path, limit: usize) -> (f64, f64) {
    let task: Task<FileInput, String> = Task::from_file(wasm).expect("doc_stats loads");
    let runner = DirectRunner::new(&task, Limits::default()).expect("runner");
    let mut reused = runner.reused_instance().expect("instance");
    let mut files = floor::walk(inputs).expect("walk inputs");
    files.sort();
    files.truncate(limit.max(1));
    let encoded: Vec<Vec<u8>> = files
        .iter()
        .map(|rel| {
            let input = FileInput {
                name: rel.to_string_lossy().into_owned(),
                data: std::fs::read(inputs.join(rel)).expect("read input"),
            };
            sandpool_guest::abi::encode(&input).expect("encode")
        })
        .collect();
    for e in encoded.iter().take(200) {
        std::hint::black_box(runner.run_fresh(e).expect("doc_stats"));
    }
    let per_file = |f: &mut dyn FnMut(&[u8])| {
        let t0 = thread_cpu_ns();
        for e in &encoded {
            f(e);
        }
        (thread_cpu_ns() - t0) as f64 / 1e3 / encoded.len() as f64
    };
    let fresh = per_file(&mut |e| drop(std::hint::black_box(runner.run_fresh(e).expect("fresh"))));
    let reused = per_file(&mut |e| drop(std::hint::black_box(reused.run(e).expect("reused"))));
    (fresh, reused)
}

/// Every program on `files` paragraph files under `base`, runs interleaved
/// (the order rotated each round); prints the table and returns the summaries.
fn compare(setup: &Setup, place: &str, base: &Path, files: usize) -> Vec<Summary> {
    let work = tempfile::Builder::new()
        .prefix("sandpool-bench-cli-")
        .tempdir_in(base)
        .expect("work directory");
    let inputs = work.path().join("in");
    write_paragraph_files(&inputs, files);
    let mut summaries: Vec<Summary> = setup
        .programs
        .iter()
        .map(|&program| Summary {
            program,
            files,
            runs: Vec::new(),
        })
        .collect();
    for round in 0..setup.repeats {
        for k in 0..summaries.len() {
            let s = &mut summaries[(k + round) % setup.programs.len()];
            let out = out_dir(work.path(), s.program);
            let mut cmd = s.program.command(setup, &inputs, &out, setup.threads);
            s.runs.push(run_once(s.program, &mut cmd, &out));
        }
    }
    // The last round's outputs: every program wrote one per input, and
    // sandpool's JSON is Python's.
    let mut missing = Vec::new();
    for s in &summaries {
        let n = count_entries(&out_dir(work.path(), s.program));
        if n != files {
            missing.push(format!(
                "{} wrote {n} outputs for {files} inputs",
                s.program.key()
            ));
        }
    }
    let agree = |p: Program| {
        !setup.programs.contains(&Program::Python)
            || same_outputs(
                &out_dir(work.path(), p),
                &out_dir(work.path(), Program::Python),
                200,
            )
    };
    let (agree_i, agree_p) = (agree(Program::Instance), agree(Program::Process));

    println!(
        "\n## {files} files on {place} ({}, {}), {} threads each, {} interleaved runs\n",
        base.display(),
        fs_type(base),
        setup.threads,
        setup.repeats
    );
    println!(
        "| program | files/s best | files/s median | CPU µs/file (user + sys) | peak RSS | × floor (best, median) | × Python (best, median) | load before each run |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    let floor = find(&summaries, Program::Floor);
    let python = find(&summaries, Program::Python);
    let ratio = |s: &Summary, to: Option<&Summary>| {
        to.map_or("—".into(), |t| {
            format!(
                "{:.2}×, {:.2}×",
                s.best() / t.best(),
                s.median() / t.median()
            )
        })
    };
    for s in &summaries {
        let (user, sys) = s.user_sys_us();
        println!(
            "| {} | {:.0} | {:.0} | {:.1} ({user:.1} + {sys:.1}) | {:.1} MiB | {} | {} | {} |",
            s.program.label(),
            s.best(),
            s.median(),
            s.cpu_us_per_file(),
            s.peak_rss_mib(),
            ratio(s, floor),
            ratio(s, python),
            s.loads()
        );
    }
    for m in &missing {
        println!("\n**{m}** (last round)");
    }
    for s in summaries.iter().filter(|s| s.failed() > 0) {
        println!(
            "\n**{} failed in {} of {} runs**; its figures are of the others",
            s.program.key(),
            s.failed(),
            s.runs.len()
        );
    }
    if !agree_i || !agree_p {
        println!(
            "\n**OUTPUTS DIFFER from Python's** (instance agrees: {agree_i}, process agrees: {agree_p})"
        );
    } else if python.is_some() {
        println!("\nsandpool's outputs equal Python's (200 sampled per level).");
    }
    summaries
}

fn find(summaries: &[Summary], program: Program) -> Option<&Summary> {
    summaries.iter().find(|s| s.program == program)
}

/// The issue-11 target lines for one folder.
fn targets(place: &str, floor_target: f64, summaries: &[Summary], wasm_us: f64) {
    let Some(floor) = find(summaries, Program::Floor) else {
        return;
    };
    let python = find(summaries, Program::Python);
    for (program, tag) in [
        (Program::Instance, ""),
        (Program::Process, " [process level, no target: info]"),
    ] {
        let Some(s) = find(summaries, program) else {
            continue;
        };
        let name = if program == Program::Instance {
            "sandpool run"
        } else {
            "sandpool run --isolation process"
        };
        let (best, med) = (s.best() / floor.best(), s.median() / floor.median());
        let floor_ok = best >= floor_target;
        let line = |what: String, measured: String, goal: String, ok: bool| {
            if tag.is_empty() {
                target_line(&what, &measured, &goal, ok);
            } else {
                println!("info: {what}: {measured} (the instance target is {goal}){tag}");
            }
        };
        line(
            format!("{name} files/s vs the floor, {place}"),
            format!("{best:.2}× best of runs ({med:.2}× median)"),
            format!("≥ {floor_target}×"),
            floor_ok,
        );
        if place == "tmpfs" {
            match python {
                Some(py) => {
                    let (best, med) = (s.best() / py.best(), s.median() / py.median());
                    line(
                        format!("{name} files/s vs Python's ProcessPoolExecutor, {place}"),
                        format!("{best:.1}× best of runs ({med:.1}× median)"),
                        "≥ 10×".into(),
                        best >= 10.0,
                    );
                }
                None => {
                    let kind = if tag.is_empty() { "target" } else { "info" };
                    println!("{kind}: {name} vs Python: not measured (SANDPOOL_BENCH_PYTHON=0)")
                }
            }
        }
        let (cpu, floor_cpu) = (s.cpu_us_per_file(), floor.cpu_us_per_file());
        let allowed = floor_cpu + wasm_us + 10.0;
        line(
            format!("{name} CPU per file, {place}"),
            format!(
                "{cpu:.1} µs (floor {floor_cpu:.1} + the task's wasm {wasm_us:.1} + 10 = {allowed:.1} µs allowed; {:.1} µs over the floor and the task)",
                cpu - floor_cpu - wasm_us
            ),
            "≤ floor CPU + wasm time + 10 µs".into(),
            cpu <= allowed,
        );
    }
}

/// `sandpool run` on `files` tiny files (repository file system): peak RSS.
fn million(setup: &Setup, files: usize) {
    let work = tempfile::Builder::new()
        .prefix("sandpool-bench-1m-")
        .tempdir_in(root().join("target"))
        .expect("work directory");
    let (inputs, out) = (work.path().join("in"), work.path().join("out"));
    let t0 = Instant::now();
    write_tiny_files(&inputs, files);
    eprintln!(
        "cli: wrote {files} tiny files in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let mut cmd = Program::Instance.command(setup, &inputs, &out, setup.threads);
    let run = run_once(Program::Instance, &mut cmd, &out);
    let written = count_entries(&out);
    println!(
        "\n## {files} tiny files, `sandpool run` (instance level), {} ({}): {:.0} files/s, peak RSS {:.1} MiB, {written} outputs, load before {:.2}",
        work.path().display(),
        fs_type(work.path()),
        files as f64 / run.measured.wall.as_secs_f64(),
        run.measured.max_rss_mib(),
        run.load_before
    );
    target_line(
        &format!("peak RSS of `sandpool run` over {files} inputs"),
        &format!("{:.1} MiB", run.measured.max_rss_mib()),
        "< 100 MiB",
        run.measured.max_rss_mib() < 100.0 && written == files,
    );
}

/// Median wall time of 5 one-file runs, the cache cleared before each (`cold`) or kept.
fn startup(setup: &Setup, work: &Path, cold: bool) -> Duration {
    let one = work.join("one");
    std::fs::create_dir_all(&one).expect("mkdir");
    std::fs::write(one.join("a.txt"), "one small file").expect("write");
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            if cold {
                let _ = std::fs::remove_dir_all(&setup.cache);
            }
            let _ = std::fs::remove_dir_all(work.join("one-out"));
            measure(
                std::process::Command::new(sandpool_exe())
                    .env("SANDPOOL_CACHE_DIR", &setup.cache)
                    .args(["run", "--quiet", "-o"])
                    .arg(work.join("one-out"))
                    .arg(&setup.wasm)
                    .arg(&one),
            )
            .wall
            .as_secs_f64()
        })
        .collect();
    Duration::from_secs_f64(median(&mut runs))
}

/// The task's time per file ([`wasm_us_per_file`]) measured in a child
/// process, so that this process never loads wasmtime and stays small: a
/// child's peak RSS as wait4 reports it is never below its parent's peak
/// when it was spawned (Linux folds the exec'd-over memory's high-water
/// mark into it).
fn wasm_us_in_child(wasm: &Path, inputs: &Path, limit: usize) -> (f64, f64) {
    let out = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .arg("wasm-time")
        .arg(wasm)
        .arg(inputs)
        .arg(limit.to_string())
        .output()
        .expect("wasm-time child");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = text.split_whitespace().filter_map(|x| x.parse().ok());
    match (out.status.success(), v.next(), v.next()) {
        (true, Some(fresh), Some(reused)) => (fresh, reused),
        _ => panic!(
            "wasm-time child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = floor::main_if_floor(&args) {
        std::process::exit(code);
    }
    if let [cmd, wasm, inputs, limit] = &args[..]
        && cmd == "wasm-time"
    {
        let (fresh, reused) = wasm_us_per_file(
            Path::new(wasm),
            Path::new(inputs),
            limit.parse().expect("a count"),
        );
        println!("{fresh} {reused}");
        return;
    }
    // `cargo bench` passes `--bench`; other arguments are ignored.
    let started = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("bench-cli-")
        .tempdir_in(root().join("target"))
        .expect("work directory");
    let mut programs = Program::ALL.to_vec();
    if std::env::var("SANDPOOL_BENCH_PYTHON").is_ok_and(|v| v == "0") {
        programs.retain(|&p| p != Program::Python);
    }
    let setup = Setup {
        wasm: guest("doc_stats"),
        cache: work.path().join("cache"),
        floor_exe: build_floor(work.path()),
        threads: env_usize("SANDPOOL_BENCH_THREADS", cpus()),
        repeats: env_usize("SANDPOOL_BENCH_REPEATS", 3).max(1),
        programs,
    };
    let tmpfs =
        PathBuf::from(std::env::var("SANDPOOL_BENCH_TMPFS").unwrap_or_else(|_| "/dev/shm".into()));
    let repo_fs = root().join("target");

    print_header(
        "`sandpool run` vs the file-system floor and the seed's Python pattern (doc_stats)",
        true,
    );
    println!(
        "- every program: {} threads (`sandpool run --jobs`, the floor's threads, Python's workers); each run a child process measured by wait4 (wall, user + system CPU of it and its waited-for children, peak RSS of its largest single process); output folder removed before each run; the compiled module cached before the first run",
        setup.threads
    );
    println!(
        "- tmpfs: {} ({}); repository file system: {} ({})",
        tmpfs.display(),
        fs_type(&tmpfs),
        repo_fs.display(),
        fs_type(&repo_fs)
    );
    println!(
        "- floor: {}",
        match &setup.floor_exe {
            Some(exe) =>
                format!(
                    "benches/floor/main.rs compiled by `rustc -O` ({})",
                    command_line(
                        &std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()),
                        &["--version"]
                    )
                ) + &format!(", {}", exe.display()),
            None =>
                "**run inside this benchmark's binary: rustc failed (~1.5 ms of start-up more)**"
                    .into(),
        }
    );
    println!(
        "- peak RSS: a child's can never read below this benchmark process's own peak when it spawned it ({:.1} MiB here; wasm is measured in a separate child so that it stays small)",
        common::measure::own_peak_rss_mib()
    );
    if fs_type(&tmpfs) != "tmpfs" {
        println!("- **warning: {} is not tmpfs**", tmpfs.display());
    }
    // Fill the compiled-module cache, as any second run finds it.
    let cold = startup(&setup, work.path(), true);
    eprintln!(
        "cli: cold start-up measured at {:.0} s",
        started.elapsed().as_secs_f64()
    );

    for files in env_sizes("SANDPOOL_BENCH_SIZES", &[10_000]) {
        let probe = work.path().join(format!("probe-{files}"));
        write_paragraph_files(&probe, files);
        let (wasm_us, reused_us) = wasm_us_in_child(&setup.wasm, &probe, 10_000);
        let _ = std::fs::remove_dir_all(&probe);
        eprintln!(
            "cli: the task's time measured at {:.0} s",
            started.elapsed().as_secs_f64()
        );
        let t = compare(&setup, "tmpfs", &tmpfs, files);
        eprintln!(
            "cli: tmpfs done at {:.0} s",
            started.elapsed().as_secs_f64()
        );
        let r = compare(&setup, "the repository's file system", &repo_fs, files);
        println!(
            "\nThe task's own time per file (doc_stats on these files, in process, one thread, CPU time): {wasm_us:.1} µs in a fresh instance ({reused_us:.1} µs in one reused instance).\n"
        );
        targets("tmpfs", 0.5, &t, wasm_us);
        targets("repository fs", 0.9, &r, wasm_us);
    }

    if env_flag("SANDPOOL_BENCH_1M") {
        million(&setup, env_usize("SANDPOOL_BENCH_1M_FILES", 1_000_000));
    } else {
        println!("\n(1M-input peak RSS: not run; SANDPOOL_BENCH_1M=1 runs it, slowly)");
    }

    println!();
    let warm = startup(&setup, work.path(), false);
    println!(
        "one-file run, cold (module compiled): median {:.1} ms",
        cold.as_secs_f64() * 1000.0
    );
    println!(
        "one-file run, cached (compiled module loaded from disk): median {:.1} ms",
        warm.as_secs_f64() * 1000.0
    );
    println!(
        "cached start-up is {:.1}x faster than cold",
        cold.as_secs_f64() / warm.as_secs_f64()
    );
    println!(
        "\n(load average at end: {}; run took {:.0} s)",
        load_average(),
        started.elapsed().as_secs_f64()
    );
}
