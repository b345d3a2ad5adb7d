//! `--device auto|cpu|cuda[:N]`: the parsed choice every computing command takes. `auto` means a
//! usable GPU when there is one, else the CPU; the command decides what to build from it.

use std::fmt;
use std::str::FromStr;

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
    fn display_round_trips() {
        for c in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda(2)] {
            assert_eq!(DeviceChoice::parse(&c.to_string()).unwrap(), c);
        }
    }
}
