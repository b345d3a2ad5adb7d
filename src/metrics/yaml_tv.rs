//! `custom_train_trans` in YAML: DD-Ranking takes a torchvision `transforms.Compose` object in its
//! Python configs; a YAML file cannot hold one, so ddr-fast reads the same list written out:
//!
//! ```yaml
//! custom_train_trans:
//!   - RandomResizedCrop: {size: 32, scale: [0.08, 1.0], ratio: [0.75, 1.3333333]}
//!   - RandomHorizontalFlip            # p defaults to 0.5, or {RandomHorizontalFlip: {p: 0.5}}
//!   - RandomCrop: {size: 32, padding: 4}
//!   - ToTensor                        # accepted and skipped: images are float tensors already
//!   - Normalize: {mean: [0.4914, 0.4822, 0.4465], std: [0.2023, 0.1994, 0.2010]}
//! ```
//! Each item is a transform name, or a one-key mapping from the name to its arguments (torchvision's
//! keyword names and defaults; `size` may be `32` or `[32, 32]`). Anything else is one error naming
//! the file, the key and the item.

use std::path::Path;

use serde_norway::{Mapping, Value};

use crate::aug::{TvPipeline, TvTransform};
use crate::error::{Error, Result};

/// Parses the list form above.
pub fn parse_train_trans(path: &Path, v: &Value) -> Result<TvPipeline> {
    let err = |i: usize, msg: String| {
        Error::format(path, format!("key 'custom_train_trans': item {i}: {msg}"))
    };
    let items = v.as_sequence().ok_or_else(|| {
        Error::format(
            path,
            "key 'custom_train_trans': expected a list of transforms (see README \"custom_train_trans\")".to_string(),
        )
    })?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (name, args) = match item {
            Value::String(s) => (s.as_str(), None),
            Value::Mapping(m) if m.len() == 1 => {
                let (k, a) = m.iter().next().expect("one entry");
                let k = k
                    .as_str()
                    .ok_or_else(|| err(i, "the transform name must be a string".into()))?;
                (k, if a.is_null() { None } else { Some(a) })
            }
            _ => {
                return Err(err(
                    i,
                    "expected a transform name or {Name: {arguments}}".into(),
                ))
            }
        };
        let empty = Mapping::new();
        let args = match args {
            None => &empty,
            Some(a) => a
                .as_mapping()
                .ok_or_else(|| err(i, format!("{name}: arguments must be a mapping")))?,
        };
        let a = Args {
            args,
            name,
            i,
            path,
        };
        let t = match name {
            "RandomResizedCrop" => {
                a.only(&["size", "scale", "ratio", "interpolation", "antialias"])?;
                a.bilinear_antialiased()?;
                let scale = a.pair_f64("scale")?.unwrap_or((0.08, 1.0));
                let ratio = a.pair_f64("ratio")?.unwrap_or((3.0 / 4.0, 4.0 / 3.0));
                if !(scale.0 > 0.0 && scale.0 <= scale.1 && ratio.0 > 0.0 && ratio.0 <= ratio.1) {
                    return Err(err(i, format!("{name}: scale {scale:?} and ratio {ratio:?} must be positive (min, max) pairs")));
                }
                TvTransform::RandomResizedCrop { size: a.size()?, scale, ratio }
            }
            "RandomHorizontalFlip" => {
                a.only(&["p"])?;
                let p = a.f64("p")?.unwrap_or(0.5);
                if !(0.0..=1.0).contains(&p) {
                    return Err(err(i, format!("{name}: p = {p} is not a probability")));
                }
                TvTransform::RandomHorizontalFlip { p }
            }
            "RandomCrop" => {
                a.only(&["size", "padding", "fill", "padding_mode", "pad_if_needed"])?;
                if a.args.get("fill").is_some_and(|f| f.as_f64() != Some(0.0)) {
                    return Err(err(i, "RandomCrop: only fill 0 is supported".into()));
                }
                if a.args.get("padding_mode").is_some_and(|m| m.as_str() != Some("constant")) {
                    return Err(err(i, "RandomCrop: only padding_mode constant is supported".into()));
                }
                if a.args.get("pad_if_needed").is_some_and(|m| m.as_bool() != Some(false)) {
                    return Err(err(i, "RandomCrop: pad_if_needed is not supported".into()));
                }
                let padding = match a.args.get("padding") {
                    None | Some(Value::Null) => 0,
                    Some(p) => p.as_u64().ok_or_else(|| err(i, "RandomCrop: padding must be one whole number (all four sides)".into()))? as usize,
                };
                TvTransform::RandomCrop { size: a.size()?, padding }
            }
            "Normalize" => {
                a.only(&["mean", "std", "inplace"])?;
                let mean = a.f32_list("mean")?;
                let std = a.f32_list("std")?;
                if std.contains(&0.0) || mean.len() != std.len() {
                    return Err(err(i, "Normalize: mean and std need one value per channel, std non-zero".into()));
                }
                TvTransform::Normalize { mean, std }
            }
            "ToTensor" | "ConvertImageDtype" => continue,
            other => return Err(err(i, format!(
                "`{other}` is not supported; ddr-fast has RandomResizedCrop, RandomHorizontalFlip, RandomCrop, Normalize (and skips ToTensor)"
            ))),
        };
        out.push(t);
    }
    Ok(TvPipeline(out))
}

