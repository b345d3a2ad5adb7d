//! Teacher weights: a PyTorch ConvNet-3 state_dict loads with PyTorch's names, saves as safetensors
//! under the same names and reloads identically.

mod common;

use ddr_fast::data::safetensors_io::load_safetensors;
use ddr_fast::data::{load_teacher, save_teacher};

use common::{assert_close, shared};

/// Same bits in and out.
const EXACT: f32 = 0.0;

#[test]
fn pth_state_dict_round_trips_through_safetensors() {
    let Some(dir) = shared("fixtures/pt") else {
        return;
    };
    let w = load_teacher(&dir.join("teacher_convnet3_w16.pth")).unwrap();
    assert_eq!(w.tensors.len(), 14);
    let (shape, _) = w.get("features.0.weight").unwrap();
    assert_eq!(shape, &[16, 3, 3, 3]);
    let (shape, _) = w.get("classifier.weight").unwrap();
    assert_eq!(shape, &[10, 256]);
    let expected = load_safetensors(&dir.join("expected.safetensors")).unwrap();
    for (name, (shape, vals)) in &w.tensors {
        let want = expected.get(&format!("teacher.{name}")).unwrap();
        assert_eq!(shape, &want.shape, "{name}");
        assert_close(name, vals, &want.to_f32(), EXACT, EXACT);
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t.safetensors");
    save_teacher(&out, &w).unwrap();
    let back = load_teacher(&out).unwrap();
    assert_eq!(back, w);
    assert!(w
        .get("features.2.weight")
        .unwrap_err()
        .to_string()
        .contains("features.2.weight"));
}
