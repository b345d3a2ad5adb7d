//! `ddr-fast eval … --emit slurm|k8s --shards N`: the evaluation as a scheduler recipe, printed
//! to stdout. Both run `eval … --shard I/N` once per shard (a Slurm array task, a Kubernetes
//! indexed pod), every shard writing finished trainings to one shared cache, then `eval …
//! --collect` once they are all there. Nothing here talks to a scheduler: the user submits.

use std::ffi::OsString;

use super::eval::EvalArgs;
use crate::error::{Error, Result};

/// The recipe for `kind` ("slurm" or "k8s"); `rest` is the user's `eval …` arguments without
/// the launch flags.
pub fn emit(kind: &str, shards: usize, args: &EvalArgs, rest: &[OsString]) -> Result<String> {
    if shards == 0 {
        return Err(Error::config("--shards: expected at least 1"));
    }
    let device = args.device.as_deref().unwrap_or("").to_ascii_lowercase();
    // A task or pod gets one GPU of its own, which it sees as cuda:0.
    let gpu = device.starts_with("cuda") || device.starts_with("gpu");
    let mut words: Vec<String> = rest
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match (&args.device, gpu) {
        (_, true) => words.extend(["--device".into(), "cuda:0".into()]),
        (Some(d), false) => words.extend(["--device".into(), d.clone()]),
        (None, false) => {}
    }
    words.push("--quiet".into());
    match kind {
        "slurm" => slurm(shards, gpu, &words),
        "k8s" | "kubernetes" => k8s(shards, gpu, args, &words),
        other => Err(Error::config(format!(
            "--emit '{other}': expected slurm or k8s"
        ))),
    }
}

/// Single-quoted for sh: safe for any argument.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn command_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| sh_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn slurm(shards: usize, gpu: bool, words: &[String]) -> Result<String> {
    let exe = std::env::current_exe().map_err(|e| Error::config(format!("own binary: {e}")))?;
    let cwd = std::env::current_dir().map_err(|e| Error::config(format!("current folder: {e}")))?;
    let bin = sh_quote(&exe.display().to_string());
    let cmd = command_line(words);
    let gres = if gpu { "#SBATCH --gres=gpu:1\n" } else { "" };
    let last = shards - 1;
    let dir = sh_quote(&cwd.display().to_string());
    Ok(format!(
        r#"#!/usr/bin/env bash
# ddr-fast eval as a Slurm job array: {shards} shards, then a collect job once they all succeed.
# Written by `ddr-fast eval … --emit slurm --shards {shards}` (ddr-fast {version}).
#
#   bash THIS_FILE            submit shards 0-{last} and the collect job
#   bash THIS_FILE 2,5        resubmit only the shards named (a Slurm array spec) and a new collect
#
# Every shard writes each finished cohort to the shared cache (--cache-dir / $DDR_CACHE_DIR /
# ~/.cache/ddr-fast: it must be on a filesystem all nodes see); a killed or failed shard loses only
# its unfinished trainings, and resubmitting it trains exactly those. Partition, time limit and
# account come from sbatch's usual SBATCH_PARTITION, SBATCH_TIMELIMIT, SBATCH_ACCOUNT variables.
set -euo pipefail
ARRAY="${{1:-0-{last}}}"
SBATCH="${{SBATCH:-sbatch}}"
shards=$("$SBATCH" --parsable --array="$ARRAY" <<'EOF'
#!/usr/bin/env bash
#SBATCH --job-name=ddr-shard
#SBATCH --chdir={dir}
#SBATCH --output=ddr-shard-%A_%a.out
#SBATCH --ntasks=1
{gres}exec {bin} {cmd} --shard "${{SLURM_ARRAY_TASK_ID}}/{shards}"
EOF
)
shards="${{shards%%;*}}"
# afterok: only when every array task succeeded; a failed or cancelled shard cancels the collect
# job (--kill-on-invalid-dep) instead of leaving it pending: resubmit that shard.
collect=$("$SBATCH" --parsable --dependency="afterok:$shards" --kill-on-invalid-dep=yes <<'EOF'
#!/usr/bin/env bash
#SBATCH --job-name=ddr-collect
#SBATCH --chdir={dir}
#SBATCH --output=ddr-collect-%j.out
#SBATCH --ntasks=1
exec {bin} {cmd} --collect
EOF
)
collect="${{collect%%;*}}"
echo "shards: job $shards (array $ARRAY of 0-{last}); collect: job $collect (after every shard succeeds)"
"#,
        version = crate::VERSION,
    ))
}

