//! Pipelines for mixed work: read (I/O pool) → compute (wasm pool) → write
//! (I/O pool), each stage bounded, so memory stays flat however many items
//! flow through, and every item keeps its input index end to end.
//!
//! The stages are pull-based streams driven on the I/O pool's runtime: a
//! stage starts a new item only when it has room, so a slow stage slows the
//! source instead of piling items up. The CLI's `sandpool run` is built on this.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::future::Either;
use futures::{Stream, StreamExt};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::Error;
use crate::exec::io::IoPool;
use crate::exec::pool::Pool;

/// In which order a pipeline yields its results.
///
/// ```
/// assert_eq!(sandpool::Order::default(), sandpool::Order::Completion);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// As items finish (no head-of-line blocking; the default).
    #[default]
    Completion,
    /// In input order (a slow item holds back those behind it, within the bounds).
    Input,
}

/// Stops a pipeline from starting new items; items already started finish.
///
/// ```
/// let token = sandpool::CancelToken::default();
/// assert!(!token.is_cancelled());
/// token.cancel();
/// assert!(token.is_cancelled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Requests cancellation.
    ///
    /// ```
    /// sandpool::CancelToken::default().cancel();
    /// ```
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether cancellation was requested.
    ///
    /// ```
    /// assert!(!sandpool::CancelToken::default().is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Counters of a running pipeline.
///
/// ```
/// let stats = sandpool::PipelineStats::default();
/// assert_eq!(stats.peak_in_flight(), 0);
/// ```
#[derive(Debug, Default)]
pub struct PipelineStats {
    started: AtomicU64,
    finished: AtomicU64,
    in_flight: AtomicU64,
    peak: AtomicU64,
}

impl PipelineStats {
    /// Items taken from the source so far.
    ///
    /// ```
    /// assert_eq!(sandpool::PipelineStats::default().started(), 0);
    /// ```
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Acquire)
    }
    /// Items that have come out of the last stage.
    ///
    /// ```
    /// assert_eq!(sandpool::PipelineStats::default().finished(), 0);
    /// ```
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }
    /// The most items that were between the source and the output at once.
    ///
    /// ```
    /// assert_eq!(sandpool::PipelineStats::default().peak_in_flight(), 0);
    /// ```
    pub fn peak_in_flight(&self) -> u64 {
        self.peak.load(Ordering::Acquire)
    }
    fn enter(&self) {
        self.started.fetch_add(1, Ordering::AcqRel);
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(now, Ordering::AcqRel);
    }
    fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.finished.fetch_add(1, Ordering::AcqRel);
    }
}

/// Configures a [`Pipeline`].
///
/// ```
/// let io = sandpool::IoPool::builder().build()?;
/// let pipeline = sandpool::Pipeline::builder(&io).read_concurrency(8).compute_window(4).write_concurrency(8).build();
/// assert_eq!(pipeline.bound(), 8 + 4 + 8 + 16); // reads, computes, writes, output buffer (default 16)
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PipelineBuilder {
    io: IoPool,
    read: usize,
    compute: usize,
    write: usize,
    output: usize,
    order: Order,
}

impl PipelineBuilder {
    /// Reads in flight at once (default 16; 0 counts as 1).
    ///
    /// ```
    /// # let io = sandpool::IoPool::builder().build()?;
    /// let b = sandpool::Pipeline::builder(&io).read_concurrency(4);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn read_concurrency(mut self, n: usize) -> Self {
        self.read = n.max(1);
        self
    }
    /// Compute tasks in flight at once (default 16; a few per wasm worker keeps them busy; 0 counts as 1).
    ///
    /// ```
    /// # let io = sandpool::IoPool::builder().build()?;
    /// let b = sandpool::Pipeline::builder(&io).compute_window(8);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn compute_window(mut self, n: usize) -> Self {
        self.compute = n.max(1);
        self
    }
    /// Writes in flight at once (default 16; 0 counts as 1).
    ///
    /// ```
    /// # let io = sandpool::IoPool::builder().build()?;
    /// let b = sandpool::Pipeline::builder(&io).write_concurrency(4);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn write_concurrency(mut self, n: usize) -> Self {
        self.write = n.max(1);
        self
    }
    /// Finished results buffered for the consumer (default 16; 0 counts as 1).
    ///
    /// ```
    /// # let io = sandpool::IoPool::builder().build()?;
    /// let b = sandpool::Pipeline::builder(&io).output_buffer(1);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn output_buffer(mut self, n: usize) -> Self {
        self.output = n.max(1);
        self
    }
    /// Result order (default [`Order::Completion`]).
    ///
    /// ```
    /// # let io = sandpool::IoPool::builder().build()?;
    /// let b = sandpool::Pipeline::builder(&io).order(sandpool::Order::Input);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }
    /// Builds the pipeline.
    ///
    /// ```
    /// # let io = sandpool::IoPool::builder().build()?;
    /// let pipeline = sandpool::Pipeline::builder(&io).build();
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn build(self) -> Pipeline {
        Pipeline { config: self }
    }
}

