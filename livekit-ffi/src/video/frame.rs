//! Raw video frames in the official SDK's buffer types, and conversions between
//! them through yuvutils-rs (SIMD): BT.601 limited range, as libwebrtc's libyuv
//! converts, so colours come out the same on either SDK.
//!
//! Planes are packed, each right after the other with no padding, and chroma planes
//! round their size up (a 5x5 I420 frame has 3x3 chroma planes). Converting goes
//! through RGBA unless one side is RGBA, BGRA or RGB24 and the other a YUV type the
//! crate converts to and from directly.

use yuv::{
    BufferStoreMut, YuvBiPlanarImage, YuvBiPlanarImageMut, YuvConversionMode, YuvPlanarImage,
    YuvPlanarImageMut, YuvPlanarImageWithAlpha, YuvRange, YuvStandardMatrix,
};

/// The official SDK's `VideoBufferType`, with its wire numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BufferType {
    Rgba = 0,
    Abgr = 1,
    Argb = 2,
    Bgra = 3,
    Rgb24 = 4,
    I420 = 5,
    I420a = 6,
    I422 = 7,
    I444 = 8,
    I010 = 9,
    Nv12 = 10,
}

/// The largest side a frame may have (16K).
pub const MAX_SIDE: u32 = 16384;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VideoError {
    #[error("a frame's width and height must be 1 to {MAX_SIDE}, not {0}x{1}")]
    Size(u32, u32),
    #[error("{kind:?} at {width}x{height} needs {need} bytes, got {got}")]
    Short {
        kind: BufferType,
        width: u32,
        height: u32,
        need: usize,
        got: usize,
    },
    #[error("unknown video buffer type {0}")]
    Type(i32),
    #[error("conversion failed: {0}")]
    Convert(String),
}

/// One plane: where it starts in the buffer, its bytes per row and its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plane {
    pub offset: usize,
    pub stride: usize,
    pub rows: usize,
}

impl Plane {
    pub fn size(&self) -> usize {
        self.stride * self.rows
    }
}

impl BufferType {
    pub fn from_wire(n: i32) -> Result<Self, VideoError> {
        use BufferType::*;
        Ok(match n {
            0 => Rgba,
            1 => Abgr,
            2 => Argb,
            3 => Bgra,
            4 => Rgb24,
            5 => I420,
            6 => I420a,
            7 => I422,
            8 => I444,
            9 => I010,
            10 => Nv12,
            other => return Err(VideoError::Type(other)),
        })
    }

    /// The planes of a `width` x `height` frame, packed one after the other.
    pub fn planes(self, width: u32, height: u32) -> Vec<Plane> {
        use BufferType::*;
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let dims: Vec<(usize, usize)> = match self {
            Rgba | Abgr | Argb | Bgra => vec![(w * 4, h)],
            Rgb24 => vec![(w * 3, h)],
            I420 => vec![(w, h), (cw, ch), (cw, ch)],
            I420a => vec![(w, h), (cw, ch), (cw, ch), (w, h)],
            I422 => vec![(w, h), (cw, h), (cw, h)],
            I444 => vec![(w, h), (w, h), (w, h)],
            I010 => vec![(w * 2, h), (cw * 2, ch), (cw * 2, ch)],
            Nv12 => vec![(w, h), (cw * 2, ch)],
        };
        let mut offset = 0;
        dims.into_iter()
            .map(|(stride, rows)| {
                let p = Plane {
                    offset,
                    stride,
                    rows,
                };
                offset += p.size();
                p
            })
            .collect()
    }

    /// Bytes of a whole `width` x `height` frame.
    pub fn len(self, width: u32, height: u32) -> usize {
        self.planes(width, height).iter().map(Plane::size).sum()
    }

    fn is_packed(self) -> bool {
        use BufferType::*;
        matches!(self, Rgba | Abgr | Argb | Bgra | Rgb24)
    }
}

/// A frame's pixels with their type and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoBuffer {
    pub kind: BufferType,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

