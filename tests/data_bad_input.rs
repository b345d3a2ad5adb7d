//! Broken inputs, generated in a temp dir, each run through `ddr-fast data info`: the binary must
//! exit non-zero without panicking (101), print exactly one `error:` line, and that line must name
//! the faulty path and the problem (a keyword per case).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::Dtype;

use common::{
    cifar_py_pickle, cifar_records, f32_bytes, gz, i64_bytes, pk, write_cifar10_bin, write_idx_dir,
    write_png, write_pt, write_st,
};

/// One case: builds its input under the given folder and returns (path to pass, extra args,
/// the path the message must name, a keyword of the problem).
struct Case {
    name: &'static str,
    build: fn(&Path) -> Built,
}

/// (input path, extra CLI args, path the message must name, keyword of the problem).
type Built = (PathBuf, Vec<&'static str>, PathBuf, &'static str);

fn images_st(dir: &Path, shape: Vec<usize>, vals: &[f32]) -> PathBuf {
    let p = dir.join("syn.safetensors");
    write_st(&p, &[("images", Dtype::F32, shape, f32_bytes(vals))], &[]);
    p
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i % 13) as f32 / 13.0).collect()
}

/// A raw safetensors file from a JSON header and data bytes.
fn raw_st(dir: &Path, header: &str, data: &[u8]) -> PathBuf {
    let p = dir.join("raw.safetensors");
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend(header.as_bytes());
    b.extend(data);
    std::fs::write(&p, b).unwrap();
    p
}

/// A .pt with a single pickle and given storages.
fn pt(dir: &Path, pickle: Vec<u8>, storages: &[(&str, &[u8])]) -> PathBuf {
    let p = dir.join("bad.pt");
    write_pt(&p, &pickle, storages);
    p
}

fn tensor_pickle(st: &str, numel: i32, offset: i32, size: &[i32], stride: &[i32]) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    p.extend(pk::tensor(st, "0", numel, offset, size, stride));
    p.push(b'.');
    p
}

