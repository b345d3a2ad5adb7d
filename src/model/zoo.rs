//! The networks of `ddranking.utils.networks` that `build_model` reaches by name, as layer lists:
//! MLP, LeNet, AlexNet, VGG-11/13/16/19 (± BN), ResNet-18/34/50 (± BN). Each builder follows the
//! reference module by module, so the parameter and buffer names and their order are PyTorch's
//! state_dict (`num_batches_tracked` aside: one host counter serves every BN layer, as for
//! ConvNet). The default norm is instance norm = GroupNorm(c, c, affine); `-BN` is BatchNorm2d.
//! `build_model` always passes channel = 3; the builders also take 1 channel as the modules do.

use super::layers::{Layer, LayerList, Op};
use super::layout::{Entry, ParamLayout};
use crate::backend::{NormLayerKind, ParamAt, PoolKind};
use crate::error::{Error, Result};

/// Builds the layer list of a non-ConvNet reference model name.
pub fn build(name: &str, channels: usize, im_size: usize, classes: usize) -> Result<LayerList> {
    let bad = |why: String| {
        Error::config(format!(
            "model name `{name}`: {why} (expected ConvNet-D[-BN], MLP, LeNet, AlexNet, \
             VGG-11/13/16/19[-BN] or ResNet-18/34/50[-BN])"
        ))
    };
    if channels == 0 || classes == 0 || im_size == 0 {
        return Err(bad(format!(
            "channels, image size and classes must be positive, got {channels}, {im_size}, {classes}"
        )));
    }
    // `<Family>-<depth>[-BN]`, as the reference's parse_model_name reads it, plus ddr-fast's
    // `-W<n>` (the first stage's width instead of 64, scaling every stage: small networks built
    // the same way, for tests and quick runs; no reference name carries it).
    let parts: Vec<&str> = name.split('-').collect();
    let family = parts[0];
    let depth = match parts.get(1) {
        Some(d) => Some(
            d.parse::<usize>()
                .map_err(|_| bad(format!("`{d}` is not a depth")))?,
        ),
        None => None,
    };
    let (mut bn, mut width) = (false, BASE_WIDTH);
    for t in parts.iter().skip(2) {
        match (
            *t,
            t.strip_prefix('W').and_then(|w| w.parse::<usize>().ok()),
        ) {
            ("BN", _) => bn = true,
            (_, Some(w)) if w > 0 && matches!(family, "VGG" | "ResNet") => width = w,
            _ => {
                return Err(bad(format!(
                "unknown part `{t}` (only BN, or W<n> for VGG and ResNet, may follow the depth)"
            )))
            }
        }
    }
    let norm = if bn { Norm::Batch } else { Norm::Instance };
    let wide = |c: usize| c * width / BASE_WIDTH;
    let mut b = Builder::new(channels, im_size);
    match (family, depth) {
        ("MLP", None) => mlp(&mut b, classes)?,
        ("LeNet", None) => lenet(&mut b, classes)?,
        ("AlexNet", None) => alexnet(&mut b, classes)?,
        ("VGG", Some(d @ (11 | 13 | 16 | 19))) => vgg(&mut b, d, norm, &wide, classes)?,
        ("ResNet", Some(18)) => resnet(&mut b, Block::Basic, [2, 2, 2, 2], norm, &wide, classes)?,
        ("ResNet", Some(34)) => resnet(&mut b, Block::Basic, [3, 4, 6, 3], norm, &wide, classes)?,
        ("ResNet", Some(50)) => resnet(
            &mut b,
            Block::Bottleneck,
            [3, 4, 6, 3],
            norm,
            &wide,
            classes,
        )?,
        ("MLP" | "LeNet" | "AlexNet", Some(_)) => {
            return Err(bad(format!("{family} takes no depth")))
        }
        ("VGG" | "ResNet", _) => return Err(bad(format!("no {family} of that depth"))),
        _ => return Err(bad("unknown model family".into())),
    }
    Ok(b.finish(channels, im_size, classes))
}

/// The reference's first-stage width of VGG and ResNet.
const BASE_WIDTH: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Norm {
    Instance,
    Batch,
}