const RANGE: YuvRange = YuvRange::Limited;
const MATRIX: YuvStandardMatrix = YuvStandardMatrix::Bt601;
const MODE: YuvConversionMode = YuvConversionMode::Balanced;

/// Whether a frame of `width` x `height` may exist (checked before reading one).
pub fn check_size(width: u32, height: u32) -> Result<(), VideoError> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(VideoError::Size(width, height));
    }
    Ok(())
}

fn failed(e: impl std::fmt::Display) -> VideoError {
    VideoError::Convert(e.to_string())
}

impl VideoBuffer {
    /// A frame over `data`, which must hold the whole frame (more is cut off).
    pub fn new(
        kind: BufferType,
        width: u32,
        height: u32,
        mut data: Vec<u8>,
    ) -> Result<Self, VideoError> {
        check_size(width, height)?;
        let need = kind.len(width, height);
        if data.len() < need {
            return Err(VideoError::Short {
                kind,
                width,
                height,
                need,
                got: data.len(),
            });
        }
        data.truncate(need);
        Ok(Self {
            kind,
            width,
            height,
            data,
        })
    }

    /// The bytes of plane `n`.
    pub fn plane(&self, n: usize) -> Option<&[u8]> {
        let p = *self.kind.planes(self.width, self.height).get(n)?;
        self.data.get(p.offset..p.offset + p.size())
    }

    /// The frame as `to`, upside down with `flip_y`.
    pub fn convert(&self, to: BufferType, flip_y: bool) -> Result<VideoBuffer, VideoError> {
        let (w, h) = (self.width, self.height);
        let out = if self.kind == to {
            self.data.clone()
        } else if self.kind.is_packed() && direct_yuv(to) {
            // RGBA, BGRA and RGB24 go straight to YUV; ABGR and ARGB through RGBA.
            match self.kind {
                BufferType::Rgba | BufferType::Bgra | BufferType::Rgb24 => {
                    from_packed(self.kind, &self.data, to, w, h)?
                }
                _ => from_packed(BufferType::Rgba, &self.to_rgba()?, to, w, h)?,
            }
        } else if to.is_packed() && direct_yuv(self.kind) {
            match to {
                BufferType::Rgba | BufferType::Bgra | BufferType::Rgb24 => {
                    self.yuv_to_packed(to)?
                }
                _ => rgba_to(&self.yuv_to_packed(BufferType::Rgba)?, to, w, h)?,
            }
        } else {
            rgba_to(&self.to_rgba()?, to, w, h)?
        };
        let mut converted = VideoBuffer {
            kind: to,
            width: w,
            height: h,
            data: out,
        };
        if flip_y {
            converted.flip_rows();
        }
        Ok(converted)
    }

    /// Reverses the row order of every plane.
    fn flip_rows(&mut self) {
        for p in self.kind.planes(self.width, self.height) {
            let plane = &mut self.data[p.offset..p.offset + p.size()];
            for r in 0..p.rows / 2 {
                let (top, bottom) = plane.split_at_mut((p.rows - 1 - r) * p.stride);
                top[r * p.stride..(r + 1) * p.stride].swap_with_slice(&mut bottom[..p.stride]);
            }
        }
    }

    /// The frame as RGBA (4 bytes a pixel).
    fn to_rgba(&self) -> Result<Vec<u8>, VideoError> {
        let (w, h) = (self.width, self.height);
        let mut rgba = vec![0u8; w as usize * h as usize * 4];
        let stride = w * 4;
        match self.kind {
            BufferType::Rgba => rgba.copy_from_slice(&self.data),
            BufferType::Bgra => {
                yuv::bgra_to_rgba(&self.data, stride, &mut rgba, stride, w, h).map_err(failed)?
            }
            BufferType::Rgb24 => {
                yuv::rgb_to_rgba(&self.data, w * 3, &mut rgba, stride, w, h).map_err(failed)?
            }
            BufferType::Abgr | BufferType::Argb => {
                rgba.copy_from_slice(&self.data);
                swizzle(&mut rgba, self.kind, true);
            }
            BufferType::I010 => {
                let words: Vec<u16> = self
                    .data
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect();
                let image = planar(&words, &self.kind.planes(w, h), 2, w, h);
                yuv::i010_to_rgba(&image, &mut rgba, stride, RANGE, MATRIX).map_err(failed)?
            }
            _ => return self.yuv_to_packed(BufferType::Rgba),
        }
        Ok(rgba)
    }

