//! Training: optimizers and schedules over the flat (S, P) buffer, and the cohort trainer.

pub mod trainer;
pub mod trainer_data;
