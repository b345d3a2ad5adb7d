//! Correct-prediction counts per student: the arg-max logit (the first one on ties, as
//! `torch.argmax`) compared with the label. Feeds the test-set accuracy of every student.
//! Shapes: logits (S, B, K), labels (S, B), correct (S), accumulated across calls.

pub mod cpu;

#[cfg(test)]
mod tests {
    #[test]
    fn ties_go_to_the_first_class_and_counts_accumulate() {
        let logits = [1.0f32, 1.0, 0.0, 2.0, 0.5, 0.1]; // (2, 1, 3)
        let mut correct = [5u32, 0];
        super::cpu::count_correct(2, 1, 3, &logits, &[0, 1], &mut correct).unwrap();
        assert_eq!(correct, [6, 0]);
    }
}
