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

use gateway::config::{DEFAULT_PAYLOAD_KEY, DEFAULT_SIGNING_KEY, Env, FileConfig};
use gateway_tooling::keygen::PAIRS;
use serde::Deserialize as _;
use serde_json::Value;

/// One rendered overlay and the abcdesktop names it must reproduce.
struct Overlay {
    name: &'static str,
    deployment: &'static str,
    service: &'static str,
    run_label: &'static str,
    /// The Service's type and, for NodePort, the nodePort abcdesktop uses.
    service_type: &'static str,
    node_port: Option<u64>,
    /// The public listen port of each gateway container, by container name.
    listeners: &'static [(&'static str, u64)],
}

const PLAIN: &[(&str, u64)] = &[("gateway", 30443)];

const OVERLAYS: [Overlay; 4] = [
    // abcdesktop 3.3 - 4.x
    Overlay {
        name: "router",
        deployment: "router-od",
        service: "http-router",
        run_label: "router-od",
        service_type: "NodePort",
        node_port: Some(NODE_PORT),
        listeners: PLAIN,
    },
    // abcdesktop 3.0 - 3.2
    Overlay {
        name: "nginx-od",
        deployment: "nginx-od",
        service: "nginx",
        run_label: "nginx-od",
        service_type: "NodePort",
        node_port: Some(NODE_PORT),
        listeners: PLAIN,
    },
    Overlay {
        name: "sidecar",
        deployment: "nginx-od",
        service: "nginx",
        run_label: "nginx-od",
        service_type: "NodePort",
        node_port: Some(NODE_PORT),
        listeners: PLAIN,
    },
    // abcdesktop 4.1 - 4.x, HTTPS router variant: one plain and one TLS gateway per pod, on the
    // original's ports.
    Overlay {
        name: "router-https",
        deployment: "router-od",
        service: "http-router",
        run_label: "router-od",
        service_type: "LoadBalancer",
        node_port: None,
        listeners: &[("gateway", 80), ("gateway-tls", 443)],
    },
];

const NAMESPACE: &str = "abcdesktop";
const NODE_PORT: u64 = 30443;
const CONFIG_DIR: &str = "/etc/abcdesktop-gateway";
const CONFIG_KEY: &str = "gateway.toml";
/// Downward-API variables the original router set and the gateway does not read; kept for parity.
const PARITY_ONLY_ENV: [&str; 3] = ["POD_NAME", "POD_NAMESPACE", "POD_IP"];
/// The Secret of abcdesktop's HTTPS router variant (`kubectl create secret tls`).
const TLS_SECRET: &str = "http-router-certificat";
/// The label telling which step of the documented cut-over handles an object.
const CUTOVER: &str = "abcdesktop-gateway/cutover";

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

fn containers(deployment: &Value) -> &Vec<Value> {
    array(&deployment["spec"]["template"]["spec"]["containers"])
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    containers(deployment)
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("a container named {name}"))
}

