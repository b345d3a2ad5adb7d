//! The scale-out side of `ddr-fast eval`: `--shard I/N` (train one share into the shared cache),
//! `--collect` (reduce from the cache, training nothing), `--workers K` / `--device cuda:all`
//! (K shard processes on this machine, then collect) and `--emit slurm|k8s` (a scheduler recipe
//! that runs the shards and the collect step elsewhere). The split itself is
//! `metrics::shard`; the recipes are in `eval_emit`.

use std::ffi::OsString;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::eval::EvalArgs;
use super::eval_device::DryTarget;
use crate::backend::{Backend, DeviceChoice, Origin};
use crate::error::{Error, Result};
use crate::metrics::cache::writer_prefix;
use crate::metrics::config::EvalConfig;
use crate::metrics::execute::{cache_dir, evaluate, Inputs, RunOptions, SubsetFn};
use crate::metrics::report::EvalRecord;
use crate::metrics::shard::{collect, train_shard, Collected, Shard};

/// Seconds between two looks at the cache while `--collect --wait` waits for the shards.
const COLLECT_POLL_S: u64 = 30;

/// Flags that choose how an evaluation is spread out; they are dropped from the command line
/// handed to each shard, which gets its own `--shard` and `--device` (name, takes a value).
/// `--quiet` too: every shard gets it (no progress bars from K processes), and clap refuses a
/// flag given twice.
const LAUNCH_FLAGS: [(&str, bool); 9] = [
    ("--quiet", false),
    ("--shard", true),
    ("--collect", false),
    ("--wait", true),
    ("--workers", true),
    ("--emit", true),
    ("--shards", true),
    ("--image", true),
    ("--device", true),
];

/// What `eval` does after [`launch`].
pub enum Launch {
    /// Everything was done here (a recipe written, or workers run and collected).
    Done,
    /// Go on with these arguments (unchanged, or turned into a collect).
    Continue(Box<EvalArgs>),
}

/// Handles `--emit` and the multi-process modes before any input is loaded.
pub fn launch(args: &EvalArgs) -> Result<Launch> {
    if args.shard.is_some() && (args.collect || args.workers.is_some() || args.emit.is_some()) {
        return Err(Error::config(
            "--shard runs one shard: it does not combine with --collect, --workers or --emit",
        ));
    }
    if let Some(kind) = &args.emit {
        let shards = args
            .shards
            .ok_or_else(|| Error::config("--emit needs --shards N (how many shards)"))?;
        let rest = forwarded_args()?;
        let text = super::eval_emit::emit(kind, shards, args, &rest)?;
        print!("{text}");
        return Ok(Launch::Done);
    }
    let devices = worker_devices(args)?;
    if devices.is_empty() {
        return Ok(Launch::Continue(Box::new(args.clone())));
    }
    if args.collect {
        return Err(Error::config(
            "--collect trains nothing: it does not combine with --workers or a device list",
        ));
    }
    run_workers(&devices)?;
    // The workers' device kind is in every cache key, so the collect step names the same one.
    let mut collect = args.clone();
    collect.collect = true;
    collect.workers = None;
    collect.device = Some(devices[0].clone());
    Ok(Launch::Continue(Box::new(collect)))
}

/// One device per worker process: `--workers K` on the given device, or one per GPU of
/// `--device cuda:all` / `cuda:0,1,…` (K workers over G GPUs share them round-robin). Empty when
/// the evaluation runs in this process.
fn worker_devices(args: &EvalArgs) -> Result<Vec<String>> {
    let dev = args
        .device
        .as_deref()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let gpus: Option<Vec<usize>> = if dev == "cuda:all" {
        let n = crate::backend::cuda::visible_gpus()
            .map_err(|e| Error::config(format!("--device cuda:all: {e}")))?
            .len();
        if n == 0 {
            return Err(Error::config("--device cuda:all: no GPU is visible"));
        }
        Some((0..n).collect())
    } else if let Some(list) = dev.strip_prefix("cuda:").filter(|l| l.contains(',')) {
        let parsed: std::result::Result<Vec<usize>, _> =
            list.split(',').map(|g| g.trim().parse::<usize>()).collect();
        Some(parsed.map_err(|_| {
            Error::config(format!(
                "--device {dev}: expected cuda:all or a list of GPU numbers such as cuda:0,1"
            ))
        })?)
    } else {
        None
    };
    match (gpus, args.workers) {
        (Some(g), k) => {
            let k = k.unwrap_or(g.len()).max(1);
            Ok((0..k).map(|i| format!("cuda:{}", g[i % g.len()])).collect())
        }
        (None, Some(0)) => Err(Error::config("--workers: expected at least 1")),
        (None, Some(k)) => {
            let d = args.device.clone().unwrap_or_else(|| "cpu".into());
            DeviceChoice::parse(&d)?;
            Ok(vec![d; k])
        }
        (None, None) => Ok(Vec::new()),
    }
}

