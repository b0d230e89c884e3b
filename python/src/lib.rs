//! `livekit.rtc._native`: the livekit-ffi core as a Python extension module.
//!
//! Four functions carry the whole protocol, as in the C ABI: `request` takes a
//! serialized `FfiRequest` and returns the `FfiResponse` (the GIL is released while
//! the core works), events arrive through the callback given to `initialize` on the
//! core's delivery thread (the only core thread that ever waits for the GIL), and
//! handles are dropped explicitly. Everything above this (routing
//! events to futures and rooms, the `Room` API) is plain Python in `livekit/rtc`.

use std::sync::Arc;

use livekit_ffi::ffi::FfiServer;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

create_exception!(
    _native,
    FfiError,
    PyException,
    "A request the core refused."
);

/// Registers `callback(event: bytes)` for every `FfiEvent`; it runs on the core's
/// delivery thread with the GIL held. Calling again replaces the callback.
/// `event_queue_bytes` bounds the events waiting for Python (lossy data past it is
/// dropped; reliable data and everything else is kept).
#[pyfunction]
#[pyo3(signature = (callback, capture_logs=true, sdk="python", sdk_version="", event_queue_bytes=None))]
fn initialize(
    callback: Py<PyAny>,
    capture_logs: bool,
    sdk: &str,
    sdk_version: &str,
    event_queue_bytes: Option<usize>,
) {
    let _ = (sdk, sdk_version);
    let callback = Arc::new(callback);
    if let Some(bytes) = event_queue_bytes {
        FfiServer::global().set_event_queue_bytes(bytes);
    }
    FfiServer::global().initialize(
        Arc::new(move |bytes: &[u8]| {
            // Never block on (or unwind out of) an interpreter that is shutting down:
            // events for it are dropped.
            Python::try_attach(|py| {
                let event = PyBytes::new(py, bytes);
                if let Err(e) = callback.call1(py, (event,)) {
                    // An exception in the callback must not unwind into the core.
                    e.print(py);
                }
            });
        }),
        capture_logs,
    );
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
