//! Command-line value parsers: durations (`10`, `10s`, `500ms`, `2m`) and
//! rates (`50`, `50/s`, `3000/m`).

/// Parse a duration into seconds: a bare number is seconds; suffixes `ms`,
/// `s`, `m` (minutes) and `h` are accepted.
pub fn seconds(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 10, 10s, 500ms, 2m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}`: a duration must be finite and >= 0"));
    }
    Ok(v * mult)
}

/// Parse a rate into events per second: `50`, `50/s`, `3000/m`.
pub fn per_second(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, div) = if let Some(n) = t.strip_suffix("/s") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("/m") {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a rate (e.g. 50, 50/s, 3000/m)"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("`{s}`: a rate must be finite and > 0"));
    }
    Ok(v / div)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(seconds("10"), Ok(10.0));
        assert_eq!(seconds("10s"), Ok(10.0));
        assert_eq!(seconds("2m"), Ok(120.0));
        assert_eq!(seconds("500ms"), Ok(0.5));
        assert_eq!(seconds("1.5"), Ok(1.5));
        assert!(seconds("x").is_err());
        assert!(seconds("-1s").is_err());
        assert!(seconds("").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(per_second("50"), Ok(50.0));
        assert_eq!(per_second("50/s"), Ok(50.0));
        assert_eq!(per_second("120/m"), Ok(2.0));
        assert!(per_second("0").is_err());
        assert!(per_second("fast").is_err());
    }
}
