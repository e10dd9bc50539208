//! The Kubernetes manifests (deploy/kubernetes) against the code they deploy:
//! every variable a container sets is one its binary reads (and takes the
//! value given), every port and probe is where the service listens, every
//! URL names a Service port that leads to a listener, and every image and
//! command is one the Dockerfile builds. The manifests are read as written
//! (base, components, overlays and their patches), so this runs without
//! kubectl; scripts/k8s-check.sh validates the rendered result.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args as _, Subcommand as _};
use serde::Deserialize as _;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn k8s() -> PathBuf {
    root().join("deploy/kubernetes")
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

/// Every object of the base, the components and the overlays, with the file
/// it is in.
fn objects() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    for dir in ["base", "components/cert-manager", "overlays/dev", "overlays/production"] {
        for entry in std::fs::read_dir(k8s().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml")
                && path.file_name().is_some_and(|n| n != "kustomization.yaml")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .flat_map(|path| yaml_docs(&path).into_iter().map(move |doc| (path.clone(), doc)))
        .collect()
}

fn str_of<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// A container of one of our workloads, with what the overlays' patches add.
#[derive(Debug)]
struct Container {
    workload: String,
    /// An init container (the others are the workload's service).
    init: bool,
    spec: Value,
    env: Vec<(String, EnvValue)>,
}

#[derive(Debug, Clone)]
enum EnvValue {
    Literal(String),
    ConfigMap { name: String, key: String },
}

/// The containers and init containers of every Deployment, Job and
/// StatefulSet that runs the Tollgate image.
fn tollgate_containers() -> Vec<Container> {
    let mut containers = Vec::new();
    for (_, object) in objects() {
        let kind = str_of(&object, "/kind");
        if !["Deployment", "Job", "StatefulSet"].contains(&kind) {
            continue;
        }
        let workload = format!("{kind}/{}", str_of(&object, "/metadata/name"));
        for list in ["initContainers", "containers"] {
            let pointer = format!("/spec/template/spec/{list}");
            for (index, spec) in object
                .pointer(&pointer)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                // The image kustomize's `images:` points at each overlay's
                // registry; anything else (the dev PostgreSQL) is not ours.
                if str_of(&spec, "/image") != "tollgate" {
                    continue;
                }
                let mut env: Vec<_> = spec["env"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(env_entry)
                    .collect();
                env.extend(patched_env(kind, str_of(&object, "/metadata/name"), list, index));
                let init = list == "initContainers";
                containers.push(Container { workload: workload.clone(), init, spec, env });
            }
        }
    }
    containers
}

fn env_entry(entry: &Value) -> (String, EnvValue) {
    let name = str_of(entry, "/name").to_owned();
    let value = if let Some(value) = entry.get("value") {
        EnvValue::Literal(value.as_str().expect("env values are strings").to_owned())
    } else {
        let reference =
            entry.pointer("/valueFrom/configMapKeyRef").expect("value or a ConfigMap key");
        EnvValue::ConfigMap {
            name: str_of(reference, "/name").to_owned(),
            key: str_of(reference, "/key").to_owned(),
        }
    };
    (name, value)
}

/// The kustomization.yaml of each overlay.
fn overlays() -> Vec<(String, Value)> {
    ["dev", "production"]
        .into_iter()
        .map(|name| {
            let path = k8s().join("overlays").join(name).join("kustomization.yaml");
            (name.to_owned(), yaml_docs(&path).remove(0))
        })
        .collect()
}

/// What the overlays' JSON patches add to a container's environment.
fn patched_env(kind: &str, name: &str, list: &str, index: usize) -> Vec<(String, EnvValue)> {
    let path = format!("/spec/template/spec/{list}/{index}/env/-");
    let mut env = Vec::new();
    for (_, kustomization) in overlays() {
        for patch in kustomization["patches"].as_array().cloned().unwrap_or_default() {
            let target = &patch["target"];
            if str_of(target, "/kind") != kind
                || target.get("name").is_some_and(|n| n.as_str() != Some(name))
            {
                continue;
            }
            let ops: Value = serde_yaml_ng::from_str(str_of(&patch, "/patch")).unwrap();
            for op in ops.as_array().unwrap() {
                if str_of(op, "/op") == "add" && str_of(op, "/path") == path {
                    env.push(env_entry(&op["value"]));
                }
            }
        }
    }
    env
}

/// The binary a container runs and the command line its `args` make.
fn command_of(container: &Container) -> (&'static str, clap::Command, Vec<String>) {
    assert!(
        container.spec.get("command").is_none(),
        "{}: no `command`, so the image's entry point (which reads *_SECRET_FILE and \
         *_PASSWORD_FILE) runs",
        container.workload
    );
    let args: Vec<String> = container.spec["args"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: args name the binary", container.workload))
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let (binary, command) = match args[0].as_str() {
        "auth-server" => (
            "auth-server",
            tollgate_auth_server::Config::augment_args(clap::Command::new("auth-server"))
                .subcommand(clap::Command::new("serve"))
                .subcommand(tollgate_auth_server::admin::AdminCommand::augment_subcommands(
                    clap::Command::new("admin"),
                )),
        ),
        "resource-server" => ("resource-server", tollgate_resource_server::Config::command()),
        "notes-store" => ("notes-store", tollgate_notes_store::Config::command()),
        other => panic!("{}: runs {other:?}, which no manifest test knows", container.workload),
    };
    (binary, command, args)
}

/// The binaries the Dockerfile builds into the image.
fn dockerfile_binaries() -> BTreeSet<String> {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let words: Vec<&str> = dockerfile.split_whitespace().collect();
    words.windows(2).filter(|w| w[0] == "--bin").map(|w| w[1].to_owned()).collect()
}

/// Variables read by something other than the binary's own command line.
fn read_elsewhere(name: &str, secret_envs: &BTreeSet<String>) -> bool {
    // The database driver (sqlx, like libpq) takes the password from PGPASSWORD.
    name == "PGPASSWORD"
        // The bootstrap file names the variables its secrets are in.
        || secret_envs.contains(name)
}

/// `secret_env` and `password_env` of every bootstrap file the overlays use.
fn bootstrap_secret_envs() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in ["base/bootstrap.toml", "overlays/dev/bootstrap.toml"] {
        let text = std::fs::read_to_string(k8s().join(file)).unwrap();
        let toml: toml::Value = toml::from_str(&text).unwrap();
        for table in ["clients", "users"] {
            for entry in toml.get(table).and_then(|t| t.as_array()).cloned().unwrap_or_default() {
                for key in ["secret_env", "password_env"] {
                    if let Some(name) = entry.get(key).and_then(|v| v.as_str()) {
                        names.insert(name.to_owned());
                    }
                }
            }
        }
    }
    names
}

/// The `tollgate-settings` keys every overlay generates, with their values.
fn settings_of_each_overlay() -> Vec<(String, BTreeMap<String, String>)> {
    overlays()
        .into_iter()
        .map(|(overlay, kustomization)| {
            let generator = kustomization["configMapGenerator"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["name"] == "tollgate-settings")
                .unwrap_or_else(|| panic!("{overlay} generates tollgate-settings"))
                .clone();
            let literals = generator["literals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    let (key, value) = l.as_str().unwrap().split_once('=').unwrap();
                    (key.to_owned(), value.to_owned())
                })
                .collect();
            (overlay, literals)
        })
        .collect()
}

/// Each variable the command reads, with the long flag that takes the same value.
fn env_flags(command: &clap::Command) -> BTreeMap<String, String> {
    command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_owned();
            Some((env, arg.get_long()?.to_owned()))
        })
        .collect()
}