/// A read → compute → write pipeline over an [`IoPool`] and a wasm [`Pool`].
///
/// ```no_run
/// use sandpool::{FileInput, IoPool, Json, Pipeline, Pool, Task};
/// let io = IoPool::builder().build()?;
/// let pool = Pool::builder(Task::<FileInput, Json<serde_json::Value>>::from_file("doc_stats.wasm")?).build()?;
/// let names = vec!["a.txt".to_string(), "b.txt".to_string()];
/// let run = Pipeline::builder(&io).build().run(
///     names,
///     |name: &String| {
///         let name = name.clone();
///         async move {
///             let data = tokio::fs::read(&name).await.map_err(|e| sandpool::Error::Io { context: name.clone(), message: e.to_string() })?;
///             Ok(FileInput { name, data })
///         }
///     },
///     &pool,
///     |name: String, stats: Result<Json<serde_json::Value>, sandpool::Error>| async move { (name, stats.map(|s| s.0)) },
/// );
/// for (index, (name, stats)) in run {
///     println!("#{index} {name}: {stats:?}");
/// }
/// # Ok::<(), sandpool::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Pipeline {
    config: PipelineBuilder,
}

impl Pipeline {
    /// Starts configuring a pipeline whose I/O stages run on `io`.
    ///
    /// ```
    /// # let io = sandpool::IoPool::builder().build()?;
    /// let pipeline = sandpool::Pipeline::builder(&io).build();
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn builder(io: &IoPool) -> PipelineBuilder {
        PipelineBuilder {
            io: io.clone(),
            read: 16,
            compute: 16,
            write: 16,
            output: 16,
            order: Order::Completion,
        }
    }

