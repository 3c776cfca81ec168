//! VP9 RTP packetization, RFC 9628 §4.2, non-flexible mode without layer
//! indices: a 3-byte payload descriptor (I=1 with a 15-bit PictureID, P on
//! inter frames, B on the first and E on the last packet of the frame).
//! A superframe (hidden frame + shown frame) travels whole as one frame.

/// Descriptor length in bytes.
pub const DESCRIPTOR: usize = 3;

/// Numbers frames with a 15-bit PictureID that wraps.
#[derive(Debug)]
pub struct Vp9Packetizer {
    picture_id: u16,
}

impl Default for Vp9Packetizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Vp9Packetizer {
    /// Start at a random PictureID.
    pub fn new() -> Vp9Packetizer {
        Vp9Packetizer {
            picture_id: super::random_picture_id(),
        }
    }

    /// Payloads of at most `max` bytes (descriptor included) for one frame;
    /// `keyframe` clears the P bit. The PictureID advances by one per call.
    pub fn packetize(&mut self, frame: &[u8], keyframe: bool, max: usize) -> Vec<Vec<u8>> {
        let pid = self.picture_id;
        self.picture_id = (pid + 1) & 0x7fff;
        if frame.is_empty() || max <= DESCRIPTOR {
            return Vec::new();
        }
        let chunks: Vec<&[u8]> = frame.chunks(max - DESCRIPTOR).collect();
        let n = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut b0 = 0x80; // I
                if !keyframe {
                    b0 |= 0x40; // P
                }
                if i == 0 {
                    b0 |= 0x08; // B
                }
                if i + 1 == n {
                    b0 |= 0x04; // E
                }
                let mut p = Vec::with_capacity(DESCRIPTOR + chunk.len());
                p.extend_from_slice(&[b0, 0x80 | (pid >> 8) as u8, pid as u8]);
                p.extend_from_slice(chunk);
                p
            })
            .collect()
    }
}

/// Key frame: the uncompressed header's `frame_type` is KEY_FRAME and
/// `show_existing_frame` is 0 (VP9 bitstream spec §6.2). For a superframe
/// the first frame decides.
pub fn is_keyframe(frame: &[u8]) -> bool {
    let Some(&b) = frame.first() else {
        return false;
    };
    if b & 0xc0 != 0x80 {
        return false; // frame_marker
    }
    let profile = ((b >> 5) & 1) | (((b >> 4) & 1) << 1);
    let (show_existing, frame_type) = if profile == 3 {
        ((b >> 2) & 1, (b >> 1) & 1)
    } else {
        ((b >> 3) & 1, (b >> 2) & 1)
    };
    show_existing == 0 && frame_type == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_bits() {
        let mut p = Vp9Packetizer { picture_id: 5 };
        let frame = vec![0x82u8; 2000];
        let k = p.packetize(&frame, true, 1200);
        assert_eq!(k.len(), 2);
        assert_eq!(&k[0][..3], &[0x88, 0x80, 5]);
        assert_eq!(&k[1][..3], &[0x84, 0x80, 5]);
        let d = p.packetize(&frame[..100], false, 1200);
        assert_eq!(&d[0][..3], &[0xcc, 0x80, 6]);
        assert!(is_keyframe(&[0x82, 0x49, 0x83, 0x42]));
        assert!(!is_keyframe(&[0x86]));
        assert!(!is_keyframe(&[0x8a]), "show_existing_frame");
    }
}
