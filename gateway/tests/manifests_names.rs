//! The Kubernetes manifests set the names the gateway expects: Secret names and mount paths, key
//! file names, environment variables, ports, probe paths, Service names and the config file.
//!
//! Reads `manifests/rendered/*.yaml`, the fully rendered overlays that
//! `scripts/check-manifests.sh` keeps identical to `kubectl kustomize manifests/overlays/<name>`
//! (it fails when they are stale), so this test needs neither kubectl nor a cluster.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::config::{DEFAULT_LISTEN, DEFAULT_PAYLOAD_KEY, DEFAULT_SIGNING_KEY, Env, FileConfig};
use gateway::keygen::PAIRS;
use serde::Deserialize as _;
use serde_json::Value;

/// One rendered overlay and the abcdesktop names it must reproduce.
struct Overlay {
    name: &'static str,
    deployment: &'static str,
    service: &'static str,
    run_label: &'static str,
}

const OVERLAYS: [Overlay; 3] = [
    // abcdesktop 3.3 - 4.x
    Overlay {
        name: "router",
        deployment: "router-od",
        service: "http-router",
        run_label: "router-od",
    },
    // abcdesktop 3.0 - 3.2
    Overlay {
        name: "nginx-od",
        deployment: "nginx-od",
        service: "nginx",
        run_label: "nginx-od",
    },
    Overlay {
        name: "sidecar",
        deployment: "nginx-od",
        service: "nginx",
        run_label: "nginx-od",
    },
];

const NAMESPACE: &str = "abcdesktop";
const NODE_PORT: u64 = 30443;
const CONFIG_DIR: &str = "/etc/abcdesktop-gateway";
const CONFIG_KEY: &str = "gateway.toml";
/// Downward-API variables the original router set and the gateway does not read; kept for parity.
const PARITY_ONLY_ENV: [&str; 3] = ["POD_NAME", "POD_NAMESPACE", "POD_IP"];

// === helpers ===

fn rendered(overlay: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/rendered")
        .join(format!("{overlay}.yaml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/check-manifests.sh)", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name}");
    found[0]
}

fn only<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn array(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}"))
}

fn port_of(addr: &str) -> u64 {
    u64::from(
        addr.parse::<SocketAddr>()
            .unwrap_or_else(|e| panic!("{addr}: {e}"))
            .port(),
    )
}

fn parent_dir(path: &str) -> PathBuf {
    Path::new(path)
        .parent()
        .expect("key path has a directory")
        .to_owned()
}

fn file_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("key path has a file name")
}

/// Every `matchLabels` pair is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("selector is a map");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels[k] == *v)
}

fn gateway_container(deployment: &Value) -> &Value {
    array(&deployment["spec"]["template"]["spec"]["containers"])
        .iter()
        .find(|c| c["name"] == "gateway")
        .expect("a container named gateway")
}

/// A probe or Service port: a number, or the name of one of the container's ports.
fn resolve_port(port: &Value, container: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().expect("port number"),
        Value::String(name) => array(&container["ports"])
            .iter()
            .find(|p| p["name"] == name.as_str())
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => panic!("bad port {other}"),
    }
}

fn duration(table: &toml::Value, section: &str, key: &str, default: Duration) -> Duration {
    table
        .get(section)
        .and_then(|s| s.get(key))
        .and_then(|v| v.as_str())
        .map_or(default, |s| {
            humantime::parse_duration(s).unwrap_or_else(|e| panic!("[{section}] {key}: {e}"))
        })
}

