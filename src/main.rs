//! The `ddr-fast` binary: parse the command line, run it, turn errors into one clear message.

use std::process::ExitCode;

fn main() -> ExitCode {
    match ddr_fast::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
