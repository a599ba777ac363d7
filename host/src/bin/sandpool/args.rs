//! Command-line flags, defined once; `--help` is generated from these definitions.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Run CPU tasks as isolated WebAssembly, one output file per input.
///
/// sandpool runs a task module (a .wasm file built with the sandpool-guest
/// SDK, or any module implementing guest ABI v1, see docs/abi.md) on every
/// file of a folder. Each input runs in a fresh wasm instance with its own
/// memory, a deadline and a memory cap, so one bad input fails alone.
#[derive(Parser, Debug)]
#[command(name = "sandpool", version, about, long_about)]
#[command(
    after_help = "EXIT STATUS:\n  0  every task succeeded\n  1  some tasks failed (see the .error.json files)\n  2  usage or setup error (bad flag, missing folder, invalid module)\n  130  interrupted (Ctrl-C); run the same command again to finish"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing buys nothing
pub enum Command {
    /// Run a task module on every file of a folder.
    Run(RunArgs),
    /// Describe a module: exports, imports, ABI version, whether it is a valid task.
    Inspect(InspectArgs),
    /// Which inputs are done, failed or missing in an output folder.
    Status(StatusArgs),
    /// Run tasks for `sandpool run --nats` pulled from a NATS server (or,
    /// without --nats, serve the process executor over stdin/stdout).
    Worker(WorkerArgs),
}

/// The names `--isolation` accepts, with what each means; the values are
/// the library's own [`sandpool::Isolation`] (no copy of the enum here).
const ISOLATION_LEVELS: [(&str, sandpool::Isolation, &str); 2] = [
    (
        "instance",
        sandpool::Isolation::Instance,
        "A fresh wasm instance per task inside this process (fast)",
    ),
    (
        "process",
        sandpool::Isolation::Process,
        "Persistent worker subprocesses: a crash of the wasm runtime itself loses one task",
    ),
];

/// The `--isolation` name of a level.
pub fn isolation_name(level: sandpool::Isolation) -> &'static str {
    match level {
        sandpool::Isolation::Instance => ISOLATION_LEVELS[0].0,
        sandpool::Isolation::Process => ISOLATION_LEVELS[1].0,
    }
}

fn isolation_parser() -> impl clap::builder::TypedValueParser<Value = sandpool::Isolation> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(
        ISOLATION_LEVELS.map(|(name, _, help)| PossibleValue::new(name).help(help)),
    )
    .map(|name: String| {
        ISOLATION_LEVELS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, level, _)| *level)
            .unwrap_or_default()
    })
}

/// A size in bytes, shown in binary units (`256MiB`); parsed by [`parse_size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n != 0 && n.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        parse_size(text).map(Size)
    }
}

/// A duration, shown as `60s` or `500ms`; parsed by [`parse_duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait(pub Duration);

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl std::str::FromStr for Wait {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        parse_duration(text).map(Wait)
    }
}

/// The library's default limits: the one place the CLI's defaults come from.
fn defaults() -> sandpool::Limits {
    sandpool::Limits::default()
}

