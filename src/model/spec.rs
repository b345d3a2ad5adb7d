//! `ConvNetSpec`: which ConvNet a student is (depth, width, norm, input and classes), parsed from
//! DD-Ranking model names and checked so that every later shape computation is valid.

use crate::backend::NormKind;
use crate::error::{Error, Result};

/// DD-Ranking's default ConvNet width.
pub const DEFAULT_WIDTH: usize = 128;
/// DD-Ranking's default ConvNet depth (`ConvNet` without a number).
pub const DEFAULT_DEPTH: usize = 3;
/// Norm eps of GroupNorm and BatchNorm2d.
pub const NORM_EPS: f32 = 1e-5;
/// BatchNorm2d running-statistics momentum.
pub const BN_MOMENTUM: f32 = 0.1;

/// A ConvNet-D: D blocks of [conv 3×3 (width channels) → norm → ReLU → avg-pool 2×2], then a
/// linear layer on the flattened features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConvNetSpec {
    pub depth: usize,
    pub width: usize,
    pub norm: NormKind,
    pub channels: usize,
    pub im_size: usize,
    pub classes: usize,
}

impl ConvNetSpec {
    /// A checked spec. 1-channel input must be 28 px (the first conv pads by 3 to reach 32, as the
    /// reference does); other inputs keep their size through the convs and must halve `depth` times.
    pub fn new(
        depth: usize,
        width: usize,
        norm: NormKind,
        channels: usize,
        im_size: usize,
        classes: usize,
    ) -> Result<Self> {
        let spec = ConvNetSpec {
            depth,
            width,
            norm,
            channels,
            im_size,
            classes,
        };
        if !(1..=5).contains(&depth) {
            return Err(Error::config(format!(
                "ConvNet depth must be 1..=5, got {depth}"
            )));
        }
        if width == 0 || channels == 0 || classes == 0 {
            return Err(Error::config(format!(
                "ConvNet width, channels and classes must be positive, got width {width}, channels {channels}, classes {classes}"
            )));
        }
        // The reference pads the first conv by 3 for any 1-channel input but sizes the classifier
        // for 32 px only when the input is 28 px; other combinations crash there, so refuse them.
        if (channels == 1) != (im_size == 28) {
            return Err(Error::config(format!(
                "ConvNet input {channels}×{im_size}×{im_size} is not supported: the reference ConvNet \
                 takes 1-channel input only at 28 px (padded to 32) and 28 px input only with 1 channel"
            )));
        }
        let hw = spec.conv_hw();
        if hw % (1 << depth) != 0 {
            return Err(Error::config(format!(
                "ConvNet-{depth} halves the image {depth} times, but the {hw} px feature map is not divisible by {}",
                1 << depth
            )));
        }
        Ok(spec)
    }

