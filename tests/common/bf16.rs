//! bf16 activations on the host, as the eval kernels store them (contracts.md, "Interface between
//! act16 and plane16"): n values in ⌈n/2⌉ f32 slots, value i the bf16 at byte 2·i (value 2j in
//! the low half of slot j), rounded to nearest even (`round_bf16`).

use ddr_fast::ops::precision::round_bf16;

/// The upper 16 bits of v rounded to bf16 (a NaN stays a quiet NaN).
fn bits(v: f32) -> u32 {
    if v.is_nan() {
        0x7fc0
    } else {
        round_bf16(v).to_bits() >> 16
    }
}

/// n values → ⌈n/2⌉ slots of their bf16 roundings (an odd n leaves the last high half 0).
pub fn pack_bf16(v: &[f32]) -> Vec<f32> {
    v.chunks(2)
        .map(|p| f32::from_bits(bits(p[0]) | p.get(1).map_or(0, |&h| bits(h)) << 16))
        .collect()
}

/// The first n values of ⌈n/2⌉ packed slots, as f32 (exact: every bf16 is an f32).
pub fn unpack_bf16(slots: &[f32], n: usize) -> Vec<f32> {
    assert_eq!(
        slots.len(),
        n.div_ceil(2),
        "{n} bf16 values take ⌈n/2⌉ slots"
    );
    (0..n)
        .map(|i| {
            let u = slots[i / 2].to_bits();
            let half = if i % 2 == 0 { u & 0xffff } else { u >> 16 };
            f32::from_bits(half << 16)
        })
        .collect()
}
