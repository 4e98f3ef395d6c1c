use std::process::ExitCode;

/// mimalloc instead of the system allocator: a scenario run and the engine
/// make many small, short-lived allocations per message, and glibc's malloc
/// and free took about a tenth of their time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    mailsim::cli::main()
}
