//! A real nats-server for the cluster tests and benchmark: installed by
//! scripts/install-nats.sh, started on a free port with JetStream and a
//! temporary store, killed (SIGKILL) and restarted on cue, killed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server binary (installed on first use; the script is idempotent).
pub fn server_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/install-nats.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/install-nats.sh");
    assert!(out.status.success(), "scripts/install-nats.sh failed");
    let path = String::from_utf8(out.stdout).expect("a path");
    PathBuf::from(
        path.lines()
            .last()
            .expect("the script prints the path")
            .trim(),
    )
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One nats-server process with JetStream on.
pub struct Server {
    binary: PathBuf,
    pub port: u16,
    pub store: tempfile::TempDir,
    child: Option<Child>,
    jetstream: bool,
}

impl Server {
    /// Starts a server with JetStream on a free port and a fresh store.
    pub fn start() -> Server {
        Self::start_with(true)
    }

    /// Starts a server, with or without JetStream.
    pub fn start_with(jetstream: bool) -> Server {
        let mut server = Server {
            binary: server_binary(),
            port: free_port(),
            store: tempfile::tempdir().expect("a store dir"),
            child: None,
            jetstream,
        };
        server.restart();
        server
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and store) and waits until it accepts connections.
    pub fn restart(&mut self) {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.jetstream {
            // `sync_interval: always`: what the server acknowledged is on
            // disk, so a `kill -9` loses nothing (docs/scaling.md).
            let conf = self.store.path().join("nats.conf");
            let store = self.store.path().join("js");
            std::fs::write(
                &conf,
                format!(
                    "jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
                    store.display()
                ),
            )
            .expect("write nats.conf");
            cmd.arg("-c").arg(&conf);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.store.path().join("server.log"))
            .expect("server log");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` the server and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
