//! Ogg (RFC 3533) packet reader for Ogg Opus files (RFC 7845): yields the Opus
//! packets after the `OpusHead` and `OpusTags` headers.

/// Opus packets of an Ogg Opus stream, in order. Errors on a broken page.
pub fn opus_packets(data: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut packets = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data.len() < i + 27 || &data[i..i + 4] != b"OggS" {
            anyhow::bail!("bad Ogg page at byte {i}");
        }
        let nseg = data[i + 26] as usize;
        let table = data
            .get(i + 27..i + 27 + nseg)
            .ok_or_else(|| anyhow::anyhow!("truncated Ogg page"))?;
        let mut p = i + 27 + nseg;
        for &len in table {
            let seg = data
                .get(p..p + len as usize)
                .ok_or_else(|| anyhow::anyhow!("truncated Ogg segment"))?;
            partial.extend_from_slice(seg);
            p += len as usize;
            if len < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        i = p;
    }
    Ok(packets
        .into_iter()
        .filter(|p| !p.starts_with(b"OpusHead") && !p.starts_with(b"OpusTags"))
        .collect())
}
