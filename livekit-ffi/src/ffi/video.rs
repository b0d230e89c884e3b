//! Video frames over the FFI: `VideoConvert` reads a frame from the client's
//! memory, converts it (`crate::video::frame`) and hands the result over as an
//! owned buffer the client copies, then drops.

use super::proto;
use super::{FfiError, FfiResult, FfiServer};
use crate::video::{BufferType, VideoBuffer};

/// A converted frame, alive until the client drops the handle.
struct FfiVideoBuffer {
    _data: Vec<u8>,
}

/// Copies the frame `info` describes out of the client's memory.
///
/// # Safety
/// The protocol makes the client keep the frame's memory alive and unchanged for
/// the duration of the (synchronous) request.
unsafe fn frame_at(info: &proto::VideoBufferInfo) -> FfiResult<VideoBuffer> {
    let kind = BufferType::from_wire(info.r#type).map_err(|e| FfiError::Invalid(e.to_string()))?;
    let (w, h) = (info.width, info.height);
    // Sizes first: nothing is read for a frame that cannot be.
    crate::video::frame::check_size(w, h).map_err(|e| FfiError::Invalid(e.to_string()))?;
    let planes = kind.planes(w, h);
    let packed_stride = planes[0].stride;
    let data = match info.stride.map(|s| s as usize) {
        // A packed type with padded rows: take each row's pixels.
        Some(stride) if planes.len() == 1 && stride > packed_stride => {
            let rows = planes[0].rows;
            let all = super::client_bytes(info.data_ptr, stride * rows)?;
            all.chunks(stride)
                .flat_map(|row| &row[..packed_stride])
                .copied()
                .collect()
        }
        Some(stride) if planes.len() == 1 && stride < packed_stride => {
            return Err(FfiError::Invalid(format!(
                "stride {stride} is less than a row of {packed_stride} bytes"
            )))
        }
        _ => super::client_bytes(info.data_ptr, kind.len(w, h))?.to_vec(),
    };
    VideoBuffer::new(kind, w, h, data).map_err(|e| FfiError::Invalid(e.to_string()))
}

/// Hands a frame to the client as a buffer it copies, then drops.
fn owned(server: &FfiServer, frame: VideoBuffer) -> proto::OwnedVideoBuffer {
    let base = frame.data.as_ptr() as u64;
    let planes = frame.kind.planes(frame.width, frame.height);
    let components = if planes.len() > 1 {
        planes
            .iter()
            .map(|p| proto::video_buffer_info::ComponentInfo {
                data_ptr: base + p.offset as u64,
                stride: p.stride as u32,
                size: p.size() as u32,
            })
            .collect()
    } else {
        Vec::new()
    };
    let info = proto::VideoBufferInfo {
        r#type: frame.kind as i32,
        width: frame.width,
        height: frame.height,
        data_ptr: base,
        stride: Some(planes[0].stride as u32),
        components,
    };
    // The Vec's heap buffer does not move when the Vec moves into the handle.
    let id = server.insert_handle(FfiVideoBuffer { _data: frame.data });
    proto::OwnedVideoBuffer {
        handle: proto::FfiOwnedHandle { id },
        info,
    }
}

pub(super) fn video_convert(
    server: &FfiServer,
    r: proto::VideoConvertRequest,
) -> proto::VideoConvertResponse {
    use proto::video_convert_response::Message;
    let result = (|| {
        let to = BufferType::from_wire(r.dst_type).map_err(|e| FfiError::Invalid(e.to_string()))?;
        // SAFETY: see `frame_at`.
        let frame = unsafe { frame_at(&r.buffer)? };
        frame
            .convert(to, r.flip_y.unwrap_or(false))
            .map_err(|e| FfiError::Invalid(e.to_string()))
    })();
    proto::VideoConvertResponse {
        message: Some(match result {
            Ok(frame) => Message::Buffer(owned(server, frame)),
            Err(e) => Message::Error(e.to_string()),
        }),
    }
}
