//! The audit log: one row per authenticated request, saying who (client, partner), when, which
//! operation, and which partners' records the response carried; and one per call to the OAuth
//! endpoints (token, introspection, revocation: which client asked and how it ended, never a
//! secret or a token). Append-only: the application only ever inserts and selects; it is
//! readable with the `admin` scope.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;

use crate::app::App;
use crate::domain::Viewer;
use crate::error::{Error, Result};
use crate::storage::schema::audit_log;
use crate::storage::{AnyConnection, Backend, OwnConnection, Store};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, serde::Serialize)]
pub struct Entry {
    pub id: String,
    pub at: String,
    pub client_id: Option<String>,
    pub partner_id: Option<String>,
    pub operation: String,
    /// Comma-separated partner ids.
    pub partners: String,
    pub outcome: String,
}

/// Now, in RFC 3339 with a fixed nanosecond fraction, so entries sort by time as text.
fn timestamp() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| crate::app::now())
}

/// Appends one entry now, in the caller's transaction.
pub fn record(
    conn: &mut AnyConnection,
    viewer: &Viewer,
    operation: &str,
    partners: &BTreeSet<String>,
    outcome: &str,
) -> Result<()> {
    let entry = NewEntry::new(viewer, operation.to_owned(), partners, outcome);
    diesel::insert_into(audit_log::table)
        .values(&entry)
        .execute(conn)?;
    Ok(())
}

/// Appends `entries` in one statement: all of them or, if it fails, none.
fn insert_all(conn: &mut AnyConnection, entries: &[NewEntry]) -> Result<()> {
    match conn {
        // Multi-row inserts are backend-specific in diesel.
        AnyConnection::Sqlite(c) => {
            diesel::insert_into(audit_log::table)
                .values(entries)
                .execute(c)?;
        }
        AnyConnection::Postgresql(c) => {
            UnnestInsert::new(entries).execute(c)?;
        }
    }
    Ok(())
}

/// `INSERT INTO audit_log ... SELECT * FROM UNNEST(...)`, one array per column: its text is the
/// same for any number of entries, so PostgreSQL prepares it once per connection instead of
/// parsing and planning a multi-row `VALUES` again for every batch (that was 40% of a
/// one-entry insert's time there). Diesel caches it as a type with a static query id.
struct UnnestInsert<'a> {
    text: [Vec<&'a str>; 5],
    optional: [Vec<Option<&'a str>>; 2],
}

impl<'a> UnnestInsert<'a> {
    fn new(entries: &'a [NewEntry]) -> Self {
        let text = |f: fn(&NewEntry) -> &String| entries.iter().map(|e| f(e).as_str()).collect();
        let optional =
            |f: fn(&NewEntry) -> &Option<String>| entries.iter().map(|e| f(e).as_deref()).collect();
        UnnestInsert {
            text: [
                text(|e| &e.id),
                text(|e| &e.at),
                text(|e| &e.operation),
                text(|e| &e.partners),
                text(|e| &e.outcome),
            ],
            optional: [optional(|e| &e.client_id), optional(|e| &e.partner_id)],
        }
    }
}

impl diesel::query_builder::QueryId for UnnestInsert<'_> {
    type QueryId = UnnestInsert<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for UnnestInsert<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, Nullable, Text};
        let [id, at, operation, partners, outcome] = &self.text;
        let [client_id, partner_id] = &self.optional;
        out.push_sql(
            "INSERT INTO audit_log (id, at, operation, partners, outcome, client_id, partner_id) \
             SELECT * FROM UNNEST(",
        );
        for (i, column) in [id, at, operation, partners, outcome]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_bind_param::<Array<Text>, _>(column)?;
        }
        for column in [client_id, partner_id] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Nullable<Text>>, _>(column)?;
        }
        out.push_sql(")");
        Ok(())
    }
}

impl RunQueryDsl<diesel::PgConnection> for UnnestInsert<'_> {}

/// The latest `limit` entries, newest first.
pub fn recent(conn: &mut AnyConnection, limit: i64) -> Result<Vec<Entry>> {
    Ok(audit_log::table
        .select((
            audit_log::id,
            audit_log::at,
            audit_log::client_id,
            audit_log::partner_id,
            audit_log::operation,
            audit_log::partners,
            audit_log::outcome,
        ))
        .order((audit_log::at.desc(), audit_log::id.desc()))
        .limit(limit)
        .load(conn)?)
}

