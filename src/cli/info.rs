//! `ddr-fast info [--json]`: what this build and this machine offer.

use clap::Args;

use crate::error::Result;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InfoArgs) -> Result<()> {
    let threads = rayon::current_num_threads();
    if args.json {
        let info = serde_json::json!({
            "version": crate::VERSION,
            "cpu_threads": threads,
        });
        println!("{info:#}");
    } else {
        println!("ddr-fast {}", crate::VERSION);
        println!("cpu threads: {threads}");
    }
    Ok(())
}
