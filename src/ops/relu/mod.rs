//! ReLU over any buffer: y = max(x, 0); backward dx = dy where y > 0, else 0 (PyTorch's choice of
//! 0 as the subgradient at x = 0). Shapes: x, y, dy, dx all (S, B, …) of the same length.

pub mod cpu;

#[cfg(test)]
mod tests {
    use super::cpu;

    #[test]
    fn forward_and_backward_follow_the_sign() {
        let x = [-1.0, 0.0, 2.0, -0.5, 3.0];
        let mut y = [9.0; 5];
        cpu::forward(&x, &mut y).unwrap();
        assert_eq!(y, [0.0, 0.0, 2.0, 0.0, 3.0]);
        let mut dx = [9.0; 5];
        cpu::backward(&y, &[1.0, 2.0, 3.0, 4.0, 5.0], &mut dx).unwrap();
        assert_eq!(dx, [0.0, 0.0, 3.0, 0.0, 5.0]);
        assert!(cpu::forward(&x, &mut [0.0; 4]).is_err());
    }
}
