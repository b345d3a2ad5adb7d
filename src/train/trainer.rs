//! The epoch-level cohort trainer (DESIGN.md §3, §6): S students in lock-step, each with its own
//! data, targets, augmentation switch, learning rate and seed; one shared pass over the test set
//! tests them all. Written against `trait Backend` only, so it runs unchanged on every device.
//!
//! Per epoch: each student shuffles its own N images; batches of `batch_size` (the last partial one
//! kept; N and the batch size are shared, so every student has a batch of the same size) →
//! augment (students with the switch on) → [mode M: mean teacher logits on the augmented batch] →
//! forward → loss → backward → optimizer step; the scheduler steps once per epoch. A student whose
//! loss turns NaN/Inf is stopped: its later tests are skipped and the reason is returned.

use std::sync::Arc;

use super::cohort::Cohort;
use super::schedule::Schedule;
use crate::aug::{self, AugPlan, BatchDims, DrawKey};
use crate::backend::{Backend, LossKind, OptimizerCfg};
use crate::error::{Error, Result};
use crate::metrics::config::Scheduler;
use crate::model::ConvNet;

pub use super::trainer_data::{ImageSet, StudentKey};
pub use super::trainer_device::DeviceSet;
use super::trainer_device::{CohortData, StepFeed, TestFeed};

/// Images per test forward: the test set is cut into batches of this size, each replicated for the
/// S students (S × 500 × C × H × W floats stays below 100 MB at S = 16 on CIFAR).
pub const TEST_BATCH: usize = 500;

/// Settings shared by every student of a cohort.
#[derive(Clone, Debug)]
pub struct CohortSettings {
    pub net: ConvNet,
    pub epochs: usize,
    pub test_interval: usize,
    pub batch_size: usize,
    pub loss: LossKind,
    pub optimizer: OptimizerCfg,
    pub scheduler: Scheduler,
    pub step_size: usize,
    /// The augmentation of students whose switch is on.
    pub aug: AugPlan,
}

/// One student of a cohort.
#[derive(Clone, Copy, Debug)]
pub struct StudentSetup<'a> {
    pub data: &'a ImageSet,
    pub lr: f32,
    pub key: StudentKey,
    pub augment: bool,
    /// Targets are the teachers' mean logits on the augmented batch (soft-label mode M).
    pub teacher_targets: bool,
}

/// A trained teacher for mode-M targets: weights of one student row.
#[derive(Clone, Debug)]
pub struct Teacher {
    pub net: ConvNet,
    /// (P)
    pub params: Vec<f32>,
    /// (R) batch-norm running statistics (empty without batch norm).
    pub running: Vec<f32>,
}

/// What a student's training produced.
#[derive(Clone, Debug, PartialEq)]
pub struct StudentResult {
    /// Best test accuracy (fraction); 0 if it stopped before its first test.
    pub best: f64,
    /// Every test accuracy in order.
    pub tests: Vec<f64>,
    /// Mean training loss of each epoch run, in order (NaN-free: stops at divergence).
    pub train_loss: Vec<f64>,
    pub stopped: Option<String>,
}

/// Progress callback: (epochs done, epochs total).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// The engine's per-epoch schedule for a config's scheduler.
pub fn schedule(s: Scheduler, epochs: usize, step_size: usize) -> Result<Schedule> {
    let name = match s {
        Scheduler::Step => "step",
        Scheduler::Cosineannealing => "cosineannealing",
        Scheduler::Cosine => "cosine",
        Scheduler::None => "none",
    };
    Schedule::parse(name, epochs, step_size)
}

