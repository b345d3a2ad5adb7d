//! The epoch-level cohort trainer (DESIGN.md §3, §6): S students in lock-step, each with its own
//! data, targets, augmentation switch, learning rate and seed; one shared pass over the test set
//! tests them all. Written against `trait Backend` only, so it runs unchanged on every device.
//!
//! Per epoch: each student shuffles its own N images; batches of `batch_size` (the last partial one
//! kept; N and the batch size are shared, so every student has a batch of the same size) →
//! augment (students with the switch on) → [mode M: mean teacher logits on the augmented batch] →
//! forward → loss → backward → optimizer step; the scheduler steps once per epoch. A student whose
//! loss turns NaN/Inf is stopped: its later tests are skipped and the reason is returned.
//!
//! The host's part (step_graph.rs): per run, the learning rates of every epoch; per epoch, the
//! permutations, the augmentation draws of all its steps and the step clock, written to the
//! device; per step, one call that replays the recorded step (CUDA) or runs its launches (CPU).
//! Losses are summed and divergence is detected on the device, read back at test points only.

use std::sync::Arc;

use super::cohort::Cohort;
use super::schedule::Schedule;
use crate::aug::{self, AugPlan, BatchDims, DrawKey, TvPipeline};
use crate::backend::{Backend, LossKind, OptimizerCfg};
use crate::error::{Error, Result};
use crate::metrics::config::Scheduler;
use crate::model::Net;

use super::step_graph::EpochTables;
pub use super::trainer_data::{tv_stride, tv_table, ImageSet, StudentKey};
pub use super::trainer_device::DeviceSet;
use super::trainer_device::{CohortData, StepFeed, TestFeed};
use crate::ops::step as step_ops;

/// Images per test forward: the test set is cut into batches of this size, each replicated for the
/// S students (S × 500 × C × H × W floats stays below 100 MB at S = 16 on CIFAR).
pub const TEST_BATCH: usize = 500;

/// Settings shared by every student of a cohort.
#[derive(Clone, Debug)]
pub struct CohortSettings {
    pub net: Net,
    pub epochs: usize,
    pub test_interval: usize,
    pub batch_size: usize,
    pub loss: LossKind,
    pub optimizer: OptimizerCfg,
    pub scheduler: Scheduler,
    pub step_size: usize,
    /// The augmentation of students whose switch is on.
    pub aug: AugPlan,
    /// `custom_train_trans` of students whose `tv` switch is on: per image, before `aug`.
    pub tv: Option<TvPipeline>,
}

/// One student of a cohort.
#[derive(Clone, Copy, Debug)]
pub struct StudentSetup<'a> {
    pub data: &'a ImageSet,
    pub lr: f32,
    pub key: StudentKey,
    pub augment: bool,
    /// Gathered images go through `CohortSettings::tv` first (an image-folder synthetic set).
    pub tv: bool,
    /// Targets are the teachers' mean logits on the augmented batch (soft-label mode M).
    pub teacher_targets: bool,
}

