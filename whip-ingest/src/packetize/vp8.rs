//! VP8 RTP packetization, RFC 7741 §4.2: a 4-byte payload descriptor
//! (X=1, S on the first packet, partition index 0; I=1 with a 15-bit
//! PictureID, M=1) in front of each slice of the frame.

/// Descriptor length in bytes.
pub const DESCRIPTOR: usize = 4;

/// Numbers frames with a 15-bit PictureID (RFC 7741 §4.2) that wraps.
#[derive(Debug)]
pub struct Vp8Packetizer {
    picture_id: u16,
}

impl Default for Vp8Packetizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Vp8Packetizer {
    /// Start at a random PictureID.
    pub fn new() -> Vp8Packetizer {
        Vp8Packetizer {
            picture_id: super::random_picture_id(),
        }
    }

    /// Payloads of at most `max` bytes (descriptor included) for one
    /// compressed frame; the PictureID advances by one per call.
    pub fn packetize(&mut self, frame: &[u8], max: usize) -> Vec<Vec<u8>> {
        let pid = self.picture_id;
        self.picture_id = (pid + 1) & 0x7fff;
        if frame.is_empty() || max <= DESCRIPTOR {
            return Vec::new();
        }
        frame
            .chunks(max - DESCRIPTOR)
            .enumerate()
            .map(|(i, chunk)| {
                let s = if i == 0 { 0x10 } else { 0 };
                let mut p = Vec::with_capacity(DESCRIPTOR + chunk.len());
                p.extend_from_slice(&[0x80 | s, 0x80, 0x80 | (pid >> 8) as u8, pid as u8]);
                p.extend_from_slice(chunk);
                p
            })
            .collect()
    }
}

/// Key frame: the P bit of the VP8 frame tag is 0 (RFC 6386 §9.1).
pub fn is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_and_sizes() {
        let mut p = Vp8Packetizer { picture_id: 0x7fff };
        let frame: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let pk = p.packetize(&frame, 1200);
        assert_eq!(pk.len(), 3);
        assert!(pk.iter().all(|x| x.len() <= 1200));
        assert_eq!(&pk[0][..4], &[0x90, 0x80, 0xff, 0xff]);
        assert_eq!(&pk[1][..4], &[0x80, 0x80, 0xff, 0xff]);
        let body: Vec<u8> = pk.iter().flat_map(|x| x[4..].to_vec()).collect();
        assert_eq!(body, frame);
        let next = p.packetize(&frame[..10], 1200);
        assert_eq!(&next[0][..4], &[0x90, 0x80, 0x80, 0x00], "PictureID wraps");
    }
}