/// The overlay's `gateway.toml`, from its ConfigMap (the one the gateway container mounts).
fn config_text<'a>(objects: &'a [Value], deployment: &Value) -> &'a str {
    let pod = &deployment["spec"]["template"]["spec"];
    let mount = array(&gateway_container(deployment)["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == CONFIG_DIR)
        .expect("config directory mounted");
    assert!(
        mount.get("subPath").is_none(),
        "config mounted without subPath"
    );
    let volume = array(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("config volume");
    let configmap = object(objects, "ConfigMap", str_of(&volume["configMap"]["name"]));
    str_of(&configmap["data"][CONFIG_KEY])
}

// === tests ===

#[test]
fn every_object_is_in_the_abcdesktop_namespace() {
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        assert!(!objects.is_empty(), "{}: no objects", overlay.name);
        for o in &objects {
            assert_eq!(
                o["metadata"]["namespace"], NAMESPACE,
                "{}: {} {}",
                overlay.name, o["kind"], o["metadata"]["name"]
            );
        }
    }
}

#[test]
fn config_map_parses_and_listens_where_the_manifests_point() {
    let default_port = port_of(DEFAULT_LISTEN);
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let text = config_text(&objects, deployment);
        let file = FileConfig::parse(text)
            .unwrap_or_else(|e| panic!("{}: gateway.toml: {e:#}", overlay.name));
        let listen = file.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        assert_eq!(port_of(listen), default_port, "{}: listen", overlay.name);

        let table: toml::Value = toml::from_str(text).expect("TOML");
        let admin = table
            .get("admin")
            .and_then(|a| a.get("listen"))
            .and_then(|l| l.as_str())
            .map_or(u64::from(gateway::admin::DEFAULT_ADMIN_PORT), port_of);
        assert_eq!(admin, 9090, "{}: admin port", overlay.name);
        assert_eq!(gateway::admin::DEFAULT_ADMIN_PORT, 9090);

        // The pod must outlive the whole shutdown sequence.
        let drain = duration(&table, "shutdown", "drain_delay", Duration::from_secs(5));
        let grace = duration(
            &table,
            "limits",
            "shutdown_grace",
            gateway::config::DEFAULT_SHUTDOWN_GRACE,
        );
        let termination = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds");
        assert_eq!(termination, 30, "{}", overlay.name);
        assert!(
            Duration::from_secs(termination) > drain + grace,
            "{}: {termination}s <= drain {drain:?} + grace {grace:?}",
            overlay.name
        );

        let container = gateway_container(deployment);
        let args: Vec<&str> = array(&container["args"]).iter().map(str_of).collect();
        assert_eq!(
            args,
            ["--config", &format!("{CONFIG_DIR}/{CONFIG_KEY}")],
            "{}",
            overlay.name
        );
        match overlay.name {
            "nginx-od" => {
                let dir = file.website.static_dir.expect("[website] static_dir");
                assert!(
                    array(&container["volumeMounts"])
                        .iter()
                        .any(|m| Path::new(str_of(&m["mountPath"])) == dir),
                    "static_dir {} is a volume of the gateway container",
                    dir.display()
                );
            }
            "sidecar" => {
                assert_eq!(file.services.website.host.as_deref(), Some("127.0.0.1"));
                let port = file.services.website.port.expect("[services.website] port");
                let beside = array(&deployment["spec"]["template"]["spec"]["containers"])
                    .iter()
                    .filter(|c| c["name"] != "gateway")
                    .flat_map(|c| array(&c["ports"]))
                    .any(|p| p["containerPort"] == u64::from(port));
                assert!(beside, "a container beside the gateway listens on {port}");
            }
            _ => assert!(file.website.static_dir.is_none()),
        }
    }
}

#[test]
fn key_secrets_are_mounted_where_the_gateway_reads_them() {
    let payload = &PAIRS[0];
    let signing = &PAIRS[1];
    assert_eq!(payload.secret_name, "abcdesktopjwtdesktoppayload");
    assert_eq!(signing.secret_name, "abcdesktopjwtdesktopsigning");
    assert_eq!(file_name(DEFAULT_PAYLOAD_KEY), payload.private_file);
    assert_eq!(file_name(DEFAULT_SIGNING_KEY), signing.public_file);
    let expected = [
        (payload.secret_name, parent_dir(DEFAULT_PAYLOAD_KEY)),
        (signing.secret_name, parent_dir(DEFAULT_SIGNING_KEY)),
    ];
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let pod = &deployment["spec"]["template"]["spec"];
        let mounts = array(&gateway_container(deployment)["volumeMounts"]);
        for (secret, dir) in &expected {
            let volume = array(&pod["volumes"])
                .iter()
                .find(|v| v["secret"]["secretName"] == *secret)
                .unwrap_or_else(|| panic!("{}: no volume of Secret {secret}", overlay.name));
            assert!(
                volume["secret"].get("items").is_none(),
                "{}: {secret} mounted whole (every key file under its own name)",
                overlay.name
            );
            let mount = mounts
                .iter()
                .find(|m| m["name"] == volume["name"])
                .unwrap_or_else(|| panic!("{}: {secret} not mounted", overlay.name));
            assert_eq!(
                Path::new(str_of(&mount["mountPath"])),
                dir,
                "{}",
                overlay.name
            );
            assert_eq!(mount["readOnly"], true, "{}: {secret}", overlay.name);
            // subPath mounts never see Secret updates, and the gateway hot-reloads its keys.
            assert!(mount.get("subPath").is_none(), "{}: {secret}", overlay.name);
        }
    }
}