/// A value as each overlay gives it: a literal, or a `tollgate-settings` key.
fn values_in_each_overlay(container: &Container, name: &str, value: &EnvValue) -> Vec<String> {
    match value {
        EnvValue::Literal(value) => vec![value.clone(); overlays().len()],
        EnvValue::ConfigMap { name: map, key } => {
            assert_eq!(map, "tollgate-settings", "{}: {name}", container.workload);
            settings_of_each_overlay()
                .into_iter()
                .map(|(overlay, literals)| {
                    literals.get(key).cloned().unwrap_or_else(|| {
                        panic!("{overlay}: tollgate-settings has no {key} ({name})")
                    })
                })
                .collect()
        }
    }
}

#[test]
fn every_variable_a_container_sets_is_one_its_binary_reads_and_accepts() {
    let binaries = dockerfile_binaries();
    let secret_envs = bootstrap_secret_envs();
    let containers = tollgate_containers();
    let workloads: BTreeSet<_> = containers.iter().map(|c| c.workload.as_str()).collect();
    assert_eq!(
        workloads,
        BTreeSet::from([
            "Deployment/auth-server",
            "Deployment/notes-store",
            "Deployment/resource-server",
            "Job/tollgate-migrate"
        ])
    );
    for container in &containers {
        let (binary, command, args) = command_of(container);
        assert!(
            binaries.contains(binary),
            "{}: the Dockerfile builds no {binary}",
            container.workload
        );
        let flags = env_flags(&command);
        // Parsed from arguments alone: this process's environment stays out.
        let command = command.mut_args(|arg| arg.env(None));
        // One command line per overlay (a literal is the same in each).
        let mut lines = vec![vec![args[0].clone()]; overlays().len()];
        for (name, value) in &container.env {
            // The image's entry point: NAME_FILE, for a NAME ending in SECRET
            // or PASSWORD, becomes NAME, read from the file (docker/entrypoint.sh).
            if let Some(read) = name
                .strip_suffix("_FILE")
                .filter(|n| n.ends_with("SECRET") || n.ends_with("PASSWORD"))
            {
                assert!(
                    flags.contains_key(read) || read_elsewhere(read, &secret_envs),
                    "{}: {name}, but nothing in {binary} reads {read}",
                    container.workload
                );
                continue;
            }
            let long = flags.get(name).unwrap_or_else(|| {
                panic!("{}: sets {name}, which {binary} does not read", container.workload)
            });
            for (overlay, value) in
                values_in_each_overlay(container, name, value).into_iter().enumerate()
            {
                lines[overlay].extend([format!("--{long}"), value]);
            }
        }
        // Every value, given as its flag, parses as the binary parses it (all
        // at once: some settings require others, TLS_CERT and TLS_KEY).
        for mut line in lines {
            line.extend(args[1..].iter().cloned());
            if let Err(error) = command.clone().try_get_matches_from(&line) {
                panic!("{}: {line:?} is refused:\n{error}", container.workload);
            }
        }
        // The arguments themselves (subcommands, their flags) parse.
        if let Err(error) = command.clone().try_get_matches_from(&args) {
            panic!("{}: args {args:?} are refused:\n{error}", container.workload);
        }
    }
}

