//! The safe pickle reader on hand-written opcode streams: object identity through the memo,
//! integer encodings, and allow-lists that differ per file kind.

use std::path::Path;

use ddr_fast::data::pickle::{load, Allow, Obj, Value};

fn p(bytes: &[u8], allow: Allow) -> ddr_fast::Result<ddr_fast::data::pickle::Pickle> {
    load(Path::new("test.pkl"), bytes, allow)
}

#[test]
fn memo_keeps_object_identity() {
    // L = []; memo[0] = L; L.append(1); push memo[0]; STOP → the same list, now [1]
    let pk = p(b"\x80\x02]q\x00K\x01ah\x00.", Allow::Torch).unwrap();
    assert_eq!(pk.seq(pk.root).unwrap(), &[Value::Int(1)]);
}

#[test]
fn integer_encodings() {
    // (BININT1 255, BININT2 65535, BININT -2, LONG1 -1 (1 byte 0xff), LONG1 2^40)
    let mut b = b"\x80\x02(K\xffM\xff\xffJ\xfe\xff\xff\xff\x8a\x01\xff\x8a\x06".to_vec();
    b.extend(&(1u64 << 40).to_le_bytes()[..6]);
    b.extend(b"t.");
    let pk = p(&b, Allow::Torch).unwrap();
    assert_eq!(
        pk.seq(pk.root).unwrap(),
        &[
            Value::Int(255),
            Value::Int(65535),
            Value::Int(-2),
            Value::Int(-1),
            Value::Int(1 << 40)
        ]
    );
    let err = p(
        b"\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09.",
        Allow::Torch,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not fit in 64 bits"), "{err}");
}

#[test]
fn allow_lists_are_per_file_kind() {
    let torch_global = b"\x80\x02ctorch\nFloatStorage\n.";
    assert!(matches!(
        p(torch_global, Allow::Torch).map(|pk| pk.obj(pk.root).cloned()),
        Ok(Some(Obj::Global(_)))
    ));
    let err = p(torch_global, Allow::NumpyArrays).unwrap_err().to_string();
    assert!(err.contains("torch.FloatStorage"), "{err}");
    let np = b"\x80\x02cnumpy\ndtype\n.";
    let err = p(np, Allow::Torch).unwrap_err().to_string();
    assert!(err.contains("numpy.dtype"), "{err}");
    // torch.load itself is a global of the torch module but not an allowed one
    let err = p(b"\x80\x02ctorch\nload\n.", Allow::Torch)
        .unwrap_err()
        .to_string();
    assert!(err.contains("torch.load"), "{err}");
}

#[test]
fn structural_errors() {
    for (bytes, want) in [
        (&b"\x80\x02a."[..], "stack underflow"),
        (b"\x80\x02K\x01K\x02u.", "MARK"),
        (b"\x80\x02h\x05.", "memo key 5"),
        (b"\x80\x09.", "protocol 9"),
        (b"\x80\x02K\x01", "without STOP"),
    ] {
        let err = p(bytes, Allow::Torch).unwrap_err().to_string();
        assert!(
            err.contains(want) && err.contains("test.pkl"),
            "wanted {want:?}: {err}"
        );
    }
}
