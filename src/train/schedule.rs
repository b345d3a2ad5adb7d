//! Learning-rate schedules, stepped once per epoch (DESIGN.md §3). Each is a pure function of the
//! 0-based epoch, so a cohort can jump to any epoch and every device computes the same rate.

use crate::error::{Error, Result};

/// StepLR's decay factor in DD-Ranking.
pub const STEP_GAMMA: f32 = 0.1;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Schedule {
    /// lr₀ at every epoch.
    Constant,
    /// lr₀·γ^⌊e/step_size⌋.
    Step { step_size: usize, gamma: f32 },
    /// lr₀·(1 + cos(πe/N))/2: PyTorch's CosineAnnealingLR with T_max = N, eta_min = 0.
    CosineAnnealing { epochs: usize },
    /// lr₀·½(1 + cos(πe/(2N))): a quarter cosine ending at lr₀/2.
    Cosine { epochs: usize },
}

impl Schedule {
    /// Parses a DD-Ranking scheduler name for a training of `epochs` epochs. `step_size` is the
    /// StepLR period (the caller takes it from the config).
    pub fn parse(name: &str, epochs: usize, step_size: usize) -> Result<Schedule> {
        let s = match name.to_ascii_lowercase().as_str() {
            "none" | "constant" => Schedule::Constant,
            "step" | "steplr" => Schedule::Step {
                step_size,
                gamma: STEP_GAMMA,
            },
            "cosineannealing" => Schedule::CosineAnnealing { epochs },
            "cosine" => Schedule::Cosine { epochs },
            _ => {
                return Err(Error::config(format!(
                    "unknown lr scheduler `{name}` (expected step, cosineannealing, cosine or none)"
                )))
            }
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<()> {
        match *self {
            Schedule::Step { step_size: 0, .. } => {
                Err(Error::config("step scheduler needs step_size ≥ 1"))
            }
            Schedule::CosineAnnealing { epochs: 0 } | Schedule::Cosine { epochs: 0 } => {
                Err(Error::config("cosine schedulers need at least one epoch"))
            }
            _ => Ok(()),
        }
    }

    /// The learning rate during 0-based epoch `epoch` for a base rate `lr0`.
    pub fn lr(&self, lr0: f32, epoch: usize) -> f32 {
        let lr0 = lr0 as f64;
        let e = epoch as f64;
        let lr = match *self {
            Schedule::Constant => lr0,
            Schedule::Step { step_size, gamma } => {
                lr0 * (gamma as f64).powi((epoch / step_size.max(1)) as i32)
            }
            Schedule::CosineAnnealing { epochs } => {
                lr0 * (1.0 + (std::f64::consts::PI * e / epochs.max(1) as f64).cos()) / 2.0
            }
            Schedule::Cosine { epochs } => {
                lr0 * 0.5 * (1.0 + (std::f64::consts::PI * e / (2.0 * epochs.max(1) as f64)).cos())
            }
        };
        lr as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_hit_their_landmarks() {
        let step = Schedule::parse("step", 100, 50).unwrap();
        assert_eq!(step.lr(0.1, 49), 0.1);
        assert!((step.lr(0.1, 50) - 0.01).abs() < 1e-9);
        let ca = Schedule::parse("cosineannealing", 100, 0).unwrap();
        assert_eq!(ca.lr(0.1, 0), 0.1);
        assert!((ca.lr(0.1, 50) - 0.05).abs() < 1e-8);
        assert!(ca.lr(0.1, 100).abs() < 1e-9);
        let c = Schedule::parse("cosine", 100, 0).unwrap();
        assert!(
            (c.lr(0.1, 100) - 0.05).abs() < 1e-8,
            "the quarter cosine ends at lr0/2"
        );
        assert!(Schedule::parse("linear", 10, 1).is_err());
        assert!(Schedule::parse("step", 10, 0).is_err());
    }
}
