//! H.264 sequence and picture parameter set parsing (ITU-T H.264 §7.3.2.1,
//! §7.3.2.2): the fields a publisher needs to describe its stream (size,
//! frame rate, `profile-level-id`, parameter set ids).

/// What a sequence parameter set says about the stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sps {
    /// `profile_idc` (66 Baseline, 77 Main, 100 High, ...).
    pub profile_idc: u8,
    /// The `constraint_set` flags byte.
    pub constraints: u8,
    /// `level_idc` (31 = level 3.1).
    pub level_idc: u8,
    /// `seq_parameter_set_id`.
    pub id: u32,
    /// Picture width in pixels (after cropping).
    pub width: u32,
    /// Picture height in pixels (after cropping).
    pub height: u32,
    /// Frame rate from the VUI timing information, when present.
    pub fps: Option<f64>,
}

impl Sps {
    /// `profile-level-id` for SDP (RFC 6184 §8.1), e.g. `0x42c01f`.
    pub fn profile_level_id(&self) -> u32 {
        u32::from(self.profile_idc) << 16
            | u32::from(self.constraints) << 8
            | u32::from(self.level_idc)
    }
}

/// Remove emulation prevention bytes (`00 00 03` → `00 00`).
pub fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Big-endian bit reader with Exp-Golomb codes.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = v << 1 | self.bit()?;
        }
        Some(v)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        Some(if k % 2 == 1 {
            k.div_ceil(2) as i32
        } else {
            -((k / 2) as i32)
        })
    }
}

fn skip_scaling_list(r: &mut Bits<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Parse a sequence parameter set NAL unit (with its one-byte header).
/// `None` if it is not an SPS or is truncated.
pub fn parse_sps(nal: &[u8]) -> Option<Sps> {
    if nal.first()? & 0x1f != 7 {
        return None;
    }
    let data = unescape(&nal[1..]);
    let r = &mut Bits {
        data: &data,
        pos: 0,
    };
    let profile_idc = r.bits(8)? as u8;
    let constraints = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    let id = r.ue()?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = 0;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let n = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..n {
                if r.bit()? == 1 {
                    skip_scaling_list(r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()? {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_map_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        (cl, cr, ct, cb) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    let chroma_array_type = if separate_colour_plane == 1 {
        0
    } else {
        chroma_format_idc
    };
    let (sub_w, sub_h) = match chroma_array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let (crop_x, crop_y) = if chroma_array_type == 0 {
        (1, 2 - frame_mbs_only)
    } else {
        (sub_w, sub_h * (2 - frame_mbs_only))
    };
    let width = (width_mbs * 16).checked_sub(crop_x * (cl + cr))?;
    let height = ((2 - frame_mbs_only) * height_map_units * 16).checked_sub(crop_y * (ct + cb))?;
    let fps = vui_fps(r);
    Some(Sps {
        profile_idc,
        constraints,
        level_idc,
        id,
        width,
        height,
        fps,
    })
}

fn vui_fps(r: &mut Bits<'_>) -> Option<f64> {
    if r.bit()? == 0 {
        return None; // no VUI
    }
    if r.bit()? == 1 && r.bits(8)? == 255 {
        r.bits(32)?; // sar_width, sar_height
    }
    if r.bit()? == 1 {
        r.bit()?; // overscan_appropriate_flag
    }
    if r.bit()? == 1 {
        r.bits(4)?; // video_format, video_full_range_flag
        if r.bit()? == 1 {
            r.bits(24)?; // colour description
        }
    }
    if r.bit()? == 1 {
        r.ue()?;
        r.ue()?;
    }
    if r.bit()? == 0 {
        return None;
    }
    let units = r.bits(32)?;
    let scale = r.bits(32)?;
    if units == 0 || scale == 0 {
        return None;
    }
    let fps = f64::from(scale) / (2.0 * f64::from(units));
    (0.5..=1000.0).contains(&fps).then_some(fps)
}

/// `pic_parameter_set_id` of a picture parameter set NAL unit.
pub fn pps_id(nal: &[u8]) -> Option<u32> {
    if nal.first()? & 0x1f != 8 {
        return None;
    }
    let data = unescape(&nal[1..nal.len().min(16)]);
    Bits {
        data: &data,
        pos: 0,
    }
    .ue()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_x264_sps() {
        // ffmpeg 5.1 libx264 baseline 1280x720 (from sprop-parameter-sets).
        let sps = [
            0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc8, 0xf1, 0x83, 0x24, 0x80,
        ];
        let s = parse_sps(&sps).unwrap();
        assert_eq!((s.width, s.height), (1280, 720));
        assert_eq!(s.profile_level_id(), 0x42c01f);
        assert_eq!(s.fps, Some(30.0));
        assert_eq!(s.id, 0);
        assert_eq!(pps_id(&[0x68, 0xcb, 0x83, 0xcb, 0x20]), Some(0));
        assert!(parse_sps(&[0x68, 1]).is_none());
    }
}