/// Train a cohort and test it every `test_interval` epochs and after the last epoch. Uploads the
/// test set for this cohort; an evaluation of many cohorts uploads it once ([`DeviceSet::upload`])
/// and calls [`train_cohort_on`].
pub fn train_cohort<B: Backend>(
    be: &Arc<B>,
    cs: &CohortSettings,
    students: &[StudentSetup<'_>],
    test: &ImageSet,
    teachers: &[Teacher],
    progress: Progress<'_>,
) -> Result<Vec<StudentResult>> {
    if students.is_empty() {
        return Ok(Vec::new());
    }
    let test = DeviceSet::upload(be, test, "test set")?;
    train_cohort_keep(be, cs, students, &test, teachers, progress).map(|(r, _)| r)
}

/// [`train_cohort`] on a test set already on the device (shared by every cohort of an evaluation).
pub fn train_cohort_on<B: Backend>(
    be: &Arc<B>,
    cs: &CohortSettings,
    students: &[StudentSetup<'_>],
    test: &DeviceSet<B>,
    teachers: &[Teacher],
    progress: Progress<'_>,
) -> Result<Vec<StudentResult>> {
    if students.is_empty() {
        return Ok(Vec::new());
    }
    train_cohort_keep(be, cs, students, test, teachers, progress).map(|(r, _)| r)
}

/// [`train_cohort_on`] that also hands back the trained cohort (its weights), for `train-teacher`.
pub fn train_cohort_keep<B: Backend>(
    be: &Arc<B>,
    cs: &CohortSettings,
    students: &[StudentSetup<'_>],
    test: &DeviceSet<B>,
    teachers: &[Teacher],
    progress: Progress<'_>,
) -> Result<(Vec<StudentResult>, Cohort<B>)> {
    let s_n = students.len();
    if s_n == 0 {
        return Err(Error::config("a cohort needs at least one student"));
    }
    let spec = &cs.net.spec;
    let n = students[0].data.len();
    for (i, st) in students.iter().enumerate() {
        st.data.check(&format!("student {i}'s training set"))?;
        if st.data.len() != n || st.data.channels != spec.channels || st.data.size != spec.im_size {
            return Err(Error::shape(format!(
                "student {i}: {} images of {}×{}px, the cohort needs {n} of {}×{}px",
                st.data.len(),
                st.data.channels,
                st.data.size,
                spec.channels,
                spec.im_size
            )));
        }
        if st.teacher_targets && teachers.is_empty() {
            return Err(Error::config(
                "soft-label mode M needs at least one teacher",
            ));
        }
        let soft_loss = !matches!(cs.loss, LossKind::CrossEntropy);
        if soft_loss && !st.teacher_targets && st.data.soft.is_none() {
            return Err(Error::config(format!(
                "student {i}: a soft-label loss needs stored soft labels or teachers"
            )));
        }
    }
    if n == 0 || cs.batch_size == 0 || cs.epochs == 0 || cs.test_interval == 0 {
        return Err(Error::config(
            "a cohort needs images, a batch size, epochs and a test interval ≥ 1",
        ));
    }

    let k = spec.classes;
    let img = spec.channels * spec.im_size * spec.im_size;
    let seeds: Vec<u64> = students.iter().map(|st| st.key.init_seed()).collect();
    let base_lrs: Vec<f32> = students.iter().map(|st| st.lr).collect();
    let mut cohort = Cohort::new(Arc::clone(be), *spec, cs.optimizer, &seeds, &base_lrs)?;
    let sched = schedule(cs.scheduler, cs.epochs, cs.step_size)?;
    let soft_loss = !matches!(cs.loss, LossKind::CrossEntropy);
    let full_b = cs.batch_size.min(n);
    let steps_per_epoch = n.div_ceil(full_b);
    let mut teacher_cohorts = teachers
        .iter()
        .map(|t| TeacherCohort::new(be, t))
        .collect::<Result<Vec<_>>>()?;

    // ---- data on the device: each distinct training set once, the test batches broadcast ----
    let train = CohortData::upload(be, students, soft_loss)?;
    let mut test_feed = TestFeed::new(be, test, s_n)?;
    let mut feeds: Vec<StepFeed<B>> = Vec::new(); // one per distinct batch size (full, last)
    let wants_teacher = students.iter().any(|st| st.teacher_targets);

    let mut results: Vec<StudentResult> = vec![
        StudentResult {
            best: 0.0,
            tests: Vec::new(),
            train_loss: Vec::new(),
            stopped: None
        };
        s_n
    ];
    let mut step: u32 = 0;
    for epoch in 0..cs.epochs {
        cohort.apply_schedule(&sched, epoch)?;
        let orders: Vec<Vec<u32>> = students
            .iter()
            .map(|st| st.key.shuffle(epoch as u32, n))
            .collect();
        let mut loss_sum = vec![0f64; s_n]; // (S) this epoch's per-step losses, summed
        for j in 0..steps_per_epoch {
            let lo = j * full_b;
            let b = full_b.min(n - lo);
            let f = match feeds.iter().position(|f| f.batch == b) {
                Some(i) => i,
                None => {
                    feeds.push(StepFeed::new(be, s_n, b, img, k, soft_loss, wants_teacher)?);
                    feeds.len() - 1
                }
            };
            let feed = &mut feeds[f];
            // (S·b) rows of the cohort's data and their labels: the only per-step upload.
            let mut idx = vec![0u32; s_n * b];
            let mut labels = vec![0u32; s_n * b];
            for (s, st) in students.iter().enumerate() {
                for (i, &src) in orders[s][lo..lo + b].iter().enumerate() {
                    idx[s * b + i] = train.base[s] + src;
                    labels[s * b + i] = st.data.labels[src as usize];
                }
            }
            be.write(&idx, &mut feed.idx)?;
            be.write(&labels, &mut feed.labels)?;
            be.gather_rows(&train.images, img, &feed.idx, &mut feed.x)?;
            if let (Some(src), Some(dst)) = (&train.soft, feed.soft.as_mut()) {
                be.gather_rows(src, k, &feed.idx, dst)?;
            }
            let dims = BatchDims {
                students: s_n,
                batch: b,
                c: spec.channels,
                h: spec.im_size,
                w: spec.im_size,
            };
            if cs.aug != AugPlan::None && students.iter().any(|st| st.augment) {
                let keys: Vec<Option<DrawKey>> = students
                    .iter()
                    .map(|st| {
                        st.augment.then_some(DrawKey {
                            seed: st.key.seed,
                            run: st.key.run,
                            role: st.key.role,
                            step,
                        })
                    })
                    .collect();
                let draws = aug::sample(&cs.aug, &keys, dims)?;
                be.augment(&cs.aug, &draws, dims, &mut feed.x)?;
            }
            if wants_teacher {
                feed.teacher_targets(be, &mut teacher_cohorts, students, k)?;
            }
            let loss = cohort.train_step(&feed.x, &feed.labels, feed.soft.as_ref(), cs.loss, b)?; // (S)
            for (s, l) in loss.iter().enumerate() {
                loss_sum[s] += f64::from(*l);
                if !l.is_finite() && results[s].stopped.is_none() {
                    results[s].stopped =
                        Some(format!("loss {l} at epoch {} step {}", epoch + 1, j + 1));
                }
            }
            step += 1;
        }
        for (r, sum) in results.iter_mut().zip(&loss_sum) {
            if r.stopped.is_none() {
                r.train_loss.push(sum / steps_per_epoch as f64);
            }
        }
        let last = epoch + 1 == cs.epochs;
        if (epoch + 1) % cs.test_interval == 0 || last {
            let correct = test_feed.pass(&mut cohort)?;
            for (s, c) in correct.into_iter().enumerate() {
                if results[s].stopped.is_some() {
                    continue;
                }
                let acc = c as f64 / test.len().max(1) as f64;
                results[s].tests.push(acc);
                if acc > results[s].best {
                    results[s].best = acc;
                }
            }
        }
        progress(epoch + 1, cs.epochs);
        if results.iter().all(|r| r.stopped.is_some()) {
            break;
        }
    }
    Ok((results, cohort))
}

/// One pass over the test set for all S students, each seeing every image. Returns correct
/// counts (S). Uploads the set; the trainer keeps a [`TestFeed`] over a [`DeviceSet`] instead.
pub fn test_pass<B: Backend>(cohort: &mut Cohort<B>, test: &ImageSet) -> Result<Vec<u32>> {
    let be = Arc::clone(cohort.backend());
    let set = DeviceSet::upload(&be, test, "test set")?;
    TestFeed::new(&be, &set, cohort.students())?.pass(cohort)
}

/// A teacher as a one-student cohort (eval mode only).
pub(super) struct TeacherCohort<B: Backend> {
    pub(super) cohort: Cohort<B>,
}

impl<B: Backend> TeacherCohort<B> {
    fn new(be: &Arc<B>, t: &Teacher) -> Result<Self> {
        let mut cohort = Cohort::from_params(
            Arc::clone(be),
            t.net.clone(),
            OptimizerCfg::new(crate::backend::OptimizerKind::Sgd, 0.0),
            &t.params,
            &[0.0],
        )?;
        if !t.running.is_empty() {
            cohort.set_running(&t.running)?;
        }
        Ok(TeacherCohort { cohort })
    }

    /// Logits on x (M, C, H, W) → (M, K), in chunks of [`TEST_BATCH`] (host in, host out: the
    /// mode-S labels of a random subset, computed once per run).
    fn logits(&mut self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let be = Arc::clone(self.cohort.backend());
        let img = self.cohort.net().spec.image_len();
        if x.len() != m * img {
            return Err(Error::shape(format!(
                "teacher input: {} values for {m} images of {img}",
                x.len()
            )));
        }
        let mut out = Vec::with_capacity(m * self.cohort.net().spec.classes); // (M, K)
        let mut lo = 0;
        while lo < m {
            let b = TEST_BATCH.min(m - lo);
            let x_dev = be.upload(&x[lo * img..(lo + b) * img])?;
            out.extend(be.download(self.cohort.eval_logits(&x_dev, b)?)?);
            lo += b;
        }
        Ok(out)
    }
}

/// A teacher's eval-mode logits on x (M, C, H, W) → (M, K) (mode-S labels of random subsets).
pub fn teacher_forward<B: Backend>(
    be: &Arc<B>,
    t: &Teacher,
    x: &[f32],
    m: usize,
) -> Result<Vec<f32>> {
    TeacherCohort::new(be, t)?.logits(x, m)
}
