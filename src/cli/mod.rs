//! The clap front end. Each command lives in its own file; this one only dispatches.

pub mod bench;
mod bench_profile;
mod data;
pub mod eval;
mod eval_device;
mod eval_emit;
mod eval_models;
mod eval_setup;
mod eval_shard;
mod info;
mod report;
mod select;
mod train_teacher;

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
    /// Images per second of a ConvNet-3 training step and test pass (benches/README.md).
    Bench(bench::BenchArgs),
    /// Inspect and validate datasets, synthetic sets, .pt files and checkpoints; fetch datasets.
    Data(data::DataArgs),
    /// DD-Ranking scores (LRS, ARS) of a distilled set; with no data arguments, the demo.
    Eval(Box<eval::EvalArgs>),
    /// One self-contained HTML report of result folders: curves and scores of one, a leaderboard
    /// of several.
    Report(report::ReportArgs),
    /// Build a coreset (herding or random) of a real training set, saved as a synthetic set.
    Select(select::SelectArgs),
    /// Train a teacher on the full real training set and save it (safetensors, PyTorch names).
    TrainTeacher(train_teacher::TrainTeacherArgs),
}

/// Parse `std::env::args` and run the chosen command.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info(args) => info::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Data(args) => data::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Select(args) => select::run(&args),
        Command::TrainTeacher(args) => train_teacher::run(&args),
    }
}
