//! Random subsets: class-balanced, without replacement, reproducible from (seed, run) alone,
//! and uniform over each class's images.

use ddr_fast::data::random_subset;

/// 5 classes × 20 images, interleaved so class membership is not contiguous.
fn labels() -> Vec<u32> {
    (0..100).map(|i| (i % 5) as u32).collect()
}

#[test]
fn balanced_class_major_without_repeats() {
    let labels = labels();
    let idx = random_subset(&labels, 5, 7, 42, 0).unwrap();
    assert_eq!(idx.len(), 35);
    for (k, &i) in idx.iter().enumerate() {
        assert_eq!(
            labels[i] as usize,
            k / 7,
            "position {k}: index {i} has class {}",
            labels[i]
        );
    }
    let mut sorted = idx.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), idx.len(), "repeated index in {idx:?}");
    // ipc = the whole class: every image exactly once
    let all = random_subset(&labels, 5, 20, 1, 1).unwrap();
    let mut s = all.clone();
    s.sort();
    assert_eq!(s, (0..100).collect::<Vec<_>>());
}

#[test]
fn reproducible_from_seed_and_run_only() {
    let labels = labels();
    let a = random_subset(&labels, 5, 4, 7, 3).unwrap();
    // other draws in between must not matter (no hidden state)
    let _ = random_subset(&labels, 5, 4, 7, 0).unwrap();
    let _ = random_subset(&labels, 5, 9, 8, 3).unwrap();
    let b = random_subset(&labels, 5, 4, 7, 3).unwrap();
    assert_eq!(a, b);
    assert_ne!(
        a,
        random_subset(&labels, 5, 4, 7, 4).unwrap(),
        "runs must differ"
    );
    assert_ne!(
        a,
        random_subset(&labels, 5, 4, 8, 3).unwrap(),
        "seeds must differ"
    );
}

/// Each image of a class is picked with probability ipc / class size = 4/20. Over RUNS draws the
/// count per image is Binomial(RUNS, 0.2): mean 400, std √(2000·0.2·0.8) ≈ 17.9; 5 std bounds it.
const RUNS: u64 = 2000;
const COUNT_ATOL: f64 = 5.0 * 17.9;

#[test]
fn uniform_within_each_class() {
    let labels = labels();
    let mut counts = [0f64; 100];
    for run in 0..RUNS {
        for i in random_subset(&labels, 5, 4, 11, run).unwrap() {
            counts[i] += 1.0;
        }
    }
    let want = RUNS as f64 * 4.0 / 20.0;
    let (worst, c) = counts
        .iter()
        .enumerate()
        .max_by(|a, b| (a.1 - want).abs().total_cmp(&(b.1 - want).abs()))
        .unwrap();
    assert!(
        (c - want).abs() <= COUNT_ATOL,
        "index {worst} picked {c} times, expected {want} ± {COUNT_ATOL}"
    );
}

#[test]
fn too_few_images_or_bad_labels_are_errors() {
    let labels = labels();
    let err = random_subset(&labels, 5, 21, 0, 0).unwrap_err().to_string();
    assert!(err.contains("fewer than IPC 21"), "{err}");
    let err = random_subset(&[0, 1, 9], 3, 1, 0, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("out of range"), "{err}");
}
