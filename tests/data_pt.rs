//! PyTorch `.pt` files read natively: every fixture in shared/fixtures/pt equals expected.safetensors
//! (keys per its README), and pickles naming globals outside the torch allow-list are refused.

mod common;

use ddr_fast::data::safetensors_io::load_safetensors;
use ddr_fast::data::torch::{load_pt, PtValue, Tensor};

use common::{assert_close, pk, shared, write_pt};

/// The fixtures and expected.safetensors hold the same bits (f16/bf16 widened to f32 exactly),
/// so the comparison is exact.
const EXACT: f32 = 0.0;

fn expect(dir: &std::path::Path, key: &str) -> Tensor {
    let e = load_safetensors(&dir.join("expected.safetensors")).expect("expected.safetensors");
    e.get(key)
        .unwrap_or_else(|| panic!("expected.safetensors has no {key}"))
        .clone()
}

fn as_tensor<'a>(v: &'a PtValue, what: &str) -> &'a Tensor {
    match v {
        PtValue::Tensor(t) => t,
        other => panic!("{what}: expected a tensor, found {}", other.describe()),
    }
}

fn check(dir: &std::path::Path, file: &str, key: &str) {
    let v = load_pt(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let got = as_tensor(&v, file);
    let want = expect(dir, key);
    let want_shape = if key == "lr" {
        vec![]
    } else {
        want.shape.clone()
    };
    assert_eq!(got.shape, want_shape, "{file} shape");
    assert_close(file, &got.to_f32(), &want.to_f32(), EXACT, EXACT);
}

#[test]
fn single_tensor_fixtures_match_expected() {
    let Some(dir) = shared("fixtures/pt") else {
        return;
    };
    for (file, key) in [
        ("images.pt", "images"),
        ("labels.pt", "labels"),
        ("soft_labels.pt", "soft_labels"),
        ("lr.pt", "lr"),
        ("images_f16.pt", "images_f16"),
        ("images_bf16.pt", "images_bf16"),
        ("images_strided.pt", "images_strided"),
    ] {
        check(&dir, file, key);
    }
    // dtypes as written by torch
    let l = load_pt(&dir.join("labels.pt")).unwrap();
    assert_eq!(as_tensor(&l, "labels").dtype.name(), "int64");
    let h = load_pt(&dir.join("images_bf16.pt")).unwrap();
    assert_eq!(as_tensor(&h, "bf16").dtype.name(), "bfloat16");
}

#[test]
fn bundle_dict_of_views_and_python_float() {
    let Some(dir) = shared("fixtures/pt") else {
        return;
    };
    let v = load_pt(&dir.join("bundle.pt")).unwrap();
    let images = as_tensor(v.get("images").expect("images key"), "bundle images");
    let labels = as_tensor(v.get("labels").expect("labels key"), "bundle labels");
    let all_images = expect(&dir, "images").to_f32();
    let all_labels = expect(&dir, "labels").to_f32();
    assert_eq!(images.shape, vec![4, 3, 32, 32]);
    assert_close(
        "bundle images",
        &images.to_f32(),
        &all_images[..4 * 3072],
        EXACT,
        EXACT,
    );
    assert_close(
        "bundle labels",
        &labels.to_f32(),
        &all_labels[..4],
        EXACT,
        EXACT,
    );
    assert_eq!(v.get("lr"), Some(&PtValue::Float(0.05)));
}

#[test]
fn teacher_state_dict_matches_expected() {
    let Some(dir) = shared("fixtures/pt") else {
        return;
    };
    let v = load_pt(&dir.join("teacher_convnet3_w16.pth")).unwrap();
    let PtValue::Dict(entries) = &v else {
        panic!("state_dict is not a dict: {}", v.describe())
    };
    let names: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    let mut want_names = vec![];
    for i in [0, 1, 4, 5, 8, 9] {
        want_names.push(format!("features.{i}.weight"));
        want_names.push(format!("features.{i}.bias"));
    }
    want_names.push("classifier.weight".into());
    want_names.push("classifier.bias".into());
    for n in &want_names {
        assert!(
            names.contains(&n.as_str()),
            "state_dict lacks {n}; has {names:?}"
        );
        let got = as_tensor(v.get(n).unwrap(), n);
        let want = expect(&dir, &format!("teacher.{n}"));
        assert_eq!(got.shape, want.shape, "{n} shape");
        assert_close(n, &got.to_f32(), &want.to_f32(), EXACT, EXACT);
    }
}

/// A pickle that would run `os.system("echo pwned")` if executed.
#[test]
fn malicious_globals_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (module, name) in [
        ("os", "system"),
        ("builtins", "eval"),
        ("posix", "system"),
        ("torch", "load"),
    ] {
        let mut p = vec![0x80, 2];
        p.extend(pk::global(module, name));
        p.extend(pk::unicode("echo pwned"));
        p.extend([0x85, b'R', b'.']);
        let path = tmp.path().join(format!("{module}_{name}.pt"));
        write_pt(&path, &p, &[]);
        let err = load_pt(&path).expect_err("must refuse").to_string();
        assert!(
            err.contains(&format!("{module}.{name}")),
            "error does not name the global: {err}"
        );
        assert!(
            err.contains(path.to_str().unwrap()),
            "error does not name the file: {err}"
        );
    }
}

/// Hand-built views: a transposed 2x3 int64 view and an out-of-bounds view.
#[test]
fn strided_views_and_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let storage: Vec<u8> = (0i64..6).flat_map(|x| x.to_le_bytes()).collect();
    let mut p = vec![0x80, 2];
    p.extend(pk::tensor("LongStorage", "0", 6, 0, &[3, 2], &[1, 3])); // transpose of [[0,1,2],[3,4,5]]
    p.push(b'.');
    let path = tmp.path().join("t.pt");
    write_pt(&path, &p, &[("0", &storage)]);
    let v = load_pt(&path).unwrap();
    assert_eq!(
        as_tensor(&v, "t").to_f32(),
        vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    );

    let mut p = vec![0x80, 2];
    p.extend(pk::tensor("LongStorage", "0", 6, 4, &[3], &[1])); // elements 4,5,6: past the end
    p.push(b'.');
    write_pt(&path, &p, &[("0", &storage)]);
    let err = load_pt(&path).expect_err("out of bounds").to_string();
    assert!(err.contains("past the end"), "{err}");
}