/// Run TASK on every file under INPUTS and write OUT/{id}.json per input,
/// or on every line of a JSON Lines file and write one result line per line.
///
/// Every regular file under INPUTS (recursively) is one input. The output
/// tree mirrors the input tree, names kept as they are: `a/b.txt` gives
/// `OUT/a/b.txt.json`. Only what cannot be mirrored safely is escaped as
/// `%XX` (`%`, `\`, control characters, bytes that are not UTF-8, a leading
/// `.`, a trailing `.error`); the full rule, which keeps every file name
/// distinct (bytes, not text), is in docs/cli.md. The task
/// receives the file's bytes and relative name and must return a JSON
/// document. A failed input gets `OUT/{id}.error.json` with the error
/// variant and message instead. Outputs are written atomically; a re-run
/// skips inputs whose output exists and is valid JSON, so an interrupted
/// run can simply be repeated. One run at a time per output folder: a
/// second is refused (exit 2). An output folder inside INPUTS is skipped.
///
/// JSON Lines mode (INPUTS is a file or `-`): each line is one input, given
/// to the task as its bytes; results are written in input order, one line
/// each: `{"line":N,"ok":...}` or `{"line":N,"error":KIND,"message":...}`
/// (with `"id"` under --id-field). A re-run resumes after the last complete
/// line of OUT. See docs/cli.md.
#[derive(Args, Debug)]
#[command(
    after_help = "EXAMPLES:\n  sandpool run doc_stats.wasm inputs/\n  sandpool run doc_stats.wasm inputs/ -o stats/ --jobs 4 --timeout 10s --memory 128MiB\n  sandpool run task.wasm big/ --json > summary.json\n  sandpool run task.wasm records.jsonl -o results.jsonl --id-field id\n  zcat records.jsonl.gz | sandpool run task.wasm - | jq .ok"
)]
pub struct RunArgs {
    /// The task module (.wasm).
    pub task: PathBuf,
    /// The folder of inputs (searched recursively; symbolic links are not
    /// followed), or a JSON Lines file (one input per line; `-` for stdin).
    pub inputs: PathBuf,
    /// Output folder (created if missing) [default: output]; for JSON Lines
    /// input, the JSON Lines file to write (resumed if it exists) [default: -,
    /// stdout].
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// JSON Lines input only: the field of each record that identifies it
    /// (copied into its result line as `id`, given to the task as its name)
    /// [default: the line number].
    #[arg(long, value_name = "FIELD")]
    pub id_field: Option<String>,
    /// Tasks run in parallel [default: number of CPUs].
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Where each task runs.
    #[arg(long, value_parser = isolation_parser(), default_value = isolation_name(sandpool::Isolation::default()))]
    pub isolation: sandpool::Isolation,
    /// Wall-clock limit per task, e.g. 500ms, 30s, 2m; 0 for none.
    #[arg(long, default_value_t = Wait(defaults().timeout.unwrap_or_default()), value_name = "DURATION")]
    pub timeout: Wait,
    /// Linear-memory cap per task, e.g. 64MiB, 1GiB.
    #[arg(long, default_value_t = Size(defaults().memory), value_name = "SIZE")]
    pub memory: Size,
    /// Inputs larger than this fail without being read [default: half of --memory].
    #[arg(long, value_name = "SIZE")]
    pub max_input: Option<Size>,
    /// Fuel (about one unit per wasm instruction) per task [default: unmetered].
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Cap on a task's output size.
    #[arg(long, default_value_t = Size(defaults().max_output), value_name = "SIZE")]
    pub max_output: Size,
    /// Recompute every input, even those whose output already exists.
    #[arg(long)]
    pub force: bool,
    /// Stop starting new inputs after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// Run an input again, up to N more times, when it fails transiently:
    /// its deadline passed (--timeout) or its worker crashed. A guest's own
    /// error, a trap, fuel or memory exhaustion are never retried.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retries: u32,
    /// Print nothing but errors.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print every failure as it happens, and timing details.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print a machine-readable JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Do not read or write the compiled-module cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Let every task use one host directory: HOST, seen by the guest at
    /// GUEST (default /data), read-only (ro, the default) or read-write
    /// (rw). Nothing outside it is reachable. Without it a task reaches no
    /// file at all. Instance isolation only.
    #[arg(long, value_name = "HOST[:GUEST][:ro|rw]", value_parser = parse_dir)]
    pub dir: Option<DirArg>,
    /// Grant every task the read-only SQL capability `sql.query` over the
    /// SQLite database PATH (opened once, read-only; only read-only
    /// statements run). A task declares `sql.query` and calls it with
    /// `{sql, params}`; see docs/cli.md. Both isolation levels.
    #[arg(long, value_name = "PATH[:ro]", value_parser = parse_sqlite)]
    pub sqlite: Option<PathBuf>,
    /// Run the tasks on the `sandpool worker --nats` processes attached to
    /// this NATS JetStream server (e.g. nats://host:4222) and collect their
    /// results here: the same output files, resumable the same way. Folder
    /// input only. See docs/scaling.md.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
}

/// Parses `PATH[:ro]`: the database is always opened read-only; `:rw` is refused.
pub fn parse_sqlite(text: &str) -> Result<PathBuf, String> {
    if text.ends_with(":rw") {
        return Err(format!(
            "`{text}`: the SQL capability is read-only (PATH or PATH:ro)"
        ));
    }
    let path = text.strip_suffix(":ro").unwrap_or(text);
    if path.is_empty() {
        return Err(format!(
            "`{text}`: the database path is missing (PATH[:ro])"
        ));
    }
    Ok(PathBuf::from(path))
}