/// A trained teacher for mode-M targets: weights of one student row.
#[derive(Clone, Debug)]
pub struct Teacher {
    pub net: Net,
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
    /// Mean training loss of each epoch run, in order (NaN-free: stops at divergence).
    pub train_loss: Vec<f64>,
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
    let (channels, im_size) = cs.net.input();
    let n = students[0].data.len();
    for (i, st) in students.iter().enumerate() {
        st.data.check(&format!("student {i}'s training set"))?;
        if st.data.len() != n || st.data.channels != channels || st.data.size != im_size {
            return Err(Error::shape(format!(
                "student {i}: {} images of {}×{}px, the cohort needs {n} of {}×{}px",
                st.data.len(),
                st.data.channels,
                st.data.size,
                channels,
                im_size
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

    let tv = tv_pipeline(be.as_ref(), cs, students, im_size)?;
    let k = cs.net.classes();
    let img = cs.net.image_len();
    let seeds: Vec<u64> = students.iter().map(|st| st.key.init_seed()).collect();
    let base_lrs: Vec<f32> = students.iter().map(|st| st.lr).collect();
    let mut cohort = Cohort::new(
        Arc::clone(be),
        cs.net.clone(),
        cs.optimizer,
        &seeds,
        &base_lrs,
    )?;
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
    let augmenting = cs.aug != AugPlan::None && students.iter().any(|st| st.augment);

    // ---- per-step values on the device (step_graph.rs): the whole run's rates once ----------
    let lrs: Vec<f32> = (0..cs.epochs)
        .flat_map(|e| students.iter().map(move |st| (st.lr, e)))
        .map(|(lr, e)| sched.lr(lr, e))
        .collect(); // (E, S)
    let stride = if augmenting {
        step_ops::draw_stride(s_n, full_b)
    } else {
        0
    };
    let mut tables = EpochTables::new(be, s_n, n, steps_per_epoch, stride, &lrs)?;
    // custom_train_trans: the epoch's per-image entries (steps, tv_stride), written per epoch.
    let tv_stride = tv.map_or(0, |p| tv_stride(p, s_n, full_b));
    let mut tv_dev = match tv {
        Some(_) => Some(be.alloc::<u32>(steps_per_epoch * tv_stride)?),
        None => None,
    };
    let dims = |b: usize| BatchDims {
        students: s_n,
        batch: b,
        c: channels,
        h: im_size,
        w: im_size,
    };

    let mut results: Vec<StudentResult> = vec![
        StudentResult {
            best: 0.0,
            tests: Vec::new(),
            stopped: None,
            train_loss: Vec::new(),
        };
        s_n
    ];
    let mut step: u32 = 0;
    let mut read_epochs = 0; // epochs whose loss sums have been read back
    for epoch in 0..cs.epochs {
        // The epoch's uploads: permutations, draws, clock (a few small writes, no wait).
        let perms: Vec<u32> = students
            .iter()
            .flat_map(|st| st.key.shuffle(epoch as u32, n))
            .collect(); // (S, N)
        let draws = if augmenting {
            Some(epoch_draws(
                cs,
                students,
                step,
                steps_per_epoch,
                full_b,
                n,
                stride,
                dims,
            )?)
        } else {
            None
        };
        tables.start_epoch(be, epoch, step, &perms, draws.as_deref())?;
        if let (Some(p), Some(t)) = (tv, tv_dev.as_mut()) {
            let host = tv_table(
                p,
                students,
                step,
                steps_per_epoch,
                full_b,
                n,
                tv_stride,
                im_size,
            )?;
            be.write(&host, t)?;
        }
        for j in 0..steps_per_epoch {
            let b = full_b.min(n - j * full_b);
            let f = match feeds.iter().position(|f| f.batch == b) {
                Some(i) => i,
                None => {
                    let aug = if augmenting {
                        Some(be.aug_table(&cs.aug, dims(b))?)
                    } else {
                        None
                    };
                    feeds.push(StepFeed::new(
                        be,
                        s_n,
                        b,
                        img,
                        k,
                        soft_loss,
                        wants_teacher,
                        aug,
                    )?);
                    feeds.len() - 1
                }
            };
            let feed = &mut feeds[f];
            let mut graph = std::mem::take(&mut feed.graph);
            let ran = graph.run(be, || {
                step_launches(
                    be,
                    cs,
                    &mut cohort,
                    feed,
                    &train,
                    &mut tables,
                    &mut teacher_cohorts,
                    students,
                    full_b,
                    tv.zip(tv_dev.as_ref())
                        .map(|(p, t)| (p, t, tv_stride, dims(b))),
                )
            });
            feed.graph = graph;
            ran?;
            cohort.count_steps(1);
            step += 1;
        }
        let last = epoch + 1 == cs.epochs;
        if (epoch + 1) % cs.test_interval == 0 || last {
            // The only reads inside training: loss sums and stop marks, then the test.
            let (sums, stopped) = tables.read(be)?;
            for (s, r) in results.iter_mut().enumerate() {
                let at = stopped[s] as usize; // 1-based global step, 0: running
                if at != 0 && r.stopped.is_none() {
                    r.stopped = Some(format!(
                        "loss not finite (NaN or ±inf) at epoch {} step {}",
                        (at - 1) / steps_per_epoch + 1,
                        (at - 1) % steps_per_epoch + 1
                    ));
                }
                for e in read_epochs..=epoch {
                    if at == 0 || at > (e + 1) * steps_per_epoch {
                        r.train_loss
                            .push(sums[e * s_n + s] / steps_per_epoch as f64);
                    }
                }
            }
            read_epochs = epoch + 1;
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

/// One training step's launches (recorded once and replayed by `StepGraph`): nothing here reads
/// or writes host memory; every per-step value comes from `tables` at the device clock.
#[allow(clippy::too_many_arguments)]
fn step_launches<B: Backend>(
    be: &Arc<B>,
    cs: &CohortSettings,
    cohort: &mut Cohort<B>,
    feed: &mut StepFeed<B>,
    train: &CohortData<B>,
    tables: &mut EpochTables<B>,
    teachers: &mut [TeacherCohort<B>],
    students: &[StudentSetup<'_>],
    full_b: usize,
    tv: Option<(&TvPipeline, &B::Buf<u32>, usize, BatchDims)>,
) -> Result<()> {
    let (k, img) = (cohort.net().classes(), cohort.net().image_len());
    be.batch_rows(
        &tables.clock,
        &tables.perms,
        &train.base_dev,
        &train.labels,
        full_b,
        &mut feed.idx,
        &mut feed.labels,
    )?;
    be.gather_rows(&train.images, img, &feed.idx, &mut feed.x)?;
    if let (Some(src), Some(dst)) = (&train.soft, feed.soft.as_mut()) {
        be.gather_rows(src, k, &feed.idx, dst)?;
    }
    // DD-Ranking's ImageFolder transform runs per image in __getitem__, before aug_func.
    if let Some((pipe, table, stride, dims)) = tv {
        be.tv_at(pipe, &tables.clock, table, stride, dims, &mut feed.x)?;
    }
    if let Some(ws) = feed.aug.as_mut() {
        be.augment_at(
            &cs.aug,
            &tables.clock,
            &tables.draws,
            tables.stride,
            ws,
            &mut feed.x,
        )?;
    }
    if students.iter().any(|st| st.teacher_targets) {
        feed.teacher_targets(be, teachers, students, k)?;
    }
    cohort.train_step_launches(
        &feed.x,
        &feed.labels,
        feed.soft.as_ref(),
        cs.loss,
        feed.batch,
        &tables.clock,
        &tables.lrs,
    )?;
    be.loss_watch(
        &mut tables.clock,
        cohort.step_loss(feed.batch)?,
        &mut tables.sums,
        &mut tables.stopped,
    )
}

/// The cohort's `custom_train_trans` when a student asks for it, checked: the device has the op
/// and the transforms give back images of the student network's size.
fn tv_pipeline<'c, B: Backend>(
    be: &B,
    cs: &'c CohortSettings,
    students: &[StudentSetup<'_>],
    im_size: usize,
) -> Result<Option<&'c TvPipeline>> {
    if !students.iter().any(|st| st.tv) {
        return Ok(None);
    }
    let pipe = cs.tv.as_ref().ok_or_else(|| {
        Error::config("a student asks for custom_train_trans but the cohort has none")
    })?;
    let (oh, ow) = pipe.out_hw(im_size, im_size)?;
    if (oh, ow) != (im_size, im_size) {
        return Err(Error::config(format!(
            "custom_train_trans turns the {im_size}×{im_size} images into {oh}×{ow}; the student \
             network takes {im_size}×{im_size} (give RandomResizedCrop / RandomCrop size {im_size})"
        )));
    }
    be.tv_supports(pipe, cs.net.input().0, im_size)?;
    Ok(Some(pipe))
}

/// An epoch's augmentation draws, `steps` × `stride` words: step j's draws sampled on the host
/// by `aug::sample` from each augmented student's key at global step `first + j` (the same
/// numbers the CPU path draws), as `ops::step::draws_to_words`, zero-padded to the stride.
#[allow(clippy::too_many_arguments)]
fn epoch_draws(
    cs: &CohortSettings,
    students: &[StudentSetup<'_>],
    first: u32,
    steps: usize,
    full_b: usize,
    n: usize,
    stride: usize,
    dims: impl Fn(usize) -> BatchDims,
) -> Result<Vec<u32>> {
    let mut table = vec![0u32; steps * stride]; // (steps, stride)
    for j in 0..steps {
        let b = full_b.min(n - j * full_b);
        let keys: Vec<Option<DrawKey>> = students
            .iter()
            .map(|st| {
                st.augment.then_some(DrawKey {
                    seed: st.key.seed,
                    run: st.key.run,
                    role: st.key.role,
                    step: first + j as u32,
                })
            })
            .collect();
        let draws = aug::sample(&cs.aug, &keys, dims(b))?;
        aug::check_draws(&draws, dims(b))?;
        let words = step_ops::draws_to_words(&draws);
        table[j * stride..][..words.len()].copy_from_slice(&words);
    }
    Ok(table)
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
        let img = self.cohort.net().image_len();
        if x.len() != m * img {
            return Err(Error::shape(format!(
                "teacher input: {} values for {m} images of {img}",
                x.len()
            )));
        }
        let mut out = Vec::with_capacity(m * self.cohort.net().classes()); // (M, K)
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
