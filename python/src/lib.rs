//! `livekit.rtc._native`: the livekit-ffi core as a Python extension module.
//!
//! Four functions carry the whole protocol, as in the C ABI: `request` takes a
//! serialized `FfiRequest` and returns the `FfiResponse` (the GIL is released while
//! the core works), events arrive through the callback given to `initialize` on the
//! core's delivery thread (the only core thread that ever waits for the GIL), and
//! handles are dropped explicitly. Everything above this (routing
//! events to futures and rooms, the `Room` API) is plain Python in `livekit/rtc`.

use std::cell::Cell;
use std::sync::Arc;

use livekit_ffi::ffi::{Batch, FfiServer};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

create_exception!(
    _native,
    FfiError,
    PyException,
    "A request the core refused."
);

/// Registers `callback(event: bytes)` for every `FfiEvent`; it runs on the core's
/// delivery thread with the GIL held, taken once for each burst of queued events.
/// Calling again replaces the callback. `event_queue_bytes` bounds the events waiting
/// for Python (lossy data past it is dropped; reliable data and everything else is
/// kept). With `frame_callback`, an audio stream's received frames skip `callback`:
/// they come as `frame_callback(stream_handle, samples: bytearray, sample_rate,
/// num_channels, samples_per_channel)`, in order with the stream's other events and
/// with no handle to drop.
#[pyfunction]
#[pyo3(signature = (callback, capture_logs=true, sdk="python", sdk_version="", event_queue_bytes=None, frame_callback=None))]
fn initialize(
    callback: Py<PyAny>,
    capture_logs: bool,
    sdk: &str,
    sdk_version: &str,
    event_queue_bytes: Option<usize>,
    frame_callback: Option<Py<PyAny>>,
) {
    let _ = (sdk, sdk_version);
    let server = FfiServer::global();
    if let Some(bytes) = event_queue_bytes {
        server.set_event_queue_bytes(bytes);
    }
    server.initialize_batched(
        Arc::new(move |batch: &mut Batch<'_>| {
            // Frames are taken out of their events before the GIL is asked for.
            let items: Vec<Item> = batch
                .map(|bytes| match &frame_callback {
                    Some(_) => match server.take_audio_frame_event(&bytes) {
                        Some(frame) => Item::Frame(frame),
                        None => Item::Event(bytes),
                    },
                    None => Item::Event(bytes),
                })
                .collect();
            // Never block on (or unwind out of) an interpreter that is shutting down:
            // events for it are dropped.
            Python::try_attach(|py| {
                keep_thread_state();
                for item in items {
                    let result = match (item, &frame_callback) {
                        (Item::Frame(f), Some(on_frame)) => {
                            let samples = PyByteArray::new(py, sample_bytes(&f.data));
                            on_frame.call1(
                                py,
                                (
                                    f.stream_handle,
                                    samples,
                                    f.sample_rate,
                                    f.num_channels,
                                    f.samples_per_channel,
                                ),
                            )
                        }
                        (Item::Frame(_), None) => continue,
                        (Item::Event(bytes), _) => callback.call1(py, (PyBytes::new(py, &bytes),)),
                    };
                    // An exception in a callback must not unwind into the core.
                    if let Err(e) = result {
                        e.print(py);
                    }
                }
            });
        }),
        capture_logs,
    );
}

thread_local! {
    static THREAD_STATE_KEPT: Cell<bool> = const { Cell::new(false) };
}

/// Keeps this thread's Python thread state alive between batches. Without it, each
/// attach of the (non-Python) delivery thread creates a thread state and the release
/// destroys it again, with the frame stack it maps and unmaps: most of the cost of a
/// batch of audio frames. One extra `PyGILState_Ensure`, never released, pins it; the
/// thread lives as long as the process.
fn keep_thread_state() {
    THREAD_STATE_KEPT.with(|kept| {
        if !kept.replace(true) {
            // SAFETY: called with this thread attached; the extra hold only raises the
            // thread's gilstate count, it is not a second lock of the GIL.
            unsafe {
                pyo3::ffi::PyGILState_Ensure();
            }
        }
    });
}

/// One delivered event, or the frame taken out of it.
enum Item {
    Event(Vec<u8>),
    Frame(livekit_ffi::ffi::ReceivedAudioFrame),
}

/// Samples as the bytes of native-endian int16s (what `AudioFrame.data` casts back).
fn sample_bytes(samples: &[i16]) -> &[u8] {
    // SAFETY: i16 has no padding and u8 has alignment 1; the length covers exactly the
    // same memory, borrowed for as long as `samples`.
    unsafe {
        std::slice::from_raw_parts(
            samples.as_ptr().cast::<u8>(),
            std::mem::size_of_val(samples),
        )
    }
}

/// Serves one serialized `FfiRequest`; returns the serialized `FfiResponse`.
#[pyfunction]
fn request<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let server = FfiServer::global();
    let result = py.detach(|| server.handle_request(data));
    result
        .map(|bytes| PyBytes::new(py, &bytes))
        .map_err(|e| FfiError::new_err(e.to_string()))
}

/// Releases a handle; `False` when it was unknown (already dropped).
#[pyfunction]
fn drop_handle(py: Python<'_>, id: u64) -> bool {
    py.detach(|| FfiServer::global().drop_handle(id))
}

/// Releases every handle and cancels pending work (rooms are left).
#[pyfunction]
fn dispose(py: Python<'_>) {
    py.detach(|| {
        FfiServer::global().dispose(false);
    });
}

/// How many handles are alive (for leak checks).
#[pyfunction]
fn handle_count() -> usize {
    FfiServer::global().handle_count()
}

/// The type of every live handle, by id (for leak reports).
#[pyfunction]
fn handle_kinds() -> Vec<(u64, &'static str)> {
    FfiServer::global().handle_kinds()
}

/// Events waiting for Python: (events, bytes, delivered so far, dropped so far).
#[pyfunction]
fn delivery_stats() -> (usize, usize, u64, u64) {
    let s = FfiServer::global().delivery_stats();
    (s.queued_events, s.queued_bytes, s.delivered, s.dropped)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(initialize, m)?)?;
    m.add_function(wrap_pyfunction!(request, m)?)?;
    m.add_function(wrap_pyfunction!(drop_handle, m)?)?;
    m.add_function(wrap_pyfunction!(dispose, m)?)?;
    m.add_function(wrap_pyfunction!(handle_count, m)?)?;
    m.add_function(wrap_pyfunction!(handle_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(delivery_stats, m)?)?;
    m.add("FfiError", m.py().get_type::<FfiError>())?;
    Ok(())
}
