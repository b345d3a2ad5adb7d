//! Training: optimizers and schedules over the flat (S, P) buffer, and the cohort of S students
//! trained in lock-step (`Cohort::train_step`). The epoch loop and planner build on these.

pub mod cohort;
pub mod memory;
pub mod optim;
pub mod schedule;
pub mod step_graph;
pub mod trainer;
pub mod trainer_data;
pub mod trainer_device;

pub use cohort::Cohort;
pub use optim::OptimState;
pub use schedule::Schedule;
