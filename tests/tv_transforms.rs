//! torchvision parity of the `custom_train_trans` transforms (src/aug/tv.rs, tv_resize.rs) against
//! tests/fixtures/torchvision_transforms.safetensors (tools/golden_transforms.py, torchvision 0.29,
//! tensor path, antialias True): resized crops of fixed boxes (up-, down- and mixed scaling), flips,
//! pad + crop, Normalize; RandomResizedCrop's sampler on torchvision's own draws (the exact
//! formula, every fallback branch) and, on our keyed RNG, against torchvision's (h, w) frequencies.

mod common;

use common::{check_close, Golden, Tol};
use ddr_fast::aug::tv::{hflip, normalize, pad_crop, resized_crop, rrc_size, CropBox, TvTransform};
use ddr_fast::aug::DrawKey;
use std::path::Path;

/// Resize: the same float32 operations in PyTorch's order; one rounding step of slack per tap sum
/// (|x| ≲ 4 for N(0,1) pixels, float32 ulp at 4 is 4.8e-7).
const RESIZE: Tol = Tol::new(0.0, 1e-6);
/// Copies and zero fills, and Normalize's one subtract and one divide: bit for bit.
const EXACT: Tol = Tol::new(0.0, 0.0);
/// Our sampler's (h, w) histogram may differ from torchvision's by at most this many times the
/// distance between two independent torchvision runs of the same size (the file's
/// `stats_tv_noise`): sampling noise alone gives a ratio near 1, a wrong formula far more.
const STATS_NOISE_FACTOR: f64 = 2.0;

fn golden() -> Golden {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torchvision_transforms.safetensors");
    Golden::open(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn images(g: &Golden) -> (Vec<f32>, usize, usize, usize, usize) {
    let (x, s) = g.f32("input").unwrap();
    assert_eq!(s.len(), 4, "input is (N, C, H, W)");
    (x, s[0], s[1], s[2], s[3])
}

#[test]
fn resized_crop_flip_padcrop_normalize_match_torchvision() {
    let g = golden();
    let (x, n, c, h, w) = images(&g);
    let img = c * h * w;
    let (boxes, _) = g.i64("rrc.box").unwrap();
    for s in [32usize, 24, 48] {
        let (want, shape) = g.f32(&format!("rrc.out{s}")).unwrap();
        assert_eq!(shape, [n, c, s, s]);
        let mut got = Vec::new(); // (N, C, s, s)
        for i in 0..n {
            let b = &boxes[4 * i..4 * i + 4];
            let bx = CropBox {
                top: b[0] as usize,
                left: b[1] as usize,
                h: b[2] as usize,
                w: b[3] as usize,
            };
            got.extend(resized_crop(&x[i * img..(i + 1) * img], c, h, w, bx, s, s));
        }
        check_close(&format!("rrc.out{s}"), &got, &want, RESIZE).unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        println!("tv_transforms: resized_crop to {s}×{s} ok (max |diff| {worst:.2e})");
    }
    let flipped: Vec<f32> = hflip(&x, w);
    check_close("flip.out", &flipped, &g.f32("flip.out").unwrap().0, EXACT).unwrap();
    let (off, _) = g.i64("padcrop.offset").unwrap();
    let pc: Vec<f32> = (0..n)
        .flat_map(|i| {
            pad_crop(
                &x[i * img..(i + 1) * img],
                c,
                h,
                w,
                4,
                off[2 * i] as usize,
                off[2 * i + 1] as usize,
                32,
            )
        })
        .collect();
    check_close("padcrop.out", &pc, &g.f32("padcrop.out").unwrap().0, EXACT).unwrap();
    let mean = g.f32("norm.mean").unwrap().0;
    let std = g.f32("norm.std").unwrap().0;
    let nm: Vec<f32> = x
        .chunks_exact(img)
        .flat_map(|im| normalize(im, c, &mean, &std).unwrap())
        .collect();
    check_close("norm.out", &nm, &g.f32("norm.out").unwrap().0, EXACT).unwrap();
}

/// torchvision's draws in, torchvision's box out: the size rule, Python's rounding, the accept
/// test and the three fallback branches.
#[test]
fn rrc_sampler_formula_on_torchvisions_draws() {
    let g = golden();
    let cases: Vec<serde_json::Value> =
        serde_json::from_value(g.meta_json("cases").unwrap()).unwrap();
    assert!(
        cases.len() >= 4,
        "the file has the default and the fallback cases"
    );
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let ratio = (
            case["ratio"][0].as_f64().unwrap(),
            case["ratio"][1].as_f64().unwrap(),
        );
        let (area, _) = g.f64(&format!("sampler.{name}.area_frac")).unwrap();
        let (aspect, _) = g.f64(&format!("sampler.{name}.aspect")).unwrap();
        let (hw, _) = g.i64(&format!("sampler.{name}.hw")).unwrap();
        let (bx, _) = g.i64(&format!("sampler.{name}.box")).unwrap();
        let (hh, ww) = (hw[0] as usize, hw[1] as usize);
        let (h, w, accepted) = rrc_size(
            hh,
            ww,
            ratio,
            area.iter().copied().zip(aspect.iter().copied()),
        );
        assert_eq!([h as i64, w as i64], [bx[2], bx[3]], "{name}: (h, w)");
        match accepted {
            None => assert_eq!(
                [bx[0], bx[1]],
                [((hh - h) / 2) as i64, ((ww - w) / 2) as i64],
                "{name}: centre"
            ),
            Some(_) => assert!(
                bx[0] as usize <= hh - h && bx[1] as usize <= ww - w,
                "{name}: position"
            ),
        }
        println!("tv_transforms: sampler case {name} ok ({h}×{w}, try {accepted:?})");
    }
}

/// Our keyed draws reproduce torchvision's distribution of crop sizes on 32×32 with the defaults.
#[test]
fn rrc_sampler_statistics_match_torchvision() {
    let g = golden();
    let n: usize = g.meta_usize("stats_n").unwrap();
    let noise: f64 = g.meta("stats_tv_noise").unwrap().parse().unwrap();
    let (want, shape) = g.f64("stats.hist").unwrap();
    assert_eq!(shape, [33, 33]);
    let t = TvTransform::RandomResizedCrop {
        size: 32,
        scale: (0.08, 1.0),
        ratio: (0.75, 4.0 / 3.0),
    };
    let mut hist = vec![0f64; 33 * 33];
    let per_step = 100;
    for k in 0..n {
        let key = DrawKey {
            seed: 11,
            run: 0,
            role: 0,
            step: (k / per_step) as u32,
        };
        let bx = t.rrc_box(&key, k % per_step, 0, 32, 32).unwrap();
        hist[bx.h * 33 + bx.w] += 1.0 / n as f64;
    }
    let tv = 0.5
        * hist
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>();
    println!("tv_transforms: (h, w) total variation to torchvision {tv:.4} (two torchvision runs: {noise:.4})");
    assert!(
        tv <= STATS_NOISE_FACTOR * noise,
        "total variation {tv:.4} > {STATS_NOISE_FACTOR} × {noise:.4}"
    );
}
