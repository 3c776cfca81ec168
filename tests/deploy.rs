//! `compose.yaml`, `Dockerfile` and `deploy/`: the compose file parses, every
//! build context and mounted file exists, the sfu configuration loads, and the
//! sfu and coturn agree on the TURN secret and port. (Docker itself is not
//! needed: this checks what `docker compose up` would be given.)

use sfu::config::{Cli, Config};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Resolve `${VAR:-default}` and `${VAR}` the way compose does with an empty
/// environment (defaults only).
fn defaults(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("closed ${") + i;
        let inner = &rest[i + 2..end];
        if let Some((_, d)) = inner.split_once(":-") {
            out.push_str(d);
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The `${NAME...}` variable names used in `s`.
fn vars(s: &str) -> Vec<String> {
    s.split("${")
        .skip(1)
        .map(|p| {
            p.split(['}', ':', '-'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn env_of(svc: &Yaml) -> BTreeMap<String, String> {
    svc["environment"]
        .as_hash()
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_string(),
                        v.as_str().map(str::to_string).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn conf_value<'a>(conf: &'a str, key: &str) -> Option<&'a str> {
    conf.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn compose_services_files_and_turn_agreement() {
    let docs = YamlLoader::load_from_str(&read("compose.yaml")).expect("compose.yaml parses");
    let services = &docs[0]["services"];
    for name in ["sfu", "coturn", "cam1"] {
        assert!(!services[name].is_badvalue(), "service {name} missing");
        assert_eq!(
            services[name]["network_mode"].as_str(),
            Some("host"),
            "{name}: WebRTC needs host networking"
        );
    }
    // Build contexts exist and hold the Dockerfile; every COPY source exists.
    for name in ["sfu", "cam1"] {
        let ctx = services[name]["build"].as_str().expect("build context");
        assert!(
            root().join(ctx).join("Dockerfile").is_file(),
            "{name}: {ctx}"
        );
    }
    let dockerfile = read("Dockerfile");
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        if line.contains("--from=") {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            if *src != "." {
                assert!(root().join(src).exists(), "Dockerfile COPY source {src}");
            }
        }
    }
    assert!(
        read(".dockerignore").lines().any(|l| l.trim() == "target"),
        "the build context must not ship target/"
    );
    // Every bind-mounted file exists.
    let mut mounts = BTreeMap::new();
    for (name, svc) in services.as_hash().unwrap() {
        for v in svc["volumes"].as_vec().into_iter().flatten() {
            let spec = v.as_str().unwrap();
            let mut it = spec.split(':');
            let (host, inside) = (it.next().unwrap(), it.next().unwrap());
            assert!(
                root().join(host).is_file(),
                "{}: mounted file {host} missing",
                name.as_str().unwrap()
            );
            mounts.insert(inside.to_string(), host.to_string());
        }
    }

    // The sfu's config file loads as the sfu would load it.
    let sfu = &services["sfu"];
    let cmd: Vec<&str> = sfu["command"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|y| y.as_str().unwrap())
        .collect();
    let cfg_inside = cmd[cmd.iter().position(|a| *a == "--config").unwrap() + 1];
    let cfg_host = root().join(&mounts[cfg_inside]);
    let cfg = Config::resolve(Cli {
        config: Some(cfg_host),
        ..Default::default()
    })
    .expect("deploy/sfu.toml is valid");
    let file_secret = cfg.turn.as_ref().expect("[turn] configured").secret.clone();

    // coturn: use-auth-secret with the same secret (file and compose default)
    // and the port the sfu's TURN URLs name.
    let coturn = &services["coturn"];
    let ccmd: Vec<&str> = coturn["command"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|y| y.as_str().unwrap())
        .collect();
    let conf_inside = ccmd[ccmd.iter().position(|a| *a == "-c").unwrap() + 1];
    let conf = read(&mounts[conf_inside]);
    assert!(
        conf.lines().any(|l| l.trim() == "use-auth-secret"),
        "coturn must use REST credentials"
    );
    let conf_secret = conf_value(&conf, "static-auth-secret").expect("static-auth-secret");
    assert_eq!(
        conf_secret, file_secret,
        "turnserver.conf vs sfu.toml secret"
    );
    let port: u16 = conf_value(&conf, "listening-port")
        .expect("listening-port")
        .parse()
        .unwrap();

    let env = env_of(sfu);
    let secret_arg = ccmd
        .iter()
        .find_map(|a| a.strip_prefix("--static-auth-secret="))
        .expect("coturn gets the secret on its command line");
    assert_eq!(
        vars(&env["SFU_TURN_SECRET"]),
        vars(secret_arg),
        "sfu and coturn read the secret from the same variable"
    );
    assert_eq!(defaults(&env["SFU_TURN_SECRET"]), defaults(secret_arg));
    assert_eq!(defaults(secret_arg), file_secret);

    let urls = defaults(&env["SFU_TURN_URLS"]);
    let mut n = 0;
    for u in urls
        .split(',')
        .chain(cfg.turn.as_ref().unwrap().urls.iter().map(String::as_str))
    {
        assert!(u.starts_with("turn:"), "{u}");
        let hostport = u.trim_start_matches("turn:").split('?').next().unwrap();
        let p: u16 = hostport.rsplit_once(':').unwrap().1.parse().unwrap();
        assert_eq!(p, port, "TURN URL {u} vs coturn listening-port");
        n += 1;
    }
    assert!(n >= 2);

    // The environment as compose passes it is accepted by the sfu's flags.
    let resolved = Config::resolve(Cli {
        config: Some(root().join(&mounts[cfg_inside])),
        turn_secret: Some(defaults(&env["SFU_TURN_SECRET"])),
        turn_urls: urls.split(',').map(str::to_string).collect(),
        ..Default::default()
    })
    .expect("compose environment accepted");
    assert_eq!(resolved.turn.unwrap().urls.len(), 2);

    // The camera service publishes to the sfu's HTTP port.
    let cam: Vec<&str> = services["cam1"]["command"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|y| y.as_str().unwrap())
        .collect();
    assert_eq!(cam[0], "whip-ingest");
    let url = cam[cam.iter().position(|a| *a == "--url").unwrap() + 1];
    assert!(
        url.contains(&format!(":{}/whip/", cfg.http.port())),
        "{url} vs sfu http port {}",
        cfg.http.port()
    );
}