/// A PNG whose IHDR claims `w`×`h` pixels, with a tiny (invalid) IDAT: a decompression bomb's header.
fn png_claiming(path: &Path, w: u32, h: u32) {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend(kind);
        c.extend(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        c.extend(crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend(chunk(b"IHDR", &ihdr));
    b.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    b.extend(chunk(b"IEND", &[]));
    std::fs::write(path, b).unwrap();
}

/// A `folders/train/<cls>/` + `folders/val/<cls>/` tree of 8×8 PNGs; returns the root.
fn folder_tree(dir: &Path) -> PathBuf {
    let root = dir.join("folders");
    for split in ["train", "val"] {
        for cls in ["a", "b"] {
            let d = root.join(split).join(cls);
            std::fs::create_dir_all(&d).unwrap();
            write_png(&d.join("0.png"), 8, 8, [1, 2, 3]);
        }
    }
    root
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "cifar truncated batch",
            build: |d| {
                write_cifar10_bin(d, 3);
                let f = d.join("data_batch_3.bin");
                std::fs::write(&f, &cifar_records(3, 1, 10)[..5000]).unwrap();
                (d.into(), vec![], f, "whole number")
            },
        },
        Case {
            name: "cifar empty batch",
            build: |d| {
                write_cifar10_bin(d, 3);
                let f = d.join("test_batch.bin");
                std::fs::write(&f, b"").unwrap();
                (d.into(), vec![], f, "size 0")
            },
        },
        Case {
            name: "cifar label out of range",
            build: |d| {
                write_cifar10_bin(d, 3);
                let f = d.join("data_batch_2.bin");
                let mut r = cifar_records(3, 1, 10);
                r[3073] = 10;
                std::fs::write(&f, r).unwrap();
                (d.into(), vec![], f, "label 10 out of range")
            },
        },
        Case {
            name: "cifar missing batch",
            build: |d| {
                write_cifar10_bin(d, 3);
                let f = d.join("data_batch_5.bin");
                std::fs::remove_file(&f).unwrap();
                (d.into(), vec![], f, "No such file")
            },
        },
        Case {
            name: "cifar100 fine label out of range",
            build: |d| {
                let mut r = cifar_records(4, 2, 100);
                r[1] = 100;
                std::fs::write(d.join("train.bin"), r).unwrap();
                std::fs::write(d.join("test.bin"), cifar_records(2, 2, 100)).unwrap();
                (d.into(), vec![], d.join("train.bin"), "out of range")
            },
        },
        Case {
            name: "cifar100 oversized (extra bytes)",
            build: |d| {
                std::fs::write(d.join("train.bin"), cifar_records(4, 2, 100)).unwrap();
                let mut t = cifar_records(2, 2, 100);
                t.extend([0u8; 17]);
                std::fs::write(d.join("test.bin"), t).unwrap();
                (d.into(), vec![], d.join("test.bin"), "whole number")
            },
        },
        Case {
            name: "cifar python malicious global",
            build: |d| {
                let f = d.join("data_batch_1");
                let mut p = vec![0x80, 2];
                p.extend(pk::global("os", "system"));
                p.extend(pk::unicode("rm -rf /"));
                p.extend([0x85, b'R', b'.']);
                std::fs::write(&f, p).unwrap();
                (d.into(), vec![], f, "os.system")
            },
        },
        Case {
            name: "cifar python data wrong shape",
            build: |d| {
                let f = d.join("data_batch_1");
                let mut p = cifar_py_pickle(&[7u8; 3072], 1, &[1], "labels");
                // claim 2 rows of 1536 instead of 1 of 3072: find the packed ints (1, 3072) and rewrite
                let pos = p.windows(5).position(|w| w == [b'J', 0, 12, 0, 0]).unwrap();
                p[pos + 1..pos + 5].copy_from_slice(&1536i32.to_le_bytes());
                let pos = p.windows(5).position(|w| w == [b'J', 1, 0, 0, 0]).unwrap();
                let pos2 = pos
                    + 5
                    + p[pos + 5..]
                        .windows(5)
                        .position(|w| w == [b'J', 1, 0, 0, 0])
                        .unwrap();
                p[pos2 + 1..pos2 + 5].copy_from_slice(&2i32.to_le_bytes());
                std::fs::write(&f, p).unwrap();
                (d.into(), vec![], f, "shape")
            },
        },
        Case {
            name: "cifar python truncated pickle",
            build: |d| {
                let f = d.join("data_batch_1");
                let p = cifar_py_pickle(&[7u8; 3072], 1, &[1], "labels");
                std::fs::write(&f, &p[..2000]).unwrap();
                (d.into(), vec![], f, "truncated")
            },
        },
        Case {
            name: "idx wrong magic",
            build: |d| {
                write_idx_dir(d, 5, 5, false);
                let f = d.join("train-images-idx3-ubyte");
                let mut b = std::fs::read(&f).unwrap();
                b[3] = 0x04;
                std::fs::write(&f, b).unwrap();
                (d.into(), vec![], f, "wrong IDX magic")
            },
        },
        Case {
            name: "idx lying huge count",
            build: |d| {
                write_idx_dir(d, 5, 5, false);
                let f = d.join("train-images-idx3-ubyte");
                let mut b = std::fs::read(&f).unwrap();
                b[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
                std::fs::write(&f, b).unwrap();
                (d.into(), vec![], f, "lying header")
            },
        },
        Case {
            name: "idx shape product overflows",
            build: |d| {
                write_idx_dir(d, 5, 5, false);
                let f = d.join("t10k-images-idx3-ubyte");
                std::fs::write(
                    &f,
                    ddr_fast::data::idx::encode(0x803, &[u32::MAX, u32::MAX, u32::MAX], &[0; 64]),
                )
                .unwrap();
                (d.into(), vec![], f, "overflow")
            },
        },
        Case {
            name: "idx truncated labels",
            build: |d| {
                write_idx_dir(d, 5, 5, false);
                let f = d.join("train-labels-idx1-ubyte");
                let b = std::fs::read(&f).unwrap();
                std::fs::write(&f, &b[..10]).unwrap();
                (d.into(), vec![], f, "truncated")
            },
        },
        Case {
            name: "idx label out of range",
            build: |d| {
                write_idx_dir(d, 5, 5, false);
                let f = d.join("t10k-labels-idx1-ubyte");
                std::fs::write(
                    &f,
                    ddr_fast::data::idx::encode(0x801, &[5], &[0, 1, 2, 3, 200]),
                )
                .unwrap();
                (d.into(), vec![], f, "out of range")
            },
        },
        Case {
            name: "idx label count mismatch",
            build: |d| {
                write_idx_dir(d, 5, 5, false);
                let f = d.join("train-labels-idx1-ubyte");
                std::fs::write(&f, ddr_fast::data::idx::encode(0x801, &[4], &[0, 1, 2, 3]))
                    .unwrap();
                (d.into(), vec![], f, "4 labels for 5 images")
            },
        },
        Case {
            name: "idx.gz corrupt stream",
            build: |d| {
                write_idx_dir(d, 5, 5, true);
                let f = d.join("train-images-idx3-ubyte.gz");
                let mut b = std::fs::read(&f).unwrap();
                let n = b.len();
                for x in &mut b[12..n - 8] {
                    *x ^= 0x5a;
                }
                std::fs::write(&f, b).unwrap();
                (d.into(), vec![], f, "gzip")
            },
        },
        Case {
            name: "idx.gz decompression bomb",
            build: |d| {
                write_idx_dir(d, 5, 5, true);
                let f = d.join("t10k-images-idx3-ubyte.gz");
                let mut raw = ddr_fast::data::idx::encode(0x803, &[5, 28, 28], &[0; 5 * 784]);
                raw.extend(vec![0u8; 64 << 20]); // 64 MB of zeros past what the header allows
                std::fs::write(&f, gz(&raw)).unwrap();
                (d.into(), vec![], f, "decompresses past")
            },
        },
        Case {
            name: "idx.gz not gzip",
            build: |d| {
                write_idx_dir(d, 5, 5, true);
                let f = d.join("train-labels-idx1-ubyte.gz");
                std::fs::write(&f, b"plain text, not gzip").unwrap();
                (d.into(), vec![], f, "not a gzip file")
            },
        },
        Case {
            name: "safetensors truncated",
            build: |d| {
                let p = images_st(d, vec![10, 3, 32, 32], &ramp(30720));
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() - 100]).unwrap();
                (p.clone(), vec![], p, "invalid safetensors")
            },
        },
        Case {
            name: "safetensors huge header length",
            build: |d| {
                let p = d.join("h.safetensors");
                let mut b = (1u64 << 60).to_le_bytes().to_vec();
                b.extend(b"{}");
                std::fs::write(&p, b).unwrap();
                (p.clone(), vec![], p, "invalid safetensors")
            },
        },
        Case {
            name: "safetensors offsets past the end",
            build: |d| {
                let p = raw_st(
                    d,
                    r#"{"images":{"dtype":"F32","shape":[1,3,32,32],"data_offsets":[0,999999999]}}"#,
                    &[0u8; 12288],
                );
                (p.clone(), vec![], p, "invalid safetensors")
            },
        },
        Case {
            name: "safetensors shape product overflows",
            build: |d| {
                let p = raw_st(
                    d,
                    r#"{"images":{"dtype":"F32","shape":[4294967296,4294967296,4,4],"data_offsets":[0,16]}}"#,
                    &[0u8; 16],
                );
                (p.clone(), vec![], p, "invalid safetensors")
            },
        },
        Case {
            name: "safetensors NaN image",
            build: |d| {
                let mut v = ramp(30720);
                v[4321] = f32::NAN;
                let p = images_st(d, vec![10, 3, 32, 32], &v);
                (p.clone(), vec![], p, "non-finite")
            },
        },
        Case {
            name: "safetensors Inf soft label",
            build: |d| {
                let p = d.join("s.safetensors");
                let mut soft = vec![0.5f32; 100];
                soft[7] = f32::INFINITY;
                write_st(
                    &p,
                    &[
                        (
                            "images",
                            Dtype::F32,
                            vec![10, 3, 32, 32],
                            f32_bytes(&ramp(30720)),
                        ),
                        ("soft_labels", Dtype::F32, vec![10, 10], f32_bytes(&soft)),
                    ],
                    &[],
                );
                (p.clone(), vec![], p, "non-finite")
            },
        },
        Case {
            name: "safetensors integer images",
            build: |d| {
                let p = d.join("s.safetensors");
                write_st(
                    &p,
                    &[(
                        "images",
                        Dtype::I64,
                        vec![10, 3, 32, 32],
                        i64_bytes(&vec![1; 30720]),
                    )],
                    &[],
                );
                (p.clone(), vec![], p, "dtype int64")
            },
        },
        Case {
            name: "safetensors images rank 3",
            build: |d| {
                let p = images_st(d, vec![30, 32, 32], &ramp(30720));
                (p.clone(), vec![], p, "[N, C, H, W]")
            },
        },
        Case {
            name: "safetensors wrong channels for dataset",
            build: |d| {
                let p = images_st(d, vec![10, 3, 28, 28], &ramp(10 * 3 * 784));
                (p.clone(), vec!["--dataset", "fashion-mnist"], p, "3x28x28")
            },
        },
        Case {
            name: "safetensors N not IPC × classes",
            build: |d| {
                let p = images_st(d, vec![10, 3, 32, 32], &ramp(30720));
                (p.clone(), vec!["--ipc", "2"], p, "IPC 2")
            },
        },
        Case {
            name: "safetensors label out of range",
            build: |d| {
                let p = d.join("s.safetensors");
                let labels: Vec<i64> = (0..10).map(|i| if i == 4 { -1 } else { i }).collect();
                write_st(
                    &p,
                    &[
                        (
                            "images",
                            Dtype::F32,
                            vec![10, 3, 32, 32],
                            f32_bytes(&ramp(30720)),
                        ),
                        ("labels", Dtype::I64, vec![10], i64_bytes(&labels)),
                    ],
                    &[],
                );
                (p.clone(), vec![], p, "out of range")
            },
        },
        Case {
            name: "safetensors float labels",
            build: |d| {
                let p = d.join("s.safetensors");
                write_st(
                    &p,
                    &[
                        (
                            "images",
                            Dtype::F32,
                            vec![10, 3, 32, 32],
                            f32_bytes(&ramp(30720)),
                        ),
                        ("labels", Dtype::F32, vec![10], f32_bytes(&[0.0; 10])),
                    ],
                    &[],
                );
                (p.clone(), vec![], p, "integer")
            },
        },
        Case {
            name: "safetensors labels missing a class",
            build: |d| {
                let p = d.join("s.safetensors");
                write_st(
                    &p,
                    &[
                        (
                            "images",
                            Dtype::F32,
                            vec![10, 3, 32, 32],
                            f32_bytes(&ramp(30720)),
                        ),
                        (
                            "labels",
                            Dtype::I64,
                            vec![10],
                            i64_bytes(&[0, 0, 2, 3, 4, 5, 6, 7, 8, 9]),
                        ),
                    ],
                    &[],
                );
                (p.clone(), vec![], p, "class 0 has 2")
            },
        },
        Case {
            name: "safetensors bad pixel_space metadata",
            build: |d| {
                let p = d.join("s.safetensors");
                write_st(
                    &p,
                    &[(
                        "images",
                        Dtype::F32,
                        vec![10, 3, 32, 32],
                        f32_bytes(&ramp(30720)),
                    )],
                    &[("pixel_space", "maybe")],
                );
                (p.clone(), vec![], p, "pixel_space")
            },
        },
        Case {
            name: "pt malicious os.system",
            build: |d| {
                let mut p = vec![0x80, 2];
                p.extend(pk::global("os", "system"));
                p.extend(pk::unicode("echo pwned"));
                p.extend([0x85, b'R', b'.']);
                let f = pt(d, p, &[]);
                (f.clone(), vec![], f, "refusing global `os.system`")
            },
        },
        Case {
            name: "pt malicious builtins.eval via STACK_GLOBAL",
            build: |d| {
                let mut p = vec![0x80, 4];
                p.extend([0x8c, 8]);
                p.extend(b"builtins");
                p.extend([0x8c, 4]);
                p.extend(b"eval");
                p.extend([0x93, b'.']);
                let f = pt(d, p, &[]);
                (f.clone(), vec![], f, "builtins.eval")
            },
        },
        Case {
            name: "pt not a zip",
            build: |d| {
                let f = d.join("x.pt");
                std::fs::write(&f, b"GIF89a not a torch file").unwrap();
                (f.clone(), vec![], f, "wrong magic")
            },
        },
        Case {
            name: "pt truncated zip",
            build: |d| {
                let f = pt(
                    d,
                    tensor_pickle("FloatStorage", 4, 0, &[4], &[1]),
                    &[("0", &[0u8; 16])],
                );
                let b = std::fs::read(&f).unwrap();
                std::fs::write(&f, &b[..b.len() / 2]).unwrap();
                (f.clone(), vec![], f, "corrupt zip")
            },
        },
        Case {
            name: "pt storage shorter than numel",
            build: |d| {
                let f = pt(
                    d,
                    tensor_pickle("FloatStorage", 100, 0, &[100], &[1]),
                    &[("0", &[0u8; 40])],
                );
                (f.clone(), vec![], f, "storage 0")
            },
        },
        Case {
            name: "pt view past end of storage",
            build: |d| {
                let f = pt(
                    d,
                    tensor_pickle("FloatStorage", 4, 2, &[4], &[1]),
                    &[("0", &[0u8; 16])],
                );
                (f.clone(), vec![], f, "past the end")
            },
        },
        Case {
            name: "pt lying numel (huge storage)",
            build: |d| {
                let f = pt(
                    d,
                    tensor_pickle("FloatStorage", i32::MAX, 0, &[4], &[1]),
                    &[("0", &[0u8; 16])],
                );
                (f.clone(), vec![], f, "storage 0")
            },
        },
        Case {
            name: "pt size product overflows",
            build: |d| {
                let f = pt(
                    d,
                    tensor_pickle(
                        "FloatStorage",
                        4,
                        0,
                        &[i32::MAX, i32::MAX, i32::MAX],
                        &[1, 1, 1],
                    ),
                    &[("0", &[0u8; 16])],
                );
                (f.clone(), vec![], f, "overflow")
            },
        },
        Case {
            name: "pt pickle without STOP",
            build: |d| {
                let mut p = tensor_pickle("FloatStorage", 4, 0, &[4], &[1]);
                p.pop();
                let f = pt(d, p, &[("0", &[0u8; 16])]);
                (f.clone(), vec![], f, "truncated")
            },
        },
        Case {
            name: "pt string length past the end",
            build: |d| {
                let mut p = vec![0x80, 2, b'X'];
                p.extend(u32::MAX.to_le_bytes());
                p.extend(b"abc.");
                let f = pt(d, p, &[]);
                (f.clone(), vec![], f, "truncated")
            },
        },
        Case {
            name: "pt unsupported opcode",
            build: |d| {
                let f = pt(d, vec![0x80, 2, b'i', b'.'], &[]);
                (f.clone(), vec![], f, "not supported")
            },
        },
        Case {
            name: "pt nesting bomb",
            build: |d| {
                let mut p = vec![0x80, 2, b')'];
                p.extend(std::iter::repeat_n(0x85u8, 200_000)); // 200k nested 1-tuples
                p.push(b'.');
                let f = pt(d, p, &[]);
                (f.clone(), vec![], f, "nests deeper")
            },
        },
        Case {
            name: "pt shared-reference expansion bomb",
            build: |d| {
                let mut p = vec![0x80, 2, b')'];
                for _ in 0..60 {
                    p.extend([b'2', 0x86]); // DUP, TUPLE2: 2^60 leaves when unfolded
                }
                p.push(b'.');
                let f = pt(d, p, &[]);
                (f.clone(), vec![], f, "expands to more than")
            },
        },
        Case {
            name: "pt big-endian byteorder",
            build: |d| {
                let f = d.join("be.pt");
                common::write_zip(
                    &f,
                    &[
                        (
                            "a/data.pkl",
                            &tensor_pickle("FloatStorage", 4, 0, &[4], &[1]),
                        ),
                        ("a/byteorder", b"big"),
                        ("a/data/0", &[0u8; 16]),
                    ],
                );
                (f.clone(), vec![], f, "little-endian")
            },
        },
        Case {
            name: "pth state_dict with NaN weight",
            build: |d| {
                let mut p = vec![0x80, 2];
                p.extend(pk::global("collections", "OrderedDict"));
                p.extend([b')', b'R']);
                p.extend(pk::unicode("features.0.weight"));
                p.extend(pk::tensor("FloatStorage", "0", 2, 0, &[2], &[1]));
                p.extend([b's', b'.']);
                let f = d.join("t.pth");
                write_pt(&f, &p, &[("0", &f32_bytes(&[1.0, f32::NAN]))]);
                (f.clone(), vec![], f, "non-finite")
            },
        },
        Case {
            name: "png corrupt bytes",
            build: |d| {
                let root = folder_tree(d);
                let f = root.join("train/a/0.png");
                std::fs::write(&f, b"\x89PNG\r\n\x1a\n garbage garbage garbage").unwrap();
                (root, vec![], f, "cannot decode")
            },
        },
        Case {
            name: "png decompression bomb header",
            build: |d| {
                let root = folder_tree(d);
                let f = root.join("val/b/0.png");
                png_claiming(&f, 100_000, 100_000);
                (root, vec![], f, "limit")
            },
        },
        Case {
            name: "jpeg truncated",
            build: |d| {
                let root = folder_tree(d);
                let f = root.join("train/b/1.jpg");
                let img = image::RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9]));
                img.save(&f).unwrap();
                let b = std::fs::read(&f).unwrap();
                std::fs::write(&f, &b[..b.len() / 3]).unwrap();
                (root, vec![], f, "cannot decode")
            },
        },
        Case {
            name: "image sizes differ",
            build: |d| {
                let root = folder_tree(d);
                let f = root.join("train/b/0.png");
                write_png(&f, 9, 8, [1, 2, 3]);
                (root, vec![], f, "3x8x9")
            },
        },
        Case {
            name: "empty class folder",
            build: |d| {
                let root = folder_tree(d);
                let c = root.join("train/c");
                std::fs::create_dir(&c).unwrap();
                (root, vec![], c, "empty")
            },
        },
        Case {
            name: "empty folder",
            build: |d| {
                let e = d.join("nothing");
                std::fs::create_dir(&e).unwrap();
                (e.clone(), vec![], e, "empty")
            },
        },
        Case {
            name: "symlink loop as input",
            build: |d| {
                let a = d.join("a");
                std::os::unix::fs::symlink(d.join("b"), &a).unwrap();
                std::os::unix::fs::symlink(&a, d.join("b")).unwrap();
                (a.clone(), vec![], a, "symbolic links")
            },
        },
        Case {
            name: "symlink loop as class folder",
            build: |d| {
                let root = folder_tree(d);
                let l = root.join("train/loop");
                std::os::unix::fs::symlink(&l, &l).unwrap();
                (root, vec![], l, "symbolic links")
            },
        },
        Case {
            name: "tinyimagenet annotation names unknown class",
            build: |d| {
                let t = d.join("tiny");
                std::fs::create_dir_all(t.join("train/n01/images")).unwrap();
                std::fs::create_dir_all(t.join("val/images")).unwrap();
                std::fs::write(t.join("wnids.txt"), "n01\n").unwrap();
                write_png(&t.join("train/n01/images/x.png"), 8, 8, [0, 0, 0]);
                write_png(&t.join("val/images/v.png"), 8, 8, [0, 0, 0]);
                let a = t.join("val/val_annotations.txt");
                std::fs::write(&a, "v.png\tn99\t0\t0\t8\t8\n").unwrap();
                (t, vec![], a, "n99")
            },
        },
        Case {
            name: "unknown file kind",
            build: |d| {
                let f = d.join("notes.txt");
                std::fs::write(&f, b"hello").unwrap();
                (f.clone(), vec![], f, "unknown kind")
            },
        },
        Case {
            name: "missing path",
            build: |d| {
                let f = d.join("does-not-exist.safetensors");
                (f.clone(), vec![], f, "No such file")
            },
        },
        Case {
            name: "folder with no known layout",
            build: |d| {
                let f = d.join("junk");
                std::fs::create_dir(&f).unwrap();
                std::fs::write(f.join("readme.md"), b"x").unwrap();
                (f.clone(), vec![], f, "no known dataset layout")
            },
        },
    ]
}

