use std::process::ExitCode;

fn main() -> ExitCode {
    passerelle::cli::main()
}