    /// An 8-bit YUV frame (I420, I420A, I422, I444, NV12) as RGBA, BGRA or RGB24.
    fn yuv_to_packed(&self, to: BufferType) -> Result<Vec<u8>, VideoError> {
        let (w, h) = (self.width, self.height);
        let bpp = if to == BufferType::Rgb24 { 3 } else { 4 };
        let stride = w * bpp;
        let mut out = vec![0u8; stride as usize * h as usize];
        let p = self.kind.planes(w, h);
        let at = |i: usize| &self.data[p[i].offset..p[i].offset + p[i].size()];
        let planar = || planar(&self.data, &p, 1, w, h);
        use BufferType as B;
        let r = match (self.kind, to) {
            (B::I420, B::Rgba) => yuv::yuv420_to_rgba(&planar(), &mut out, stride, RANGE, MATRIX),
            (B::I420, B::Bgra) => yuv::yuv420_to_bgra(&planar(), &mut out, stride, RANGE, MATRIX),
            (B::I420, B::Rgb24) => yuv::yuv420_to_rgb(&planar(), &mut out, stride, RANGE, MATRIX),
            (B::I422, B::Rgba) => yuv::yuv422_to_rgba(&planar(), &mut out, stride, RANGE, MATRIX),
            (B::I422, B::Bgra) => yuv::yuv422_to_bgra(&planar(), &mut out, stride, RANGE, MATRIX),
            (B::I422, B::Rgb24) => yuv::yuv422_to_rgb(&planar(), &mut out, stride, RANGE, MATRIX),
            (B::I444, B::Rgba) => yuv::yuv444_to_rgba(&planar(), &mut out, stride, RANGE, MATRIX),
            (B::I444, B::Bgra) => yuv::yuv444_to_bgra(&planar(), &mut out, stride, RANGE, MATRIX),
            (B::I444, B::Rgb24) => yuv::yuv444_to_rgb(&planar(), &mut out, stride, RANGE, MATRIX),
            (B::I420a, B::Rgba | B::Bgra) => {
                let yuv = planar();
                let image = YuvPlanarImageWithAlpha {
                    y_plane: yuv.y_plane,
                    y_stride: yuv.y_stride,
                    u_plane: yuv.u_plane,
                    u_stride: yuv.u_stride,
                    v_plane: yuv.v_plane,
                    v_stride: yuv.v_stride,
                    a_plane: at(3),
                    a_stride: p[3].stride as u32,
                    width: w,
                    height: h,
                };
                if to == B::Rgba {
                    yuv::yuv420_alpha_to_rgba(&image, &mut out, stride, RANGE, MATRIX, false)
                } else {
                    yuv::yuv420_alpha_to_bgra(&image, &mut out, stride, RANGE, MATRIX, false)
                }
            }
            (B::I420a, B::Rgb24) => yuv::yuv420_to_rgb(&planar(), &mut out, stride, RANGE, MATRIX),
            (B::Nv12, _) => {
                let image = YuvBiPlanarImage {
                    y_plane: at(0),
                    y_stride: p[0].stride as u32,
                    uv_plane: at(1),
                    uv_stride: p[1].stride as u32,
                    width: w,
                    height: h,
                };
                match to {
                    B::Rgba => yuv::yuv_nv12_to_rgba(&image, &mut out, stride, RANGE, MATRIX, MODE),
                    B::Bgra => yuv::yuv_nv12_to_bgra(&image, &mut out, stride, RANGE, MATRIX, MODE),
                    _ => yuv::yuv_nv12_to_rgb(&image, &mut out, stride, RANGE, MATRIX, MODE),
                }
            }
            (from, to) => {
                return Err(VideoError::Convert(format!(
                    "no direct path from {from:?} to {to:?}"
                )))
            }
        };
        r.map_err(failed)?;
        Ok(out)
    }
}