    /// Parses a reference model name: `ConvNet` (depth 3), `ConvNet-4`, `ConvNetD4`, `ConvNet-3-BN`,
    /// `ConvNetBN`, and further `-`-separated tokens `D<n>`, `W<n>` (width), `BN`, `IN`, `NN`
    /// (no norm). The default norm is instance norm, the default width 128.
    pub fn from_name(name: &str, channels: usize, im_size: usize, classes: usize) -> Result<Self> {
        let bad = |why: &str| {
            Error::config(format!(
                "model name `{name}`: {why} (expected e.g. ConvNet, ConvNet-3, ConvNet-4, ConvNet-3-BN, ConvNetD3, ConvNet-3-W64)"
            ))
        };
        let rest = name
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("convnet"))
            .map(|_| &name[7..])
            .ok_or_else(|| bad("only the ConvNet family is implemented"))?;
        let (mut depth, mut width, mut norm) = (DEFAULT_DEPTH, DEFAULT_WIDTH, NormKind::Instance);
        for tok in rest.split('-').filter(|t| !t.is_empty()) {
            let up = tok.to_ascii_uppercase();
            let num = |s: &str| {
                s.parse::<usize>()
                    .map_err(|_| bad(&format!("`{tok}` is not a number")))
            };
            match up.as_str() {
                "BN" => norm = NormKind::Batch,
                "IN" => norm = NormKind::Instance,
                "NN" | "NONE" => norm = NormKind::None,
                _ if up.chars().all(|c| c.is_ascii_digit()) => depth = num(&up)?,
                _ if up.starts_with('D') => depth = num(&up[1..])?,
                _ if up.starts_with('W') => width = num(&up[1..])?,
                _ => return Err(bad(&format!("unknown part `{tok}`"))),
            }
        }
        ConvNetSpec::new(depth, width, norm, channels, im_size, classes)
    }

    /// The same spec with another width (re-checked).
    pub fn with_width(self, width: usize) -> Result<Self> {
        ConvNetSpec::new(
            self.depth,
            width,
            self.norm,
            self.channels,
            self.im_size,
            self.classes,
        )
    }

    /// The same spec with another norm.
    pub fn with_norm(self, norm: NormKind) -> Result<Self> {
        ConvNetSpec::new(
            self.depth,
            self.width,
            norm,
            self.channels,
            self.im_size,
            self.classes,
        )
    }

    /// Padding of the conv in block `d`: 3 for the first conv of a 1-channel network, else 1.
    pub fn pad(&self, d: usize) -> usize {
        if d == 0 && self.channels == 1 {
            3
        } else {
            1
        }
    }

    /// Spatial size after the first conv (32 for 28 px input).
    pub fn conv_hw(&self) -> usize {
        self.im_size + 2 * self.pad(0) - 2
    }

    /// Spatial size of block `d`'s input (block 0: the image).
    pub fn block_in_hw(&self, d: usize) -> usize {
        if d == 0 {
            self.im_size
        } else {
            self.conv_hw() >> d
        }
    }

    /// Spatial size of block `d`'s conv output (= its norm input).
    pub fn block_conv_hw(&self, d: usize) -> usize {
        self.conv_hw() >> d
    }

    /// Channels entering block `d`.
    pub fn block_cin(&self, d: usize) -> usize {
        if d == 0 {
            self.channels
        } else {
            self.width
        }
    }

    /// hf: the feature map side after the last pool.
    pub fn feat_hw(&self) -> usize {
        self.conv_hw() >> self.depth
    }

    /// Length of the flattened feature vector the classifier reads (W·hf²).
    pub fn num_feat(&self) -> usize {
        self.width * self.feat_hw() * self.feat_hw()
    }

    /// Elements of one input image (C·H·W).
    pub fn image_len(&self) -> usize {
        self.channels * self.im_size * self.im_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_names_parse() {
        let s = ConvNetSpec::from_name("ConvNet-3", 3, 32, 10).unwrap();
        assert_eq!((s.depth, s.width, s.norm), (3, 128, NormKind::Instance));
        let s = ConvNetSpec::from_name("ConvNet-3-BN", 3, 32, 10).unwrap();
        assert_eq!((s.depth, s.norm), (3, NormKind::Batch));
        let s = ConvNetSpec::from_name("ConvNetD4", 3, 64, 200).unwrap();
        assert_eq!((s.depth, s.feat_hw(), s.num_feat()), (4, 4, 2048));
        let s = ConvNetSpec::from_name("convnet-2-W32-NN", 1, 28, 10).unwrap();
        assert_eq!(
            (s.depth, s.width, s.norm, s.conv_hw(), s.feat_hw()),
            (2, 32, NormKind::None, 32, 8)
        );
        assert_eq!(
            ConvNetSpec::from_name("ConvNet", 3, 32, 10).unwrap().depth,
            3
        );
    }

    #[test]
    fn bad_names_and_shapes_are_clear_errors() {
        for (name, ch, im) in [
            ("ResNet-18", 3, 32),
            ("ConvNet-6", 3, 32),
            ("ConvNet-3-XX", 3, 32),
            ("ConvNet-3", 1, 32),
            ("ConvNet-5", 3, 48),
        ] {
            let e = ConvNetSpec::from_name(name, ch, im, 10)
                .unwrap_err()
                .to_string();
            assert!(!e.is_empty(), "{name}");
        }
        let e = ConvNetSpec::from_name("ConvNet-9", 3, 32, 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1..=5"), "{e}");
    }
}
