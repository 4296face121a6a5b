//! The Kubernetes manifests (`deploy/kubernetes`), offline: each environment's overlay is
//! rendered with `kubectl kustomize`, checked against the Kubernetes API schemas
//! (kubernetes-validate, strict: an unknown field fails) for the oldest and newest versions
//! we support, its ServiceMonitor against `deploy/kubernetes/schemas/servicemonitor.json`,
//! its settings files against the services' own settings types, and then read for what a
//! deployment of this system must hold (probes, budgets, secrets, network, shutdown).

use crate::observability::{check, repo_root, tool};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

const ENVIRONMENTS: [&str; 2] = ["staging", "production"];
/// The Kubernetes versions the manifests are checked against: `preStop.sleep` needs 1.30.
const VERSIONS: [&str; 2] = ["1.30.0", "1.32.0"];

fn required(name: &str) -> std::path::PathBuf {
    tool(name).unwrap_or_else(|| panic!("{name} is not installed: run scripts/prereqs.sh services"))
}

/// The rendered manifests of `environment`, as YAML text and as documents.
fn render(environment: &str) -> (String, Vec<Value>) {
    let overlay = format!("deploy/kubernetes/overlays/{environment}");
    let output = Command::new(required("kubectl"))
        .args(["kustomize", &overlay])
        .current_dir(repo_root())
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let documents = serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("YAML"))
        .filter(|document| !document.is_null())
        .collect();
    (text, documents)
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