/// The Y, U and V planes of a planar frame as the crate takes them, `samples`
/// holding the frame in units of `unit` bytes (strides in samples, not bytes).
fn planar<'a, T: Copy + std::fmt::Debug>(
    samples: &'a [T],
    planes: &[Plane],
    unit: usize,
    w: u32,
    h: u32,
) -> YuvPlanarImage<'a, T> {
    let at =
        |i: usize| &samples[planes[i].offset / unit..(planes[i].offset + planes[i].size()) / unit];
    let stride = |i: usize| (planes[i].stride / unit) as u32;
    YuvPlanarImage {
        y_plane: at(0),
        y_stride: stride(0),
        u_plane: at(1),
        u_stride: stride(1),
        v_plane: at(2),
        v_stride: stride(2),
        width: w,
        height: h,
    }
}

/// The 8-bit YUV types the crate converts to and from packed RGB directly.
fn direct_yuv(kind: BufferType) -> bool {
    use BufferType::*;
    matches!(kind, I420 | I420a | I422 | I444 | Nv12)
}

/// RGBA (4 bytes a pixel, `w` x `h`) as `to`.
fn rgba_to(rgba: &[u8], to: BufferType, w: u32, h: u32) -> Result<Vec<u8>, VideoError> {
    let stride = w * 4;
    match to {
        BufferType::Rgba => Ok(rgba.to_vec()),
        BufferType::Abgr | BufferType::Argb => {
            let mut out = rgba.to_vec();
            swizzle(&mut out, to, false);
            Ok(out)
        }
        BufferType::Bgra => {
            let mut out = vec![0u8; rgba.len()];
            yuv::rgba_to_bgra(rgba, stride, &mut out, stride, w, h).map_err(failed)?;
            Ok(out)
        }
        BufferType::Rgb24 => {
            let mut out = vec![0u8; w as usize * h as usize * 3];
            yuv::rgba_to_rgb(rgba, stride, &mut out, w * 3, w, h).map_err(failed)?;
            Ok(out)
        }
        BufferType::I010 => {
            // 8-bit samples widened to 10 bits (x4), little endian.
            let i420 = from_packed(BufferType::Rgba, rgba, BufferType::I420, w, h)?;
            Ok(i420
                .iter()
                .flat_map(|s| (u16::from(*s) << 2).to_le_bytes())
                .collect())
        }
        yuv_type => from_packed(BufferType::Rgba, rgba, yuv_type, w, h),
    }
}

