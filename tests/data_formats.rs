//! Real-dataset layouts generated in a temp dir: CIFAR-10 binary and python, CIFAR-100 binary
//! (fine labels), IDX raw and .gz, ImageFolder and TinyImageNet; each read back exactly.

mod common;

use ddr_fast::data::load_real;

use common::{
    cifar_py3_pickle, cifar_py_pickle, cifar_records, write_cifar10_bin, write_idx_dir, write_png,
};

/// Pixel k of CIFAR record i as written by the builders, in [0,1].
fn px(i: usize, k: usize) -> f32 {
    ((i + k) % 256) as f32 / 255.0
}

#[test]
fn cifar10_binary_small() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar10_bin(tmp.path(), 12);
    let r = load_real(tmp.path()).unwrap();
    assert_eq!(
        (r.name.as_str(), r.format.as_str()),
        ("cifar10", "cifar10-binary")
    );
    assert_eq!((r.train.len(), r.test.len()), (60, 12));
    assert_eq!(r.train.labels[13], 1); // second file, record 1: label 1 % 10
    assert_eq!(r.train.image(13)[5], px(1, 5));
}

#[test]
fn cifar100_binary_uses_fine_label() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("train.bin"), cifar_records(150, 2, 100)).unwrap();
    std::fs::write(tmp.path().join("test.bin"), cifar_records(7, 2, 100)).unwrap();
    let r = load_real(tmp.path()).unwrap();
    assert_eq!(r.name, "cifar100");
    assert_eq!(r.train.classes, 100);
    assert_eq!(r.train.labels[123], 23); // fine = i % 100, coarse = i % 20 would be 3
    assert_eq!(r.train.image(2)[0], px(2, 0));
}

/// A CIFAR-10 batch re-saved by Python 3 with protocol 2 reads exactly like the original (its
/// bytes go through the allow-listed `_codecs.encode`); any other encoding is refused.
#[test]
fn cifar10_python3_protocol2_pickles() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("cifar-10-batches-py");
    std::fs::create_dir(&d).unwrap();
    let n = 3;
    // Every byte value, including the ones UTF-8 encodes in two bytes (≥ 0x80).
    let data: Vec<u8> = (0..n * 3072).map(|k| (k * 37 % 256) as u8).collect();
    for name in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ] {
        std::fs::write(
            d.join(name),
            cifar_py3_pickle(&data, n, &[2, 5, 8], "labels"),
        )
        .unwrap();
    }
    std::fs::write(d.join("batches.meta"), b"unused").unwrap();
    let r = load_real(tmp.path()).unwrap();
    assert_eq!(r.format, "cifar10-python");
    assert_eq!((r.train.len(), r.test.len()), (15, 3));
    assert_eq!(r.test.labels, vec![2, 5, 8]);
    let want: Vec<f32> = data.iter().map(|&b| b as f32 / 255.0).collect();
    assert_eq!(r.test.images, want);

    let bad = cifar_py3_pickle(&data, n, &[2, 5, 8], "labels");
    let pos = bad
        .windows(10)
        .position(|w| w == b"\x06\0\0\0latin1")
        .unwrap();
    let mut bad = bad;
    bad[pos + 4..pos + 10].copy_from_slice(b"utf_16");
    std::fs::write(d.join("test_batch"), bad).unwrap();
    let e = load_real(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("latin1") && e.contains("test_batch"), "{e}");
}

#[test]
fn cifar10_python_pickles() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("cifar-10-batches-py");
    std::fs::create_dir(&d).unwrap();
    let n = 4;
    let data: Vec<u8> = (0..n * 3072)
        .map(|k| ((k / 3072 + k % 3072) % 256) as u8)
        .collect();
    for name in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ] {
        std::fs::write(
            d.join(name),
            cifar_py_pickle(&data, n, &[9, 0, 7, 3], "labels"),
        )
        .unwrap();
    }
    std::fs::write(d.join("batches.meta"), b"unused").unwrap();
    let r = load_real(tmp.path()).unwrap();
    assert_eq!(
        (r.name.as_str(), r.format.as_str()),
        ("cifar10", "cifar10-python")
    );
    assert_eq!(r.train.len(), 20);
    assert_eq!(&r.train.labels[..5], &[9, 0, 7, 3, 9]);
    assert_eq!(r.train.image(2)[100], px(2, 100));
}

#[test]
fn idx_raw_and_gz() {
    for gzip in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("FashionMNIST/raw");
        write_idx_dir(&d, 30, 10, gzip);
        let r = load_real(tmp.path()).unwrap();
        assert_eq!(r.name, "fashion-mnist");
        assert_eq!(r.format, if gzip { "idx.gz" } else { "idx" });
        assert_eq!(
            (
                r.train.len(),
                r.test.len(),
                r.train.channels,
                r.train.height
            ),
            (30, 10, 1, 28)
        );
        assert_eq!(r.train.labels[17], 7);
        assert_eq!(r.train.image(3)[10], 13.0 / 255.0); // pixel (i + k) mod 256 with i = 3, k = 10
        assert_eq!(r.norm.mean, vec![0.2861]);
    }
}