/// A JSON string: valid YAML, and no quoting rules of YAML's own to get wrong.
fn yq(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn k8s(shards: usize, gpu: bool, args: &EvalArgs, words: &[String]) -> Result<String> {
    let image = args
        .image
        .clone()
        .unwrap_or_else(|| format!("ddr-fast:{}", crate::VERSION));
    // The cache on the shared volume for every pod: the flag form would lose to a user's own
    // --cache-dir, which the pods could not see anyway.
    if words
        .iter()
        .any(|w| w == "--cache-dir" || w.starts_with("--cache-dir="))
    {
        return Err(Error::config(
            "--emit k8s puts the cache on the shared volume (/shared/ddr-cache): drop --cache-dir",
        ));
    }
    let cmd = command_line(words);
    let shard_cmd = format!("exec ddr-fast {cmd} --shard \"$JOB_COMPLETION_INDEX/{shards}\"");
    let collect_cmd = format!("exec ddr-fast {cmd} --collect --wait 604800");
    let gpu_limits = if gpu {
        "\n            resources:\n              limits:\n                nvidia.com/gpu: 1"
    } else {
        ""
    };
    let pod = |name: &str, script: &str, limits: &str| {
        format!(
            r#"      restartPolicy: Never
      containers:
          - name: {name}
            image: {image}
            workingDir: /shared
            command: ["/bin/sh", "-c"]
            args: [{script}]
            env:
              - name: DDR_CACHE_DIR
                value: /shared/ddr-cache{limits}
            volumeMounts:
              - name: shared
                mountPath: /shared
      volumes:
        - name: shared
          persistentVolumeClaim:
            claimName: ddr-fast-shared"#,
            image = yq(&image),
            script = yq(script),
        )
    };
    Ok(format!(
        r#"# ddr-fast eval as Kubernetes Jobs: {shards} indexed shards, then a collect Job.
# Written by `ddr-fast eval … --emit k8s --shards {shards}` (ddr-fast {version}).
#   kubectl apply -f THIS_FILE
#   kubectl wait --for=condition=complete --timeout=24h job/ddr-fast-collect
#   kubectl logs job/ddr-fast-collect
# Pod i runs shard i ($JOB_COMPLETION_INDEX). The PersistentVolumeClaim ddr-fast-shared (ReadWriteMany,
# e.g. NFS) holds the data, the synthetic set (relative paths resolve in /shared) and the cache. A pod
# that dies loses only its unfinished trainings; its retry trains exactly those. The collect Job
# waits (polling the cache every 30 s, for up to a week) until every training is there.
apiVersion: batch/v1
kind: Job
metadata:
  name: ddr-fast-shards
  labels:
    app.kubernetes.io/name: ddr-fast
spec:
  completionMode: Indexed
  completions: {shards}
  parallelism: {shards}
  backoffLimit: {backoff}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: ddr-fast
    spec:
{shard_pod}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: ddr-fast-collect
  labels:
    app.kubernetes.io/name: ddr-fast
spec:
  completions: 1
  backoffLimit: 2
  template:
    metadata:
      labels:
        app.kubernetes.io/name: ddr-fast
    spec:
{collect_pod}
"#,
        version = crate::VERSION,
        backoff = 3 * shards,
        shard_pod = pod("shard", &shard_cmd, gpu_limits),
        collect_pod = pod("collect", &collect_cmd, ""),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_spaces_and_quotes() {
        assert_eq!(sh_quote("--epochs"), "--epochs");
        assert_eq!(sh_quote("my file's.yaml"), r"'my file'\''s.yaml'");
        assert_eq!(sh_quote(""), "''");
    }
}