/// Packed RGBA, BGRA or RGB24 as an 8-bit YUV type.
fn from_packed(
    from: BufferType,
    src: &[u8],
    to: BufferType,
    w: u32,
    h: u32,
) -> Result<Vec<u8>, VideoError> {
    use BufferType as B;
    let src_stride = w * if from == B::Rgb24 { 3 } else { 4 };
    let mut out = vec![0u8; to.len(w, h)];
    let p = to.planes(w, h);
    if to == B::Nv12 {
        let (y, uv) = out.split_at_mut(p[1].offset);
        let mut image = YuvBiPlanarImageMut {
            y_plane: BufferStoreMut::Borrowed(y),
            y_stride: p[0].stride as u32,
            uv_plane: BufferStoreMut::Borrowed(uv),
            uv_stride: p[1].stride as u32,
            width: w,
            height: h,
        };
        let r = match from {
            B::Rgba => yuv::rgba_to_yuv_nv12(&mut image, src, src_stride, RANGE, MATRIX, MODE),
            B::Bgra => yuv::bgra_to_yuv_nv12(&mut image, src, src_stride, RANGE, MATRIX, MODE),
            _ => yuv::rgb_to_yuv_nv12(&mut image, src, src_stride, RANGE, MATRIX, MODE),
        };
        r.map_err(failed)?;
        return Ok(out);
    }
    let (y, rest) = out.split_at_mut(p[1].offset);
    let (u, rest) = rest.split_at_mut(p[1].size());
    let (v, alpha) = rest.split_at_mut(p[2].size());
    let mut image = YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(y),
        y_stride: p[0].stride as u32,
        u_plane: BufferStoreMut::Borrowed(u),
        u_stride: p[1].stride as u32,
        v_plane: BufferStoreMut::Borrowed(v),
        v_stride: p[2].stride as u32,
        width: w,
        height: h,
    };
    let r = match (to, from) {
        (B::I420 | B::I420a, B::Rgba) => {
            yuv::rgba_to_yuv420(&mut image, src, src_stride, RANGE, MATRIX, MODE)
        }
        (B::I420 | B::I420a, B::Bgra) => {
            yuv::bgra_to_yuv420(&mut image, src, src_stride, RANGE, MATRIX, MODE)
        }
        (B::I420 | B::I420a, _) => {
            yuv::rgb_to_yuv420(&mut image, src, src_stride, RANGE, MATRIX, MODE)
        }
        (B::I422, B::Rgba) => yuv::rgba_to_yuv422(&mut image, src, src_stride, RANGE, MATRIX, MODE),
        (B::I422, B::Bgra) => yuv::bgra_to_yuv422(&mut image, src, src_stride, RANGE, MATRIX, MODE),
        (B::I422, _) => yuv::rgb_to_yuv422(&mut image, src, src_stride, RANGE, MATRIX, MODE),
        (B::I444, B::Rgba) => yuv::rgba_to_yuv444(&mut image, src, src_stride, RANGE, MATRIX, MODE),
        (B::I444, B::Bgra) => yuv::bgra_to_yuv444(&mut image, src, src_stride, RANGE, MATRIX, MODE),
        (B::I444, _) => yuv::rgb_to_yuv444(&mut image, src, src_stride, RANGE, MATRIX, MODE),
        (to, from) => {
            return Err(VideoError::Convert(format!(
                "no direct path from {from:?} to {to:?}"
            )))
        }
    };
    r.map_err(failed)?;
    if to == B::I420a {
        // Alpha as given (opaque for RGB24, which has none).
        match from {
            B::Rgb24 => alpha.fill(255),
            _ => alpha
                .iter_mut()
                .zip(src.chunks_exact(4))
                .for_each(|(a, px)| *a = px[3]),
        }
    }
    Ok(out)
}

