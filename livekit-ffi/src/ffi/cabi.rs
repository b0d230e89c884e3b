//! The C ABI of the official livekit-ffi, served by our core: a client that loads
//! the official library (e.g. the official Python SDK with `LIVEKIT_LIB_PATH`) can
//! load ours instead.

use std::ffi::{c_char, CStr};

use super::FfiServer;

pub type FfiHandleId = u64;
pub const INVALID_HANDLE: FfiHandleId = 0;

/// Called with each serialized `FfiEvent`; the bytes are valid during the call only.
pub type FfiCallbackFn = unsafe extern "C" fn(*const u8, usize);

/// A response kept alive until the client drops its handle.
struct ResponseBuffer(#[allow(dead_code)] Vec<u8>);

/// # Safety
/// `sdk` and `sdk_version` are null or NUL-terminated strings; `cb` stays callable
/// until `livekit_ffi_dispose`.
#[no_mangle]
pub unsafe extern "C" fn livekit_ffi_initialize(
    cb: FfiCallbackFn,
    capture_logs: bool,
    sdk: *const c_char,
    sdk_version: *const c_char,
) {
    let text = |p: *const c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: the caller passes a NUL-terminated string.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let (sdk, version) = (text(sdk), text(sdk_version));
    let _ = std::panic::catch_unwind(move || {
        let server = FfiServer::global();
        server.initialize(
            std::sync::Arc::new(move |bytes: &[u8]| {
                // SAFETY: the callback contract of this ABI.
                unsafe { cb(bytes.as_ptr(), bytes.len()) }
            }),
            capture_logs,
        );
        log::info!("livekit-ffi initialized for {sdk} {version}");
    });
}

/// Serves one request. Returns the handle owning the response (drop it once read),
/// or `INVALID_HANDLE` when the request is refused (the reason is logged).
///
/// # Safety
/// `data` points at `len` readable bytes; `res_ptr` and `res_len` are writable.
#[no_mangle]
pub unsafe extern "C" fn livekit_ffi_request(
    data: *const u8,
    len: usize,
    res_ptr: *mut *const u8,
    res_len: *mut usize,
) -> FfiHandleId {
    if data.is_null() && len > 0 || res_ptr.is_null() || res_len.is_null() {
        return INVALID_HANDLE;
    }
    let request: &[u8] = if len == 0 {
        &[]
    } else {
        // SAFETY: checked non-null above; the caller guarantees `len` bytes.
        unsafe { std::slice::from_raw_parts(data, len) }
    };
    let result = std::panic::catch_unwind(|| FfiServer::global().handle_request(request));
    match result {
        Ok(Ok(bytes)) => {
            let server = FfiServer::global();
            let (ptr, n) = (bytes.as_ptr(), bytes.len());
            let id = server.insert_handle(ResponseBuffer(bytes));
            // SAFETY: checked non-null above.
            unsafe {
                *res_ptr = ptr;
                *res_len = n;
            }
            id
        }
        Ok(Err(e)) => {
            log::error!("refused FFI request: {e}");
            INVALID_HANDLE
        }
        Err(_) => INVALID_HANDLE,
    }
}

#[no_mangle]
pub extern "C" fn livekit_ffi_drop_handle(handle_id: FfiHandleId) -> bool {
    std::panic::catch_unwind(|| FfiServer::global().drop_handle(handle_id)).unwrap_or(false)
}

#[no_mangle]
pub extern "C" fn livekit_ffi_dispose() {
    let _ = std::panic::catch_unwind(|| {
        FfiServer::global().dispose(false);
    });
}