fn named<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    (of_kind(documents, kind).into_iter())
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The data of the ConfigMap whose generated name starts with `prefix`.
fn config_map<'a>(documents: &'a [Value], prefix: &str) -> &'a Value {
    let map = of_kind(documents, "ConfigMap")
        .into_iter()
        .find(|d| {
            d["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{prefix}-"))
        })
        .unwrap_or_else(|| panic!("no ConfigMap {prefix}"));
    &map["data"]
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn labels(workload: &Value) -> &serde_json::Map<String, Value> {
    workload["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap()
}

#[test]
fn each_environment_renders_and_passes_the_kubernetes_schemas() {
    let validator = required("kubernetes-validate");
    let dir = std::env::temp_dir().join(format!("rpc-k8s-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for environment in ENVIRONMENTS {
        let (text, documents) = render(environment);
        let file = dir.join(format!("{environment}.yaml"));
        std::fs::write(&file, &text).unwrap();
        for version in VERSIONS {
            let output = Command::new(&validator)
                .args(["--strict", "--quiet", "-k", version])
                .arg(&file)
                .output()
                .expect("kubernetes-validate runs");
            let report = String::from_utf8_lossy(&output.stdout).to_string()
                + &String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "{environment} on {version}:\n{report}"
            );
            // The only kind the Kubernetes schemas do not know is checked below.
            for line in report.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    line.contains("kind ServiceMonitor"),
                    "{environment} on {version}: {line}"
                );
            }
        }
        for (n, monitor) in of_kind(&documents, "ServiceMonitor")
            .into_iter()
            .enumerate()
        {
            let json = dir.join(format!("{environment}-servicemonitor-{n}.json"));
            std::fs::write(&json, monitor.to_string()).unwrap();
            let schema = repo_root().join("deploy/kubernetes/schemas/servicemonitor.json");
            let mut command = match tool("check-jsonschema") {
                Some(bin) => Command::new(bin),
                None => {
                    let mut python = Command::new("python3");
                    python.args(["-m", "check_jsonschema"]);
                    python
                }
            };
            check(
                "check-jsonschema (ServiceMonitor)",
                command.arg("--schemafile").arg(&schema).arg(&json),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The validator itself fails on a broken manifest (so the test above can fail).
#[test]
fn the_schema_check_refuses_a_misspelt_field() {
    let validator = required("kubernetes-validate");
    let (text, _) = render("staging");
    let broken = text.replacen("readinessProbe:", "readinesProbe:", 1);
    let file = std::env::temp_dir().join(format!(
        "rpc-k8s-broken-{}.yaml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&file, broken).unwrap();
    let output = Command::new(validator)
        .args(["--strict", "--quiet", "-k", VERSIONS[1]])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_file(&file).ok();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("readinesProbe"));
}

#[test]
fn each_environment_holds_the_deployment_rules() {
    for environment in ENVIRONMENTS {
        let (_, documents) = render(environment);
        let context = |what: &str| format!("{environment}: {what}");

        // The settings files are valid for the services that read them (unknown keys are
        // refused by the settings types).
        let settings = |prefix: &str, key: &str| -> String {
            config_map(&documents, prefix)[key]
                .as_str()
                .unwrap_or_else(|| panic!("{prefix}/{key}"))
                .to_owned()
        };
        let gateway: gateway::Settings =
            serde_yaml::from_str(&settings("gateway-config", "gateway.yaml")).unwrap();
        let _: gateway::Settings =
            serde_yaml::from_str(&settings("gateway-environment", "gateway.yaml")).unwrap();
        // The database URL comes from the Secret, as an environment variable over the file.
        let with_url = |text: String| -> serde_yaml::Value {
            let mut file: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            file["database"]["url"] = "postgres://from-the-secret@db/rpc".into();
            file
        };
        let auth: auth_service::Settings = serde_yaml::from_value(with_url(settings(
            "auth-service-config",
            "auth-service.yaml",
        )))
        .unwrap();
        let registry: registry::Settings =
            serde_yaml::from_value(with_url(settings("registry-config", "registry.yaml"))).unwrap();
        assert_eq!(auth.database.schema.as_deref(), Some("auth"));
        assert_eq!(registry.database.schema.as_deref(), Some("registry"));
        assert_eq!(gateway.auth_service.entries(), ["auth-service:8081"]);
        assert_eq!(gateway.registry.entries(), ["registry:8082"]);

        let services = ["gateway", "auth-service", "registry"];
        for name in services {
            let deployment = named(&documents, "Deployment", name);
            let spec = pod_spec(deployment);
            let container = &spec["containers"][0];
            let probe_port = if name == "gateway" { "admin" } else { "http" };
            // Ready: /health (the blacklist loaded, the database reachable). Alive: the
            // process answers, whatever Redis and PostgreSQL do.
            assert_eq!(
                container["readinessProbe"]["httpGet"]["path"],
                "/health",
                "{}",
                context(name)
            );
            assert_eq!(container["readinessProbe"]["httpGet"]["port"], probe_port);
            assert_eq!(
                container["livenessProbe"]["httpGet"]["path"],
                "/health/live",
                "{}",
                context(name)
            );
            assert_eq!(
                container["startupProbe"]["httpGet"]["path"],
                "/health/live",
                "{}",
                context(name)
            );
            let resources = &container["resources"];
            for field in [
                "/requests/cpu",
                "/requests/memory",
                "/limits/cpu",
                "/limits/memory",
            ] {
                assert!(
                    resources.pointer(field).is_some(),
                    "{}",
                    context(&format!("{name} {field}"))
                );
            }
            assert_eq!(
                spec["securityContext"]["runAsNonRoot"],
                true,
                "{}",
                context(name)
            );
            assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
            let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(
                annotations["prometheus.io/scrape"],
                "true",
                "{}",
                context(name)
            );
            assert!(
                deployment["spec"]["replicas"].as_u64().unwrap() >= 2,
                "{}",
                context(name)
            );
            assert_eq!(
                deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
                0
            );

            // A budget that keeps one up through a node drain.
            let budget = named(&documents, "PodDisruptionBudget", name);
            assert_eq!(
                budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
                name
            );
            assert!(budget["spec"]["minAvailable"].as_u64().unwrap() >= 1);

            // Shutdown: the pause, then what the process itself takes, within the grace.
            let pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
                .as_u64()
                .unwrap();
            let own = match name {
                "gateway" => {
                    let s = &gateway.server;
                    s.grace_period_seconds + s.graceful_shutdown_timeout_seconds
                }
                // warp's graceful stop: requests in flight, bounded by the slowest answer.
                _ => 10,
            };
            let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
            assert!(
                grace > pause + own,
                "{}",
                context(&format!("{name}: {grace} <= {pause} + {own}"))
            );
        }

        // Secrets only through Secret objects, never written in the manifests.
        assert!(
            of_kind(&documents, "Secret").is_empty(),
            "{}",
            context("a Secret in the manifests")
        );
        let secretive = ["SECRET", "PASSWORD", "KEY", "URL", "PEM"];
        let workloads = of_kind(&documents, "Deployment")
            .into_iter()
            .chain(of_kind(&documents, "Job"));
        for workload in workloads {
            let spec = pod_spec(workload);
            let containers = spec["containers"].as_array().unwrap().iter();
            let containers =
                containers.chain(spec["initContainers"].as_array().into_iter().flatten());
            for container in containers {
                for env in container["env"].as_array().into_iter().flatten() {
                    let name = env["name"].as_str().unwrap();
                    if secretive.iter().any(|word| name.contains(word)) {
                        assert!(
                            env["valueFrom"]["secretKeyRef"]["name"].is_string(),
                            "{}",
                            context(&format!("{name} is not from a Secret"))
                        );
                    }
                }
            }
        }

        // The gateway scales on CPU.
        let autoscaler = named(&documents, "HorizontalPodAutoscaler", "gateway");
        assert_eq!(autoscaler["spec"]["scaleTargetRef"]["name"], "gateway");
        assert_eq!(autoscaler["spec"]["metrics"][0]["resource"]["name"], "cpu");

        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        // The migrations run as a Job before a rollout, for both databases.
        let job = named(&documents, "Job", "migrate");
        let spec = pod_spec(job);
        let commands: Vec<String> = (spec["initContainers"].as_array().into_iter().flatten())
            .chain(spec["containers"].as_array().into_iter().flatten())
            .map(|c| {
                c["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(
            commands,
            ["auth-service migrate", "registry migrate"],
            "{}",
            context("migrate")
        );
        // The first step of a rollout applies what carries rpc/stage=migrate: the Job and
        // the settings it reads, nothing that would start a new pod.
        let first_step: BTreeSet<String> = (documents.iter())
            .filter(|d| d["metadata"]["labels"]["rpc/stage"] == "migrate")
            .map(|d| d["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            first_step,
            set(&["ConfigMap", "Job"]),
            "{}",
            context("rpc/stage")
        );

        // Network: everything denied, then only what is listed.
        let policies = of_kind(&documents, "NetworkPolicy");
        let deny = named(&documents, "NetworkPolicy", "default-deny");
        assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
        assert_eq!(
            deny["spec"]["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );
        assert!(deny["spec"].get("ingress").is_none() && deny["spec"].get("egress").is_none());
        // Reachable from anywhere: a rule with no `from`. Only the gateway has one.
        for policy in &policies {
            let open = (policy["spec"]["ingress"].as_array().into_iter().flatten())
                .any(|rule| rule.get("from").is_none());
            let selected = &policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"];
            assert_eq!(
                open,
                selected == "gateway",
                "{}",
                context(&format!("{}", policy["metadata"]["name"]))
            );
        }
        // Who is a PostgreSQL client, who a Redis client (the labels the policies select).
        let with_label = |label: &str| -> BTreeSet<String> {
            (of_kind(&documents, "Deployment")
                .into_iter()
                .chain(of_kind(&documents, "Job")))
            .filter(|w| labels(w).get(label).is_some_and(|v| v == "client"))
            .map(|w| w["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
        };
        assert_eq!(
            with_label("rpc/postgresql"),
            set(&["auth-service", "migrate", "registry"])
        );
        assert_eq!(with_label("rpc/redis"), set(&["auth-service", "gateway"]));
        for (datastore, port) in [("postgresql", 5432), ("redis", 6379)] {
            let policy = named(&documents, "NetworkPolicy", datastore);
            let rule = &policy["spec"]["ingress"][0];
            assert_eq!(
                rule["from"][0]["podSelector"]["matchLabels"][format!("rpc/{datastore}")],
                "client"
            );
            assert_eq!(rule["ports"][0]["port"], port);
            assert_eq!(policy["spec"]["ingress"].as_array().unwrap().len(), 1);
        }
        for upstream in ["auth-service", "registry"] {
            let policy = named(&documents, "NetworkPolicy", upstream);
            for rule in policy["spec"]["ingress"].as_array().unwrap() {
                for from in rule["from"].as_array().unwrap() {
                    let gateway =
                        from["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "gateway";
                    let monitoring = from["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                        == "monitoring";
                    assert!(
                        gateway || monitoring,
                        "{}",
                        context(&format!("{upstream} reachable from {from}"))
                    );
                }
            }
            // Headless: the name resolves to each ready replica, which the gateways balance.
            let service = named(&documents, "Service", upstream);
            assert_eq!(
                service["spec"]["clusterIP"],
                "None",
                "{}",
                context(upstream)
            );
        }
        assert_eq!(of_kind(&documents, "ServiceMonitor").len(), 1);
    }
}
