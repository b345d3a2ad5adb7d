//! The DD-Ranking score formulas (DESIGN.md §2) for one run, and their mean ± std over runs.
//!
//! Every accuracy here is a fraction in [0, 1]: the reference exponentiates percent values, a defect
//! ddr-fast does not copy. Scores are reported ×100 by the caller, never inside a formula.

use crate::error::{Error, Result};

/// The default weight of IOR against HLR in α (DESIGN.md §2).
pub const DEFAULT_LAMBDA: f64 = 0.5;
/// The default weight of the augmented gap against the un-augmented one in β (DESIGN.md §2).
pub const DEFAULT_GAMMA: f64 = 0.5;

/// Maps a score in [−1, 1] onto [0, 1]: (e^x − e^−1) / (e − e^−1). Shared by LRS (x = α) and ARS (x = β).
pub fn robust_score(x: f64) -> f64 {
    let lo = (-1.0f64).exp();
    let hi = 1.0f64.exp();
    (x.exp() - lo) / (hi - lo)
}

/// One run of the label-robust score, every field a fraction.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrsRun {
    /// Hard-label recovery: Acc(full, hard) − Acc(syn, hard).
    pub hlr: f64,
    /// Improvement over random: Acc(syn, recipe) − Acc(random subset, recipe).
    pub ior: f64,
    /// λ·IOR − (1 − λ)·HLR.
    pub alpha: f64,
    pub lrs: f64,
}

/// One run of the augmentation-robust score, every field a fraction.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArsRun {
    /// Acc(syn, aug) − Acc(random subset, aug).
    pub with_aug: f64,
    /// Acc(syn, no aug) − Acc(random subset, no aug).
    pub without_aug: f64,
    /// γ·with_aug + (1 − γ)·without_aug.
    pub beta: f64,
    pub ars: f64,
}

fn check_fraction(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(Error::config(format!(
            "{name} must be a fraction in [0, 1] (accuracies are not percentages here); found {v}"
        )))
    }
}

/// The LRS of one run from its four accuracies (fractions) and λ.
pub fn lrs_run(
    acc_full_hard: f64,
    acc_syn_hard: f64,
    acc_syn_recipe: f64,
    acc_rdm_recipe: f64,
    lambda: f64,
) -> Result<LrsRun> {
    check_fraction("Acc(full data, hard labels)", acc_full_hard)?;
    check_fraction("Acc(synthetic, hard labels)", acc_syn_hard)?;
    check_fraction("Acc(synthetic, recipe)", acc_syn_recipe)?;
    check_fraction("Acc(random subset, recipe)", acc_rdm_recipe)?;
    check_fraction("lambda", lambda)?;
    let hlr = acc_full_hard - acc_syn_hard;
    let ior = acc_syn_recipe - acc_rdm_recipe;
    Ok(lrs_from_parts(hlr, ior, lambda))
}

/// LRS from an already computed HLR and IOR (what a test recomputes from a JSON record).
pub fn lrs_from_parts(hlr: f64, ior: f64, lambda: f64) -> LrsRun {
    let alpha = lambda * ior - (1.0 - lambda) * hlr;
    LrsRun {
        hlr,
        ior,
        alpha,
        lrs: robust_score(alpha),
    }
}

/// The ARS of one run from its four accuracies (fractions) and γ.
pub fn ars_run(
    syn_aug: f64,
    rdm_aug: f64,
    syn_noaug: f64,
    rdm_noaug: f64,
    gamma: f64,
) -> Result<ArsRun> {
    check_fraction("Acc(synthetic, aug)", syn_aug)?;
    check_fraction("Acc(random subset, aug)", rdm_aug)?;
    check_fraction("Acc(synthetic, no aug)", syn_noaug)?;
    check_fraction("Acc(random subset, no aug)", rdm_noaug)?;
    check_fraction("gamma", gamma)?;
    Ok(ars_from_parts(
        syn_aug - rdm_aug,
        syn_noaug - rdm_noaug,
        gamma,
    ))
}

