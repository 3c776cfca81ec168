//! VP8 PictureID / TL0PICIDX continuity across simulcast layer switches
//! (RFC 7741 §4.2): each layer numbers its pictures independently, so after a
//! switch the viewer would see a jump. An offset per field, re-based at the
//! switch, makes the forwarded numbering continue by one.

/// A PictureID: value and whether it uses the 15-bit representation.
pub type PictureId = (u16, bool);

/// PictureID and TL0PICIDX of a VP8 payload descriptor, when present.
/// `None` for a malformed descriptor.
pub fn read(payload: &[u8]) -> Option<(Option<PictureId>, Option<u8>)> {
    let b0 = *payload.first()?;
    if b0 & 0x80 == 0 {
        return Some((None, None));
    }
    let x = *payload.get(1)?;
    let mut i = 2;
    let mut pid = None;
    if x & 0x80 != 0 {
        let p = *payload.get(i)?;
        if p & 0x80 != 0 {
            pid = Some((
                (u16::from(p & 0x7f) << 8) | u16::from(*payload.get(i + 1)?),
                true,
            ));
            i += 2;
        } else {
            pid = Some((u16::from(p), false));
            i += 1;
        }
    }
    let tl0 = if x & 0x40 != 0 {
        Some(*payload.get(i)?)
    } else {
        None
    };
    Some((pid, tl0))
}

/// Per-viewer VP8 numbering offsets.
#[derive(Debug, Clone, Default)]
pub struct Vp8Ids {
    off_pid: u16,
    off_tl0: u8,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
    rebase: bool,
}

impl Vp8Ids {
    /// The next packet starts a new layer: continue the numbering from it.
    pub fn on_switch(&mut self) {
        self.rebase = true;
    }

    /// Map one packet's fields; returns the values to write, `None` where
    /// the packet is forwarded unchanged (no field, or no offset yet).
    pub fn map(&mut self, pid: Option<PictureId>, tl0: Option<u8>) -> (Option<u16>, Option<u8>) {
        if self.rebase {
            self.rebase = false;
            if let (Some((p, wide)), Some(last)) = (pid, self.last_pid) {
                let m = if wide { 0x8000u32 } else { 0x80 };
                self.off_pid = ((u32::from(last) + 1 + m - u32::from(p) % m) % m) as u16;
            }
            if let (Some(t), Some(last)) = (tl0, self.last_tl0) {
                self.off_tl0 = last.wrapping_add(1).wrapping_sub(t);
            }
        }
        let out_pid = pid.map(|(p, wide)| {
            let m = if wide { 0x8000u32 } else { 0x80 };
            ((u32::from(p) + u32::from(self.off_pid)) % m) as u16
        });
        let out_tl0 = tl0.map(|t| t.wrapping_add(self.off_tl0));
        if out_pid.is_some() {
            self.last_pid = out_pid;
        }
        if out_tl0.is_some() {
            self.last_tl0 = out_tl0;
        }
        (
            out_pid.filter(|_| self.off_pid != 0),
            out_tl0.filter(|_| self.off_tl0 != 0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_descriptor() {
        // X, I (15-bit 0x1234), L (tl0 9).
        assert_eq!(
            read(&[0x90, 0xc0, 0x92, 0x34, 9, 0]),
            Some((Some((0x1234, true)), Some(9)))
        );
        assert_eq!(read(&[0x90, 0x80, 0x05]), Some((Some((5, false)), None)));
        assert_eq!(read(&[0x10, 0]), Some((None, None)));
        assert_eq!(read(&[0x90, 0xc0, 0x92]), None);
        assert_eq!(read(&[]), None);
    }

    #[test]
    fn continues_across_switch_and_wraps() {
        let mut v = Vp8Ids::default();
        // Layer A: pictures 100, 101 unchanged.
        assert_eq!(v.map(Some((100, true)), Some(7)), (None, None));
        assert_eq!(v.map(Some((101, true)), Some(8)), (None, None));
        // Switch to layer B numbered 32760..: continues at 102, tl0 9.
        v.on_switch();
        assert_eq!(v.map(Some((32_760, true)), Some(200)), (Some(102), Some(9)));
        assert_eq!(
            v.map(Some((32_767, true)), Some(201)),
            (Some(109), Some(10))
        );
        assert_eq!(v.map(Some((0, true)), Some(202)), (Some(110), Some(11)));
    }
}
