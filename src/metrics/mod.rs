//! DD-Ranking scores: the training plan, accuracies, HLR / IOR / LRS and ARS.
//!
//! Flow: [`config`] (+ [`yaml`]) → [`plan`] (trainings and cohorts) → the cohort trainer →
//! [`scores`] per run → [`report`].

pub mod cache;
pub mod config;
pub mod coreset;
pub mod cost;
pub mod execute;
pub mod inputs;
pub mod models;
pub mod plan;
pub mod reduce;
pub mod report;
pub mod scores;
pub mod session;
pub mod settings;
pub mod shard;
pub mod watch;
pub mod yaml;
pub mod yaml_tv;