/// The overlay's gateway containers with the public port each must listen on.
fn gateways<'a>(overlay: &Overlay, deployment: &'a Value) -> Vec<(&'a Value, u64)> {
    let named: Vec<_> = containers(deployment)
        .iter()
        .filter(|c| str_of(&c["name"]).starts_with("gateway"))
        .collect();
    assert_eq!(named.len(), overlay.listeners.len(), "{}", overlay.name);
    overlay
        .listeners
        .iter()
        .map(|(name, port)| (container(deployment, name), *port))
        .collect()
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

/// The container port of that number (its entry in `ports`).
fn declared_port(container: &Value, number: u64) -> &Value {
    array(&container["ports"])
        .iter()
        .find(|p| p["containerPort"] == number)
        .unwrap_or_else(|| panic!("{}: no container port {number}", container["name"]))
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

/// The volume a container mounts at `path`.
fn volume_at<'a>(deployment: &'a Value, container: &Value, path: &str) -> &'a Value {
    let mount = array(&container["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == path)
        .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", container["name"]));
    assert!(
        mount.get("subPath").is_none(),
        "{path} mounted without subPath"
    );
    array(&deployment["spec"]["template"]["spec"]["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume")
}

/// The `gateway.toml` a gateway container reads, from the ConfigMap it mounts.
fn config_text<'a>(objects: &'a [Value], deployment: &Value, container: &Value) -> &'a str {
    let volume = volume_at(deployment, container, CONFIG_DIR);
    let configmap = object(objects, "ConfigMap", str_of(&volume["configMap"]["name"]));
    str_of(&configmap["data"][CONFIG_KEY])
}

/// The admin port a config sets (or the default).
fn admin_port(text: &str) -> u64 {
    let table: toml::Value = toml::from_str(text).expect("TOML");
    table
        .get("admin")
        .and_then(|a| a.get("listen"))
        .and_then(|l| l.as_str())
        .map_or_else(|| port_of(gateway::config::DEFAULT_ADMIN_LISTEN), port_of)
}

// === tests ===

#[test]
fn every_object_is_in_the_abcdesktop_namespace() {
    for name in OVERLAYS.iter().map(|o| o.name).chain(["monitoring"]) {
        let objects = rendered(name);
        assert!(!objects.is_empty(), "{name}: no objects");
        for o in &objects {
            assert_eq!(
                o["metadata"]["namespace"], NAMESPACE,
                "{name}: {} {}",
                o["kind"], o["metadata"]["name"]
            );
        }
    }
}

#[test]
fn config_map_parses_and_listens_where_the_manifests_point() {
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let mut admin_ports = BTreeSet::new();
        for (container, listen_port) in gateways(overlay, deployment) {
            let who = format!("{} {}", overlay.name, container["name"]);
            let text = config_text(&objects, deployment, container);
            let file =
                FileConfig::parse(text).unwrap_or_else(|e| panic!("{who}: gateway.toml: {e:#}"));
            let listen = file.listen.as_str();
            assert_eq!(port_of(listen), listen_port, "{who}: listen");
            assert_eq!(declared_port(container, listen_port)["protocol"], "TCP");
            // Below 1024 only with the sysctl that lets a non-root process bind it.
            if listen_port < 1024 {
                let sysctls =
                    array(&deployment["spec"]["template"]["spec"]["securityContext"]["sysctls"]);
                let start = sysctls
                    .iter()
                    .find(|s| s["name"] == "net.ipv4.ip_unprivileged_port_start")
                    .and_then(|s| s["value"].as_str())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or_else(|| {
                        panic!("{who}: port {listen_port} needs ip_unprivileged_port_start")
                    });
                assert!(
                    start <= listen_port,
                    "{who}: sysctl {start} > {listen_port}"
                );
            }
            let admin = admin_port(text);
            assert_eq!(
                declared_port(container, admin)["name"]
                    .as_str()
                    .map(|n| n.starts_with("admin")),
                Some(true),
                "{who}"
            );
            assert!(
                admin_ports.insert(admin),
                "{who}: admin port {admin} used twice in one pod"
            );

            // The pod must outlive the whole shutdown sequence.
            let table: toml::Value = toml::from_str(text).expect("TOML");
            let drain = duration(&table, "shutdown", "drain_delay", Duration::from_secs(5));
            let grace = duration(
                &table,
                "limits",
                "shutdown_grace",
                gateway::config::DEFAULT_SHUTDOWN_GRACE,
            );
            let termination =
                deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
                    .as_u64()
                    .expect("terminationGracePeriodSeconds");
            assert_eq!(termination, 30, "{who}");
            assert!(
                Duration::from_secs(termination) > drain + grace,
                "{who}: {termination}s <= drain {drain:?} + grace {grace:?}"
            );

            let args: Vec<&str> = array(&container["args"]).iter().map(str_of).collect();
            assert_eq!(
                args,
                ["--config", &format!("{CONFIG_DIR}/{CONFIG_KEY}")],
                "{who}"
            );

            // TLS exactly where the overlay has a TLS listener, from abcdesktop's Secret.
            if container["name"] == "gateway-tls" {
                let cert = file.tls.cert.as_deref().expect("[tls] cert");
                let key = file.tls.key.as_deref().expect("[tls] key");
                let dir = cert.parent().expect("cert directory");
                assert_eq!(key.parent(), Some(dir), "{who}: cert and key in one mount");
                let volume = volume_at(deployment, container, dir.to_str().expect("UTF-8"));
                assert_eq!(volume["secret"]["secretName"], TLS_SECRET, "{who}");
                let items: BTreeSet<&str> = array(&volume["secret"]["items"])
                    .iter()
                    .map(|i| str_of(&i["path"]))
                    .collect();
                let wanted: BTreeSet<&str> = [cert, key]
                    .iter()
                    .map(|p| p.file_name().and_then(|n| n.to_str()).expect("file name"))
                    .collect();
                assert_eq!(items, wanted, "{who}: the TLS Secret's items");
            } else {
                assert!(
                    file.tls.cert.is_none() && file.tls.key.is_none(),
                    "{who}: no TLS"
                );
            }
        }

        let gateway = container(deployment, "gateway");
        let file = FileConfig::parse(config_text(&objects, deployment, gateway)).expect("config");
        match overlay.name {
            "nginx-od" => {
                let dir = file.website.static_dir.expect("[website] static_dir");
                assert!(
                    array(&gateway["volumeMounts"])
                        .iter()
                        .any(|m| Path::new(str_of(&m["mountPath"])) == dir),
                    "static_dir {} is a volume of the gateway container",
                    dir.display()
                );
            }
            "sidecar" => {
                assert_eq!(file.services.website.host, "127.0.0.1");
                let port = file.services.website.port;
                let beside = containers(deployment)
                    .iter()
                    .filter(|c| !str_of(&c["name"]).starts_with("gateway"))
                    .flat_map(|c| array(&c["ports"]))
                    .any(|p| p["containerPort"] == u64::from(port));
                assert!(beside, "a container beside the gateway listens on {port}");
            }
            _ => assert!(file.website.static_dir.is_none()),
        }
    }
}

