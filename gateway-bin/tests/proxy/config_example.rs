//! manifests/gateway.example.toml parses, validates, and its values are the defaults
//! (`FileConfig::default()`) — both as shipped and with every commented-out key uncommented.

use crate::support_proxy;

use std::path::Path;

use gateway::config::{Config, Env, FileConfig};
use support_proxy::KEYS;

fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/gateway.example.toml");
    std::fs::read_to_string(path).unwrap()
}

/// The example with `# key = value` lines uncommented (prose comments stay).
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| {
            let rest = line.strip_prefix("# ").unwrap_or(line);
            let is_assignment = rest.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            if line.starts_with("# ") && is_assignment {
                rest.to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn with_test_keys(mut file: FileConfig) -> FileConfig {
    file.keys.signing_public_key = KEYS.signing_public();
    file.keys.payload_private_key = KEYS.payload_private();
    file
}

/// The file without its `[routes.*]` overrides: the example restates some routes' built-in
/// values there, which `assert_defaults` compares through the route table.
fn without_routes(file: FileConfig) -> FileConfig {
    FileConfig {
        routes: Default::default(),
        ..file
    }
}

fn load(text: &str) -> Config {
    let file = FileConfig::parse(text).unwrap_or_else(|e| panic!("{e:#?}"));
    with_test_keys(file).validate().unwrap()
}

fn assert_defaults(config: &Config) {
    let defaults = with_test_keys(FileConfig::default()).validate().unwrap();
    assert_eq!(config.listen, defaults.listen);
    assert_eq!(config.node_name, defaults.node_name);
    assert_eq!(config.auth, defaults.auth);
    assert_eq!(config.limits, defaults.limits);
    assert_eq!(config.upstream, defaults.upstream);
    assert_eq!(config.services, defaults.services);
    assert_eq!(config.admin_listen, defaults.admin_listen);
    assert_eq!(config.drain_delay, defaults.drain_delay);
    assert_eq!(config.log, defaults.log);
    assert_eq!(config.key_watch, defaults.key_watch);
    assert_eq!(config.tls, defaults.tls);
    assert_eq!(config.abuse, defaults.abuse);
    assert_eq!(
        format!("{:?}", config.routes),
        format!("{:?}", defaults.routes),
        "the example's route values differ from the built-in table"
    );
}

#[test]
fn example_config_parses_and_shows_the_defaults() {
    assert_eq!(
        without_routes(FileConfig::parse(&example()).unwrap()),
        FileConfig::default()
    );
    let config = load(&example());
    assert_defaults(&config);
}

#[test]
fn example_config_with_every_key_uncommented_still_shows_the_defaults() {
    let text = uncommented(&example());
    assert!(
        text.contains("\nhost = \"pyos\""),
        "uncommenting did not work"
    );
    // port_map, resolver and static_dir are examples, not defaults.
    let text = text
        .lines()
        .filter(|l| {
            !l.starts_with("port_map")
                && !l.starts_with("static_dir")
                && !l.starts_with("resolver")
                && !l.starts_with("extra_signing_public_keys")
                && !l.starts_with("cert = ")
                && !l.starts_with("key = ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = load(&text);
    assert_defaults(&config);
    let file = FileConfig::parse(&text).unwrap();
    assert_eq!(
        file.keys.signing_public_key,
        Path::new(gateway::config::DEFAULT_SIGNING_KEY)
    );
    assert_eq!(
        file.keys.payload_private_key,
        Path::new(gateway::config::DEFAULT_PAYLOAD_KEY)
    );
    assert_eq!(without_routes(file), FileConfig::default());
}

#[test]
fn the_environment_fills_what_the_file_leaves_out() {
    let env = Env {
        node_name: Some("node-7".into()),
        pyos_fqdn: Some("pyos.abcdesktop.svc.cluster.local".into()),
        pyos_service_port: Some("8001".into()),
        website_fqdn: Some("website.abcdesktop.svc.cluster.local".into()),
        ..Env::default()
    };
    let file = with_test_keys(FileConfig::parse_with_env(&example(), &env).unwrap());
    let config = file.validate().unwrap();
    assert_eq!(config.node_name, "node-7");
    assert_eq!(
        config.services.pyos.authority(),
        "pyos.abcdesktop.svc.cluster.local:8001"
    );
    assert_eq!(
        config.services.website.authority(),
        "website.abcdesktop.svc.cluster.local:80"
    );
}

#[test]
fn example_port_map_line_is_valid_toml() {
    let text = "[upstream]\nport_map = { \"6081\" = 16081 }\n";
    let config = load(text);
    assert_eq!(config.upstream.dial_port(6081), 16081);
    assert_eq!(config.upstream.dial_port(29786), 29786);
}
