//! Mutation fuzzing of every reader: valid files (a .pt fixture or a generated one, a CIFAR python
//! pickle, IDX, safetensors, PNG) get random byte flips, truncations and insertions; each reader
//! must return Ok or Err, never panic. Deterministic (SplitMix64, fixed seed).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use ddr_fast::data::subset::SplitMix64;
use safetensors::Dtype;

use common::{cifar_py_pickle, f32_bytes, pk, write_png, write_pt, write_st};

/// Mutants per seed file: enough to hit every header field of these small files several times;
/// each costs a file write (about 2 ms on the shared build machine), so 400 keeps this near 6 s.
const MUTANTS: usize = 400;

fn mutate(rng: &mut SplitMix64, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            break;
        }
        match rng.below(4) {
            0 => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(b.len());
                b[i] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)];
            }
            2 => b.truncate(rng.below(b.len())),
            _ => {
                let i = rng.below(b.len());
                b.insert(i, rng.next_u64() as u8);
            }
        }
    }
    b
}

/// Write each mutant to `path` and run `load` on it, failing on any panic.
fn fuzz(name: &str, path: &Path, base: &[u8], seed: u64, load: &dyn Fn(&Path)) {
    let mut rng = SplitMix64::keyed(&[seed]);
    for k in 0..MUTANTS {
        let m = mutate(&mut rng, base);
        std::fs::write(path, &m).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| load(path)));
        assert!(r.is_ok(), "{name}: mutant {k} panicked (seed {seed})");
    }
}

#[test]
fn readers_never_panic_on_mutated_files() {
    let tmp = tempfile::tempdir().unwrap();

    // .pt: a dict with a strided int64 view and a float tensor
    let pt = tmp.path().join("base.pt");
    let mut p = vec![0x80, 2, b'}', b'('];
    p.extend(pk::unicode("images"));
    p.extend(pk::tensor(
        "FloatStorage",
        "0",
        24,
        0,
        &[2, 3, 2, 2],
        &[12, 4, 2, 1],
    ));
    p.extend(pk::unicode("labels"));
    p.extend(pk::tensor("LongStorage", "1", 4, 1, &[2], &[2]));
    p.extend([b'u', b'.']);
    let f: Vec<f32> = (0..24).map(|x| x as f32).collect();
    let l: Vec<u8> = (0i64..4).flat_map(|x| x.to_le_bytes()).collect();
    write_pt(&pt, &p, &[("0", &f32_bytes(&f)), ("1", &l)]);
    let base = std::fs::read(&pt).unwrap();
    fuzz("pt", &tmp.path().join("m.pt"), &base, 1, &|q| {
        let _ = ddr_fast::data::torch::load_pt(q);
        let _ = ddr_fast::data::load_teacher(q);
    });
    // the raw pickle alone, under both allow-lists
    fuzz("pickle", &tmp.path().join("m.pkl"), &p, 2, &|q| {
        let b = std::fs::read(q).unwrap();
        let _ = ddr_fast::data::pickle::load(q, &b, ddr_fast::data::pickle::Allow::Torch);
    });

    // CIFAR python batch
    let data: Vec<u8> = (0..2 * 3072).map(|k| (k % 256) as u8).collect();
    let py = cifar_py_pickle(&data, 2, &[1, 2], "labels");
    let dir = tmp.path().join("py");
    std::fs::create_dir(&dir).unwrap();
    fuzz("cifar python", &dir.join("data_batch_1"), &py, 3, &|q| {
        let mut d = ddr_fast::data::cifar::empty(ddr_fast::data::cifar::Cifar::C10, vec![]);
        let _ = ddr_fast::data::cifar::read_python(q, ddr_fast::data::cifar::Cifar::C10, &mut d);
    });

    // IDX images (raw and gz)
    let idx = ddr_fast::data::idx::encode(0x803, &[3, 4, 4], &[7u8; 48]);
    fuzz("idx", &tmp.path().join("m-idx3-ubyte"), &idx, 4, &|q| {
        let _ = ddr_fast::data::idx::read_idx(q, 0x803, 3);
    });
    fuzz(
        "idx.gz",
        &tmp.path().join("m-idx3-ubyte.gz"),
        &common::gz(&idx),
        5,
        &|q| {
            let _ = ddr_fast::data::idx::read_idx(q, 0x803, 3);
        },
    );

    // safetensors synthetic set
    let st = tmp.path().join("base.safetensors");
    write_st(
        &st,
        &[(
            "images",
            Dtype::F32,
            vec![10, 1, 2, 2],
            f32_bytes(&[0.5; 40]),
        )],
        &[("pixel_space", "true")],
    );
    let base = std::fs::read(&st).unwrap();
    fuzz(
        "safetensors",
        &tmp.path().join("m.safetensors"),
        &base,
        6,
        &|q| {
            let e = ddr_fast::data::SynExpect {
                classes: 10,
                channels: 1,
                height: 2,
                width: 2,
                ipc: None,
                norm: ddr_fast::data::Norm::mnist(),
                pixel_space: None,
            };
            let _ = ddr_fast::data::load_synthetic(q, &e);
        },
    );

    // PNG
    let png = tmp.path().join("base.png");
    write_png(&png, 6, 5, [10, 20, 30]);
    let base = std::fs::read(&png).unwrap();
    fuzz("png", &tmp.path().join("m.png"), &base, 7, &|q| {
        let _ = ddr_fast::data::folder::decode(q, None);
    });
}
