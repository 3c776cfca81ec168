//! Value checks of the configuration, shared by the TOML file and the
//! command line. In the file they run while the value is deserialized
//! (`deserialize_with`), so the TOML parser's error names its line, as for
//! unknown keys and wrong types; [`super::Config::resolve`] runs them again
//! on the merged values (flags and environment).

use super::StreamAuth;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// `v` seconds as a duration: non-negative and finite.
pub fn seconds(key: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| format!("{key} must be a non-negative number of seconds (got {v})"))
}

/// A request rate limit: non-negative and finite (0 = off).
pub fn rate_limit(v: f64) -> Result<f64, String> {
    if v >= 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(format!(
            "rate_limit must be a non-negative number (got {v})"
        ))
    }
}

/// A worker thread count: 1 to 256.
pub fn workers(n: usize) -> Result<usize, String> {
    if (1..=256).contains(&n) {
        Ok(n)
    } else {
        Err(format!("workers must be between 1 and 256 (got {n})"))
    }
}

/// An advertised candidate address: unicast and specified.
pub fn advertise(ip: IpAddr) -> Result<IpAddr, String> {
    if ip.is_unspecified() || ip.is_multicast() {
        Err(format!(
            "advertise address {ip} is not a usable unicast address"
        ))
    } else {
        Ok(ip)
    }
}

/// A STUN/TURN server URL of `ice_servers`.
pub fn ice_url(url: &str) -> Result<(), String> {
    if ["stun:", "turn:", "turns:"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        Ok(())
    } else {
        Err(format!(
            "ice_servers url must start with stun:, turn: or turns: (got {url})"
        ))
    }
}

/// A TURN URL of the TURN REST secret.
pub fn turn_url(url: &str) -> Result<(), String> {
    if url.starts_with("turn:") || url.starts_with("turns:") {
        Ok(())
    } else {
        Err(format!(
            "turn url must start with turn: or turns: (got {url})"
        ))
    }
}

/// The TURN REST secret: not empty.
pub fn turn_secret(secret: &str) -> Result<(), String> {
    if secret.is_empty() {
        Err("turn secret must not be empty".into())
    } else {
        Ok(())
    }
}

/// A `[streams.NAME]` name.
pub fn stream_name(name: &str) -> Result<(), String> {
    if crate::registry::valid_stream_name(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid stream name in [streams.{name}]: use 1-64 of A-Z a-z 0-9 _ . -"
        ))
    }
}

/// `publisher_grace` in the file.
pub fn de_grace<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = Option::<f64>::deserialize(d)?;
    if let Some(v) = v {
        seconds("publisher_grace", v).map_err(D::Error::custom)?;
    }
    Ok(v)
}

/// `rate_limit` in the file.
pub fn de_rate_limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<f64>::deserialize(d)?
        .map(rate_limit)
        .transpose()
        .map_err(D::Error::custom)
}

/// `workers` in the file.
pub fn de_workers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    Option::<usize>::deserialize(d)?
        .map(workers)
        .transpose()
        .map_err(D::Error::custom)
}

/// `advertise` in the file.
pub fn de_advertise<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    Vec::<IpAddr>::deserialize(d)?
        .into_iter()
        .map(advertise)
        .collect::<Result<_, _>>()
        .map_err(D::Error::custom)
}

/// `url` of an `[[ice_servers]]` entry.
pub fn de_ice_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let url = String::deserialize(d)?;
    ice_url(&url).map_err(D::Error::custom)?;
    Ok(url)
}

/// `urls` of `[turn]`: at least one, each `turn:`/`turns:`.
pub fn de_turn_urls<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let urls = Vec::<String>::deserialize(d)?;
    if urls.is_empty() {
        return Err(D::Error::custom("turn urls must not be empty"));
    }
    for u in &urls {
        turn_url(u).map_err(D::Error::custom)?;
    }
    Ok(urls)
}

/// `secret` of `[turn]`.
pub fn de_turn_secret<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    turn_secret(&s).map_err(D::Error::custom)?;
    Ok(s)
}

/// A stream name as a table key (the error names the key's line).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct StreamName(String);

impl<'de> Deserialize<'de> for StreamName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        stream_name(&name).map_err(D::Error::custom)?;
        Ok(StreamName(name))
    }
}

/// `[streams.NAME]` tables.
pub fn de_streams<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, StreamAuth>, D::Error> {
    Ok(BTreeMap::<StreamName, StreamAuth>::deserialize(d)?
        .into_iter()
        .map(|(k, v)| (k.0, v))
        .collect())
}
