//! Row gather: dst[m, :] = src[idx[m], :]. Builds S students' batches (S, B, C, H, W) from a
//! dataset resident on the device (N, C·H·W) with one index list (S·B).
//! Scale-add: y[y_at..] = a·x[x_at..] + b·y[y_at..] over a span, for the teachers' mean logits.

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

    #[test]
    fn scale_add_spans_offsets_and_drops_unread_terms() {
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let mut y = [10.0f32, 20.0, f32::NAN, f32::NAN];
        super::cpu::scale_add(2, 1.0, Some((&x, 1)), 1.0, &mut y, 0).unwrap();
        assert_eq!(y[..2], [12.0, 23.0]);
        // b = 0: the NaNs in y are never read.
        super::cpu::scale_add(2, 0.5, Some((&x, 0)), 0.0, &mut y, 2).unwrap();
        assert_eq!(y, [12.0, 23.0, 0.5, 1.0]);
        super::cpu::scale_add(4, 0.0, None, 2.0, &mut y, 0).unwrap();
        assert_eq!(y, [24.0, 46.0, 1.0, 2.0]);
        assert!(super::cpu::scale_add(3, 1.0, None, 1.0, &mut y, 2).is_err());
        assert!(super::cpu::scale_add(2, 1.0, Some((&x, 3)), 1.0, &mut y, 0).is_err());
    }
}