#[test]
fn only_the_key_files_the_gateway_reads_are_mounted() {
    let payload = &PAIRS[0];
    let signing = &PAIRS[1];
    assert_eq!(payload.secret_name, "abcdesktopjwtdesktoppayload");
    assert_eq!(signing.secret_name, "abcdesktopjwtdesktopsigning");
    assert_eq!(file_name(DEFAULT_PAYLOAD_KEY), payload.private_file);
    assert_eq!(file_name(DEFAULT_SIGNING_KEY), signing.public_file);
    let expected = [
        (
            payload.secret_name,
            DEFAULT_PAYLOAD_KEY,
            payload.public_file,
        ),
        (
            signing.secret_name,
            DEFAULT_SIGNING_KEY,
            signing.private_file,
        ),
    ];
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let pod = &deployment["spec"]["template"]["spec"];
        for (container, _) in gateways(overlay, deployment) {
            let who = format!("{} {}", overlay.name, container["name"]);
            let mounts = array(&container["volumeMounts"]);
            for (secret, path, unneeded) in &expected {
                let volume = array(&pod["volumes"])
                    .iter()
                    .find(|v| v["secret"]["secretName"] == *secret)
                    .unwrap_or_else(|| panic!("{who}: no volume of Secret {secret}"));
                // Exactly the file read, under its own name: not the signing private key.
                let items: Vec<(&str, &str)> = array(&volume["secret"]["items"])
                    .iter()
                    .map(|i| (str_of(&i["key"]), str_of(&i["path"])))
                    .collect();
                assert_eq!(
                    items,
                    [(file_name(path), file_name(path))],
                    "{who}: {secret}"
                );
                assert!(
                    !items.iter().any(|(k, _)| k == unneeded),
                    "{who}: {unneeded}"
                );
                let mount = mounts
                    .iter()
                    .find(|m| m["name"] == volume["name"])
                    .unwrap_or_else(|| panic!("{who}: {secret} not mounted"));
                assert_eq!(
                    Path::new(str_of(&mount["mountPath"])),
                    parent_dir(path),
                    "{who}"
                );
                assert_eq!(mount["readOnly"], true, "{who}: {secret}");
                // subPath mounts never see Secret updates, and the gateway hot-reloads its keys.
                assert!(mount.get("subPath").is_none(), "{who}: {secret}");
            }
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
        for (container, _) in gateways(overlay, deployment) {
            let who = format!("{} {}", overlay.name, container["name"]);
            let env = array(&container["env"]);
            for var in env {
                let name = str_of(&var["name"]);
                assert!(
                    read.contains(name) || PARITY_ONLY_ENV.contains(&name),
                    "{who}: {name} is neither read by the gateway nor one of the original's"
                );
            }
            let value = |name: &str| {
                env.iter()
                    .find(|v| v["name"] == name)
                    .unwrap_or_else(|| panic!("{who}: {name} not set"))
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
}

#[test]
fn service_keeps_abcdesktop_name_and_ports_and_targets_the_listeners() {
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

        // One Service only selects the pods: a second one would give them a second PTR record.
        let service = only(&objects, "Service");
        assert_eq!(
            service["metadata"]["name"], overlay.service,
            "{}",
            overlay.name
        );
        assert_eq!(
            service["spec"]["type"], overlay.service_type,
            "{}",
            overlay.name
        );
        assert!(
            selects(&service["spec"]["selector"], pod_labels),
            "{}: Service selects the gateway pods",
            overlay.name
        );
        let ports = array(&service["spec"]["ports"]);
        assert_eq!(ports.len(), overlay.listeners.len(), "{}", overlay.name);
        let mut served = BTreeSet::new();
        for port in ports {
            let who = format!("{} port {}", overlay.name, port["port"]);
            // Port 80 is abcdesktop's `http` and targets the container port *name* `http`, which
            // the old router/oc.nginx pods give to their port 80: both serve during a rollout.
            if port["port"] == 80 {
                assert_eq!(port["name"], "http", "{who}");
                assert_eq!(port["targetPort"], "http", "{who}");
                assert_eq!(port["nodePort"].as_u64(), overlay.node_port, "{who}");
            } else {
                assert_eq!(
                    (&port["port"], &port["name"]),
                    (&Value::from(443), &Value::from("https")),
                    "{who}"
                );
                // abcdesktop's HTTPS route declares no container port 443: a number, not a name.
                assert_eq!(port["targetPort"], 443, "{who}");
            }
            let target = gateways(overlay, deployment)
                .into_iter()
                .find(|(c, listen)| resolve_port_opt(&port["targetPort"], c) == Some(*listen))
                .unwrap_or_else(|| panic!("{who}: targetPort reaches no gateway listener"));
            served.insert(str_of(&target.0["name"]));
        }
        assert_eq!(
            served.len(),
            overlay.listeners.len(),
            "{}: every listener is served",
            overlay.name
        );
    }
}

/// `resolve_port`, but `None` when a name is not one of this container's ports.
fn resolve_port_opt(port: &Value, container: &Value) -> Option<u64> {
    match port {
        Value::String(name)
            if !array(&container["ports"])
                .iter()
                .any(|p| p["name"] == name.as_str()) =>
        {
            None
        }
        _ => Some(resolve_port(port, container)),
    }
}

#[test]
fn probes_check_the_admin_and_public_listeners_and_tolerate_a_slow_answer() {
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        for (container, listen) in gateways(overlay, deployment) {
            let who = format!("{} {}", overlay.name, container["name"]);
            let admin = admin_port(config_text(&objects, deployment, container));
            for (probe, path, port) in [
                ("startupProbe", "/livez", admin),
                ("livenessProbe", "/livez", admin),
                // Through the public listener, as a browser comes in.
                ("readinessProbe", "/healthz", listen),
            ] {
                let get = &container[probe]["httpGet"];
                assert_eq!(get["path"], path, "{who}: {probe}");
                assert_eq!(
                    resolve_port(&get["port"], container),
                    port,
                    "{who}: {probe}"
                );
                let scheme = if container["name"] == "gateway-tls" && probe == "readinessProbe" {
                    "HTTPS"
                } else {
                    "HTTP"
                };
                assert_eq!(
                    get["scheme"].as_str().unwrap_or("HTTP"),
                    scheme,
                    "{who}: {probe}"
                );
            }
            for probe in ["livenessProbe", "readinessProbe"] {
                let threshold = container[probe]["failureThreshold"].as_u64().unwrap_or(3);
                let timeout = container[probe]["timeoutSeconds"].as_u64().unwrap_or(1);
                assert!(
                    threshold >= 3,
                    "{who}: {probe} fails at {threshold} slow answers"
                );
                assert!(timeout >= 2, "{who}: {probe} timeout {timeout}s");
            }
        }
    }
}

#[test]
fn gateway_containers_are_locked_down_and_sized() {
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        for (container, _) in gateways(overlay, deployment) {
            let who = format!("{} {}", overlay.name, container["name"]);
            let sc = &container["securityContext"];
            assert_eq!(sc["runAsNonRoot"], true, "{who}");
            assert!(sc["runAsUser"].as_u64().is_some_and(|uid| uid > 0));
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{who}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{who}");
            assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
            let resources = &container["resources"];
            for key in ["cpu", "memory"] {
                assert!(
                    resources["requests"][key].is_string(),
                    "{who}: requests.{key}"
                );
                assert!(resources["limits"][key].is_string(), "{who}: limits.{key}");
            }
            // The released image, tagged with this version (see .github/workflows/release.yml).
            let image = str_of(&container["image"]);
            assert_eq!(
                image.rsplit_once(':').map(|(_, tag)| tag),
                Some(env!("CARGO_PKG_VERSION")),
                "{who}: {image}"
            );
            assert!(image.contains("/abcdesktop-gateway:"), "{who}: {image}");
        }
    }
}