/// Pull tasks from a NATS JetStream server and run them, at the isolation
/// level and limits each job asks for; any number of workers on any
/// machines may serve the same server. Ctrl-C stops pulling and exits once
/// the tasks in flight are written. Without --nats: serve the process
/// executor over stdin/stdout (started by sandpool itself). See docs/scaling.md.
#[derive(Args, Debug)]
#[command(
    after_help = "EXAMPLES:\n  sandpool worker --nats nats://queue.example:4222 --jobs 8\n  sandpool run --nats nats://queue.example:4222 doc_stats.wasm inputs/ -o out/"
)]
pub struct WorkerArgs {
    /// The NATS server (with JetStream) to pull tasks from, e.g. nats://host:4222.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// Tasks run in parallel [default: number of CPUs].
    #[arg(short, long, value_name = "N", requires = "nats")]
    pub jobs: Option<usize>,
    /// How long a task may go without a heartbeat before the server gives it
    /// to another worker (set on the workers' shared consumer).
    #[arg(
        long,
        default_value = "30s",
        value_name = "DURATION",
        requires = "nats"
    )]
    pub ack_wait: Wait,
    /// Deliveries of a task before it is recorded as failed (`worker_crashed`):
    /// the last one writes the record instead of running it again.
    #[arg(long, default_value_t = 5, value_name = "N", requires = "nats")]
    pub max_deliver: i64,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Which inputs of INPUTS are done, failed or missing in OUT.
///
/// For a JSON Lines run (INPUTS and OUT are files), the input lines are
/// counted against the result lines: `ok` lines are done, `error` lines
/// failed, lines with no result line yet missing.
///
/// An input is done when its result (`OUT/{id}.json`) holds a JSON
/// document, failed when it has an error record (`OUT/{id}.error.json`)
/// instead, missing when it has neither. Nothing is run or changed. The
/// input folder must be named: the output folder does not record it.
#[derive(Args, Debug)]
#[command(
    after_help = "EXIT STATUS:\n  0  every input is done\n  1  some inputs are failed or missing\n  2  usage or setup error (a folder is missing or not a folder)\n\nEXAMPLES:\n  sandpool status output/ inputs/\n  sandpool status output/ inputs/ --json | jq '.inputs[] | select(.state == \"failed\")'"
)]
pub struct StatusArgs {
    /// The output folder (or JSON Lines file) of `sandpool run`.
    pub output: PathBuf,
    /// The input folder (or JSON Lines file) it was run on.
    pub inputs: PathBuf,
    /// Print JSON on stdout: the counts and every input that is not done.
    #[arg(long)]
    pub json: bool,
}

/// A `--dir` grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirArg {
    pub host: PathBuf,
    pub guest: String,
    pub access: sandpool::DirAccess,
}

/// Parses `HOST[:GUEST][:ro|rw]`; GUEST defaults to `/data`, the access to `ro`.
pub fn parse_dir(text: &str) -> Result<DirArg, String> {
    let (rest, access) = if let Some(rest) = text.strip_suffix(":ro") {
        (rest, sandpool::DirAccess::ReadOnly)
    } else if let Some(rest) = text.strip_suffix(":rw") {
        (rest, sandpool::DirAccess::ReadWrite)
    } else {
        (text, sandpool::DirAccess::ReadOnly)
    };
    let (host, guest) = match rest.rsplit_once(':') {
        Some((host, guest)) => (host, guest),
        None => (rest, "/data"),
    };
    if host.is_empty() {
        return Err(format!(
            "`{text}`: the host directory is missing (HOST[:GUEST][:ro|rw])"
        ));
    }
    if guest.is_empty() {
        return Err(format!(
            "`{text}`: the guest path is empty (HOST[:GUEST][:ro|rw])"
        ));
    }
    Ok(DirArg {
        host: PathBuf::from(host),
        guest: guest.to_string(),
        access,
    })
}

/// Describe TASK: its imports and exports, ABI version and whether sandpool can run it.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The module to describe.
    pub task: PathBuf,
    /// Print the description as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `500ms`, `30s`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 500ms, 30s, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

/// Parses `1024`, `64K`, `64KiB`, `256M`, `256MiB`, `1G`, `1GiB` (binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (try 64MiB or 1GiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown size unit `{other}` (use K, M or G)")),
    };
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 days").is_err());
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn dir_grants_parse_with_optional_guest_path_and_access() {
        use sandpool::DirAccess::{ReadOnly, ReadWrite};
        let dir = |host: &str, guest: &str, access| DirArg {
            host: PathBuf::from(host),
            guest: guest.into(),
            access,
        };
        assert_eq!(parse_dir("corpus"), Ok(dir("corpus", "/data", ReadOnly)));
        assert_eq!(
            parse_dir("corpus:rw"),
            Ok(dir("corpus", "/data", ReadWrite))
        );
        assert_eq!(parse_dir("/srv/x:/in"), Ok(dir("/srv/x", "/in", ReadOnly)));
        assert_eq!(
            parse_dir("/srv/x:/out:rw"),
            Ok(dir("/srv/x", "/out", ReadWrite))
        );
        assert_eq!(parse_dir("a:b:ro"), Ok(dir("a", "b", ReadOnly)));
        assert!(parse_dir(":/data").is_err());
        assert!(parse_dir("x::rw").is_err());
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
