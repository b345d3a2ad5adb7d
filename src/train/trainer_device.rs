//! The trainer's data on the device. Each distinct training set of a cohort is uploaded once, the
//! test set once per evaluation; a step's batch is gathered on the device from its (S·b) row
//! indices (the only per-step upload, with the labels: a few KB), augmented there, and in mode M
//! labelled there by the teachers; a test pass gathers each test chunk once on the device and
//! every student reads that one copy, without host copies.

use std::sync::Arc;

use super::cohort::Cohort;
use super::step_graph::StepGraph;
use super::trainer::{StudentSetup, TeacherCohort, TEST_BATCH};
use super::trainer_data::ImageSet;
use crate::backend::Backend;
use crate::error::{Error, Result};

/// A dataset resident on the device.
pub struct DeviceSet<B: Backend> {
    /// (N, C·H·W)
    pub images: Arc<B::Buf<f32>>,
    /// (N) class indices, kept on the host to build per-cohort label buffers.
    pub labels: Vec<u32>,
    /// C·H·W
    pub image_len: usize,
}

impl<B: Backend> DeviceSet<B> {
    /// Checks `set` (naming `what` in errors) and uploads its images.
    pub fn upload(be: &Arc<B>, set: &ImageSet, what: &str) -> Result<Self> {
        set.check(what)?;
        Ok(DeviceSet {
            images: Arc::new(be.upload(&set.images)?),
            labels: set.labels.clone(),
            image_len: set.image_len(),
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The training sets of a cohort's students, each distinct set once (students of one cohort
/// often share the synthetic set; random subsets differ per run).
pub struct CohortData<B: Backend> {
    /// (R, C·H·W): the distinct sets one after another.
    pub images: B::Buf<f32>,
    /// (R, K) stored soft labels (zeros for sets without), when a student trains on them.
    pub soft: Option<B::Buf<f32>>,
    /// (S) the first row of each student's set in `images`.
    pub base: Vec<u32>,
    /// (S) `base` on the device, for `Backend::batch_rows`.
    pub base_dev: B::Buf<u32>,
    /// (R) the class of every row of `images`.
    pub labels: B::Buf<u32>,
}

impl<B: Backend> CohortData<B> {
    pub fn upload(be: &Arc<B>, students: &[StudentSetup<'_>], soft_loss: bool) -> Result<Self> {
        let mut sets: Vec<&ImageSet> = Vec::new();
        let mut base = Vec::with_capacity(students.len());
        let mut rows = 0usize;
        for st in students {
            let i = match sets.iter().position(|s| std::ptr::eq(*s, st.data)) {
                Some(i) => i,
                None => {
                    sets.push(st.data);
                    sets.len() - 1
                }
            };
            let first: usize = sets[..i].iter().map(|s| s.len()).sum();
            base.push(u32::try_from(first).map_err(|_| too_many(first))?);
            rows = rows.max(first + sets[i].len());
        }
        u32::try_from(rows).map_err(|_| too_many(rows))?;
        let labels: Vec<u32> = sets.iter().flat_map(|s| s.labels.iter().copied()).collect(); // (R)
        let images = match sets.as_slice() {
            [one] => be.upload(&one.images)?,
            _ => {
                let all: Vec<f32> = sets.iter().flat_map(|s| s.images.iter().copied()).collect();
                be.upload(&all)?
            }
        };
        let stored = students
            .iter()
            .any(|st| !st.teacher_targets && st.data.soft.is_some());
        let soft = if soft_loss && stored {
            let mut all: Vec<f32> = Vec::new(); // (R, K)
            for s in &sets {
                match &s.soft {
                    Some(v) => all.extend_from_slice(v),
                    None => all.resize(all.len() + s.len() * s.classes, 0.0),
                }
            }
            Some(be.upload(&all)?)
        } else {
            None
        };
        Ok(CohortData {
            images,
            soft,
            base_dev: be.upload(&base)?,
            labels: be.upload(&labels)?,
            base,
        })
    }
}

fn too_many(rows: usize) -> Error {
    Error::config(format!(
        "a cohort's training sets hold {rows} images; the device gather indexes at most 2^32"
    ))
}

/// One chunk of the teachers' forwards: (first image, images, (images) their indices into x,
/// (images, C, H, W) their pixels).
type TeacherChunk<B> = (
    usize,
    usize,
    <B as Backend>::Buf<u32>,
    <B as Backend>::Buf<f32>,
);

/// The buffers of training steps of one batch size b, allocated once per cohort, and the step
/// recorded over them.
pub struct StepFeed<B: Backend> {
    pub batch: usize,
    /// The step's launches, recorded once and replayed (declared first: dropped before the
    /// buffers it names).
    pub graph: StepGraph<B>,
    /// The draws and scratch batch of `Backend::augment_at` (None: no student augments).
    pub aug: Option<B::AugTable>,
    /// (S·b) rows of `CohortData::images` this step trains on.
    pub idx: B::Buf<u32>,
    /// (S, b)
    pub labels: B::Buf<u32>,
    /// (S, b, C, H, W)
    pub x: B::Buf<f32>,
    /// (S, b, K) targets of the soft-label losses.
    pub soft: Option<B::Buf<f32>>,
    /// (S, b, K) the teachers' mean logits (mode M).
    teacher_mean: Option<B::Buf<f32>>,
    /// The teachers' forwards in chunks of TEST_BATCH over the S·b images. Empty when one chunk
    /// holds all S·b images (the teachers then read x itself).
    chunks: Vec<TeacherChunk<B>>,
    image_len: usize,
}

impl<B: Backend> StepFeed<B> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        be: &Arc<B>,
        students: usize,
        batch: usize,
        image_len: usize,
        classes: usize,
        soft_loss: bool,
        teachers: bool,
        aug: Option<B::AugTable>,
    ) -> Result<Self> {
        let m = students * batch;
        let mut chunks = Vec::new();
        if teachers && m > TEST_BATCH {
            let mut lo = 0;
            while lo < m {
                let b = TEST_BATCH.min(m - lo);
                let idx: Vec<u32> = (lo as u32..(lo + b) as u32).collect();
                chunks.push((lo, b, be.upload(&idx)?, be.alloc(b * image_len)?));
                lo += b;
            }
        }
        Ok(StepFeed {
            batch,
            graph: StepGraph::default(),
            aug,
            idx: be.alloc(m)?,
            labels: be.alloc(m)?,
            x: be.alloc(m * image_len)?,
            soft: if soft_loss {
                Some(be.alloc(m * classes)?)
            } else {
                None
            },
            teacher_mean: if teachers {
                Some(be.alloc(m * classes)?)
            } else {
                None
            },
            chunks,
            image_len,
        })
    }

    /// Mode M: the teachers' mean eval-mode logits on the (augmented) batch x become the soft
    /// targets of the students that train on them, all on the device. The sum, then one scale,
    /// in the order the host code summed them, so every device rounds alike.
    pub(super) fn teacher_targets(
        &mut self,
        be: &Arc<B>,
        teachers: &mut [TeacherCohort<B>],
        students: &[StudentSetup<'_>],
        classes: usize,
    ) -> Result<()> {
        let k = classes;
        let m = self.batch * students.len();
        let mean = self
            .teacher_mean
            .as_mut()
            .ok_or_else(|| Error::config("soft-label mode M needs at least one teacher"))?;
        for (ti, t) in teachers.iter_mut().enumerate() {
            let keep = if ti == 0 { 0.0 } else { 1.0 };
            if self.chunks.is_empty() {
                let logits = t.cohort.eval_logits(&self.x, m)?; // (1, S·b, K)
                be.scale_add(m * k, 1.0, Some((logits, 0)), keep, mean, 0)?;
            }
            for (lo, b, idx, x) in self.chunks.iter_mut() {
                be.gather_rows(&self.x, self.image_len, idx, x)?;
                let logits = t.cohort.eval_logits(x, *b)?; // (1, b, K)
                be.scale_add(*b * k, 1.0, Some((logits, 0)), keep, mean, *lo * k)?;
            }
        }
        if teachers.len() > 1 {
            be.scale_add(m * k, 0.0, None, 1.0 / teachers.len() as f32, mean, 0)?;
        }
        if let Some(soft) = self.soft.as_mut() {
            let row = self.batch * k;
            for (s, st) in students.iter().enumerate() {
                if st.teacher_targets {
                    be.scale_add(row, 1.0, Some((&*mean, s * row)), 0.0, soft, s * row)?;
                }
            }
        }
        Ok(())
    }
}

/// One test chunk: (images in the chunk, (b) indices into the set, (S, b) labels).
type TestChunk<B> = (usize, <B as Backend>::Buf<u32>, <B as Backend>::Buf<u32>);

/// A cohort's test passes over a [`DeviceSet`]: per chunk of TEST_BATCH images, the chunk is
/// gathered ONCE (not S times) and every student reads that one copy
/// ([`Cohort::count_correct_shared`]); the (b) indices and (S, b) labels are built once per cohort.
pub struct TestFeed<'a, B: Backend> {
    set: &'a DeviceSet<B>,
    students: usize,
    chunks: Vec<TestChunk<B>>,
    /// (b, C, H, W) per distinct chunk size (full, remainder), reused by every test point
    xs: Vec<(usize, B::Buf<f32>)>,
}

impl<'a, B: Backend> TestFeed<'a, B> {
    pub fn new(be: &Arc<B>, set: &'a DeviceSet<B>, students: usize) -> Result<Self> {
        let mut chunks = Vec::new();
        let mut xs: Vec<(usize, B::Buf<f32>)> = Vec::new();
        let mut lo = 0;
        while lo < set.len() {
            let b = TEST_BATCH.min(set.len() - lo);
            let idx: Vec<u32> = (lo as u32..(lo + b) as u32).collect(); // (b)
            let labels: Vec<u32> = (0..students)
                .flat_map(|_| set.labels[lo..lo + b].iter().copied())
                .collect(); // (S, b)
            chunks.push((b, be.upload(&idx)?, be.upload(&labels)?));
            if !xs.iter().any(|(xb, _)| *xb == b) {
                xs.push((b, be.alloc(b * set.image_len)?));
            }
            lo += b;
        }
        Ok(TestFeed {
            set,
            students,
            chunks,
            xs,
        })
    }

    /// Correct counts (S) of every student over the whole set, eval mode.
    pub fn pass(&mut self, cohort: &mut Cohort<B>) -> Result<Vec<u32>> {
        if cohort.students() != self.students {
            return Err(Error::shape(format!(
                "test feed built for {} students, cohort has {}",
                self.students,
                cohort.students()
            )));
        }
        let be = Arc::clone(cohort.backend());
        let mut correct = be.alloc::<u32>(self.students)?; // (S)
        for (b, idx, labels) in &self.chunks {
            let (_, x) = self
                .xs
                .iter_mut()
                .find(|(xb, _)| xb == b)
                .expect("an input buffer per chunk size, made in new");
            be.gather_rows(&self.set.images, self.set.image_len, idx, x)?;
            cohort.count_correct_shared(x, labels, *b, &mut correct)?;
        }
        be.download(&correct)
    }
}