/// Most entries written in one statement (7 parameters each, well under either backend's
/// limit on bound parameters).
const MAX_BATCH: usize = 256;

/// One entry on its way to the log.
#[derive(Insertable)]
#[diesel(table_name = audit_log)]
struct NewEntry {
    id: String,
    at: String,
    client_id: Option<String>,
    partner_id: Option<String>,
    operation: String,
    partners: String,
    outcome: String,
}

impl NewEntry {
    fn new(viewer: &Viewer, operation: String, partners: &BTreeSet<String>, outcome: &str) -> Self {
        NewEntry {
            // Time-ordered (UUIDv7): each insert lands at the right edge of the primary key's
            // index instead of on a random page of an index that only grows.
            id: uuid::Uuid::now_v7().to_string(),
            at: timestamp(),
            client_id: viewer.client_id.clone(),
            partner_id: viewer.partner.clone(),
            operation,
            partners: partners
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(","),
            outcome: outcome.to_owned(),
        }
    }
}

/// An entry, whether its commit must reach the disk before the answer leaves (`durable`), and
/// the request waiting for it.
struct Queued {
    entry: NewEntry,
    durable: bool,
    written: oneshot::Sender<bool>,
    /// Counts its request among those being answered until the writer is done with the entry.
    answering: Answering,
}

/// One audited request being answered, from [`AuditWriter::begin`] until its entry is
/// committed (or the request ends without one): the writer waits for the entries of such
/// requests to write them in one batch.
struct Answering(Arc<AtomicUsize>);

impl Answering {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Answering(count.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes what is queued into `batch`, and waits for more while fewer than half of the audited
/// requests being answered are in it (the others' entries will come), for at most `group_wait`
/// after the first entry (rounded up to tokio's timer, a millisecond). Not for all of them:
/// while a batch is written its requests wait, and as many others should be at work meanwhile.
/// The wait ends as soon as an entry arrives and the batch is big enough, not at the next poll
/// (polling every 250 µs instead cost the server 6% more CPU per dashboard at saturation).
fn gather(
    runtime: &tokio::runtime::Handle,
    incoming: &mut mpsc::Receiver<Queued>,
    batch: &mut Vec<Queued>,
    answering: &AtomicUsize,
    group_wait: Duration,
) {
    let deadline = Instant::now() + group_wait;
    loop {
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        let now = Instant::now();
        // Each request in the batch counts itself among those being answered.
        if batch.len() >= MAX_BATCH
            || 2 * batch.len() >= answering.load(Ordering::Relaxed)
            || now >= deadline
        {
            return;
        }
        let next =
            runtime.block_on(async { tokio::time::timeout(deadline - now, incoming.recv()).await });
        match next {
            Ok(Some(q)) => batch.push(q),
            // The time is up, or every sender is gone.
            _ => return,
        }
    }
}

/// The writer's loop: takes each batch ([`gather`]) and hands it to `write`, until every
/// sender is gone. A panic while a batch is gathered or written refuses that batch's requests
/// (their answers are dropped: `SERVICE_UNAVAILABLE`) and the loop goes on with the next, so
/// one bad batch does not refuse every audited request after it until the process restarts.
/// A connection of the writer's own that was in use is dropped with the panic and opened again
/// at the next batch ([`OwnConnection::run_here`]).
fn keep_writing(
    runtime: &tokio::runtime::Handle,
    incoming: &mut mpsc::Receiver<Queued>,
    answering: &AtomicUsize,
    group_wait: Duration,
    mut write: impl FnMut(&mut Vec<Queued>),
) {
    // One buffer for every batch that `write` drains rather than takes: a batch's room is
    // about 50 KB.
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = incoming.blocking_recv() {
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batch.push(first);
            gather(runtime, incoming, &mut batch, answering, group_wait);
            write(&mut batch);
        }));
        // `write` takes every entry; after a panic, those left are refused here.
        batch.clear();
        if step.is_err() {
            tracing::error!(
                code = "INTERNAL",
                "the audit writer panicked; the requests of that batch were refused"
            );
        }
    }
}