#[test]
fn every_object_says_when_the_cut_over_handles_it_and_carries_the_recommended_labels() {
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        for o in &objects {
            let kind = str_of(&o["kind"]);
            let labels = &o["metadata"]["labels"];
            let step = match kind {
                "ConfigMap" => "config",
                "Deployment" | "Service" => "replace",
                "PodDisruptionBudget" | "HorizontalPodAutoscaler" | "NetworkPolicy" => "after",
                other => panic!("{}: unexpected kind {other}", overlay.name),
            };
            assert_eq!(labels[CUTOVER], step, "{}: {kind}", overlay.name);
            assert_eq!(labels["app.kubernetes.io/name"], "abcdesktop-gateway");
            assert_eq!(labels["app.kubernetes.io/component"], "gateway");
            assert_eq!(
                labels["app.kubernetes.io/version"],
                env!("CARGO_PKG_VERSION")
            );
        }
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(
            pod_labels["app.kubernetes.io/version"],
            env!("CARGO_PKG_VERSION")
        );
        assert!(
            pod_labels.get(CUTOVER).is_none(),
            "{}: pods carry no step",
            overlay.name
        );
    }
}

#[test]
fn autoscaler_budget_spread_and_network_policy_follow_the_deployment() {
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];

        let hpa = only(&objects, "HorizontalPodAutoscaler");
        assert_eq!(hpa["apiVersion"], "autoscaling/v2");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], overlay.deployment);
        assert!(
            deployment["spec"].get("replicas").is_none(),
            "the HPA owns replicas"
        );
        // Every scale-in cuts the removed pod's sessions.
        let down = &hpa["spec"]["behavior"]["scaleDown"];
        assert!(
            down["stabilizationWindowSeconds"]
                .as_u64()
                .is_some_and(|s| s >= 600)
        );

        let pdb = only(&objects, "PodDisruptionBudget");
        assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));

        let spread = array(&deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]);
        assert!(
            spread
                .iter()
                .any(|c| c["topologyKey"] == "kubernetes.io/hostname"
                    && selects(&c["labelSelector"]["matchLabels"], pod_labels)),
            "{}: spread over nodes",
            overlay.name
        );

        let policy = only(&objects, "NetworkPolicy");
        assert!(selects(
            &policy["spec"]["podSelector"]["matchLabels"],
            pod_labels
        ));
        let rules = array(&policy["spec"]["ingress"])
            .iter()
            .chain(array(&policy["spec"]["egress"]));
        for rule in rules {
            for port in array(&rule["ports"]) {
                assert!(port.get("endPort").is_none(), "{}: endPort", overlay.name);
            }
        }
        // A rule's port: a number, or a port name resolved on this container.
        let admitted = |container: &Value, port: u64| {
            array(&policy["spec"]["ingress"])
                .iter()
                .filter(|rule| {
                    array(&rule["ports"])
                        .iter()
                        .any(|p| resolve_port_opt(&p["port"], container) == Some(port))
                })
                .collect::<Vec<_>>()
        };
        for (container, listen) in gateways(overlay, deployment) {
            let rules = admitted(container, listen);
            assert!(
                rules.iter().any(|r| r.get("from").is_none()),
                "{}: {listen} from anywhere",
                overlay.name
            );
            // The admin port (metrics) only from the monitoring namespace.
            let admin = admin_port(config_text(&objects, deployment, container));
            let rules = admitted(container, admin);
            assert!(
                !rules.is_empty(),
                "{}: admin {admin} admitted",
                overlay.name
            );
            for rule in rules {
                let from = array(&rule["from"]);
                assert!(
                    !from.is_empty(),
                    "{}: admin {admin} from anywhere",
                    overlay.name
                );
                for peer in from {
                    assert_eq!(
                        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                        "monitoring"
                    );
                }
            }
        }

        // Egress to desktops: exactly the pod ports the gateway's config allows, one by one.
        let file = FileConfig::parse(config_text(
            &objects,
            deployment,
            container(deployment, "gateway"),
        ))
        .expect("config");
        let allowed: BTreeSet<u64> = file.container.ports.into_iter().map(u64::from).collect();
        let desktop_rule = array(&policy["spec"]["egress"])
            .iter()
            .find(|rule| {
                rule["to"].as_array().is_some_and(|to| {
                    to.iter()
                        .any(|peer| peer["podSelector"]["matchLabels"]["type"] == "x11server")
                })
            })
            .expect("egress to user pods");
        let listed: BTreeSet<u64> = array(&desktop_rule["ports"])
            .iter()
            .map(|p| p["port"].as_u64().expect("a port number"))
            .collect();
        assert_eq!(listed, allowed, "{}: egress to desktop ports", overlay.name);
        assert_eq!(
            array(&desktop_rule["ports"]).len(),
            allowed.len(),
            "{}",
            overlay.name
        );
    }
}