/// The address a container's variable binds, if it is one of the listeners'.
fn listener(container: &Container, name: &str) -> Option<SocketAddr> {
    let (_, value) = container.env.iter().find(|(n, _)| n == name)?;
    let EnvValue::Literal(value) = value else { panic!("{name} is a literal") };
    Some(value.parse().unwrap_or_else(|_| panic!("{}: {name}={value}", container.workload)))
}

const LISTENERS: [&str; 4] = ["AUTH_HTTP_ADDR", "AUTH_GRPC_ADDR", "GRPC_ADDR", "PROBE_ADDR"];

fn container_ports(container: &Container) -> BTreeMap<String, u16> {
    container.spec["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                str_of(p, "/name").to_owned(),
                u16::try_from(p["containerPort"].as_u64().unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_port_and_probe_is_where_the_service_listens() {
    for container in
        tollgate_containers().iter().filter(|c| c.workload.starts_with("Deployment/") && !c.init)
    {
        let what = &container.workload;
        let listeners: BTreeMap<&str, SocketAddr> =
            LISTENERS.iter().filter_map(|name| Some((*name, listener(container, name)?))).collect();
        // Reachable from other pods, and one declared port per listener.
        for (name, addr) in &listeners {
            assert!(
                addr.ip().is_unspecified(),
                "{what}: {name}={addr} is not reachable from other pods"
            );
        }
        let bound: BTreeSet<u16> = listeners.values().map(SocketAddr::port).collect();
        let declared: BTreeSet<u16> = container_ports(container).into_values().collect();
        assert_eq!(bound, declared, "{what}: containerPorts against the listeners");

        // Every probe is a native gRPC probe of the probe listener: readiness
        // the overall health, start-up and liveness the liveness service.
        let probe = listeners.get("PROBE_ADDR").unwrap_or_else(|| panic!("{what}: no PROBE_ADDR"));
        for (kind, service) in [
            ("startupProbe", tollgate_service_kit::probe::LIVENESS),
            ("readinessProbe", ""),
            ("livenessProbe", tollgate_service_kit::probe::LIVENESS),
        ] {
            let grpc = container.spec[kind]
                .get("grpc")
                .unwrap_or_else(|| panic!("{what}: {kind} is a gRPC probe"));
            assert_eq!(grpc["port"].as_u64(), Some(u64::from(probe.port())), "{what}: {kind}");
            assert_eq!(str_of(grpc, "/service"), service, "{what}: {kind}'s service");
        }

        // Graceful termination: the grace period covers the drain and the
        // longest call.
        let drain: u64 = match container.env.iter().find(|(n, _)| n == "SHUTDOWN_DRAIN_SECS") {
            Some((_, EnvValue::Literal(secs))) => secs.parse().unwrap(),
            _ => panic!("{what}: SHUTDOWN_DRAIN_SECS, so load balancers move away first"),
        };
        assert!(drain > 0, "{what}");
        let grace = objects()
            .into_iter()
            .find(|(_, o)| {
                format!("{}/{}", str_of(o, "/kind"), str_of(o, "/metadata/name")) == *what
            })
            .and_then(|(_, o)| {
                o.pointer("/spec/template/spec/terminationGracePeriodSeconds")?.as_u64()
            })
            .unwrap_or(30);
        assert!(
            grace > drain + tollgate_service_kit::limits::DEFAULT_REQUEST_TIMEOUT,
            "{what}: terminationGracePeriodSeconds {grace} ≤ drain {drain} + the request timeout"
        );
    }
}

#[test]
fn every_service_and_url_leads_to_a_listener() {
    let objects = objects();
    let containers = tollgate_containers();
    // Service name → port → the container port it leads to.
    let mut services: BTreeMap<String, BTreeMap<u16, u16>> = BTreeMap::new();
    for (_, service) in objects.iter().filter(|(_, o)| o["kind"] == "Service") {
        let name = str_of(service, "/metadata/name").to_owned();
        let selected = str_of(service, "/spec/selector/app.kubernetes.io~1name");
        let Some(container) =
            containers.iter().find(|c| c.workload == format!("Deployment/{selected}") && !c.init)
        else {
            continue; // not a Tollgate workload (the dev overlay's PostgreSQL)
        };
        let ports = container_ports(container);
        for port in service["spec"]["ports"].as_array().unwrap() {
            let target = str_of(port, "/targetPort");
            let target = ports.get(target).unwrap_or_else(|| {
                panic!("Service {name}: targetPort {target:?} is no port of {selected}")
            });
            services
                .entry(name.clone())
                .or_default()
                .insert(u16::try_from(port["port"].as_u64().unwrap()).unwrap(), *target);
        }
    }
    assert!(services.contains_key("auth-server") && services.contains_key("notes-store"));

    // Every https:// URL a container is given that names a Service: its
    // port leads to a listener of the selected pods.
    let mut checked = 0;
    for container in &containers {
        for (name, value) in &container.env {
            for value in values_in_each_overlay(container, name, value) {
                let Ok(url) = url::Url::parse(&value) else { continue };
                let Some(ports) = url.host_str().and_then(|host| services.get(host)) else {
                    continue;
                };
                let port = url.port_or_known_default().unwrap();
                assert!(
                    ports.contains_key(&port),
                    "{}: {name}={value}: Service {} has no port {port}",
                    container.workload,
                    url.host_str().unwrap()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 6, "only {checked} URLs checked");

    // The Ingress leads to the authorization server's HTTPS listener.
    let (_, ingress) = objects.iter().find(|(_, o)| o["kind"] == "Ingress").unwrap();
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    let service = str_of(backend, "/name");
    let http = objects
        .iter()
        .find(|(_, o)| o["kind"] == "Service" && o["metadata"]["name"] == service)
        .unwrap_or_else(|| panic!("the Ingress's Service {service}"));
    let port = http.1["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == backend["port"]["name"])
        .unwrap_or_else(|| panic!("Service {service} has the Ingress's port"));
    let auth =
        containers.iter().find(|c| c.workload == "Deployment/auth-server" && !c.init).unwrap();
    assert_eq!(
        container_ports(auth).get(str_of(port, "/targetPort")).copied(),
        listener(auth, "AUTH_HTTP_ADDR").map(|a| a.port()),
        "the Ingress reaches AUTH_HTTP_ADDR"
    );
}

#[test]
fn every_certificate_names_the_service_its_callers_and_registration_name() {
    // The names callers verify (the URLs' hosts) and the registrations'
    // tls_client_auth_san_dns must be on the service's certificate.
    let objects = objects();
    let certificates: BTreeMap<String, (String, Vec<String>)> = objects
        .iter()
        .filter(|(_, o)| o["kind"] == "Certificate")
        .map(|(_, c)| {
            let names = c["spec"]["dnsNames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect();
            (
                str_of(c, "/spec/secretName").to_owned(),
                (str_of(c, "/metadata/name").to_owned(), names),
            )
        })
        .collect();
    let bootstrap: toml::Value =
        toml::from_str(&std::fs::read_to_string(k8s().join("base/bootstrap.toml")).unwrap())
            .unwrap();
    for container in
        tollgate_containers().iter().filter(|c| c.workload.starts_with("Deployment/") && !c.init)
    {
        let (_, deployment) = objects
            .iter()
            .find(|(_, o)| {
                format!("{}/{}", str_of(o, "/kind"), str_of(o, "/metadata/name"))
                    == container.workload
            })
            .unwrap();
        let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
        let secret = volumes
            .iter()
            .find(|v| v["name"] == "certs")
            .map(|v| str_of(v, "/secret/secretName").to_owned())
            .unwrap();
        let (_, names) = certificates
            .get(&secret)
            .unwrap_or_else(|| panic!("{}: no Certificate makes {secret}", container.workload));
        let service = container.workload.trim_start_matches("Deployment/");
        assert!(names.iter().any(|n| n == service), "{secret}: {names:?} lacks {service}");
        let client_id = container.env.iter().find_map(|(n, v)| match v {
            EnvValue::Literal(id) if n == "OAUTH_CLIENT_ID" => Some(id.clone()),
            _ => None,
        });
        if let Some(client_id) = client_id {
            let registration = bootstrap["clients"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["client_id"].as_str() == Some(client_id.as_str()))
                .unwrap_or_else(|| {
                    panic!("{client_id} is registered by the base's bootstrap file")
                });
            let san = registration["tls_client_auth_san_dns"].as_str().unwrap();
            assert!(names.iter().any(|n| n == san), "{client_id}: its certificate lacks {san}");
        }
    }
}

#[test]
fn the_pods_run_the_images_entry_point_as_the_images_user() {
    // The Dockerfile's entry point is what turns *_FILE into secrets; `args`
    // (never `command`) keeps it, which command_of asserts per container.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/tollgate-entrypoint"]"#),
        "the Dockerfile's entry point changed: the manifests rely on it"
    );
    let setup = std::fs::read_to_string(root().join("docker/runtime-setup.sh")).unwrap();
    let uid = setup
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0] == "--uid")
        .map(|w| w[1].parse::<u64>().unwrap())
        .expect("the image's user has a fixed uid");
    let mut pods = 0;
    for (_, object) in objects() {
        let Some(template) = object.pointer("/spec/template/spec") else { continue };
        let runs_tollgate = ["containers", "initContainers"].iter().any(|list| {
            template[list].as_array().is_some_and(|c| c.iter().any(|c| c["image"] == "tollgate"))
        });
        if !runs_tollgate {
            continue;
        }
        pods += 1;
        let security = &template["securityContext"];
        let what = str_of(&object, "/metadata/name");
        assert_eq!(security["runAsUser"].as_u64(), Some(uid), "{what}");
        assert_eq!(security["runAsGroup"].as_u64(), Some(uid), "{what}");
        assert_eq!(security["runAsNonRoot"], true, "{what}");
        assert_eq!(template["automountServiceAccountToken"], false, "{what}");
    }
    assert_eq!(pods, 4);
}