/// Writes audit entries with group commit: a request hands its entry to one writer thread and
/// waits until it is committed, and the writer inserts every entry queued meanwhile in one
/// statement. Each answer is still audited before it leaves, but a burst of requests costs
/// one statement and one commit, not one each. While other audited requests are being
/// answered, the writer waits up to `audit_group_wait_us` after an entry for theirs (as
/// PostgreSQL's `commit_delay` waits for `commit_siblings`): under load a batch then holds
/// several entries instead of one or two, for one statement and one commit. A request alone
/// is written at once.
///
/// On PostgreSQL, entries of reads are written on a connection of the writer's own whose
/// commits do not wait for the WAL flush (unless `audit_reads_wait_for_flush`): a disk that
/// takes 100 ms to flush once in a while otherwise held every answer for that long, and at a
/// few hundred requests a second filled the queue until requests were shed. Entries of writes
/// (mutations, ingests) go through the pool and wait for the flush, like the writes they record.
#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<Queued>,
    /// Audited requests being answered ([`Answering`]).
    answering: Arc<AtomicUsize>,
}

/// Tells each waiting request whether its entry was committed.
fn answer(committed: &Result<()>, waiting: Vec<(oneshot::Sender<bool>, Answering)>) {
    if let Err(e) = committed {
        tracing::error!(code = e.code(), error = ?e, "audit entries not written");
    }
    for (w, _answering) in waiting {
        let _ = w.send(committed.is_ok());
    }
}

impl AuditWriter {
    /// Starts the writer on a thread of its own; it ends when the last `AuditWriter` is dropped.
    ///
    /// A thread, not a task: on PostgreSQL it holds the connection for unflushed commits and
    /// writes each batch of reads' entries itself, so an entry costs a wake-up of this thread
    /// and the round trip, instead of a wake-up of a task that then hands the batch to a thread
    /// of the blocking pool and waits for it. Batches for the pool (entries of writes, and on
    /// SQLite all entries) go through `Store::run` as any other write, one at a time.
    pub fn start(store: Store, reads_wait_for_flush: bool, group_wait: Duration) -> Result<Self> {
        let (queue, mut incoming) = mpsc::channel::<Queued>(4 * MAX_BATCH);
        let answering = Arc::new(AtomicUsize::new(0));
        let waited_for = answering.clone();
        let runtime = tokio::runtime::Handle::try_current().map_err(Error::internal)?;
        let wait_runtime = runtime.clone();
        // On PostgreSQL, the connection for unflushed commits.
        let mut unflushed = (store.backend() == Backend::Postgres && !reads_wait_for_flush)
            .then(|| OwnConnection::new(store.clone(), Store::unflushed_commits_connection));
        let through_pool = move |batch: Vec<Queued>| {
            let (entries, waiting) = split(batch);
            let committed = runtime.block_on(store.run(move |conn| insert_all(conn, &entries)));
            answer(&committed, waiting);
        };
        let write = move |batch: &mut Vec<Queued>| {
            let Some(own) = unflushed.as_mut() else {
                // The batch goes with its room, so the next one's grows anew: one small
                // allocation against a write through the pool, which every batch pays here.
                through_pool(std::mem::take(batch));
                return;
            };
            let (durable, reads): (Vec<Queued>, Vec<Queued>) =
                batch.drain(..).partition(|q| q.durable);
            if !durable.is_empty() {
                through_pool(durable);
            }
            if !reads.is_empty() {
                let (entries, waiting) = split(reads);
                let committed = own.run_here(|c| insert_all(c, &entries));
                answer(&committed, waiting);
            }
        };
        std::thread::Builder::new()
            .name("passerelle-audit".into())
            .spawn(move || {
                keep_writing(&wait_runtime, &mut incoming, &waited_for, group_wait, write)
            })
            .map_err(Error::internal)?;
        Ok(AuditWriter { queue, answering })
    }

    /// Notes who asks and for what (the operation's name, else the start of the document), for
    /// an entry once the answer is known; anonymous requests are not audited.
    pub fn begin(&self, viewer: &Viewer, operation_name: Option<&str>, query: &str) -> Pending {
        let audited = viewer.client_id.is_some();
        let operation = match operation_name {
            Some(name) => name.to_owned(),
            None => query
                .split_whitespace()
                .take(12)
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(200)
                .collect(),
        };
        Pending {
            viewer: audited.then(|| (viewer.clone(), Answering::new(&self.answering))),
            operation,
            durable: true,
        }
    }

