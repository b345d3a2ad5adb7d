//! `ddr_fast._core`: the thin PyO3 layer under the `ddr_fast` Python package. It turns Python
//! buffers into the library's arrays, runs `metrics::session::run` on a worker thread, and maps
//! the library's errors onto Python exceptions. Everything a user sees is in python/ddr_fast/.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ddr_fast::data::synthetic::SynArrays;
use ddr_fast::metrics::execute::RunOptions;
use ddr_fast::metrics::report::EvalRecord;
use ddr_fast::metrics::session::{self, SynSource};
use ddr_fast::metrics::watch::Watch;
use ddr_fast::Error;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    _core,
    DdrFastError,
    PyRuntimeError,
    "A ddr-fast failure that is not a bad input: the device, or a worker that stopped."
);

/// Bad settings and bad inputs are ValueError (TypeError is raised on the Python side, before the
/// call, for wrong dtypes), file problems OSError, an interruption KeyboardInterrupt; the message
/// is always ddr-fast's own.
fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Config(_) | Error::Format { .. } | Error::Shape(_) => PyValueError::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::Interrupted => PyKeyboardInterrupt::new_err(
            "interrupted: every finished cohort is in the journal (out_dir) and the cache; \
             the same call again resumes",
        ),
        Error::Device(_) | Error::OutOfMemory(_) => DdrFastError::new_err(msg),
    }
}

/// The config ddr-fast makes of DD-Ranking keys (JSON or YAML text; `label` names the origin in
/// messages), checked. Returns (config as JSON, warnings).
#[pyfunction]
fn settings(text: &str, label: &str, metric: &str) -> PyResult<(String, Vec<String>)> {
    let metric = session::parse_metric(metric).map_err(to_py)?;
    let (cfg, warnings) = session::settings(text, label, metric).map_err(to_py)?;
    let json = serde_json::to_string(&cfg).map_err(|e| DdrFastError::new_err(e.to_string()))?;
    Ok((json, warnings))
}

/// A YAML file as JSON text (for `Config.from_file` without PyYAML): the same parser as the CLI.
#[pyfunction]
fn read_yaml(path: PathBuf) -> PyResult<String> {
    let text = std::fs::read_to_string(&path).map_err(|e| to_py(Error::io(&path, e)))?;
    let doc: serde_norway::Value = serde_norway::from_str(&text)
        .map_err(|e| to_py(Error::format(&path, format!("not valid YAML: {e}"))))?;
    serde_json::to_string(&doc).map_err(|e| {
        to_py(Error::format(
            &path,
            format!("not a plain mapping of keys: {e}"),
        ))
    })
}

/// Writes a randomly initialised teacher (PyTorch names, safetensors) for `model` on images of
/// `channels`×`size`×`size` and `classes` classes: for tests and demos of the soft-label metrics,
/// whose scores mean nothing with it. Train a real one with `ddr-fast train-teacher`.
#[pyfunction]
#[pyo3(signature = (path, model, channels, size, classes, seed=0))]
fn write_random_teacher(
    path: PathBuf,
    model: &str,
    channels: usize,
    size: usize,
    classes: usize,
    seed: u64,
) -> PyResult<()> {
    use ddr_fast::model::{init_buffers, init_params, ConvNet, ConvNetSpec};
    let spec = ConvNetSpec::from_name(model, channels, size, classes).map_err(to_py)?;
    let net = ConvNet::new(spec);
    let mut params = vec![0f32; net.param_len()]; // (P)
    init_params(&net.layout, seed, &mut params);
    let mut running = vec![0f32; net.buffer_len()]; // (R)
    init_buffers(&net.layout, &mut running);
    let w = ddr_fast::metrics::inputs::weights_of(&net, &params, &running);
    ddr_fast::data::save_teacher(&path, &w).map_err(to_py)
}

/// A real dataset split, normalised as the engine trains on it: (images as little-endian f32
/// bytes, shape [N, C, H, W], labels). `name` as in the config (`embedded` needs no folder).
#[pyfunction]
#[pyo3(signature = (name, split, data_dir=None))]
fn load_dataset(
    py: Python<'_>,
    name: &str,
    split: &str,
    data_dir: Option<PathBuf>,
) -> PyResult<(Py<pyo3::types::PyBytes>, Vec<usize>, Vec<u32>)> {
    let info = ddr_fast::metrics::config::DatasetInfo::parse(name).map_err(to_py)?;
    let real = ddr_fast::data::load_named(info.name, data_dir.as_deref()).map_err(to_py)?;
    let d = match split {
        "train" => &real.train,
        "test" => &real.test,
        _ => {
            return Err(PyValueError::new_err(format!(
                "split: expected 'train' or 'test', found '{split}'"
            )))
        }
    };
    let images = d.normalised(&real.norm); // (N, C, H, W)
    let bytes: Vec<u8> = images.iter().flat_map(|v| v.to_le_bytes()).collect();
    let shape = vec![d.len(), d.channels, d.height, d.width];
    Ok((
        pyo3::types::PyBytes::new(py, &bytes).unbind(),
        shape,
        d.labels.clone(),
    ))
}

