//! `ParamLayout`: where every parameter of a ConvNet sits in a student's flat parameter row (P),
//! under its PyTorch state_dict name and in PyTorch's order, plus the batch-norm buffer row (R).

use super::spec::ConvNetSpec;
use crate::backend::{NormKind, ParamAt};

/// Appends a tensor at offset `*off` and returns that offset.
fn push(list: &mut Vec<Entry>, off: &mut usize, name: String, shape: Vec<usize>) -> usize {
    let at = *off;
    let e = Entry {
        name,
        shape,
        offset: at,
    };
    *off += e.len();
    list.push(e);
    at
}

/// One named tensor inside a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// PyTorch state_dict name, e.g. `features.4.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl Entry {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Offsets of one block's tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockAt {
    /// Conv weight (W, cin, 3, 3) and bias (W) in the parameter row.
    pub conv: ParamAt,
    /// Norm γ and β (W) in the parameter row; unused without a norm.
    pub norm: ParamAt,
    /// running_mean and running_var (W) in the buffer row; batch norm only.
    pub running: ParamAt,
}

/// The parameter row (length `len` = P) and the buffer row (length `buffer_len` = R) of a ConvNet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    /// Parameters in PyTorch order.
    pub params: Vec<Entry>,
    /// Batch-norm running_mean / running_var per BN layer, in PyTorch order (num_batches_tracked is
    /// a host-side counter: every BN layer of a cohort sees the same number of train forwards).
    pub buffers: Vec<Entry>,
    pub blocks: Vec<BlockAt>,
    /// Classifier weight (K, num_feat) and bias (K).
    pub classifier: ParamAt,
    pub len: usize,
    pub buffer_len: usize,
}

impl ParamLayout {
    pub fn new(spec: &ConvNetSpec) -> ParamLayout {
        let mut params = Vec::new();
        let mut buffers = Vec::new();
        let mut off = 0;
        let mut boff = 0;
        let w = spec.width;
        let has_norm = spec.norm != NormKind::None;
        let stride = if has_norm { 4 } else { 3 };
        let mut blocks = Vec::new();
        for d in 0..spec.depth {
            let conv = format!("features.{}", stride * d);
            let cw = push(
                &mut params,
                &mut off,
                format!("{conv}.weight"),
                vec![w, spec.block_cin(d), 3, 3],
            );
            let cb = push(&mut params, &mut off, format!("{conv}.bias"), vec![w]);
            let (mut nw, mut nb, mut rm, mut rv) = (0, 0, 0, 0);
            if has_norm {
                let norm = format!("features.{}", stride * d + 1);
                nw = push(&mut params, &mut off, format!("{norm}.weight"), vec![w]);
                nb = push(&mut params, &mut off, format!("{norm}.bias"), vec![w]);
                if spec.norm == NormKind::Batch {
                    rm = push(
                        &mut buffers,
                        &mut boff,
                        format!("{norm}.running_mean"),
                        vec![w],
                    );
                    rv = push(
                        &mut buffers,
                        &mut boff,
                        format!("{norm}.running_var"),
                        vec![w],
                    );
                }
            }
            blocks.push((cw, cb, nw, nb, rm, rv));
        }
        let kw = push(
            &mut params,
            &mut off,
            "classifier.weight".into(),
            vec![spec.classes, spec.num_feat()],
        );
        let kb = push(
            &mut params,
            &mut off,
            "classifier.bias".into(),
            vec![spec.classes],
        );
        let (p, r) = (off, boff);
        let blocks = blocks
            .into_iter()
            .map(|(cw, cb, nw, nb, rm, rv)| BlockAt {
                conv: ParamAt {
                    weight: cw,
                    bias: cb,
                    row: p,
                },
                norm: ParamAt {
                    weight: nw,
                    bias: nb,
                    row: p,
                },
                running: ParamAt {
                    weight: rm,
                    bias: rv,
                    row: r,
                },
            })
            .collect();
        ParamLayout {
            params,
            buffers,
            blocks,
            classifier: ParamAt {
                weight: kw,
                bias: kb,
                row: p,
            },
            len: p,
            buffer_len: r,
        }
    }

    /// The parameter entry named `name` (PyTorch state_dict name).
    pub fn param(&self, name: &str) -> Option<&Entry> {
        self.params.iter().find(|e| e.name == name)
    }

    /// The buffer entry named `name`.
    pub fn buffer(&self, name: &str) -> Option<&Entry> {
        self.buffers.iter().find(|e| e.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ConvNet-3 on CIFAR-10 has the parameter count PyTorch reports (320,010 at width 128 with
    /// instance norm: 3 convs, 3 GroupNorms, a 2048 → 10 head).
    #[test]
    fn convnet3_cifar_has_pytorch_parameter_count_and_names() {
        let spec = ConvNetSpec::from_name("ConvNet-3", 3, 32, 10).unwrap();
        let l = ParamLayout::new(&spec);
        let expect =
            (128 * 27 + 128) + 2 * 128 + 2 * ((128 * 128 * 9 + 128) + 2 * 128) + (10 * 2048 + 10);
        assert_eq!(l.len, expect);
        let names: Vec<&str> = l.params.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names[..4],
            [
                "features.0.weight",
                "features.0.bias",
                "features.1.weight",
                "features.1.bias"
            ]
        );
        assert_eq!(names[4], "features.4.weight");
        assert_eq!(l.buffer_len, 0);
        let bn = ParamLayout::new(&spec.with_norm(NormKind::Batch).unwrap());
        assert_eq!(bn.buffers[2].name, "features.5.running_mean");
        let nn = ParamLayout::new(&spec.with_norm(NormKind::None).unwrap());
        assert_eq!(nn.params[2].name, "features.3.weight");
    }
}