/// Reorders 4-byte pixels between RGBA and ABGR / ARGB (`to_rgba` picks the way).
/// ABGR is RGBA with its bytes reversed; ARGB is RGBA rotated by one byte.
fn swizzle(data: &mut [u8], other: BufferType, to_rgba: bool) {
    for px in data.chunks_exact_mut(4) {
        let v = u32::from_le_bytes([px[0], px[1], px[2], px[3]]);
        let v = match (other, to_rgba) {
            (BufferType::Abgr, _) => v.swap_bytes(),
            (_, true) => v.rotate_right(8),
            (_, false) => v.rotate_left(8),
        };
        px.copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [BufferType; 11] = [
        BufferType::Rgba,
        BufferType::Abgr,
        BufferType::Argb,
        BufferType::Bgra,
        BufferType::Rgb24,
        BufferType::I420,
        BufferType::I420a,
        BufferType::I422,
        BufferType::I444,
        BufferType::I010,
        BufferType::Nv12,
    ];

    fn solid(w: u32, h: u32, rgba: [u8; 4]) -> VideoBuffer {
        let data = rgba.repeat(w as usize * h as usize);
        VideoBuffer::new(BufferType::Rgba, w, h, data).unwrap()
    }

    fn near(a: &[u8], b: &[u8], tolerance: u8) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.abs_diff(*y) <= tolerance)
    }

    #[test]
    fn sizes_follow_the_official_layouts() {
        assert_eq!(BufferType::I420.len(5, 5), 25 + 9 + 9);
        assert_eq!(BufferType::I420a.len(4, 2), 8 + 2 + 2 + 8);
        assert_eq!(BufferType::I422.len(5, 2), 10 + 6 + 6);
        assert_eq!(BufferType::I010.len(4, 4), 32 + 8 + 8);
        assert_eq!(BufferType::Nv12.len(640, 360), 640 * 360 * 3 / 2);
        assert_eq!(BufferType::Rgb24.len(3, 3), 27);
        let planes = BufferType::I420.planes(640, 360);
        assert_eq!(planes[2].offset, 640 * 360 + 320 * 180);
        assert_eq!(
            VideoBuffer::new(BufferType::I420, 4, 4, vec![0; 10]).unwrap_err(),
            VideoError::Short {
                kind: BufferType::I420,
                width: 4,
                height: 4,
                need: 24,
                got: 10
            }
        );
        assert_eq!(
            VideoBuffer::new(BufferType::Rgba, 0, 4, vec![]).unwrap_err(),
            VideoError::Size(0, 4)
        );
        assert!(BufferType::from_wire(11).is_err());
    }

    #[test]
    fn every_type_round_trips_a_solid_colour() {
        // Odd sizes too: chroma rounds up.
        for (w, h) in [(64, 36), (5, 3)] {
            let red = solid(w, h, [200, 30, 40, 255]);
            for kind in ALL {
                let there = red.convert(kind, false).unwrap();
                assert_eq!(there.data.len(), kind.len(w, h), "{kind:?}");
                let back = there.convert(BufferType::Rgba, false).unwrap();
                // YUV loses a little in the 601 limited range; packed types nothing.
                let tolerance = if kind.is_packed() { 0 } else { 3 };
                assert!(
                    near(&back.data, &red.data, tolerance),
                    "{kind:?} {w}x{h}: {:?}",
                    &back.data[..8]
                );
            }
        }
    }

    #[test]
    fn any_type_converts_to_any_other() {
        let green = solid(8, 6, [20, 180, 60, 255]);
        for from in ALL {
            let src = green.convert(from, false).unwrap();
            for to in ALL {
                let out = src.convert(to, false).unwrap();
                let rgba = out.convert(BufferType::Rgba, false).unwrap();
                assert!(near(&rgba.data, &green.data, 6), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn packed_orders_and_yuv_values_are_the_usual_ones() {
        let px = solid(1, 1, [1, 2, 3, 4]);
        let bytes = |k| px.convert(k, false).unwrap().data;
        assert_eq!(bytes(BufferType::Abgr), [4, 3, 2, 1]);
        assert_eq!(bytes(BufferType::Argb), [4, 1, 2, 3]);
        assert_eq!(bytes(BufferType::Bgra), [3, 2, 1, 4]);
        assert_eq!(bytes(BufferType::Rgb24), [1, 2, 3]);
        // BT.601 limited: white is Y 235, black Y 16, and grey has neutral chroma.
        let white = solid(2, 2, [255, 255, 255, 255])
            .convert(BufferType::I420, false)
            .unwrap();
        assert!(white.plane(0).unwrap().iter().all(|y| y.abs_diff(235) <= 1));
        assert!(white.plane(1).unwrap().iter().all(|u| u.abs_diff(128) <= 1));
        let black = solid(2, 2, [0, 0, 0, 255])
            .convert(BufferType::I420, false)
            .unwrap();
        assert!(black.plane(0).unwrap().iter().all(|y| y.abs_diff(16) <= 1));
    }

    #[test]
    fn flip_y_reverses_the_rows() {
        // Two rows: red above blue.
        let mut data = [200u8, 0, 0, 255].repeat(4);
        data.extend([0u8, 0, 200, 255].repeat(4));
        let frame = VideoBuffer::new(BufferType::Rgba, 4, 2, data).unwrap();
        let flipped = frame.convert(BufferType::Rgba, true).unwrap();
        assert_eq!(&flipped.data[..4], &[0, 0, 200, 255]);
        assert_eq!(&flipped.data[16..20], &[200, 0, 0, 255]);
        let yuv = frame.convert(BufferType::I444, true).unwrap();
        let back = yuv.convert(BufferType::Rgba, false).unwrap();
        assert!(near(&back.data[..4], &[0, 0, 200, 255], 4));
    }
}
