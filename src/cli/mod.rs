//! The clap front end. Each command lives in its own file; this one only dispatches.

mod info;

use clap::{Parser, Subcommand};

use crate::error::Result;

#[derive(Parser, Debug)]
#[command(
    name = "ddr-fast",
    version,
    about = "Fast, faithful DD-Ranking scores for distilled datasets"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Version, CPU threads, GPUs and embedded CUDA kernels.
    Info(info::InfoArgs),
}

/// Parse `std::env::args` and run the chosen command.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info(args) => info::run(&args),
    }
}