/// ARS from the two gaps.
pub fn ars_from_parts(with_aug: f64, without_aug: f64, gamma: f64) -> ArsRun {
    let beta = gamma * with_aug + (1.0 - gamma) * without_aug;
    ArsRun {
        with_aug,
        without_aug,
        beta,
        ars: robust_score(beta),
    }
}

/// Mean and population standard deviation (ddof 0, as numpy's default in the reference).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
}

/// Mean ± population std of `xs`; an error for an empty list (no runs finished).
pub fn mean_std(what: &str, xs: &[f64]) -> Result<MeanStd> {
    if xs.is_empty() {
        return Err(Error::config(format!(
            "no finished runs to average for {what}"
        )));
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    Ok(MeanStd {
        mean,
        std: var.sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DESIGN.md §2 prints the accuracies with 3 decimals; differences of them are exact in decimal,
    /// so only f64 rounding of the inputs (~1e-16 each) separates got from want.
    const DIFF_ATOL: f64 = 1e-12;
    /// DESIGN.md §2 prints LRS with 5–6 significant digits: half a unit in the last printed place.
    const LRS_ATOL_5DP: f64 = 5e-6;
    const LRS_ATOL_6DP: f64 = 5e-7;

    fn close(what: &str, got: f64, want: f64, atol: f64, rtol: f64) {
        let err = (got - want).abs();
        assert!(
            err <= atol + rtol * want.abs(),
            "{what}: got {got}, want {want}, |err| {err}"
        );
    }

    #[test]
    fn design_check_values() {
        let r = lrs_run(0.848, 0.449, 0.449, 0.260, DEFAULT_LAMBDA).unwrap();
        close("HLR", r.hlr, 0.399, DIFF_ATOL, 0.0);
        close("IOR", r.ior, 0.189, DIFF_ATOL, 0.0);
        close("alpha", r.alpha, -0.105, DIFF_ATOL, 0.0);
        close("LRS", r.lrs, 0.22653, LRS_ATOL_5DP, 0.0);
    }

    #[test]
    fn alpha_zero_gives_design_value() {
        close("LRS(α=0)", robust_score(0.0), 0.268941, LRS_ATOL_6DP, 0.0);
        // HLR = IOR with λ = ½ is α = 0 through the whole formula, not only robust_score.
        let r = lrs_run(0.8, 0.5, 0.5, 0.2, 0.5).unwrap();
        close("LRS via lrs_run", r.lrs, 0.268941, LRS_ATOL_6DP, 0.0);
    }

    #[test]
    fn robust_score_ends() {
        close("score(-1)", robust_score(-1.0), 0.0, DIFF_ATOL, 0.0);
        close("score(1)", robust_score(1.0), 1.0, DIFF_ATOL, 0.0);
    }

    #[test]
    fn ars_gamma_weights_the_gaps() {
        let r = ars_run(0.5, 0.3, 0.4, 0.35, 0.25).unwrap();
        close("with_aug", r.with_aug, 0.2, DIFF_ATOL, 0.0);
        close("without_aug", r.without_aug, 0.05, DIFF_ATOL, 0.0);
        close("beta", r.beta, 0.25 * 0.2 + 0.75 * 0.05, DIFF_ATOL, 0.0);
        close("ars", r.ars, robust_score(0.0875), DIFF_ATOL, 0.0);
    }

    #[test]
    fn percentages_are_refused() {
        let e = lrs_run(84.8, 0.449, 0.449, 0.26, 0.5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("full data") && e.contains("84.8"), "{e}");
        assert!(ars_run(0.5, 0.5, 0.5, 0.5, 1.5).is_err());
    }

    #[test]
    fn population_std() {
        let m = mean_std("x", &[1.0, 2.0, 3.0, 4.0]).unwrap();
        close("mean", m.mean, 2.5, DIFF_ATOL, 0.0);
        // ddof 0: sqrt(((1.5²+0.5²)·2)/4) = sqrt(1.25)
        close("std", m.std, 1.25f64.sqrt(), DIFF_ATOL, 0.0);
        assert!(mean_std("x", &[]).is_err());
    }
}