#[test]
fn environment_holds_only_variables_the_gateway_reads_or_the_original_set() {
    let read = std::cell::RefCell::new(BTreeSet::new());
    let _ = Env::from_fn(|name| {
        read.borrow_mut().insert(name.to_owned());
        None
    });
    let read = read.into_inner();
    for name in [
        "JWT_DESKTOP_SIGNING_PUBLIC_KEY",
        "JWT_DESKTOP_PAYLOAD_PRIVATE_KEY",
        "NODE_NAME",
    ] {
        assert!(read.contains(name), "Env reads {name}");
    }
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let env = array(&gateway_container(deployment)["env"]);
        for var in env {
            let name = str_of(&var["name"]);
            assert!(
                read.contains(name) || PARITY_ONLY_ENV.contains(&name),
                "{}: {name} is neither read by the gateway nor one of the original's",
                overlay.name
            );
        }
        let value = |name: &str| {
            env.iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{}: {name} not set", overlay.name))
        };
        assert_eq!(
            value("JWT_DESKTOP_SIGNING_PUBLIC_KEY")["value"],
            DEFAULT_SIGNING_KEY
        );
        assert_eq!(
            value("JWT_DESKTOP_PAYLOAD_PRIVATE_KEY")["value"],
            DEFAULT_PAYLOAD_KEY
        );
        assert_eq!(
            value("NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
            "spec.nodeName"
        );
    }
}

#[test]
fn service_keeps_abcdesktop_name_and_node_port_and_targets_the_listen_port() {
    let listen_port = port_of(DEFAULT_LISTEN);
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod_labels["run"], overlay.run_label, "{}", overlay.name);
        assert_eq!(pod_labels["netpol/ocuser"], "true", "{}", overlay.name);
        assert!(
            selects(&deployment["spec"]["selector"]["matchLabels"], pod_labels),
            "{}: Deployment selector",
            overlay.name
        );

        let service = only(&objects, "Service");
        assert_eq!(
            service["metadata"]["name"], overlay.service,
            "{}",
            overlay.name
        );
        assert_eq!(service["spec"]["type"], "NodePort");
        assert!(
            selects(&service["spec"]["selector"], pod_labels),
            "{}: Service selects the gateway pods",
            overlay.name
        );
        let ports = array(&service["spec"]["ports"]);
        assert_eq!(ports.len(), 1, "{}", overlay.name);
        assert_eq!(ports[0]["port"], 80, "{}", overlay.name);
        assert_eq!(ports[0]["nodePort"], NODE_PORT, "{}", overlay.name);

        let container = gateway_container(deployment);
        assert_eq!(
            resolve_port(&ports[0]["targetPort"], container),
            listen_port,
            "{}: targetPort",
            overlay.name
        );
        assert!(
            array(&container["ports"])
                .iter()
                .any(|p| p["containerPort"] == listen_port),
            "{}: container port {listen_port}",
            overlay.name
        );
    }
}

#[test]
fn probes_use_the_admin_port() {
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let container = gateway_container(deployment);
        for (probe, path) in [
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"], path, "{}: {probe}", overlay.name);
            assert_eq!(
                resolve_port(&get["port"], container),
                9090,
                "{}: {probe}",
                overlay.name
            );
        }
    }
}

#[test]
fn gateway_container_is_locked_down() {
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let pod = &deployment["spec"]["template"]["spec"];
        let sc = &gateway_container(deployment)["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{}", overlay.name);
        assert!(sc["runAsUser"].as_u64().is_some_and(|uid| uid > 0));
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", overlay.name);
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", overlay.name);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert!(gateway_container(deployment)["resources"]["limits"]["memory"].is_string());
    }
}

#[test]
fn autoscaler_budget_and_network_policy_follow_the_deployment() {
    let listen_port = port_of(DEFAULT_LISTEN);
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];

        let hpa = only(&objects, "HorizontalPodAutoscaler");
        assert_eq!(hpa["apiVersion"], "autoscaling/v2");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], overlay.deployment);

        let pdb = only(&objects, "PodDisruptionBudget");
        assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));

        let policy = only(&objects, "NetworkPolicy");
        assert!(selects(
            &policy["spec"]["podSelector"]["matchLabels"],
            pod_labels
        ));
        let ingress_ports: BTreeSet<u64> = array(&policy["spec"]["ingress"])
            .iter()
            .flat_map(|rule| array(&rule["ports"]))
            .filter_map(|p| p["port"].as_u64())
            .collect();
        assert!(ingress_ports.contains(&listen_port), "{}", overlay.name);
        assert!(ingress_ports.contains(&9090), "{}", overlay.name);
        let desktop_rule = array(&policy["spec"]["egress"])
            .iter()
            .find(|rule| {
                rule["to"].as_array().is_some_and(|to| {
                    to.iter()
                        .any(|peer| peer["podSelector"]["matchLabels"]["type"] == "x11server")
                })
            })
            .expect("egress to user pods");
        for port in gateway::routes::DEFAULT_CONTAINER_PORTS {
            let port = u64::from(port);
            assert!(
                array(&desktop_rule["ports"]).iter().any(|p| {
                    let start = p["port"].as_u64().unwrap_or(0);
                    let end = p["endPort"].as_u64().unwrap_or(start);
                    (start..=end).contains(&port)
                }),
                "{}: egress to desktop port {port}",
                overlay.name
            );
        }
    }
}