/// One transform's argument mapping, with errors naming the item.
struct Args<'a> {
    args: &'a Mapping,
    name: &'a str,
    i: usize,
    path: &'a Path,
}

impl Args<'_> {
    fn err(&self, msg: String) -> Error {
        Error::format(
            self.path,
            format!(
                "key 'custom_train_trans': item {} ({}): {msg}",
                self.i, self.name
            ),
        )
    }

    fn only(&self, known: &[&str]) -> Result<()> {
        for k in self.args.keys() {
            let k = k.as_str().unwrap_or("?");
            if !known.contains(&k) {
                return Err(self.err(format!(
                    "unknown argument `{k}` (known: {})",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn f64(&self, k: &str) -> Result<Option<f64>> {
        match self.args.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{k}` must be a number"))),
        }
    }

    fn pair_f64(&self, k: &str) -> Result<Option<(f64, f64)>> {
        match self.args.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Sequence(s)) if s.len() == 2 => match (s[0].as_f64(), s[1].as_f64()) {
                (Some(a), Some(b)) => Ok(Some((a, b))),
                _ => Err(self.err(format!("`{k}` must be two numbers"))),
            },
            Some(_) => Err(self.err(format!("`{k}` must be a list of two numbers [min, max]"))),
        }
    }

    fn f32_list(&self, k: &str) -> Result<Vec<f32>> {
        let s = self
            .args
            .get(k)
            .and_then(|v| v.as_sequence())
            .ok_or_else(|| self.err(format!("`{k}` must be a list of numbers")))?;
        s.iter()
            .map(|x| {
                x.as_f64()
                    .map(|v| v as f32)
                    .ok_or_else(|| self.err(format!("`{k}` must be a list of numbers")))
            })
            .collect()
    }

    /// `size`: one whole number or a square [h, w].
    fn size(&self) -> Result<usize> {
        let v = self
            .args
            .get("size")
            .ok_or_else(|| self.err("`size` is required".into()))?;
        let n = match v {
            Value::Sequence(s) if s.len() == 2 && s[0] == s[1] => s[0].as_u64(),
            Value::Sequence(s) if s.len() == 1 => s[0].as_u64(),
            _ => v.as_u64(),
        };
        match n {
            Some(n) if n > 0 => Ok(n as usize),
            _ => Err(self.err("`size` must be a positive whole number or a square [h, w]".into())),
        }
    }

    /// ddr-fast implements torchvision's default: bilinear, antialias True.
    fn bilinear_antialiased(&self) -> Result<()> {
        if let Some(m) = self.args.get("interpolation") {
            if !m
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("bilinear"))
            {
                return Err(
                    self.err("only interpolation bilinear (the default) is supported".into())
                );
            }
        }
        if let Some(a) = self.args.get("antialias") {
            if a.as_bool() != Some(true) {
                return Err(
                    self.err("only antialias true (torchvision's default) is supported".into())
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TvPipeline> {
        let v: Value = serde_norway::from_str(text).unwrap();
        parse_train_trans(Path::new("cfg.yaml"), &v)
    }

    #[test]
    fn list_form_parses_with_torchvision_defaults() {
        let p = parse(
            "- RandomResizedCrop: {size: 32, scale: [0.5, 1]}\n- RandomHorizontalFlip\n- ToTensor\n\
             - {RandomCrop: {size: [32, 32], padding: 4}}\n- Normalize: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}\n",
        )
        .unwrap();
        assert_eq!(
            p.0,
            vec![
                TvTransform::RandomResizedCrop {
                    size: 32,
                    scale: (0.5, 1.0),
                    ratio: (0.75, 4.0 / 3.0)
                },
                TvTransform::RandomHorizontalFlip { p: 0.5 },
                TvTransform::RandomCrop {
                    size: 32,
                    padding: 4
                },
                TvTransform::Normalize {
                    mean: vec![0.5; 3],
                    std: vec![0.25; 3]
                },
            ]
        );
    }

    #[test]
    fn bad_items_name_the_item_and_the_problem() {
        for (text, want) in [
            ("RandomResizedCrop\n", "expected a list"),
            ("- ColorJitter\n", "`ColorJitter` is not supported"),
            (
                "- RandomResizedCrop: {scale: [0.5, 1]}\n",
                "`size` is required",
            ),
            (
                "- RandomResizedCrop: {size: 32, antialias: false}\n",
                "antialias",
            ),
            (
                "- RandomCrop: {size: 32, padding_mode: reflect}\n",
                "padding_mode",
            ),
            ("- RandomHorizontalFlip: {p: 2}\n", "not a probability"),
            ("- Normalize: {mean: [0.5], std: [0]}\n", "std non-zero"),
            (
                "- RandomCrop: {size: 32, foo: 1}\n",
                "unknown argument `foo`",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("cfg.yaml") && e.contains("custom_train_trans"),
                "{text}: {e}"
            );
        }
    }
}
