//! WHIP/WHEP client (filled in next).
