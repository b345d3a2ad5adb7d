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

/// Train a cohort and test it every `test_interval` epochs and after the last epoch.
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
    train_cohort_keep(be, cs, students, test, teachers, progress).map(|(r, _)| r)
}

/// [`train_cohort`] that also hands back the trained cohort (its weights), for `train-teacher`.
pub fn train_cohort_keep<B: Backend>(
    be: &Arc<B>,
    cs: &CohortSettings,
    students: &[StudentSetup<'_>],
    test: &ImageSet,
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
    test.check("test set")?;
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

    let mut results: Vec<StudentResult> = vec![
        StudentResult {
            best: 0.0,
            tests: Vec::new(),
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
        for j in 0..steps_per_epoch {
            let lo = j * full_b;
            let b = full_b.min(n - lo);
            // (S, b, C, H, W) images, (S, b) labels, (S, b, K) soft targets
            let mut x = vec![0f32; s_n * b * img];
            let mut labels = vec![0u32; s_n * b];
            let mut soft = if soft_loss {
                vec![0f32; s_n * b * k]
            } else {
                Vec::new()
            };
            for (s, st) in students.iter().enumerate() {
                for (i, &src) in orders[s][lo..lo + b].iter().enumerate() {
                    let (src, dst) = (src as usize, s * b + i);
                    x[dst * img..(dst + 1) * img]
                        .copy_from_slice(&st.data.images[src * img..(src + 1) * img]);
                    labels[dst] = st.data.labels[src];
                    if let (true, Some(sl)) = (soft_loss && !st.teacher_targets, &st.data.soft) {
                        soft[dst * k..(dst + 1) * k].copy_from_slice(&sl[src * k..(src + 1) * k]);
                    }
                }
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
                aug::apply(&cs.aug, &draws, dims, &mut x)?;
            }
            if students.iter().any(|st| st.teacher_targets) {
                let t = mean_teacher_logits(&mut teacher_cohorts, &x, s_n * b)?; // (S·b, K)
                for (s, st) in students.iter().enumerate() {
                    if st.teacher_targets {
                        soft[s * b * k..(s + 1) * b * k]
                            .copy_from_slice(&t[s * b * k..(s + 1) * b * k]);
                    }
                }
            }
            let x_dev = be.upload(&x)?;
            let labels_dev = be.upload(&labels)?;
            let soft_dev = if soft_loss {
                Some(be.upload(&soft)?)
            } else {
                None
            };
            let loss = cohort.train_step(&x_dev, &labels_dev, soft_dev.as_ref(), cs.loss, b)?; // (S)
            for (s, l) in loss.iter().enumerate() {
                if !l.is_finite() && results[s].stopped.is_none() {
                    results[s].stopped =
                        Some(format!("loss {l} at epoch {} step {}", epoch + 1, j + 1));
                }
            }
            step += 1;
        }
        let last = epoch + 1 == cs.epochs;
        if (epoch + 1) % cs.test_interval == 0 || last {
            let correct = test_pass(&mut cohort, test)?;
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

/// One pass over the test set for all S students: each test batch is replicated S times so every
/// student sees the same images. Returns correct counts (S).
pub fn test_pass<B: Backend>(cohort: &mut Cohort<B>, test: &ImageSet) -> Result<Vec<u32>> {
    let be = Arc::clone(cohort.backend());
    let s_n = cohort.students();
    let img = test.image_len();
    let mut correct = be.alloc::<u32>(s_n)?; // (S)
    let mut lo = 0;
    while lo < test.len() {
        let b = TEST_BATCH.min(test.len() - lo);
        let chunk = &test.images[lo * img..(lo + b) * img];
        let mut x = Vec::with_capacity(s_n * b * img); // (S, b, C, H, W)
        let mut labels = Vec::with_capacity(s_n * b); // (S, b)
        for _ in 0..s_n {
            x.extend_from_slice(chunk);
            labels.extend_from_slice(&test.labels[lo..lo + b]);
        }
        let x_dev = be.upload(&x)?;
        let labels_dev = be.upload(&labels)?;
        cohort.count_correct(&x_dev, &labels_dev, b, &mut correct)?;
        lo += b;
    }
    be.download(&correct)
}

/// A teacher as a one-student cohort (eval mode only).
struct TeacherCohort<B: Backend> {
    cohort: Cohort<B>,
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

    /// Logits on x (M, C, H, W) → (M, K), in chunks of [`TEST_BATCH`].
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

/// Mean over teachers of their logits on x (M, C, H, W) → (M, K).
fn mean_teacher_logits<B: Backend>(
    teachers: &mut [TeacherCohort<B>],
    x: &[f32],
    m: usize,
) -> Result<Vec<f32>> {
    let mut mean: Vec<f32> = Vec::new();
    for t in teachers.iter_mut() {
        let logits = t.logits(x, m)?;
        if mean.is_empty() {
            mean = logits;
        } else {
            mean.iter_mut().zip(&logits).for_each(|(a, b)| *a += b);
        }
    }
    let inv = 1.0 / teachers.len().max(1) as f32;
    mean.iter_mut().for_each(|v| *v *= inv);
    Ok(mean)
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
