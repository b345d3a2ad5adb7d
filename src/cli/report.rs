//! `ddr-fast report DIR…`: the HTML report of one result folder, or a leaderboard of several.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Result folders written by `ddr-fast eval --out` (or their result.json files); a
    /// cross-architecture folder (models.json) shows every model's result and their table.
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// The HTML file to write (default: DIR/report.html for one folder, leaderboard.html in the
    /// current folder for several).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &ReportArgs) -> Result<()> {
    let mut loaded = Vec::new();
    for p in &args.results {
        loaded.extend(crate::report::load_all(p)?);
    }
    let out = match (&args.out, args.results.as_slice()) {
        (Some(o), _) => o.clone(),
        (None, [one]) if one.is_dir() => one.join("report.html"),
        (None, [one]) => one.with_file_name("report.html"),
        (None, _) => PathBuf::from("leaderboard.html"),
    };
    crate::report::write(&loaded, &out)?;
    println!("wrote {}", out.display());
    Ok(())
}