/// Appends layers and their parameter entries; `row`s are fixed in `finish` once P and R are known.
struct Builder {
    layers: Vec<Layer>,
    /// (c, h, w) of every value; value 0 is the input.
    shapes: Vec<[usize; 3]>,
    params: Vec<Entry>,
    buffers: Vec<Entry>,
    p: usize,
    r: usize,
}

impl Builder {
    fn new(channels: usize, im_size: usize) -> Builder {
        Builder {
            layers: Vec::new(),
            shapes: vec![[channels, im_size, im_size]],
            params: Vec::new(),
            buffers: Vec::new(),
            p: 0,
            r: 0,
        }
    }

    /// The value the last layer wrote (0 before any layer).
    fn last(&self) -> usize {
        self.layers.len()
    }

    fn param(&mut self, name: String, shape: Vec<usize>) -> usize {
        let e = Entry {
            name,
            shape,
            offset: self.p,
        };
        self.p += e.len();
        self.params.push(e);
        self.p - self.params.last().map_or(0, Entry::len)
    }

    fn buffer(&mut self, name: String, shape: Vec<usize>) -> usize {
        let e = Entry {
            name,
            shape,
            offset: self.r,
        };
        self.r += e.len();
        self.buffers.push(e);
        self.r - self.buffers.last().map_or(0, Entry::len)
    }

    fn push(&mut self, input: usize, op: Op, out_shape: [usize; 3]) -> Result<usize> {
        if out_shape.contains(&0) {
            return Err(Error::config(format!(
                "layer {} ({op:?}) leaves an empty {out_shape:?} feature map: the input is too small",
                self.layers.len()
            )));
        }
        let in_shape = self.shapes[input];
        self.layers.push(Layer {
            op,
            input,
            in_shape,
            out_shape,
        });
        self.shapes.push(out_shape);
        Ok(self.last())
    }