    /// Whether the writer's thread still takes entries. It runs for as long as an
    /// `AuditWriter` exists, and a panic while writing a batch refuses only that batch
    /// ([`keep_writing`]); if the thread ended all the same, every audited request is refused
    /// with `SERVICE_UNAVAILABLE`, and `/readyz` says so, so that the replica is taken out of
    /// the load balancer and restarted.
    pub fn is_running(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Appends one entry and waits until it is committed.
    async fn append(&self, entry: NewEntry, durable: bool, answering: Answering) -> Result<()> {
        let (written, done) = oneshot::channel();
        let failed = || Error::Unavailable("the audit log cannot be written; try again".into());
        self.queue
            .send(Queued {
                entry,
                durable,
                written,
                answering,
            })
            .await
            .map_err(|_| failed())?;
        match done.await {
            Ok(true) => Ok(()),
            _ => Err(failed()),
        }
    }
}

/// The entries to write and the requests to answer. Each request stays counted as being
/// answered until its answer is sent.
fn split(queued: Vec<Queued>) -> (Vec<NewEntry>, Vec<(oneshot::Sender<bool>, Answering)>) {
    queued
        .into_iter()
        .map(|q| (q.entry, (q.written, q.answering)))
        .unzip()
}

/// An authenticated request being answered ([`AuditWriter::begin`]): recorded once its
/// response is known.
pub struct Pending {
    /// Who asks, and their count among the audited requests being answered; `None` when the
    /// request is not audited.
    viewer: Option<(Viewer, Answering)>,
    operation: String,
    /// Whether its entry waits for the flush (see [`AuditWriter`]): all but reads.
    durable: bool,
}

impl Pending {
    /// For a read (a query): its entry need not wait for the flush.
    pub fn read(mut self) -> Self {
        self.durable = false;
        self
    }

    /// Appends the entry for an answer holding records of `partners` (a cached answer too).
    /// A failure here fails the request: nothing is answered unaudited.
    pub async fn finish_with(self, app: &App, partners: BTreeSet<String>, ok: bool) -> Result<()> {
        let Some((viewer, answering)) = self.viewer else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let appended = app
            .audit
            .append(
                NewEntry::new(
                    &viewer,
                    self.operation,
                    &partners,
                    if ok { "ok" } else { "errors" },
                ),
                self.durable,
                answering,
            )
            .await;
        app.store.stages().audit.observe(started.elapsed());
        appended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_follow_the_order_entries_are_made_in() {
        let viewer = Viewer {
            partner: Some("caravan".into()),
            shared_by: Default::default(),
            scopes: ["read".to_owned()].into(),
            client_id: Some("app".into()),
        };
        let ids: Vec<String> = (0..2_000)
            .map(|_| NewEntry::new(&viewer, "Q".into(), &BTreeSet::new(), "ok").id)
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids out of order");
        assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
    }

    fn viewer() -> Viewer {
        Viewer {
            partner: Some("caravan".into()),
            shared_by: Default::default(),
            scopes: ["read".to_owned()].into(),
            client_id: Some("app".into()),
        }
    }

    /// An entry of a request counted among `answering`, and what its request would wait on.
    fn queued(answering: &Arc<AtomicUsize>) -> (Queued, oneshot::Receiver<bool>) {
        let (written, done) = oneshot::channel();
        let q = Queued {
            entry: NewEntry::new(&viewer(), "Q".into(), &BTreeSet::new(), "ok"),
            durable: false,
            written,
            answering: Answering::new(answering),
        };
        (q, done)
    }

    /// Runs `gather` on a thread outside the runtime, as the writer does; returns the batch's
    /// size and how long it took.
    fn gather_first(
        rt: &tokio::runtime::Runtime,
        mut incoming: mpsc::Receiver<Queued>,
        answering: Arc<AtomicUsize>,
        group_wait: Duration,
    ) -> (usize, Duration) {
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut batch = vec![incoming.blocking_recv().unwrap()];
            gather(&handle, &mut incoming, &mut batch, &answering, group_wait);
            (batch.len(), started.elapsed())
        })
        .join()
        .unwrap()
    }

