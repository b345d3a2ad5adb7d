//! The embedded Fashion-MNIST subset: class-balanced, class-major, and (when the Debian package is
//! installed) exactly the first 200 / 100 images of each class of the official files.

use std::path::Path;

use ddr_fast::data::embedded::fashion_mnist;
use ddr_fast::data::Dataset;

/// The published constants are rounded to 4 digits.
const FOUR_DIGITS: f64 = 5e-4;

#[test]
fn balanced_class_major_gray_28() {
    let r = fashion_mnist().unwrap();
    assert_eq!((r.train.len(), r.test.len()), (2000, 1000));
    assert_eq!(r.train.class_counts(), vec![200; 10]);
    assert_eq!(r.test.class_counts(), vec![100; 10]);
    assert_eq!(
        (r.train.channels, r.train.height, r.train.width),
        (1, 28, 28)
    );
    assert!(r
        .train
        .labels
        .iter()
        .enumerate()
        .all(|(i, &l)| l as usize == i / 200));
    assert_eq!(r.train.class_names[9], "Ankle boot");
    assert_eq!(r.norm.mean, vec![0.2861]);
}

/// First `per_class` images of each class of a full split, class-major.
fn first_per_class(full: &Dataset, per_class: usize) -> Dataset {
    let mut idx = Vec::new();
    for c in 0..10u32 {
        idx.extend(
            full.labels
                .iter()
                .enumerate()
                .filter(|(_, &l)| l == c)
                .map(|(i, _)| i)
                .take(per_class),
        );
    }
    full.select(&idx)
}

#[test]
fn equals_the_official_files_when_installed() {
    let src = Path::new("/usr/share/datasets/fashion-mnist");
    if !src.join("train-images-idx3-ubyte.gz").is_file() {
        eprintln!(
            "SKIPPED: {} not installed (apt-get install dataset-fashion-mnist)",
            src.display()
        );
        return;
    }
    let full = ddr_fast::data::load_real(Path::new("/usr/share/datasets/fashion-mnist")).unwrap();
    assert_eq!((full.train.len(), full.test.len()), (60_000, 10_000));
    // The Fashion-MNIST constants (mean .2861, std .3530, 4 digits) describe the full train split.
    let st = ddr_fast::data::channel_stats(&full.train.images, 1, 784);
    assert!(
        (st.mean[0] - 0.2861).abs() <= FOUR_DIGITS,
        "mean {}",
        st.mean[0]
    );
    assert!(
        (st.std[0] - 0.3530).abs() <= FOUR_DIGITS,
        "std {}",
        st.std[0]
    );
    let r = fashion_mnist().unwrap();
    assert_eq!(r.train, first_per_class(&full.train, 200));
    assert_eq!(r.test, first_per_class(&full.test, 100));
}