#[test]
fn monitoring_scrapes_every_gateway_admin_port_without_a_service() {
    let monitoring = rendered("monitoring");
    assert!(
        monitoring.iter().all(|o| o["kind"] != "Service"),
        "a Service would give the gateway pods a second PTR record"
    );
    let monitor = only(&monitoring, "PodMonitor");
    let endpoints = array(&monitor["spec"]["podMetricsEndpoints"]);
    let rule = only(&monitoring, "PrometheusRule");
    let job = format!("{}/{}", NAMESPACE, str_of(&monitor["metadata"]["name"]));
    let exprs: Vec<&str> = array(&rule["spec"]["groups"])
        .iter()
        .flat_map(|g| array(&g["rules"]))
        .map(|r| str_of(&r["expr"]))
        .collect();
    assert!(
        exprs.iter().any(|e| e.contains(&format!("job=\"{job}\""))),
        "the alerts name the PodMonitor's job {job}"
    );
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert!(
            selects(&monitor["spec"]["selector"]["matchLabels"], pod_labels),
            "{}",
            overlay.name
        );
        for (container, _) in gateways(overlay, deployment) {
            let admin = admin_port(config_text(&objects, deployment, container));
            let name = &declared_port(container, admin)["name"];
            let endpoint = endpoints
                .iter()
                .find(|e| e["port"] == *name)
                .unwrap_or_else(|| panic!("{}: no endpoint for port {name}", overlay.name));
            assert_eq!(endpoint["path"], "/metrics");
        }
    }
}

