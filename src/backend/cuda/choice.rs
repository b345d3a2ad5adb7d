//! `--device auto|cpu|cuda|cuda:N|emulated`: the one device parser every computing command (and
//! the YAML `device` key) goes through, and the opening rule that turns a choice into a backend.
//!
//! Where the choice came from matters: a flag is a demand (`--device cuda` without a GPU is an
//! error), a config file's key a preference (DD-Ranking configs all say `device: cuda`, so on a
//! machine without a GPU they run on the CPU with a warning instead of being refused).

use std::fmt;
use std::str::FromStr;

use super::CudaBackend;
use crate::backend::cpu::CpuBackend;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA device 0 when a driver and a GPU are present, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// The CUDA device with this ordinal; failing to open it is an error when asked by a flag.
    Cuda(usize),
    /// The CUDA backend on the host emulator (the kernels compiled for the CPU): the exact GPU
    /// code path, for tests and debugging. Slow: orders of magnitude below the CPU backend.
    Emulated,
}

/// Where a device value was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag (or a default): an unavailable GPU is an error.
    Flag,
    /// A config file key: an unavailable GPU falls back to the CPU with a warning.
    Config,
}

/// An opened device: the backend to run on, and the one line saying which and why.
pub enum Opened {
    Cpu(CpuBackend),
    Cuda(CudaBackend),
}

impl DeviceChoice {
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            "emulated" | "cuda-emulated" => Ok(DeviceChoice::Emulated),
            _ => {
                let n = t.strip_prefix("cuda:").or_else(|| t.strip_prefix("gpu:"));
                match n.map(str::parse::<usize>) {
                    Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                    _ => Err(Error::config(format!(
                        "device: expected auto, cpu, cuda, cuda:N (N a GPU number) or emulated, found `{s}`"
                    ))),
                }
            }
        }
    }

    /// Opens the device this choice names. Returns the backend and one line for the user saying
    /// which device runs and, for `auto` or a config's GPU that is not there, why the CPU.
    /// `cuda:N` from a flag without that GPU is the error saying why not.
    pub fn open(self, origin: Origin) -> Result<(Opened, String)> {
        let cpu = || Opened::Cpu(CpuBackend::new());
        let describe = |b: &Opened| match b {
            Opened::Cpu(c) => crate::backend::Backend::describe(c),
            Opened::Cuda(c) => crate::backend::Backend::describe(c),
        };
        match self {
            DeviceChoice::Cpu => {
                let b = cpu();
                let line = format!("device: {}", describe(&b));
                Ok((b, line))
            }
            DeviceChoice::Emulated => {
                let b = Opened::Cuda(CudaBackend::emulated());
                let line = format!(
                    "device: {} — emulated: the CUDA kernels run on the CPU, far slower than --device cpu",
                    describe(&b)
                );
                Ok((b, line))
            }
            DeviceChoice::Cuda(n) => match (CudaBackend::new(n), origin) {
                (Ok(g), _) => {
                    let b = Opened::Cuda(g);
                    let line = format!("device: {}", describe(&b));
                    Ok((b, line))
                }
                (Err(e), Origin::Flag) => Err(Error::device(format!(
                    "--device cuda:{n}: {} (use --device cpu, or --device auto to fall back)",
                    why_not(&e)
                ))),
                (Err(e), Origin::Config) => {
                    let b = cpu();
                    let line = format!(
                        "warning: the config asks for device cuda:{n}, but {}; running on {} instead \
                         (pass --device to choose)",
                        why_not(&e),
                        describe(&b)
                    );
                    Ok((b, line))
                }
            },
            DeviceChoice::Auto => match CudaBackend::new(0) {
                Ok(g) => {
                    let b = Opened::Cuda(g);
                    let line = format!("device: {} (auto: a GPU is present)", describe(&b));
                    Ok((b, line))
                }
                Err(e) => {
                    let b = cpu();
                    let line = format!(
                        "device: {} (auto: no usable GPU: {})",
                        describe(&b),
                        why_not(&e)
                    );
                    Ok((b, line))
                }
            },
        }
    }

    /// Whether this choice runs the CUDA code path (a GPU or its emulation) when it opens.
    pub fn wants_cuda(self) -> bool {
        matches!(self, DeviceChoice::Cuda(_) | DeviceChoice::Emulated)
    }
}

/// Why a GPU could not be opened, without the `device:` prefix of the error's display (the lines
/// that quote it already say what failed).
pub fn why_not(e: &Error) -> String {
    match e {
        Error::Device(m) => m.clone(),
        other => other.to_string(),
    }
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        DeviceChoice::parse(s)
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => write!(f, "auto"),
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceChoice::Emulated => write!(f, "emulated"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        assert_eq!(DeviceChoice::parse("auto").unwrap(), DeviceChoice::Auto);
        assert_eq!(DeviceChoice::parse("CPU").unwrap(), DeviceChoice::Cpu);
        assert_eq!(DeviceChoice::parse("cuda").unwrap(), DeviceChoice::Cuda(0));
        assert_eq!(
            DeviceChoice::parse("cuda:3").unwrap(),
            DeviceChoice::Cuda(3)
        );
        assert_eq!(
            DeviceChoice::parse("emulated").unwrap(),
            DeviceChoice::Emulated
        );
        for bad in ["", "cuda:", "cuda:x", "tpu", "cuda:-1"] {
            let e = DeviceChoice::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("device") && e.contains("emulated"),
                "{bad:?} gave {e}"
            );
        }
    }

    #[test]
    fn cpu_and_emulated_need_no_gpu_and_auto_always_resolves() {
        let (b, line) = DeviceChoice::Cpu.open(Origin::Flag).unwrap();
        assert!(
            matches!(b, Opened::Cpu(_)) && line.contains("cpu"),
            "{line}"
        );
        let (b, line) = DeviceChoice::Emulated.open(Origin::Flag).unwrap();
        assert!(
            matches!(b, Opened::Cuda(ref c) if c.is_emulated()),
            "{line}"
        );
        assert!(line.contains("emulated"), "{line}");
        // With or without a GPU, `auto` picks something and says which in its line.
        let (_, line) = DeviceChoice::Auto.open(Origin::Flag).unwrap();
        assert!(line.contains("auto"), "{line}");
    }

    /// Without a GPU (this CI machine), a flag's `cuda` is an error and a config's `cuda` is the
    /// CPU with a warning; with a GPU both open it. Either way the two origins are told apart.
    #[test]
    fn a_flag_demands_a_gpu_and_a_config_prefers_one() {
        match CudaBackend::new(0) {
            Ok(_) => {
                let (b, _) = DeviceChoice::Cuda(0).open(Origin::Flag).unwrap();
                assert!(matches!(b, Opened::Cuda(_)));
            }
            Err(_) => {
                let e = match DeviceChoice::Cuda(0).open(Origin::Flag) {
                    Err(e) => e.to_string(),
                    Ok(_) => panic!("--device cuda opened without a GPU"),
                };
                assert!(e.contains("--device cuda:0") && e.contains("cpu"), "{e}");
                let (b, line) = DeviceChoice::Cuda(0).open(Origin::Config).unwrap();
                assert!(matches!(b, Opened::Cpu(_)));
                assert!(
                    line.starts_with("warning:") && line.contains("cpu"),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for c in [
            DeviceChoice::Auto,
            DeviceChoice::Cpu,
            DeviceChoice::Cuda(2),
            DeviceChoice::Emulated,
        ] {
            assert_eq!(DeviceChoice::parse(&c.to_string()).unwrap(), c);
        }
    }
}
