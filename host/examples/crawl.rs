//! The seed article's crawl-then-process case: fetch pages over HTTP on the
//! I/O pool, compute document statistics on each in the wasm pool, and write
//! `output/{id}.json` per page.
//!
//! The example starts its own HTTP server on 127.0.0.1 (a random port) that
//! serves generated pages, so it needs no network. Run it with
//! `cargo run --release -p sandpool --example crawl [PAGES] [OUT_DIR]`
//! after `scripts/build-guests.sh`.

use std::path::PathBuf;
use std::sync::Arc;

use sandpool::workloads::DocStats;
use sandpool::{Error, FileInput, IoPool, Json, Pipeline, Pool, Task};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The page the server returns for `/page/{n}`.
fn page(n: u64) -> String {
    let topics = [
        "threads share memory",
        "processes are isolated",
        "wasm instances are cheap",
        "results keep their ids",
    ];
    (0..20)
        .map(|i| format!("page {n} line {i}: {}\n", topics[((n + i) % 4) as usize]))
        .collect()
}

/// A tiny HTTP/1.1 server: `GET /page/{n}` → the page, anything else → 404.
async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut request = vec![0u8; 4096];
            let n = socket.read(&mut request).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let response = match path
                .strip_prefix("/page/")
                .and_then(|n| n.parse::<u64>().ok())
            {
                Some(n) => {
                    let body = page(n);
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                }
                None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_string(),
            };
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

/// Fetches `http://{addr}{path}` and returns the body (a minimal HTTP/1.1 client).
async fn fetch(addr: std::net::SocketAddr, path: &str) -> Result<Vec<u8>, Error> {
    let io = |e: std::io::Error| Error::Io {
        context: format!("GET {path}"),
        message: e.to_string(),
    };
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.map_err(io)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::Io {
            context: format!("GET {path}"),
            message: "malformed HTTP response".into(),
        })?;
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err(Error::Io {
            context: format!("GET {path}"),
            message: "server did not answer 200".into(),
        });
    }
    Ok(response[split + 4..].to_vec())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let pages: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(200);
    let out_dir = PathBuf::from(args.next().unwrap_or_else(|| "output".into()));
    std::fs::create_dir_all(&out_dir)?;

    let wasm = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/guest/wasm32-wasip1/release/examples/doc_stats.wasm"
    );
    let task: Task<FileInput, Json<DocStats>> = Task::from_file(wasm)?;
    let pool = Pool::builder(task).build()?;
    // The seed's `asyncio.Semaphore(4)`: at most 4 fetches at once.
    let io = IoPool::builder().concurrency(4).build()?;
    let listener = io.runtime().block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    io.runtime().spawn(serve(listener));

    let out = Arc::new(out_dir.clone());
    let run = Pipeline::builder(&io).read_concurrency(4).build().run(
        0..pages,
        move |&n: &u64| async move {
            let path = format!("/page/{n}");
            let data = fetch(addr, &path).await?;
            Ok(FileInput { name: path, data })
        },
        &pool,
        move |n: u64, stats: Result<Json<DocStats>, Error>| {
            let out = Arc::clone(&out);
            async move {
                let result = match stats {
                    Ok(stats) => {
                        let path = out.join(format!("{n}.json"));
                        let tmp = out.join(format!(".{n}.json.tmp"));
                        let body = serde_json::to_vec(&stats.0).unwrap_or_default();
                        match tokio::fs::write(&tmp, body).await {
                            Ok(()) => tokio::fs::rename(&tmp, &path)
                                .await
                                .map(|()| stats.0.words)
                                .map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                (n, result)
            }
        },
    );
    let (mut ok, mut failed) = (0, 0);
    for (_, (n, result)) in run {
        match result {
            Ok(_) => ok += 1,
            Err(e) => {
                failed += 1;
                eprintln!("page {n}: {e}");
            }
        }
    }
    println!(
        "crawl: {ok} pages processed, {failed} failed; outputs in {}/{{id}}.json",
        out_dir.display()
    );
    pool.shutdown(true, false);
    if failed > 0 {
        Err(format!("{failed} pages failed").into())
    } else {
        Ok(())
    }
}