#[test]
fn each_gateway_container_config_loads_with_its_environment() {
    // Real key files where the Deployment's environment points, under a temporary root.
    let root = tempfile::tempdir().expect("temp dir");
    let pairs: Vec<_> = PAIRS[..2]
        .iter()
        .map(|spec| gateway_tooling::keygen::generate_pair(*spec, 1024).expect("key pair"))
        .collect();
    for overlay in &OVERLAYS {
        let objects = rendered(overlay.name);
        let deployment = object(&objects, "Deployment", overlay.deployment);
        for (container, listen) in gateways(overlay, deployment) {
            let who = format!("{} {}", overlay.name, container["name"]);
            let env: Vec<(String, String)> = array(&container["env"])
                .iter()
                .filter_map(|v| {
                    Some((
                        str_of(&v["name"]).to_owned(),
                        v["value"].as_str()?.to_owned(),
                    ))
                })
                .collect();
            let moved = |path: &str| root.path().join(path.trim_start_matches('/'));
            for (_, value) in &env {
                let Some(pair) = pairs.iter().find(|p| {
                    value.ends_with(p.spec.private_file) || value.ends_with(p.spec.public_file)
                }) else {
                    continue;
                };
                let path = moved(value);
                std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
                let pem = if value.ends_with(pair.spec.private_file) {
                    &pair.private_pem
                } else {
                    &pair.public_pem
                };
                std::fs::write(&path, pem.as_bytes()).expect("write key");
            }
            let lookup = |name: &str| {
                env.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| moved(v).to_string_lossy().into_owned())
            };
            let text = config_text(&objects, deployment, container);
            let mut file = FileConfig::parse_with_env(text, &Env::from_fn(lookup))
                .unwrap_or_else(|e| panic!("{who}: {e:#}"));
            if let Some(dir) = &file.website.static_dir {
                let dir = moved(dir.to_str().expect("UTF-8"));
                std::fs::create_dir_all(&dir).expect("static dir");
                file.website.static_dir = Some(dir);
            }
            let config = file
                .validate()
                .unwrap_or_else(|e| panic!("{who}: the gateway refuses its config: {e:#}"));
            assert_eq!(u64::from(config.listen.port()), listen, "{who}");
            assert!(config.keys.payload.is_some(), "{who}: payload key loaded");
            assert_eq!(
                config.tls.is_some(),
                container["name"] == "gateway-tls",
                "{who}"
            );
            let admin = config.admin_listen.expect("admin listener");
            assert_eq!(
                u64::from(admin.port()),
                admin_port(config_text(&objects, deployment, container))
            );
        }
    }
}
