use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: GraphQL execution makes many small, short-lived
/// allocations across threads, where glibc spent about 30% of the server's CPU (`perf record`
/// under deploy/bench/run.sh: _int_malloc, malloc_consolidate, unlink_chunk); jemalloc cut the
/// CPU per dashboard request by about 10% with the same RSS. (mimalloc was tried too: similar
/// CPU, but five times the RSS.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    passerelle::cli::main()
}