/// A C-order copy of a float32 buffer and its shape (numpy arrays and anything else with the
/// buffer protocol; the Python side has already converted other dtypes).
fn f32_array(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<(Vec<f32>, Vec<usize>)> {
    let buf = PyBuffer::<f32>::get(obj)
        .map_err(|e| PyValueError::new_err(format!("{arg}: not a float32 buffer ({e})")))?;
    Ok((buf.to_vec(obj.py())?, buf.shape().to_vec()))
}

fn i64_array(arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    let buf = PyBuffer::<i64>::get(obj)
        .map_err(|e| PyValueError::new_err(format!("{arg}: not an int64 buffer ({e})")))?;
    if buf.dimensions() != 1 {
        return Err(PyValueError::new_err(format!(
            "{arg}: expected a 1-D array of N labels, found shape {:?}",
            buf.shape()
        )));
    }
    buf.to_vec(obj.py())
}

/// An evaluation running on a worker thread. Python polls it (`wait` releases the GIL), so its
/// progress callback and Ctrl-C run on the caller's thread, never inside the engine.
#[pyclass]
struct Job {
    watch: Arc<Watch>,
    rx: Mutex<Receiver<ddr_fast::Result<EvalRecord>>>,
    outcome: Mutex<Option<ddr_fast::Result<EvalRecord>>>,
}

#[pymethods]
impl Job {
    /// Waits up to `timeout_s` seconds without the GIL; True once the evaluation has ended.
    fn wait(&self, py: Python<'_>, timeout_s: f64) -> PyResult<bool> {
        if self.outcome.lock().is_ok_and(|o| o.is_some()) {
            return Ok(true);
        }
        let got = py.detach(|| {
            let rx = self
                .rx
                .lock()
                .expect("the job's receiver is only locked here");
            rx.recv_timeout(Duration::from_secs_f64(timeout_s.max(0.0)))
        });
        let outcome = match got {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => return Ok(false),
            Err(RecvTimeoutError::Disconnected) => Err(Error::Device(
                "the evaluation thread stopped without a result (a panic; its message is on stderr)"
                    .into(),
            )),
        };
        *self.outcome.lock().expect("outcome lock") = Some(outcome);
        Ok(true)
    }

    /// (done, total) training images; total is 0 while planning and when nothing needs training.
    fn progress(&self) -> (u64, u64) {
        self.watch.progress()
    }

    /// Stop before the next cohort; the cohort in flight is finished and recorded first.
    fn cancel(&self) {
        self.watch.request_stop();
    }

    /// The result record as JSON (fractions, as result.json), or the evaluation's error.
    fn result(&self) -> PyResult<String> {
        match self.outcome.lock().expect("outcome lock").take() {
            None => Err(DdrFastError::new_err(
                "the evaluation has not finished; wait() first",
            )),
            Some(Err(e)) => Err(to_py(e)),
            Some(Ok(rec)) => {
                serde_json::to_string(&rec).map_err(|e| DdrFastError::new_err(e.to_string()))
            }
        }
    }
}

/// Starts an evaluation. The synthetic set is `image_path` or `images` (an (N, C, H, W) float32
/// buffer, normalised like the dataset unless `pixel_space`), with optional `labels` (N, int64) and
/// `soft_labels` (N, K float32). Input checks that need the dataset happen here, before the thread.
#[pyfunction]
#[pyo3(signature = (text, label, metric, image_path=None, images=None, labels=None,
                    soft_labels=None, pixel_space=false, max_students=16))]
#[allow(clippy::too_many_arguments)]
fn start(
    text: &str,
    label: &str,
    metric: &str,
    image_path: Option<PathBuf>,
    images: Option<&Bound<'_, PyAny>>,
    labels: Option<&Bound<'_, PyAny>>,
    soft_labels: Option<&Bound<'_, PyAny>>,
    pixel_space: bool,
    max_students: usize,
) -> PyResult<Job> {
    let metric = session::parse_metric(metric).map_err(to_py)?;
    let (mut cfg, _) = session::settings(text, label, metric).map_err(to_py)?;
    let source = match (images, image_path) {
        (Some(obj), None) => {
            let (images, shape) = f32_array("image_tensor", obj)?;
            let soft = soft_labels
                .map(|s| f32_array("soft_labels", s))
                .transpose()?;
            SynSource::Arrays {
                name: "image_tensor".into(),
                arrays: SynArrays {
                    images,
                    shape,
                    labels: labels.map(|l| i64_array("hard_labels", l)).transpose()?,
                    soft,
                    lr: None,
                    pixel_space,
                },
            }
        }
        (None, Some(p)) => {
            cfg.syn_path = Some(p.clone());
            SynSource::Path(p)
        }
        _ => {
            return Err(PyValueError::new_err(
                "give exactly one of image_tensor and image_path",
            ))
        }
    };
    let watch = Arc::new(Watch::new());
    let opts = RunOptions {
        max_students: max_students.max(1),
        quiet: true,
        watch: Some(watch.clone()),
        ..RunOptions::default()
    };
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name("ddr-fast-eval".into())
        .spawn(move || {
            // A send fails only when Python dropped the job (its caller went away): nothing to tell.
            let _ = tx.send(session::run(cfg, source, opts));
        })
        .map_err(|e| DdrFastError::new_err(format!("cannot start the evaluation thread: {e}")))?;
    Ok(Job {
        watch,
        rx: Mutex::new(rx),
        outcome: Mutex::new(None),
    })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", ddr_fast::VERSION)?;
    m.add("DdrFastError", m.py().get_type::<DdrFastError>())?;
    m.add_class::<Job>()?;
    m.add_function(wrap_pyfunction!(load_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(read_yaml, m)?)?;
    m.add_function(wrap_pyfunction!(write_random_teacher, m)?)?;
    m.add_function(wrap_pyfunction!(settings, m)?)?;
    m.add_function(wrap_pyfunction!(start, m)?)?;
    Ok(())
}