#[test]
fn every_broken_input_gives_one_clear_error() {
    let cases = cases();
    assert!(
        cases.len() >= 30,
        "the issue asks for at least 30 kinds, have {}",
        cases.len()
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("case{i:02}"));
        std::fs::create_dir(&dir).unwrap();
        let (input, extra, named, keyword) = (case.build)(&dir);
        let out = Command::new(env!("CARGO_BIN_EXE_ddr-fast"))
            .args(["data", "info"])
            .arg(&input)
            .args(&extra)
            .output()
            .expect("run ddr-fast");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        let named = named.display().to_string();
        let problem = if out.status.success() {
            Some("exited 0".to_string())
        } else if code == Some(101) || code.is_none() {
            Some(format!("panicked or was killed (code {code:?})"))
        } else if errors.len() != 1 {
            Some(format!("{} error lines", errors.len()))
        } else if !errors[0].contains(&named) {
            Some(format!("message does not name {named}"))
        } else if !errors[0].contains(keyword) {
            Some(format!("message lacks {keyword:?}"))
        } else {
            None
        };
        eprintln!("[{}] code {code:?}: {}", case.name, stderr.trim());
        if let Some(p) = problem {
            failures.push(format!(
                "[{}] {p}\n    stderr: {}",
                case.name,
                stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