    #[tokio::test]
    async fn a_writer_whose_thread_ended_is_not_running_and_refuses_entries() {
        let (queue, incoming) = mpsc::channel::<Queued>(1);
        let writer = AuditWriter {
            queue,
            answering: Arc::new(AtomicUsize::new(0)),
        };
        assert!(writer.is_running());
        drop(incoming); // as when the writer's thread unwinds
        assert!(!writer.is_running());
        let entry = NewEntry::new(&viewer(), "Dashboard".into(), &BTreeSet::new(), "ok");
        let answering = Answering::new(&writer.answering);
        let refused = writer.append(entry, false, answering).await.unwrap_err();
        assert_eq!(refused.code(), "SERVICE_UNAVAILABLE");
        assert_eq!(writer.answering.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_request_answered_alone_is_written_at_once() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let answering = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel(8);
        let (q, _done) = queued(&answering);
        tx.try_send(q).unwrap();
        let (size, took) = gather_first(&rt, rx, answering, Duration::from_secs(30));
        assert_eq!(size, 1);
        assert!(
            took < Duration::from_secs(5),
            "waited {took:?} with no one else answered"
        );
    }

    #[test]
    fn the_writer_waits_for_half_of_those_answered_then_writes() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let answering = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel(8);
        let (first, _d1) = queued(&answering);
        let (second, _d2) = queued(&answering);
        let (_third, _d3) = queued(&answering);
        let (_fourth, _d4) = queued(&answering);
        tx.try_send(first).unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            tx.try_send(second).ok().unwrap();
            tx
        });
        let (size, took) = gather_first(&rt, rx, answering.clone(), Duration::from_secs(30));
        assert_eq!(
            size, 2,
            "two of four answered are half: written without the others"
        );
        assert!(
            took >= Duration::from_millis(150),
            "did not wait for the second: {took:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "waited past the second: {took:?}"
        );
        drop(sender.join().unwrap());
    }

    #[test]
    fn the_writer_waits_no_longer_than_the_group_wait() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let answering = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel(8);
        let (first, _d1) = queued(&answering);
        let (_others, _d2) = queued(&answering);
        let (_more, _d3) = queued(&answering);
        tx.try_send(first).unwrap();
        let (size, took) = gather_first(&rt, rx, answering, Duration::from_millis(100));
        assert_eq!(size, 1);
        assert!(
            took >= Duration::from_millis(100),
            "gave up before the group wait: {took:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "waited past the group wait: {took:?}"
        );
        drop(tx);
    }

    #[test]
    fn a_panic_while_writing_refuses_that_batch_and_the_writer_goes_on() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let handle = rt.handle().clone();
        let answering = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = mpsc::channel(8);
        let counted = answering.clone();
        let writer = std::thread::spawn(move || {
            let mut batches = 0;
            keep_writing(&handle, &mut rx, &counted, Duration::ZERO, |batch| {
                batches += 1;
                assert!(batches > 1, "the first batch fails");
                answer(&Ok(()), split(std::mem::take(batch)).1);
            });
            batches
        });
        let (first, done) = queued(&answering);
        tx.blocking_send(first).ok().unwrap();
        assert!(
            done.blocking_recv().is_err(),
            "the failed batch was answered"
        );
        for _ in 0..2 {
            let (next, done) = queued(&answering);
            tx.blocking_send(next).ok().unwrap();
            assert_eq!(done.blocking_recv(), Ok(true), "not written after a panic");
        }
        drop(tx);
        assert_eq!(writer.join().unwrap(), 3);
        assert_eq!(answering.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_request_is_counted_as_answered_until_its_entry_is_done_with() {
        let answering = Arc::new(AtomicUsize::new(0));
        let (q, _done) = queued(&answering);
        assert_eq!(answering.load(Ordering::Relaxed), 1);
        let (entries, waiting) = split(vec![q]);
        assert_eq!((entries.len(), answering.load(Ordering::Relaxed)), (1, 1));
        answer(&Ok(()), waiting);
        assert_eq!(answering.load(Ordering::Relaxed), 0);
    }
}
