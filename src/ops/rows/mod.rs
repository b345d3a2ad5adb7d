//! Row gather: dst[m, :] = src[idx[m], :]. Builds S students' batches (S, B, C, H, W) from a
//! dataset resident on the device (N, C·H·W) with one index list (S·B).

pub mod cpu;

#[cfg(test)]
mod tests {
    #[test]
    fn gathers_rows_in_index_order_and_rejects_out_of_range() {
        let src = [0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0]; // (3, 2)
        let mut dst = [0f32; 6];
        super::cpu::gather_rows(&src, 2, &[2, 0, 2], &mut dst).unwrap();
        assert_eq!(dst, [20.0, 21.0, 0.0, 1.0, 20.0, 21.0]);
        assert!(super::cpu::gather_rows(&src, 2, &[3, 0, 0], &mut dst).is_err());
    }
}