    /// The output side of a window k with stride and padding over n, or an error.
    fn window(&self, n: usize, k: usize, stride: usize, pad: usize) -> Result<usize> {
        if n + 2 * pad < k {
            return Err(Error::config(format!(
                "layer {}: a {k}×{k} window does not fit a {n}-px feature map (padding {pad}): the input is too small",
                self.layers.len()
            )));
        }
        Ok((n + 2 * pad - k) / stride + 1)
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        input: usize,
        name: &str,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> Result<usize> {
        let [cin, h, w] = self.shapes[input];
        let (oh, ow) = (
            self.window(h, k, stride, pad)?,
            self.window(w, k, stride, pad)?,
        );
        let weight = self.param(format!("{name}.weight"), vec![cout, cin, k, k]);
        let b = if bias {
            self.param(format!("{name}.bias"), vec![cout])
        } else {
            0
        };
        let at = ParamAt {
            weight,
            bias: b,
            row: 0,
        };
        self.push(
            input,
            Op::Conv {
                cout,
                k,
                stride,
                pad,
                bias,
                at,
            },
            [cout, oh, ow],
        )
    }

    fn norm(&mut self, input: usize, name: &str, norm: Norm) -> Result<usize> {
        let shape = self.shapes[input];
        let c = shape[0];
        let weight = self.param(format!("{name}.weight"), vec![c]);
        let bias = self.param(format!("{name}.bias"), vec![c]);
        let (kind, running) = match norm {
            Norm::Instance => (
                NormLayerKind::Group { groups: c },
                ParamAt {
                    weight: 0,
                    bias: 0,
                    row: 0,
                },
            ),
            Norm::Batch => {
                let rm = self.buffer(format!("{name}.running_mean"), vec![c]);
                let rv = self.buffer(format!("{name}.running_var"), vec![c]);
                (
                    NormLayerKind::Batch,
                    ParamAt {
                        weight: rm,
                        bias: rv,
                        row: 0,
                    },
                )
            }
        };
        self.push(
            input,
            Op::Norm {
                kind,
                at: ParamAt {
                    weight,
                    bias,
                    row: 0,
                },
                running,
            },
            shape,
        )
    }

    fn relu(&mut self, input: usize) -> Result<usize> {
        self.push(input, Op::Relu, self.shapes[input])
    }

    fn pool(&mut self, input: usize, kind: PoolKind, k: usize, stride: usize) -> Result<usize> {
        let [c, h, w] = self.shapes[input];
        let (oh, ow) = (self.window(h, k, stride, 0)?, self.window(w, k, stride, 0)?);
        self.push(
            input,
            Op::Pool {
                kind,
                k,
                stride,
                pad: 0,
            },
            [c, oh, ow],
        )
    }

    fn add(&mut self, a: usize, b: usize) -> Result<usize> {
        if self.shapes[a] != self.shapes[b] {
            return Err(Error::config(format!(
                "residual add of {:?} and {:?}: the shapes differ",
                self.shapes[a], self.shapes[b]
            )));
        }
        self.push(a, Op::Add { other: b }, self.shapes[a])
    }

    /// A linear layer declared with `fin` inputs, as the reference declares it: the flattened
    /// input must have exactly that many features (else the reference fails in forward too).
    fn linear(&mut self, input: usize, name: &str, fin: usize, fout: usize) -> Result<usize> {
        let got: usize = self.shapes[input].iter().product();
        if got != fin {
            return Err(Error::config(format!(
                "{name} takes {fin} features but this input size gives {got} ({:?}): the reference \
                 network does not support this image size",
                self.shapes[input]
            )));
        }
        let weight = self.param(format!("{name}.weight"), vec![fout, fin]);
        let bias = self.param(format!("{name}.bias"), vec![fout]);
        self.push(
            input,
            Op::Linear {
                fout,
                at: ParamAt {
                    weight,
                    bias,
                    row: 0,
                },
            },
            [fout, 1, 1],
        )
    }

    fn finish(mut self, channels: usize, im_size: usize, classes: usize) -> LayerList {
        let (p, r) = (self.p, self.r);
        let mut classifier = ParamAt {
            weight: 0,
            bias: 0,
            row: p,
        };
        for l in &mut self.layers {
            match &mut l.op {
                Op::Conv { at, .. } => at.row = p,
                Op::Norm { at, running, .. } => {
                    at.row = p;
                    running.row = r;
                }
                Op::Linear { at, .. } => {
                    at.row = p;
                    classifier = *at;
                }
                _ => {}
            }
        }
        LayerList {
            layers: self.layers,
            layout: ParamLayout {
                params: self.params,
                buffers: self.buffers,
                blocks: Vec::new(),
                classifier,
                len: p,
                buffer_len: r,
            },
            channels,
            im_size,
            classes,
        }
    }
}

/// MLP: fc_1 (res²·3, or 28² for 1 channel) → 128 → 128 → K, ReLU between.
fn mlp(b: &mut Builder, classes: usize) -> Result<()> {
    let [c, h, _] = b.shapes[0];
    let fin = if c == 1 { 28 * 28 } else { h * h * 3 };
    let x = b.linear(0, "fc_1", fin, 128)?;
    let x = b.relu(x)?;
    let x = b.linear(x, "fc_2", 128, 128)?;
    let x = b.relu(x)?;
    b.linear(x, "fc_3", 128, classes)?;
    Ok(())
}

/// LeNet: conv 5×5 (6; padding 2 for 1 channel; stride 2 unless 32 px) → ReLU → max 2 → conv 5×5
/// (16) → ReLU → max 2 → fc 400 → 120 → 84 → K.
fn lenet(b: &mut Builder, classes: usize) -> Result<()> {
    let [c, h, _] = b.shapes[0];
    let x = b.conv(
        0,
        "features.0",
        6,
        5,
        if h == 32 { 1 } else { 2 },
        if c == 1 { 2 } else { 0 },
        true,
    )?;
    let x = b.relu(x)?;
    let x = b.pool(x, PoolKind::Max, 2, 2)?;
    let x = b.conv(x, "features.3", 16, 5, 1, 0, true)?;
    let x = b.relu(x)?;
    let x = b.pool(x, PoolKind::Max, 2, 2)?;
    let x = b.linear(x, "fc_1", 16 * 5 * 5, 120)?;
    let x = b.relu(x)?;
    let x = b.linear(x, "fc_2", 120, 84)?;
    let x = b.relu(x)?;
    b.linear(x, "fc_3", 84, classes)?;
    Ok(())
}

/// AlexNet (the reference's small variant): five convs with ReLU, three 2×2 max pools, fc.
fn alexnet(b: &mut Builder, classes: usize) -> Result<()> {
    let [c, h, _] = b.shapes[0];
    let x = b.conv(
        0,
        "features.0",
        128,
        5,
        if h == 32 { 1 } else { 2 },
        if c == 1 { 4 } else { 2 },
        true,
    )?;
    let x = b.relu(x)?;
    let x = b.pool(x, PoolKind::Max, 2, 2)?;
    let x = b.conv(x, "features.3", 192, 5, 1, 2, true)?;
    let x = b.relu(x)?;
    let x = b.pool(x, PoolKind::Max, 2, 2)?;
    let x = b.conv(x, "features.6", 256, 3, 1, 1, true)?;
    let x = b.relu(x)?;
    let x = b.conv(x, "features.8", 192, 3, 1, 1, true)?;
    let x = b.relu(x)?;
    let x = b.conv(x, "features.10", 192, 3, 1, 1, true)?;
    let x = b.relu(x)?;
    let x = b.pool(x, PoolKind::Max, 2, 2)?;
    b.linear(x, "fc", 192 * 4 * 4, classes)?;
    Ok(())
}

/// VGG-D: the reference's cfg_vgg, each number a conv 3×3 (bias) → norm → ReLU, 'M' a 2×2 max
/// pool, then AvgPool2d(1, stride 1 at 32 px else 2) and a 512 → K classifier.
fn vgg(
    b: &mut Builder,
    depth: usize,
    norm: Norm,
    wide: &dyn Fn(usize) -> usize,
    classes: usize,
) -> Result<()> {
    const M: usize = 0;
    let cfg: &[usize] = match depth {
        11 => &[64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
        13 => &[
            64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M,
        ],
        16 => &[
            64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M,
        ],
        _ => &[
            64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512,
            512, M,
        ],
    };
    let [c, h, _] = b.shapes[0];
    let (mut x, mut idx) = (0, 0); // idx: the module index inside `features`
    for (ic, &v) in cfg.iter().enumerate() {
        if v == M {
            x = b.pool(x, PoolKind::Max, 2, 2)?;
            idx += 1;
        } else {
            let pad = if c == 1 && ic == 0 { 3 } else { 1 };
            x = b.conv(x, &format!("features.{idx}"), wide(v), 3, 1, pad, true)?;
            x = b.norm(x, &format!("features.{}", idx + 1), norm)?;
            x = b.relu(x)?;
            idx += 3;
        }
    }
    x = b.pool(x, PoolKind::Avg, 1, if h == 32 { 1 } else { 2 })?;
    b.linear(x, "classifier", wide(512), classes)?;
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Basic,
    Bottleneck,
}

/// ResNet (the reference's CIFAR form): conv 3×3 stem (stride 2 at 64 px) → norm → ReLU, four
/// stages of blocks (64, 128, 256, 512 planes; stride 2 at the first block of stages 2–4), each
/// with a 1×1-conv + norm shortcut where the shape changes, then avg_pool2d(4) and a classifier.
fn resnet(
    b: &mut Builder,
    block: Block,
    blocks: [usize; 4],
    norm: Norm,
    wide: &dyn Fn(usize) -> usize,
    classes: usize,
) -> Result<()> {
    let h = b.shapes[0][1];
    let expansion = if block == Block::Basic { 1 } else { 4 };
    let x = b.conv(
        0,
        "conv1",
        wide(64),
        3,
        if h == 64 { 2 } else { 1 },
        1,
        false,
    )?;
    let x = b.norm(x, "bn1", norm)?;
    let mut x = b.relu(x)?;
    let mut in_planes = wide(64);
    for (stage, (&n, planes)) in blocks.iter().zip([64, 128, 256, 512].map(wide)).enumerate() {
        for j in 0..n {
            let stride = if j == 0 && stage > 0 { 2 } else { 1 };
            let p = format!("layer{}.{j}", stage + 1);
            let input = x;
            let mut y = match block {
                Block::Basic => {
                    let y = b.conv(input, &format!("{p}.conv1"), planes, 3, stride, 1, false)?;
                    let y = b.norm(y, &format!("{p}.bn1"), norm)?;
                    let y = b.relu(y)?;
                    let y = b.conv(y, &format!("{p}.conv2"), planes, 3, 1, 1, false)?;
                    b.norm(y, &format!("{p}.bn2"), norm)?
                }
                Block::Bottleneck => {
                    let y = b.conv(input, &format!("{p}.conv1"), planes, 1, 1, 0, false)?;
                    let y = b.norm(y, &format!("{p}.bn1"), norm)?;
                    let y = b.relu(y)?;
                    let y = b.conv(y, &format!("{p}.conv2"), planes, 3, stride, 1, false)?;
                    let y = b.norm(y, &format!("{p}.bn2"), norm)?;
                    let y = b.relu(y)?;
                    let y = b.conv(y, &format!("{p}.conv3"), expansion * planes, 1, 1, 0, false)?;
                    b.norm(y, &format!("{p}.bn3"), norm)?
                }
            };
            let short = if stride != 1 || in_planes != expansion * planes {
                let s = b.conv(
                    input,
                    &format!("{p}.shortcut.0"),
                    expansion * planes,
                    1,
                    stride,
                    0,
                    false,
                )?;
                b.norm(s, &format!("{p}.shortcut.1"), norm)?
            } else {
                input
            };
            y = b.add(y, short)?;
            x = b.relu(y)?;
            in_planes = expansion * planes;
        }
    }
    let x = b.pool(x, PoolKind::Avg, 4, 4)?;
    b.linear(x, "classifier", wide(512) * expansion, classes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case of tests/fixtures/net_layouts.txt (PyTorch's state_dict of the reference
    /// networks, written by tools/net_layouts.py): the same names, shapes and order, and offsets
    /// that tile the (P) and (R) rows.
    #[test]
    fn layouts_match_the_reference_state_dicts() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/net_layouts.txt"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let mut cases: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            match f[0] {
                "model" => cases.push((f[1..].join(" "), Vec::new(), Vec::new())),
                "param" => cases
                    .last_mut()
                    .unwrap()
                    .1
                    .push(format!("{} {}", f[1], f[2])),
                "buffer" => cases
                    .last_mut()
                    .unwrap()
                    .2
                    .push(format!("{} {}", f[1], f[2])),
                other => panic!("{path}: unknown line kind `{other}`"),
            }
        }
        assert!(cases.len() >= 15, "{path} holds {} cases", cases.len());
        let show = |es: &[Entry]| -> Vec<String> {
            es.iter()
                .map(|e| {
                    let dims: Vec<String> = e.shape.iter().map(|d| d.to_string()).collect();
                    format!("{} {}", e.name, dims.join(","))
                })
                .collect()
        };
        for (head, params, buffers) in &cases {
            let f: Vec<&str> = head.split(' ').collect();
            let n = |i: usize| f[i].parse::<usize>().unwrap();
            let list = build(f[0], n(1), n(2), n(3)).unwrap_or_else(|e| panic!("{head}: {e}"));
            let l = &list.layout;
            assert_eq!(&show(&l.params), params, "{head}: parameters");
            assert_eq!(&show(&l.buffers), buffers, "{head}: buffers");
            let mut off = 0;
            for e in &l.params {
                assert_eq!(e.offset, off, "{head}: {} offset", e.name);
                off += e.len();
            }
            assert_eq!(off, l.len, "{head}: P");
            let last = list.layers.last().unwrap();
            assert_eq!(last.out_shape, [n(3), 1, 1], "{head}: logits");
        }
    }

    #[test]
    fn bad_names_and_sizes_are_clear_errors() {
        for (name, ch, im, want) in [
            ("ResNet-20", 3, 32, "depth"),
            ("ResNet", 3, 32, "depth"),
            ("VGG-11-GN", 3, 32, "unknown part"),
            ("AlexNet-W8", 3, 32, "not a depth"),
            ("ResNet-18-W0", 3, 32, "unknown part"),
            ("AlexNet-BN", 3, 32, "not a depth"),
            ("DenseNet-121", 3, 32, "unknown model family"),
            ("LeNet", 1, 28, "does not support this image size"),
            ("ResNet-18", 3, 128, "does not support this image size"),
            ("AlexNet", 3, 2, "too small"),
        ] {
            let e = build(name, ch, im, 10).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
    }
}