#[test]
fn image_folder_and_tinyimagenet() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("folders");
    for split in ["train", "val"] {
        for (c, cls) in ["cat", "dog"].iter().enumerate() {
            let d = root.join(split).join(cls);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..2 {
                write_png(&d.join(format!("{i}.png")), 8, 8, [10 * c as u8, 20, 30]);
            }
        }
    }
    let r = load_real(&root).unwrap();
    assert_eq!(
        (
            r.name.as_str(),
            r.train.len(),
            r.test.len(),
            r.train.channels
        ),
        ("imagefolder", 4, 4, 3)
    );
    assert_eq!(r.train.class_names, vec!["cat", "dog"]);
    assert_eq!(r.train.labels, vec![0, 0, 1, 1]);

    // TinyImageNet: val/ images in one folder, classes from val_annotations.txt
    let t = tmp.path().join("tiny-imagenet-200");
    std::fs::create_dir_all(t.join("val/images")).unwrap();
    std::fs::write(t.join("wnids.txt"), "n02\nn01\n").unwrap();
    for w in ["n01", "n02"] {
        let d = t.join("train").join(w).join("images");
        std::fs::create_dir_all(&d).unwrap();
        write_png(&d.join(format!("{w}_0.JPEG.png")), 8, 8, [1, 2, 3]);
    }
    write_png(&t.join("val/images/val_0.png"), 8, 8, [255, 0, 0]);
    write_png(&t.join("val/images/val_1.png"), 8, 8, [0, 255, 0]);
    std::fs::write(
        t.join("val/val_annotations.txt"),
        "val_0.png\tn02\t0\t0\t8\t8\nval_1.png\tn01\t0\t0\t8\t8\n",
    )
    .unwrap();
    let r = load_real(tmp.path().join("tiny-imagenet-200").as_path()).unwrap();
    assert_eq!(r.name, "tinyimagenet");
    assert_eq!(r.train.class_names, vec!["n01", "n02"]);
    assert_eq!(r.test.labels, vec![1, 0]);
    assert_eq!(r.test.image(0)[0], 1.0); // red channel of the n02 image
}

#[test]
fn imagenet_subset_by_class_list() {
    let tmp = tempfile::tempdir().unwrap();
    for split in ["train", "val"] {
        for cls in ["n01", "n02", "n03"] {
            let d = tmp.path().join(split).join(cls);
            std::fs::create_dir_all(&d).unwrap();
            write_png(&d.join("a.png"), 8, 8, [0, 0, 0]);
        }
    }
    let classes = vec!["n03".to_string(), "n01".to_string()];
    let r = ddr_fast::data::detect::load_imagenet_subset(tmp.path(), &classes).unwrap();
    assert_eq!(r.train.class_names, classes);
    assert_eq!((r.train.len(), r.test.len(), r.train.classes), (2, 2, 2));
    let err = ddr_fast::data::detect::load_imagenet_subset(tmp.path(), &["n09".to_string()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("n09") && err.contains("missing"), "{err}");
}

#[test]
fn cifar100_python_fine_labels_and_names() {
    let tmp = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..2 * 3072).map(|k| (k % 251) as u8).collect();
    std::fs::write(
        tmp.path().join("train"),
        cifar_py_pickle(&data, 2, &[99, 5], "fine_labels"),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("test"),
        cifar_py_pickle(&data, 2, &[0, 1], "fine_labels"),
    )
    .unwrap();
    // meta: {'fine_label_names': ['c0', ..., 'c99']} as py2 strings
    let mut meta = vec![0x80, 2, b'}', b'(', b'U', 16];
    meta.extend(b"fine_label_names");
    meta.extend([b']', b'(']);
    for c in 0..100 {
        let s = format!("c{c}");
        meta.extend([b'U', s.len() as u8]);
        meta.extend(s.as_bytes());
    }
    meta.extend([b'e', b'u', b'.']);
    std::fs::write(tmp.path().join("meta"), meta).unwrap();
    let r = load_real(tmp.path()).unwrap();
    assert_eq!(
        (r.name.as_str(), r.format.as_str()),
        ("cifar100", "cifar100-python")
    );
    assert_eq!(r.train.labels, vec![99, 5]);
    assert_eq!(r.train.class_names[99], "c99");
}

#[test]
fn load_named_picks_the_dataset_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar10_bin(&tmp.path().join("cifar-10-batches-bin"), 2);
    let c100 = tmp.path().join("cifar-100-binary");
    std::fs::create_dir(&c100).unwrap();
    std::fs::write(c100.join("train.bin"), cifar_records(3, 2, 100)).unwrap();
    std::fs::write(c100.join("test.bin"), cifar_records(1, 2, 100)).unwrap();
    write_idx_dir(&tmp.path().join("raw"), 2, 2, false);
    let dir = Some(tmp.path());
    assert_eq!(
        ddr_fast::data::load_named("cifar100", dir)
            .unwrap()
            .train
            .len(),
        3
    );
    assert_eq!(
        ddr_fast::data::load_named("cifar10", dir)
            .unwrap()
            .train
            .len(),
        10
    );
    let m = ddr_fast::data::load_named("mnist", dir).unwrap();
    assert_eq!((m.name.as_str(), m.norm.mean[0]), ("mnist", 0.1307));
    let err = ddr_fast::data::load_named("tinyimagenet", dir)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("asked for dataset tinyimagenet") && err.contains("cifar100"),
        "{err}"
    );
    assert_eq!(
        ddr_fast::data::load_named("fashion-mnist-embedded", None)
            .unwrap()
            .train
            .len(),
        2000
    );
}
