/// jemalloc instead of glibc's malloc: GraphQL execution makes many small, short-lived
/// allocations across threads, where glibc spent about 30% of the server's CPU (`perf record`
/// under deploy/bench/run.sh: _int_malloc, malloc_consolidate, unlink_chunk); jemalloc cut the
/// CPU per dashboard request by about 10% with the same RSS. (mimalloc was tried too: similar
/// CPU, but five times the RSS.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    keep_error_backtraces_off();
    let code = passerelle::cli::main();
    exit_without_exit_handlers(code)
}

/// Ends the process once the command is done, without running the C libraries' exit handlers.
///
/// By the time `cli::main` returns, everything Passerelle owns has been dropped and the async
/// runtime has joined its threads. What may still run is the connection pool's own threads
/// (r2d2's, which nothing can join): one may be opening a PostgreSQL connection at that very
/// moment. A normal `exit` runs libcrypto's exit handler, which frees OpenSSL's state under
/// libpq on that thread, and about one command in twenty died of SIGSEGV after its work was
/// done (diesel-rs/diesel#3441; `tests/cli.rs` runs a command sixty times to catch it).
/// `_exit` ends every thread at once instead. Nothing of ours relies on an exit handler:
/// standard output and error are flushed here, and every write has committed or rolled back.
#[allow(unsafe_code)]
fn exit_without_exit_handlers(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` takes an integer and never returns; it is async-signal-safe and touches no
    // memory of this process, so nothing else running concurrently can be affected by the call.
    unsafe { libc::_exit(code) }
}

/// `RUST_BACKTRACE=1` also makes every `anyhow` error capture a backtrace, and logging the first
/// internal error symbolises it: RSS grew by about 160 MB for good. Errors' backtraces stay
/// off unless `RUST_LIB_BACKTRACE` asks for them; panics keep following `RUST_BACKTRACE`.
/// Set before any thread starts (the environment is read by every thread).
fn keep_error_backtraces_off() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}