    /// The most items that can be in flight at once (all stages plus the output buffer).
    ///
    /// ```
    /// # let io = sandpool::IoPool::builder().build()?;
    /// assert_eq!(sandpool::Pipeline::builder(&io).build().bound(), 64);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn bound(&self) -> usize {
        let c = &self.config;
        c.read + c.compute + c.write + c.output
    }

    /// Runs `items` through `read` (I/O), `pool` (wasm compute) and `write`
    /// (I/O). A read error skips compute and reaches `write` as the item's
    /// error. Returns a blocking iterator of `(index, write's result)`; use
    /// [`PipelineRun::into_stream`] from async code.
    ///
    /// ```
    /// # use sandpool::*;
    /// # let io = IoPool::builder().build()?;
    /// # let pool = Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// let run = Pipeline::builder(&io).order(Order::Input).build().run(
    ///     0..1000u64,
    ///     |n: &u64| futures::future::ready(Ok(*n)),
    ///     &pool,
    ///     |n: u64, count: Result<u64, Error>| async move { (n, count) },
    /// );
    /// for (index, (n, count)) in run {
    ///     assert_eq!(index as u64, n);
    ///     assert_eq!(count?, n); // the echo task returns its input
    /// }
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn run<Items, Item, In, Out, R, ReadF, ReadFut, WriteF, WriteFut>(
        &self,
        items: Items,
        mut read: ReadF,
        pool: &Pool<In, Out>,
        mut write: WriteF,
    ) -> PipelineRun<R>
    where
        Items: IntoIterator<Item = Item>,
        Items::IntoIter: Send + 'static,
        Item: Send + 'static,
        In: Serialize + Send + Sync + 'static,
        Out: DeserializeOwned + Send + 'static,
        R: Send + 'static,
        ReadF: FnMut(&Item) -> ReadFut + Send + 'static,
        ReadFut: Future<Output = Result<In, Error>> + Send + 'static,
        WriteF: FnMut(Item, Result<Out, Error>) -> WriteFut + Send + 'static,
        WriteFut: Future<Output = R> + Send + 'static,
    {
        let config = self.config.clone();
        let cancel = CancelToken::default();
        let stats = Arc::new(PipelineStats::default());
        let (tx, rx) = futures::channel::mpsc::channel::<(usize, R)>(config.output);
        let pool = pool.clone();
        let (source_cancel, source_stats) = (cancel.clone(), Arc::clone(&stats));
        let ordered = config.order == Order::Input;

        let source = futures::stream::iter(items.into_iter().enumerate())
            .take_while(move |_| futures::future::ready(!source_cancel.is_cancelled()))
            .inspect(move |_| source_stats.enter());
        let reads = source.map(move |(index, item)| {
            let fut = read(&item);
            async move { (index, item, fut.await) }
        });
        let reads = buffer(reads, config.read, ordered);
        let computed = reads.map(move |(index, item, input)| {
            let pool = pool.clone();
            async move {
                let result = match input {
                    Ok(input) => match pool.submit_async(&input).await {
                        Ok(handle) => handle.await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                (index, item, result)
            }
        });
        let computed = buffer(computed, config.compute, ordered);
        let written = computed.map(move |(index, item, result)| {
            let fut = write(item, result);
            async move { (index, fut.await) }
        });
        let written = buffer(written, config.write, ordered);
        let driver_stats = Arc::clone(&stats);
        let driver = config.io.runtime().spawn(async move {
            let mut tx = tx;
            let mut written = std::pin::pin!(written);
            while let Some(out) = written.next().await {
                // Count the item done before it is handed over, so the
                // consumer never sees more in flight than the stages hold.
                driver_stats.leave();
                if futures::SinkExt::send(&mut tx, out).await.is_err() {
                    break; // the consumer went away
                }
            }
        });
        PipelineRun {
            rx,
            cancel,
            stats,
            driver: Some(driver),
        }
    }
}

fn buffer<S>(
    stream: S,
    n: usize,
    ordered: bool,
) -> impl Stream<Item = <S::Item as Future>::Output> + Send
where
    S: Stream + Send,
    S::Item: Future + Send,
    <S::Item as Future>::Output: Send,
{
    if ordered {
        Either::Left(stream.buffered(n))
    } else {
        Either::Right(stream.buffer_unordered(n))
    }
}

/// A running pipeline: iterate for `(index, result)`; cancel it; read its stats.
///
/// Dropping it stops the pipeline from starting new items.
///
/// ```
/// # use sandpool::*;
/// # let io = IoPool::builder().build()?;
/// # let pool = Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
/// let run: PipelineRun<Result<u64, Error>> = Pipeline::builder(&io).build().run(
///     vec![10u64, 100],
///     |n: &u64| futures::future::ready(Ok(*n)),
///     &pool,
///     |_n: u64, count: Result<u64, Error>| async move { count },
/// );
/// let stats = run.stats();
/// let results: Vec<(usize, Result<u64, Error>)> = run.collect();
/// assert_eq!(results.len(), 2);
/// println!("at most {} items in flight", stats.peak_in_flight());
/// # Ok::<(), sandpool::Error>(())
/// ```
pub struct PipelineRun<R> {
    rx: futures::channel::mpsc::Receiver<(usize, R)>,
    cancel: CancelToken,
    stats: Arc<PipelineStats>,
    driver: Option<tokio::task::JoinHandle<()>>,
}

impl<R> PipelineRun<R> {
    /// A token that stops the pipeline from starting new items when cancelled;
    /// items already started still finish and are yielded.
    ///
    /// ```no_run
    /// # fn demo<R>(run: sandpool::PipelineRun<R>) {
    /// let token = run.cancel_token();
    /// std::thread::spawn(move || token.cancel());
    /// # }
    /// ```
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// The pipeline's counters (live).
    ///
    /// ```
    /// # use sandpool::*;
    /// # let io = IoPool::builder().build()?;
    /// # let pool = Pool::builder(sandpool::doc_tasks::echo::<u64>()).build()?;
    /// let run = Pipeline::builder(&io).build().run(
    ///     0..100u64,
    ///     |n: &u64| futures::future::ready(Ok(*n)),
    ///     &pool,
    ///     |_n: u64, r: Result<u64, Error>| async move { r },
    /// );
    /// let stats = run.stats();
    /// assert_eq!(run.count(), 100);
    /// assert!(stats.peak_in_flight() >= 1);
    /// # Ok::<(), sandpool::Error>(())
    /// ```
    pub fn stats(&self) -> Arc<PipelineStats> {
        Arc::clone(&self.stats)
    }

    /// The results as an async stream.
    ///
    /// ```no_run
    /// # async fn demo(run: sandpool::PipelineRun<u32>) {
    /// use futures::StreamExt;
    /// let mut results = run.into_stream();
    /// while let Some((index, r)) = results.next().await { println!("{index}: {r}"); }
    /// # }
    /// ```
    pub fn into_stream(mut self) -> impl Stream<Item = (usize, R)> {
        let rx = std::mem::replace(&mut self.rx, futures::channel::mpsc::channel(1).1);
        let guard = self;
        rx.map(move |item| {
            let _keep = &guard;
            item
        })
    }
}

impl<R> Iterator for PipelineRun<R> {
    type Item = (usize, R);
    fn next(&mut self) -> Option<(usize, R)> {
        futures::executor::block_on(self.rx.next())
    }
}

impl<R> Drop for PipelineRun<R> {
    fn drop(&mut self) {
        self.cancel.cancel();
        // The driver ends on its own once the source stops and stages drain;
        // detach it rather than block the dropping thread.
        drop(self.driver.take());
    }
}
