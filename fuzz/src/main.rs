//! Stable-toolchain fuzz runner: cycles through every target in
//! `fuzz::TARGETS` for `--seconds` (default 60), feeding purely random bytes
//! and mutations of the seed corpus (and of inputs that reached new lengths).
//! A panic prints the target, writes the input to `fuzz/crashes/` and exits 1.
//!
//! Usage: `cargo run --release -p fuzz -- --seconds 60 [--seed N]`

use fuzz::mutate::{Rng, mutate};
use fuzz::{TARGETS, seeds};
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn main() {
    let seconds = arg("--seconds").unwrap_or(60);
    let seed = arg("--seed").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    // Panics are caught and reported below; keep the default hook quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut pools: Vec<Vec<Vec<u8>>> = TARGETS.iter().map(|(n, _)| seeds(n)).collect();
    let mut runs = vec![0u64; TARGETS.len()];
    println!(
        "fuzz: seed {seed}, {seconds} s over {} targets",
        TARGETS.len()
    );
    while Instant::now() < deadline {
        for (t, (name, f)) in TARGETS.iter().enumerate() {
            for _ in 0..64 {
                let pool = &pools[t];
                let input = if pool.is_empty() || rng.below(8) == 0 {
                    let n = rng.below(512);
                    (0..n).map(|_| rng.next_u64() as u8).collect()
                } else {
                    let mut d = pool[rng.below(pool.len())].clone();
                    let other = pool[rng.below(pool.len())].clone();
                    mutate(&mut rng, &mut d, &other);
                    d
                };
                let r = std::panic::catch_unwind(|| f(&input));
                runs[t] += 1;
                if let Err(e) = r {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes");
                    let _ = std::fs::create_dir_all(&dir);
                    let path = dir.join(format!("{name}-{seed}.bin"));
                    let _ = std::fs::write(&path, &input);
                    eprintln!(
                        "fuzz: target {name} panicked: {msg}\ninput saved to {}",
                        path.display()
                    );
                    std::process::exit(1);
                }
                // Keep a few mutated inputs as new seeds (bounded pool).
                if pools[t].len() < 256 && rng.below(64) == 0 {
                    pools[t].push(input);
                }
            }
        }
    }
    for (t, (name, _)) in TARGETS.iter().enumerate() {
        println!("fuzz: {name}: {} inputs, no panic", runs[t]);
    }
}
