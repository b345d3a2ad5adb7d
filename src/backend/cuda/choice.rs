//! `--device auto|cpu|cuda[:N]`: the parsed choice every computing command takes. `auto` means a
//! usable GPU when there is one, else the CPU; the command decides what to build from it.

use std::fmt;
use std::str::FromStr;

use super::CudaBackend;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA device 0 when it can be opened, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// The CUDA device with this ordinal; failing to open it is an error, not a fallback.
    Cuda(usize),
}

impl DeviceChoice {
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            _ => {
                let n = t.strip_prefix("cuda:").or_else(|| t.strip_prefix("gpu:"));
                match n.map(str::parse::<usize>) {
                    Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                    _ => Err(Error::config(format!(
                        "--device: expected auto, cpu, cuda or cuda:N (N a GPU number), found `{s}`"
                    ))),
                }
            }
        }
    }
}

impl DeviceChoice {
    /// The CUDA backend this choice asks for, or None for the CPU: `cpu` → None; `cuda:N` → that
    /// GPU or the error saying why not; `auto` → GPU 0 when it opens, else None (the reason is
    /// returned so a command can print it). Callers then run generic code on either backend:
    /// `match choice.open_cuda()? { (Some(gpu), _) => run(gpu), (None, _) => run(CpuBackend::new()) }`.
    pub fn open_cuda(self) -> Result<(Option<CudaBackend>, Option<String>)> {
        match self {
            DeviceChoice::Cpu => Ok((None, None)),
            DeviceChoice::Cuda(n) => Ok((Some(CudaBackend::new(n)?), None)),
            DeviceChoice::Auto => match CudaBackend::new(0) {
                Ok(b) => Ok((Some(b), None)),
                Err(e) => Ok((None, Some(format!("--device auto: using the CPU ({e})")))),
            },
        }
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
        for bad in ["", "cuda:", "cuda:x", "tpu", "cuda:-1"] {
            let e = DeviceChoice::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--device"), "{bad:?} gave {e}");
        }
    }

    #[test]
    fn cpu_needs_no_gpu_and_auto_always_resolves() {
        let (b, why) = DeviceChoice::Cpu.open_cuda().unwrap();
        assert!(b.is_none() && why.is_none());
        // With or without a GPU, `auto` picks something; without one it says why.
        let (b, why) = DeviceChoice::Auto.open_cuda().unwrap();
        assert!(b.is_some() != why.is_some());
    }

    #[test]
    fn display_round_trips() {
        for c in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda(2)] {
            assert_eq!(DeviceChoice::parse(&c.to_string()).unwrap(), c);
        }
    }
}