/// Starts one `eval --shard i/K` process per device, waits for all and fails naming every worker
/// that failed (their finished trainings are in the cache; a rerun trains only the rest).
fn run_workers(devices: &[String]) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::config(format!("own binary: {e}")))?;
    let rest = forwarded_args()?;
    let k = devices.len();
    // CPU workers split the cores; each GPU worker needs only a few host threads.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / k).max(1);
    let mut children = Vec::new();
    for (i, dev) in devices.iter().enumerate() {
        let mut cmd = Command::new(&exe);
        cmd.args(&rest)
            .args(["--quiet", "--device", dev, "--shard", &format!("{i}/{k}")]);
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            cmd.env("RAYON_NUM_THREADS", threads.to_string());
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::config(format!("starting worker {i}/{k}: {e}")))?;
        eprintln!("worker {i}/{k}: pid {} on {dev}", child.id());
        children.push(child);
    }
    let mut failed = Vec::new();
    for (i, mut c) in children.into_iter().enumerate() {
        match c.wait() {
            Ok(s) if s.success() => {}
            Ok(s) => failed.push(format!("{i}/{k} ({s})")),
            Err(e) => failed.push(format!("{i}/{k} ({e})")),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::config(format!(
            "worker(s) {} failed; what they finished is in the cache, so running the same \
             command again trains only the rest",
            failed.join(", ")
        )))
    }
}

/// This process's `eval …` arguments without the launch flags, as a shard should get them.
pub fn forwarded_args() -> Result<Vec<OsString>> {
    let all: Vec<OsString> = std::env::args_os().skip(1).collect();
    Ok(strip_launch_flags(&all))
}

fn strip_launch_flags(all: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in all {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let s = a.to_string_lossy();
        let hit = LAUNCH_FLAGS
            .iter()
            .find(|(f, _)| s == *f || (s.starts_with(f) && s[f.len()..].starts_with('=')));
        match hit {
            Some((f, takes)) => skip_value = *takes && s == *f,
            None => out.push(a.clone()),
        }
    }
    out
}

/// The device kind `--collect` keys its lookups with, found without opening a GPU: the collect
/// step of a cluster recipe usually runs where there is none.
pub fn collect_kind(choice: DeviceChoice, origin: Origin) -> Result<&'static str> {
    Ok(DryTarget::resolve(choice, origin, Some(0.0))?.kind)
}

/// Runs what the flags ask for: one shard (no scores: `None`), a collect, or the whole evaluation.
pub fn evaluate_mode<B: Backend>(
    be: &Arc<B>,
    args: &EvalArgs,
    cfg: &EvalConfig,
    inputs: &Inputs,
    subset: SubsetFn<'_>,
    opts: &RunOptions,
) -> Result<Option<EvalRecord>> {
    if let Some(s) = &args.shard {
        let shard: Shard = s.parse()?;
        // Said first, so whoever watches a shard knows its file before it has finished.
        eprintln!(
            "shard {s}: records go to {}/trainings.jsonl.d/{}-*.jsonl",
            cache_dir(cfg).display(),
            writer_prefix()
        );
        let out = train_shard(be, cfg, inputs, subset, opts, shard)?;
        println!("{}", out.line());
        return Ok(None);
    }
    if !args.collect {
        return evaluate(be, cfg, inputs, subset, opts).map(Some);
    }
    let deadline = Instant::now() + Duration::from_secs(args.wait.unwrap_or(0));
    loop {
        match collect(cfg, inputs, opts)? {
            Collected::Done(rec) => return Ok(Some(*rec)),
            Collected::Missing(why) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::config(why));
                }
                eprintln!("{why}; looking again in {COLLECT_POLL_S} s");
                std::thread::sleep(left.min(Duration::from_secs(COLLECT_POLL_S)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_flags_are_stripped_in_both_spellings() {
        let args: Vec<OsString> = [
            "eval",
            "--workers",
            "3",
            "--epochs",
            "2",
            "--device=cuda:all",
            "--collect",
            "--shard",
            "1/3",
            "--emit=slurm",
            "--shards",
            "4",
            "--syn",
            "x.safetensors",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let kept: Vec<String> = strip_launch_flags(&args)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(kept, ["eval", "--epochs", "2", "--syn", "x.safetensors"]);
    }
}
