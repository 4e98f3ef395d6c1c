use std::process::ExitCode;

fn main() -> ExitCode {
    mailsim::cli::main()
}
