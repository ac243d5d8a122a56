//! The deployment artefacts in deploy/ are true, proven without a container engine or a
//! cluster (scripts/check-artefacts checks the manifests against their schemas):
//!
//! - the image's file layout, laid out in a temporary root from the Containerfile's own COPY,
//!   ENV, WORKDIR, VOLUME, ENTRYPOINT and CMD lines, starts the binary on the image's default
//!   configuration, answers /readyz 200, passes the image's HEALTHCHECK probe and stops with
//!   exit 0 on SIGTERM;
//! - every path, port and environment variable an artefact (Containerfile, compose,
//!   Kubernetes, systemd) names exists where it points and agrees with the others;
//! - every metric the alert rules and the dashboard name is exported at /metrics;
//! - every test the clinical safety case names exists.
//!
//! How the image's layout runs here: the temporary root stands for the image's `/`. The
//! configuration is re-rooted, not edited: every absolute path in it (a string starting with
//! "/") gets the temporary root in front, as a chroot would see it. What a deployment sets from
//! outside is set here the same way, as environment variables: CLW_GATEWAY__INSTANCE and
//! CLW_BROKER__PREFIX (a name of this test's own, so tests do not share queues),
//! CLW_BROKER__URL (the test broker), CLW_STORE__URL (SQLite in the data volume, for
//! PostgreSQL), the two listen addresses (port 0 on loopback) and every `{ env = "..." }` secret
//! the configuration names (a dummy value). The child's environment is otherwise empty, as a
//! container's is.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ChildGateway, Rabbit, amqp_url, repo_path, unique};
use serde::Deserialize as _;
use serde_json::Value;

const CONTAINERFILE: &str = "deploy/container/Containerfile";
const COMPOSE: &str = "deploy/compose.yaml";
const K8S: &str = "deploy/k8s";
const UNIT: &str = "deploy/systemd/clw-gateway.service";
const SYSUSERS: &str = "deploy/systemd/sysusers.conf";
const ALERTS: &str = "deploy/prometheus/alerts.yaml";
const DASHBOARD: &str = "deploy/grafana/clw-gateway.json";
const CLINICAL_SAFETY: &str = "docs/clinical-safety";
const START_WITHIN: Duration = Duration::from_secs(60);

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every file below `dir`, as paths relative to it.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for entry in std::fs::read_dir(dir.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let child = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                todo.push(child);
            } else {
                out.push(child);
            }
        }
    }
    out.sort();
    out
}

/// `inside` (an absolute path in the image) under the temporary root.
fn reroot(root: &Path, inside: &str) -> PathBuf {
    root.join(inside.trim_start_matches('/'))
}

fn is_under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.starts_with(&format!("{dir}/"))
}

// ------------------------------------------------------------------------- the Containerfile

/// One stage of a Containerfile: its `AS` name and its instructions (keyword in upper case,
/// the rest of the logical line).
struct Stage {
    name: Option<String>,
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.instructions
            .iter()
            .filter(move |(k, _)| k == keyword)
            .map(|(_, args)| args.as_str())
    }

    fn last(&self, keyword: &str) -> String {
        self.all(keyword)
            .last()
            .unwrap_or_else(|| panic!("{CONTAINERFILE}: the runtime stage has no {keyword}"))
            .to_string()
    }
}

/// A COPY: `--from` stage, sources (repository paths, or paths in that stage) and destination.
struct CopyLine {
    from: Option<String>,
    sources: Vec<String>,
    dest: String,
}

/// An exec-form (`["a", "b"]`) or shell-form argument list.
fn exec_form(args: &str) -> Vec<String> {
    if args.trim_start().starts_with('[') {
        serde_json::from_str(args.trim()).unwrap_or_else(|e| panic!("{CONTAINERFILE}: {args}: {e}"))
    } else {
        args.split_whitespace().map(str::to_string).collect()
    }
}

struct Image {
    stages: Vec<Stage>,
}

impl Image {
    fn load() -> Image {
        let mut stages: Vec<Stage> = Vec::new();
        let mut logical = String::new();
        for line in read(CONTAINERFILE).lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(head) = line.strip_suffix('\\') {
                logical.push_str(head);
                logical.push(' ');
                continue;
            }
            logical.push_str(line);
            let full = std::mem::take(&mut logical);
            let (keyword, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
            let keyword = keyword.to_ascii_uppercase();
            let args = args.trim().to_string();
            if keyword == "FROM" {
                let words: Vec<&str> = args.split_whitespace().collect();
                let name = match words.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                    _ => None,
                };
                stages.push(Stage {
                    name,
                    instructions: Vec::new(),
                });
            } else {
                stages
                    .last_mut()
                    .unwrap_or_else(|| panic!("{CONTAINERFILE}: {keyword} before FROM"))
                    .instructions
                    .push((keyword, args));
            }
        }
        assert!(
            stages.len() >= 2,
            "{CONTAINERFILE}: a build stage and a runtime stage"
        );
        Image { stages }
    }

    fn runtime(&self) -> &Stage {
        self.stages.last().unwrap()
    }

    fn copies(stage: &Stage) -> Vec<CopyLine> {
        stage
            .all("COPY")
            .map(|args| {
                let mut from = None;
                let mut words = Vec::new();
                for word in args.split_whitespace() {
                    if let Some(stage) = word.strip_prefix("--from=") {
                        from = Some(stage.to_string());
                    } else if !word.starts_with("--") {
                        words.push(word.to_string());
                    }
                }
                let dest = words
                    .pop()
                    .unwrap_or_else(|| panic!("{CONTAINERFILE}: COPY {args}: no destination"));
                assert!(!words.is_empty(), "{CONTAINERFILE}: COPY {args}: no source");
                CopyLine {
                    from,
                    sources: words,
                    dest,
                }
            })
            .collect()
    }

    /// Every file the runtime image holds from the repository: path in the image → path in
    /// the repository (folders expanded as COPY copies them).
    fn files(&self) -> BTreeMap<String, PathBuf> {
        let mut out = BTreeMap::new();
        for copy in Self::copies(self.runtime()) {
            if copy.from.is_some() {
                continue;
            }
            let many = copy.sources.len() > 1;
            for source in &copy.sources {
                let path = repo_path(source);
                let dest = copy.dest.trim_end_matches('/');
                if path.is_dir() {
                    for rel in files_below(&path) {
                        out.insert(format!("{dest}/{}", rel.display()), path.join(&rel));
                    }
                } else if many || copy.dest.ends_with('/') {
                    let name = path.file_name().unwrap().to_string_lossy().to_string();
                    out.insert(format!("{dest}/{name}"), path);
                } else {
                    out.insert(dest.to_string(), path);
                }
            }
        }
        out
    }

    /// Whether the image holds `path`, as a file or as a folder of files.
    fn holds(&self, path: &str) -> bool {
        self.files().keys().any(|f| is_under(f, path))
    }

    /// Where the binary built in the build stage lands.
    fn binary(&self) -> String {
        let build = self.stages[0]
            .name
            .clone()
            .expect("the build stage is named");
        Self::copies(self.runtime())
            .into_iter()
            .find(|c| c.from.as_deref() == Some(build.as_str()))
            .map(|c| {
                assert!(
                    c.sources
                        .iter()
                        .all(|s| s.ends_with("/release/clw-gateway")),
                    "{CONTAINERFILE}: the release binary is what is copied from the build stage"
                );
                c.dest
            })
            .unwrap_or_else(|| panic!("{CONTAINERFILE}: no COPY --from={build}"))
    }

    fn env(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for args in self.runtime().all("ENV") {
            let first = args.split_whitespace().next().unwrap_or_default();
            if first.contains('=') {
                for pair in args.split_whitespace() {
                    let (k, v) = pair.split_once('=').unwrap();
                    out.insert(k.to_string(), v.trim_matches('"').to_string());
                }
            } else {
                let (k, v) = args.split_once(char::is_whitespace).unwrap();
                out.insert(k.to_string(), v.trim().trim_matches('"').to_string());
            }
        }
        out
    }

    fn entrypoint(&self) -> Vec<String> {
        exec_form(&self.runtime().last("ENTRYPOINT"))
    }

    fn cmd(&self) -> Vec<String> {
        exec_form(&self.runtime().last("CMD"))
    }

    /// The configuration file every command reads: CLW_CONFIG, or `--config` in the command.
    fn config_path(&self) -> String {
        if let Some(path) = self.env().get("CLW_CONFIG") {
            return path.clone();
        }
        let args: Vec<String> = self.entrypoint().into_iter().chain(self.cmd()).collect();
        args.windows(2)
            .find(|w| w[0] == "--config")
            .map(|w| w[1].clone())
            .unwrap_or_else(|| panic!("{CONTAINERFILE}: neither CLW_CONFIG nor --config"))
    }

    fn workdir(&self) -> String {
        self.runtime().last("WORKDIR")
    }

    fn volumes(&self) -> Vec<String> {
        self.runtime().all("VOLUME").flat_map(exec_form).collect()
    }

    fn exposed(&self) -> BTreeSet<u16> {
        self.runtime()
            .all("EXPOSE")
            .flat_map(str::split_whitespace)
            .map(|p| p.trim_end_matches("/tcp").parse().unwrap())
            .collect()
    }

    /// The HEALTHCHECK's command (after its options).
    fn healthcheck(&self) -> Vec<String> {
        let args = self.runtime().last("HEALTHCHECK");
        let (_, command) = args
            .split_once("CMD")
            .unwrap_or_else(|| panic!("{CONTAINERFILE}: HEALTHCHECK without CMD"));
        exec_form(command)
    }

    fn uid(&self) -> u32 {
        let user = self.runtime().last("USER");
        user.split(':').next().unwrap().parse().unwrap_or_else(|_| {
            panic!("{CONTAINERFILE}: USER {user} must be numeric (Kubernetes runAsNonRoot checks the number)")
        })
    }

    /// The repository file installed at `inside`.
    fn source_of(&self, inside: &str) -> PathBuf {
        self.files()
            .remove(inside)
            .unwrap_or_else(|| panic!("{CONTAINERFILE}: nothing is copied to {inside}"))
    }

    /// The image's configuration as the repository holds it.
    fn config(&self) -> toml::Table {
        let path = self.source_of(&self.config_path());
        std::fs::read_to_string(&path)
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

// ------------------------------------------------------------------------- the configuration

fn get<'a>(config: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut table = config;
    for p in parents {
        table = table.get(*p)?.as_table()?;
    }
    table.get(*last)
}

fn get_str<'a>(config: &'a toml::Table, path: &[&str]) -> Option<&'a str> {
    get(config, path).and_then(toml::Value::as_str)
}

fn data_dir(config: &toml::Table) -> String {
    get_str(config, &["gateway", "data_dir"])
        .expect("[gateway] data_dir")
        .to_string()
}

fn port_of(listen: &str) -> u16 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("listen {listen}: no port"))
}

fn http_port(config: &toml::Table) -> u16 {
    port_of(get_str(config, &["http", "listen"]).unwrap_or("127.0.0.1:8080"))
}

/// The ports the configuration listens on: [http] and, when enabled, [ingress].
fn listen_ports(config: &toml::Table) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    if get(config, &["http", "enabled"]).and_then(toml::Value::as_bool) != Some(false) {
        ports.insert(http_port(config));
    }
    if get(config, &["ingress", "enabled"]).and_then(toml::Value::as_bool) == Some(true) {
        ports.insert(port_of(
            get_str(config, &["ingress", "listen"]).unwrap_or("127.0.0.1:8081"),
        ));
    }
    ports
}

/// Every secret the configuration reads from the environment: its key path and variable.
fn env_secrets(config: &toml::Table) -> BTreeMap<String, String> {
    fn walk(path: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                let is_secret = t.keys().all(|k| k == "env" || k == "file");
                if let (true, Some(var)) = (is_secret, t.get("env").and_then(toml::Value::as_str)) {
                    out.insert(path.to_string(), var.to_string());
                }
                for (k, x) in t {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&child, x, out);
                }
            }
            toml::Value::Array(a) => {
                for x in a {
                    walk(path, x, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk("", &toml::Value::Table(config.clone()), &mut out);
    out
}

/// Every absolute path the configuration names.
fn absolute_paths(config: &toml::Table) -> BTreeSet<String> {
    fn walk(v: &toml::Value, out: &mut BTreeSet<String>) {
        match v {
            toml::Value::String(s) if s.starts_with('/') => {
                out.insert(s.clone());
            }
            toml::Value::Table(t) => t.values().for_each(|x| walk(x, out)),
            toml::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(&toml::Value::Table(config.clone()), &mut out);
    out
}

fn reroot_paths(v: &mut toml::Value, root: &Path) {
    match v {
        toml::Value::String(s) if s.starts_with('/') => *s = reroot(root, s).display().to_string(),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, x)| reroot_paths(x, root)),
        toml::Value::Array(a) => a.iter_mut().for_each(|x| reroot_paths(x, root)),
        _ => {}
    }
}

/// The key a `CLW_SECTION__KEY` override sets, as the gateway finds it (segments match
/// existing keys case-insensitively, `_` standing for `-`): its dotted path, if every
/// segment but the last exists and the last does too.
fn override_target(config: &toml::Table, var: &str) -> Option<(String, toml::Value)> {
    let key = var.strip_prefix("CLW_")?;
    let mut table = config;
    let mut path = Vec::new();
    let segments: Vec<&str> = key.split("__").collect();
    for (i, seg) in segments.iter().enumerate() {
        let (name, value) = table
            .iter()
            .find(|(k, _)| k.replace('-', "_").eq_ignore_ascii_case(seg))?;
        path.push(name.clone());
        if i + 1 == segments.len() {
            return Some((path.join("."), value.clone()));
        }
        table = value.as_table()?;
    }
    None
}

/// Every `CLW_*__*` override in `vars` sets a key the configuration has.
fn overrides_resolve(config: &toml::Table, vars: &BTreeSet<String>, artefact: &str) -> Vec<String> {
    vars.iter()
        .filter(|v| v.starts_with("CLW_") && v.contains("__"))
        .filter(|v| override_target(config, v).is_none())
        .map(|v| format!("{artefact}: {v} sets no key of the image's configuration"))
        .collect()
}

// ------------------------------------------------------------------------- YAML

fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let mut v = serde_yaml_ng::Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: {e}"));
        v.apply_merge().unwrap_or_else(|e| panic!("{rel}: {e}"));
        if !v.is_null() {
            out.push(serde_json::to_value(&v).unwrap_or_else(|e| panic!("{rel}: {e}")));
        }
    }
    out
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Every manifest in deploy/k8s and deploy/k8s/example, with the file it came from.
fn k8s_docs() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for rel in files_below(&repo_path(K8S)) {
        let rel = format!("{K8S}/{}", rel.display());
        if rel.ends_with(".yaml") && !rel.ends_with("kustomization.yaml") {
            out.extend(yaml_docs(&rel).into_iter().map(|d| (rel.clone(), d)));
        }
    }
    out
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d)
        .collect()
}

fn named<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{K8S}: no {kind} named {name}"))
}

// ------------------------------------------------------------------------- the systemd unit

/// (key, value) of every line of the unit's [Service] section, outer quotes removed.
fn unit_service() -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in read(UNIT).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{UNIT}: {line}"));
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        out.push((k.trim().to_string(), v.to_string()));
    }
    out
}

fn unit_values(service: &[(String, String)], key: &str) -> Vec<String> {
    service
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

fn unit_one(service: &[(String, String)], key: &str) -> String {
    unit_values(service, key)
        .pop()
        .unwrap_or_else(|| panic!("{UNIT}: no {key}="))
}

/// Environment= assignments of the unit.
fn unit_env(service: &[(String, String)]) -> BTreeMap<String, String> {
    unit_values(service, "Environment")
        .into_iter()
        .map(|a| {
            let (k, v) = a
                .split_once('=')
                .unwrap_or_else(|| panic!("{UNIT}: Environment={a}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

// ------------------------------------------------------------------------- a running image

/// The gateway binary started on the image's layout and configuration in a temporary root.
struct Running {
    root: tempfile::TempDir,
    image: Image,
    child: ChildGateway,
    /// Where /healthz, /readyz and /metrics answer.
    http: String,
    log: Arc<Mutex<Vec<String>>>,
    /// The re-rooted configuration and the environment it ran with, for the topology.
    config_text: String,
    env: Vec<(String, String)>,
    /// The broker topology to remove at the end (queues, exchanges).
    topology: Option<clw_gateway::sources::broker::Topology>,
}

/// The http listener's address from the gateway's start-up log line.
fn serving_addr(line: &str) -> Option<String> {
    if !line.contains("/readyz") {
        return None;
    }
    let at = line.find("127.0.0.1:")? + "127.0.0.1:".len();
    let port: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!port.is_empty() && port != "0").then(|| format!("127.0.0.1:{port}"))
}

impl Running {
    /// Lays out the image in a temporary root and starts its ENTRYPOINT + CMD there; returns
    /// once /readyz answers 200.
    async fn start() -> Running {
        let image = Image::load();
        let root = tempfile::tempdir().unwrap();
        for (inside, source) in image.files() {
            let target = reroot(root.path(), &inside);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&source, &target).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        }
        let binary = reroot(root.path(), &image.binary());
        std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_clw-gateway"), &binary).unwrap();
        for dir in image.volumes().into_iter().chain([image.workdir()]) {
            std::fs::create_dir_all(reroot(root.path(), &dir)).unwrap();
        }

        // The configuration, re-rooted in place.
        let config_file = reroot(root.path(), &image.config_path());
        let mut config = toml::Value::Table(image.config());
        reroot_paths(&mut config, root.path());
        let toml::Value::Table(config) = config else {
            unreachable!()
        };
        let config_text = toml::to_string(&config).unwrap();
        std::fs::write(&config_file, &config_text).unwrap();

        // The image's environment, then what a deployment sets.
        let mut env: Vec<(String, String)> = image
            .env()
            .into_iter()
            .filter(|(k, _)| k.starts_with("CLW_"))
            .map(|(k, v)| {
                let v = if v.starts_with('/') {
                    reroot(root.path(), &v).display().to_string()
                } else {
                    v
                };
                (k, v)
            })
            .collect();
        for var in env_secrets(&config).into_values() {
            env.push((
                var.clone(),
                format!("artefacts-test-{}", var.to_ascii_lowercase()),
            ));
        }
        env.push((
            "CLW_STORE__URL".into(),
            format!("sqlite://{}/artefacts-test.db?mode=rwc", data_dir(&config)),
        ));
        // A name of its own: the AMQP connection name, and this test's queue prefix.
        let name = unique("artefacts");
        env.push(("CLW_GATEWAY__INSTANCE".into(), name.clone()));
        if config.contains_key("broker") {
            env.push(("CLW_BROKER__URL".into(), amqp_url()));
            env.push(("CLW_BROKER__PREFIX".into(), name));
        }
        env.push(("CLW_HTTP__LISTEN".into(), "127.0.0.1:0".into()));
        env.push(("CLW_INGRESS__LISTEN".into(), "127.0.0.1:0".into()));
        let topology = config.contains_key("broker").then(|| {
            let parsed = clw_gateway::config::Config::from_toml(&config_text, env.clone())
                .unwrap_or_else(|e| panic!("the image's configuration: {e}"));
            parsed
                .transport()
                .topology(clw_gateway::model::Flow::Referral)
                .unwrap()
        });

        let entrypoint = image.entrypoint();
        let mut command = Command::new(reroot(root.path(), &entrypoint[0]));
        command
            .args(&entrypoint[1..])
            .args(image.cmd())
            .current_dir(reroot(root.path(), &image.workdir()))
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let child = ChildGateway(child);
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut running = Running {
            root,
            image,
            child,
            http: String::new(),
            log,
            config_text,
            env,
            topology,
        };

        let deadline = Instant::now() + START_WITHIN;
        running.http = loop {
            let found = running
                .log
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| serving_addr(l));
            if let Some(addr) = found {
                break addr;
            }
            running.assert_alive();
            assert!(
                Instant::now() < deadline,
                "no /readyz listener within {START_WITHIN:?}:\n{}",
                running.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let client = reqwest::Client::new();
        let mut last = String::new();
        loop {
            if let Ok(r) = client
                .get(format!("http://{}/readyz", running.http))
                .send()
                .await
            {
                let ok = r.status().is_success();
                last = format!("{} {}", r.status(), r.text().await.unwrap_or_default());
                if ok {
                    break;
                }
            }
            running.assert_alive();
            assert!(
                Instant::now() < deadline,
                "/readyz did not answer 200 within {START_WITHIN:?} (last: {last}):\n{}",
                running.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        running
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn assert_alive(&mut self) {
        if let Some(status) = self.child.0.try_wait().unwrap() {
            panic!(
                "the gateway exited ({status}) on the image's layout and configuration:\n{}",
                self.log_text()
            );
        }
    }

    /// Runs the image's HEALTHCHECK command against this gateway.
    fn healthcheck(&self) -> std::process::Output {
        let probe = self.image.healthcheck();
        Command::new(reroot(self.root.path(), &probe[0]))
            .args(&probe[1..])
            .env_clear()
            .env(
                "CLW_CONFIG",
                reroot(self.root.path(), &self.image.config_path()),
            )
            .env("CLW_HTTP__LISTEN", &self.http)
            .output()
            .unwrap()
    }

    /// SIGTERM, as `podman stop`, the kubelet and systemd send it: the gateway drains and
    /// exits 0. Then its queues and exchanges are removed.
    async fn stop(mut self) {
        let pid = self.child.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "still running 30 s after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            status.success(),
            "exit {status} after SIGTERM:\n{}",
            self.log_text()
        );
        if let Some(t) = self.topology.take() {
            let rabbit = Rabbit::connect().await;
            rabbit.cleanup(&t).await;
        }
    }
}

/// A test that failed before `stop` still removes its queues (rabbitmqctl: a destructor
/// cannot run the async client).
impl Drop for Running {
    fn drop(&mut self) {
        let Some(t) = self.topology.take() else {
            return;
        };
        self.child.kill();
        let events = t.for_flow(clw_gateway::model::Flow::MessageBack);
        for q in t.queue_names().into_iter().chain(events.queue_names()) {
            let _ = Command::new("rabbitmqctl")
                .args(["-q", "delete_queue", &q])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

// ------------------------------------------------------------------------- (a) the image starts

#[tokio::test]
async fn the_image_layout_starts_on_its_default_configuration_and_passes_its_healthcheck() {
    let running = Running::start().await;
    assert!(
        running.env.iter().any(|(k, _)| k == "CLW_BROKER__URL"),
        "the image's configuration runs on RabbitMQ, as compose and Kubernetes run it: {}",
        running.config_text
    );

    let probe = running.healthcheck();
    assert!(
        probe.status.success(),
        "the image's HEALTHCHECK failed against a ready gateway: {}{}",
        String::from_utf8_lossy(&probe.stdout),
        String::from_utf8_lossy(&probe.stderr)
    );
    let health = reqwest::get(format!("http://{}/healthz", running.http))
        .await
        .unwrap();
    assert!(health.status().is_success());

    // The probe is the repository's file the image copies; with nothing listening any more,
    // it fails: it is not always 0.
    let probe = running.image.source_of(&running.image.healthcheck()[0]);
    let http = running.http.clone();
    running.stop().await;
    let probe = Command::new(probe)
        .env_clear()
        .env("CLW_HTTP__LISTEN", &http)
        .output()
        .unwrap();
    assert!(
        !probe.status.success(),
        "the HEALTHCHECK passed with no gateway running"
    );
}

// ------------------------------------------------------------------------- (b) paths, ports, variables

#[test]
fn the_containerfile_copies_what_exists_and_holds_everything_its_configuration_names() {
    let image = Image::load();
    let mut problems = Vec::new();
    for stage in &image.stages {
        for copy in Image::copies(stage) {
            if copy.from.is_some() {
                continue;
            }
            for source in &copy.sources {
                if !repo_path(source).exists() {
                    problems.push(format!("COPY {source}: not in the repository"));
                }
            }
        }
    }
    let files = image.files();
    let config = image.config();
    let volumes = image.volumes();
    let data = data_dir(&config);
    if !volumes.contains(&data) {
        problems.push(format!(
            "[gateway] data_dir {data} is not a VOLUME ({volumes:?})"
        ));
    }
    for path in absolute_paths(&config) {
        let writable = volumes.iter().any(|v| is_under(&path, v));
        if !writable && !image.holds(&path) {
            problems.push(format!(
                "the configuration names {path}, which the image does not hold"
            ));
        }
    }
    for key in [&["mappings", "dir"][..], &["referrals", "routes"][..]] {
        match get_str(&config, key) {
            Some(path) if image.holds(path) => {}
            other => problems.push(format!("{}: {other:?} is not in the image", key.join("."))),
        }
    }
    // The mappings' own references (schemas, fixtures) resolve inside the image.
    let mappings = get_str(&config, &["mappings", "dir"]).unwrap_or_default();
    for (inside, source) in files
        .iter()
        .filter(|(f, _)| is_under(f, mappings) && f.ends_with(".yaml"))
    {
        let text = std::fs::read_to_string(source).unwrap();
        for rel in text
            .split_whitespace()
            .filter(|w| w.starts_with("../") || w.starts_with("fixtures/"))
        {
            let rel =
                rel.trim_matches(|c| c == '"' || c == '\'' || c == ',' || c == '}' || c == ']');
            let mut path: Vec<&str> = inside.split('/').collect();
            path.pop();
            for part in rel.split('/') {
                match part {
                    ".." => {
                        path.pop();
                    }
                    "." | "" => {}
                    p => path.push(p),
                }
            }
            let resolved = path.join("/");
            if !files.contains_key(&resolved) {
                problems.push(format!(
                    "{inside} reads {rel} ({resolved}), which the image does not hold"
                ));
            }
        }
    }
    let entrypoint = image.entrypoint();
    if entrypoint[0] != image.binary() {
        problems.push(format!(
            "ENTRYPOINT {entrypoint:?} is not the binary at {}",
            image.binary()
        ));
    }
    if image.cmd().first().map(String::as_str) != Some("serve") {
        problems.push(format!("CMD {:?} does not serve", image.cmd()));
    }
    assert_ne!(image.uid(), 0, "{CONTAINERFILE}: USER must not be root");
    let probe = image.healthcheck();
    match files.get(&probe[0]) {
        Some(source) if std::fs::metadata(source).unwrap().permissions().mode() & 0o111 != 0 => {}
        Some(source) => problems.push(format!(
            "HEALTHCHECK {}: {} is not executable",
            probe[0],
            source.display()
        )),
        None => problems.push(format!("HEALTHCHECK {}: not in the image", probe[0])),
    }
    let workdir = image.workdir();
    if !volumes.iter().any(|v| is_under(&workdir, v)) && !image.holds(&workdir) {
        problems.push(format!(
            "WORKDIR {workdir} is neither a VOLUME nor in the image"
        ));
    }
    assert!(
        problems.is_empty(),
        "{CONTAINERFILE}:\n  {}",
        problems.join("\n  ")
    );
}

/// `path` with `.` and `..` resolved without touching the file system.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// No container engine here to build the image, but its build stage can be checked for
/// what the compiler reads: every file the crate compiles in (`include_str!`,
/// `include_bytes!`, `migrate!`) and every bench target `Cargo.toml` declares is copied.
#[test]
fn the_build_stage_copies_every_file_the_crate_compiles_in() {
    let image = Image::load();
    let copied: Vec<PathBuf> = Image::copies(&image.stages[0])
        .into_iter()
        .filter(|c| c.from.is_none())
        .flat_map(|c| c.sources)
        .map(|s| lexical(&repo_path(&s)))
        .collect();
    let is_copied = |path: &Path| copied.iter().any(|c| path.starts_with(c));
    let mut needed = Vec::new();
    for rel in files_below(&repo_path("src")) {
        let file = repo_path("src").join(&rel);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (call, base) in [
            ("include_str!(\"", file.parent().unwrap().to_path_buf()),
            ("include_bytes!(\"", file.parent().unwrap().to_path_buf()),
            ("migrate!(\"", repo_path("")),
        ] {
            for (i, _) in text.match_indices(call) {
                let arg = &text[i + call.len()..];
                let arg = &arg[..arg.find('"').unwrap_or(0)];
                needed.push((format!("src/{}", rel.display()), lexical(&base.join(arg))));
            }
        }
    }
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    for bench in manifest
        .get("bench")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = bench
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or_default();
        let path = bench
            .get("path")
            .and_then(toml::Value::as_str)
            .map_or_else(|| format!("benches/{name}.rs"), str::to_string);
        needed.push(("Cargo.toml".to_string(), lexical(&repo_path(&path))));
    }
    needed.push(("the build".to_string(), repo_path("Cargo.lock")));
    assert!(needed.len() > 10, "found only {needed:?}");
    let missing: Vec<String> = needed
        .iter()
        .filter(|(_, path)| !is_copied(path))
        .map(|(by, path)| format!("{by} needs {}", path.display()))
        .collect();
    assert!(
        missing.is_empty(),
        "{CONTAINERFILE}: the build stage does not copy:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_port_is_the_same_in_the_configuration_the_image_compose_and_kubernetes() {
    let image = Image::load();
    let config = image.config();
    let ports = listen_ports(&config);
    let http = http_port(&config);
    let mut problems = Vec::new();
    if image.exposed() != ports {
        problems.push(format!(
            "{CONTAINERFILE}: EXPOSE {:?}, the configuration listens on {ports:?}",
            image.exposed()
        ));
    }

    let compose = &yaml_docs(COMPOSE)[0];
    for (name, service) in gateway_services(compose) {
        let published: BTreeSet<u16> = service["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| port_of(text(p)))
            .collect();
        if !published.contains(&http) || !published.is_subset(&ports) {
            problems.push(format!("{COMPOSE}: {name} publishes container ports {published:?}, the configuration listens on {ports:?}"));
        }
    }

    let docs = k8s_docs();
    let deployment = named(&docs, "Deployment", "clw-gateway");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let by_name: BTreeMap<String, u16> = container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                text(&p["name"]).to_string(),
                p["containerPort"].as_u64().unwrap() as u16,
            )
        })
        .collect();
    let resolve = |port: &Value| -> Option<u16> {
        port.as_u64()
            .map(|p| p as u16)
            .or_else(|| by_name.get(text(port)).copied())
    };
    let container_ports: BTreeSet<u16> = by_name.values().copied().collect();
    if container_ports != ports {
        problems.push(format!("{K8S}/deployment.yaml: containerPorts {container_ports:?}, the configuration listens on {ports:?}"));
    }
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let port = resolve(&container[probe]["httpGet"]["port"]);
        if port != Some(http) {
            problems.push(format!("{K8S}/deployment.yaml: {probe} probes port {port:?}, /healthz and /readyz are on {http}"));
        }
    }
    let scrape =
        text(&deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]);
    if scrape != http.to_string() {
        problems.push(format!(
            "{K8S}/deployment.yaml: prometheus.io/port {scrape}, /metrics is on {http}"
        ));
    }
    let service = named(&docs, "Service", "clw-gateway");
    let targets: BTreeSet<u16> = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| resolve(&p["targetPort"]))
        .collect();
    if targets != ports {
        problems.push(format!(
            "{K8S}/service.yaml: targets {targets:?}, the configuration listens on {ports:?}"
        ));
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

/// The compose services that run the image built from the Containerfile.
fn gateway_services(compose: &Value) -> Vec<(String, Value)> {
    let services = compose["services"].as_object().expect("services");
    services
        .iter()
        .filter(|(_, s)| {
            let build = &s["build"];
            let context = repo_path("deploy").join(text(&build["context"]));
            let dockerfile = context.join(text(&build["dockerfile"]));
            dockerfile.canonicalize().ok() == repo_path(CONTAINERFILE).canonicalize().ok()
        })
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect()
}

/// The host of a URL (`scheme://user:pass@host:port/path`).
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split([':', '/']).next().unwrap_or_default()
}

#[test]
fn compose_runs_two_gateways_with_every_variable_the_configuration_reads() {
    let image = Image::load();
    let config = image.config();
    let compose = &yaml_docs(COMPOSE)[0];
    let services = compose["services"].as_object().unwrap();
    let gateways = gateway_services(compose);
    assert_eq!(
        gateways.len(),
        2,
        "{COMPOSE}: two gateways built from {CONTAINERFILE}"
    );
    let mut needed: BTreeSet<String> = env_secrets(&config).into_values().collect();
    needed.extend(["CLW_BROKER__URL".to_string(), "CLW_STORE__URL".to_string()]);
    let mut problems = Vec::new();
    let mut instances = BTreeSet::new();
    for (name, gateway) in &gateways {
        let env = gateway["environment"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let set: BTreeSet<String> = env.keys().cloned().collect();
        for var in needed.difference(&set) {
            problems.push(format!("{name} does not set {var}"));
        }
        for (var, value) in &env {
            if value.is_null() || value.as_str() == Some("") {
                problems.push(format!("{name}: {var} is empty"));
            }
        }
        problems.extend(overrides_resolve(
            &config,
            &set,
            &format!("{COMPOSE} {name}"),
        ));
        match env.get("CLW_GATEWAY__INSTANCE").map(text) {
            Some(instance) if instances.insert(instance.to_string()) => {}
            other => problems.push(format!(
                "{name}: CLW_GATEWAY__INSTANCE {other:?} is missing or not its own"
            )),
        }
        for var in ["CLW_BROKER__URL", "CLW_STORE__URL"] {
            let host = env
                .get(var)
                .map(|v| url_host(text(v)).to_string())
                .unwrap_or_default();
            if !services.contains_key(&host) {
                problems.push(format!(
                    "{name}: {var} points at {host:?}, which is not a service"
                ));
            }
            match gateway["depends_on"][&host]["condition"].as_str() {
                Some("service_healthy") => {}
                other => problems.push(format!(
                    "{name} does not wait for {host} to be healthy ({other:?})"
                )),
            }
        }
        let mounts: Vec<String> = gateway["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| text(v).split(':').nth(1).map(str::to_string))
            .collect();
        for volume in image.volumes() {
            if !mounts.contains(&volume) {
                problems.push(format!(
                    "{name} mounts nothing at the image's VOLUME {volume}"
                ));
            }
        }
        let probe: Vec<&str> = gateway["healthcheck"]["test"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        if probe.get(1).copied() != image.healthcheck().first().map(String::as_str) {
            problems.push(format!(
                "{name}: healthcheck {probe:?} is not the image's {:?}",
                image.healthcheck()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{COMPOSE}:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn kubernetes_runs_the_image_layout_with_its_configmaps_secrets_and_keda() {
    let image = Image::load();
    let config = image.config();
    let files = image.files();
    let docs = k8s_docs();
    let mut problems = Vec::new();
    let deployment = named(&docs, "Deployment", "clw-gateway");
    let pod = &deployment["spec"]["template"]["spec"];
    let containers: Vec<&Value> = pod["containers"].as_array().unwrap().iter().collect();
    let inits: Vec<&Value> = pod["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let container = containers[0];
    let want_image = format!("clw-gateway:{}", env!("CARGO_PKG_VERSION"));
    for c in containers.iter().chain(&inits) {
        if c["image"] != want_image.as_str() {
            problems.push(format!(
                "container {}: image {}, the crate is {want_image}",
                c["name"], c["image"]
            ));
        }
    }
    if !container["command"].is_null() || !container["args"].is_null() {
        problems.push("the gateway container overrides the image's ENTRYPOINT/CMD".into());
    }
    if pod["securityContext"]["runAsUser"].as_u64() != Some(u64::from(image.uid())) {
        problems.push(format!(
            "runAsUser {}, the image's USER is {}",
            pod["securityContext"]["runAsUser"],
            image.uid()
        ));
    }

    // Every variable the configuration reads, from the Secret the example shows.
    let secret = named(&docs, "Secret", "clw-gateway-secrets");
    let secret_keys: BTreeSet<String> = secret["stringData"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let env: Vec<&Value> = container["env"].as_array().into_iter().flatten().collect();
    let set: BTreeSet<String> = env.iter().map(|e| text(&e["name"]).to_string()).collect();
    let mut needed: BTreeSet<String> = env_secrets(&config).into_values().collect();
    needed.extend(["CLW_BROKER__URL".to_string(), "CLW_STORE__URL".to_string()]);
    for var in needed.difference(&set) {
        problems.push(format!("the Deployment does not set {var}"));
    }
    problems.extend(overrides_resolve(&config, &set, "the Deployment"));
    let mut broker_key = String::new();
    for e in &env {
        let r = &e["valueFrom"]["secretKeyRef"];
        if r.is_null() {
            continue;
        }
        if r["name"] != "clw-gateway-secrets" || !secret_keys.contains(text(&r["key"])) {
            problems.push(format!(
                "{}: {r} is not a key of the example Secret",
                e["name"]
            ));
        }
        if e["name"] == "CLW_BROKER__URL" {
            broker_key = text(&r["key"]).to_string();
        }
    }
    if needed.iter().any(|v| {
        env.iter()
            .any(|e| e["name"] == v.as_str() && !e["value"].is_null())
    }) {
        problems
            .push("a secret is written in the Deployment instead of read from the Secret".into());
    }

    // Mounts: the image's layout, with the ConfigMaps' files in place of the repository's.
    let volumes: BTreeMap<String, &Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (text(&v["name"]).to_string(), v))
        .collect();
    let configmap = |volume: &str| -> Option<&Value> {
        let name = volumes.get(volume)?["configMap"]["name"].as_str()?;
        Some(named(&docs, "ConfigMap", name))
    };
    let mounts: Vec<&Value> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    for m in &mounts {
        let (volume, at) = (text(&m["name"]), text(&m["mountPath"]));
        let Some(cm) = configmap(volume) else {
            continue;
        };
        let key = text(&m["subPath"]);
        let Some(source) = files.get(at) else {
            problems.push(format!(
                "{volume} is mounted at {at}, which is not a file of the image"
            ));
            continue;
        };
        if cm["data"][key].as_str() != Some(std::fs::read_to_string(source).unwrap().as_str()) {
            problems.push(format!(
                "ConfigMap {}'s {key} differs from {} (the image's {at}): scripts/check-artefacts --write",
                cm["metadata"]["name"],
                source.display()
            ));
        }
    }
    let mount_of =
        |path: &str| -> Option<&&Value> { mounts.iter().find(|m| m["mountPath"] == path) };
    // The mappings folder: an emptyDir the init container fills from the mappings ConfigMap,
    // whose keys are the image's mapping files with "__" for "/".
    let mappings = get_str(&config, &["mappings", "dir"]).unwrap();
    match mount_of(mappings) {
        None => problems.push(format!("nothing is mounted at mappings.dir {mappings}")),
        Some(m) => {
            let volume = text(&m["name"]);
            let filler = inits.iter().find(|c| {
                c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|v| v["name"] == volume)
            });
            let cm = filler.and_then(|c| {
                c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|v| configmap(text(&v["name"])))
            });
            match cm {
                None => problems.push(format!(
                    "no init container fills {mappings} from a ConfigMap"
                )),
                Some(cm) => {
                    let data = cm["data"].as_object().unwrap();
                    let want: BTreeMap<String, &PathBuf> = files
                        .iter()
                        .filter_map(|(f, s)| {
                            f.strip_prefix(&format!("{mappings}/"))
                                .map(|rel| (rel.replace('/', "__"), s))
                        })
                        .collect();
                    let have: BTreeSet<&String> = data.keys().collect();
                    let wanted: BTreeSet<&String> = want.keys().collect();
                    if have != wanted {
                        problems.push(format!(
                            "ConfigMap {}: keys differ from the image's {mappings}: missing {:?}, extra {:?}",
                            cm["metadata"]["name"],
                            wanted.difference(&have).collect::<Vec<_>>(),
                            have.difference(&wanted).collect::<Vec<_>>()
                        ));
                    }
                    for (key, source) in want {
                        if data.get(&key).and_then(Value::as_str)
                            != Some(std::fs::read_to_string(source).unwrap().as_str())
                        {
                            problems.push(format!(
                                "ConfigMap {}: {key} differs from {}",
                                cm["metadata"]["name"],
                                source.display()
                            ));
                        }
                    }
                }
            }
        }
    }
    // The data folder is writable; every other path the configuration names is in the image
    // or mounted.
    let data = data_dir(&config);
    match mount_of(&data) {
        Some(m) if m["readOnly"] != true => {}
        _ => problems.push(format!(
            "nothing writable is mounted at [gateway] data_dir {data}"
        )),
    }
    for path in absolute_paths(&config) {
        let mounted = mounts
            .iter()
            .any(|m| is_under(&path, text(&m["mountPath"])));
        if !mounted && !image.holds(&path) {
            problems.push(format!(
                "the configuration names {path}: neither in the image nor mounted"
            ));
        }
    }
    let sources: String = files_below(&repo_path("src"))
        .into_iter()
        .map(|f| std::fs::read_to_string(repo_path("src").join(f)).unwrap_or_default())
        .collect();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let path = text(&container[probe]["httpGet"]["path"]);
        if !sources.contains(&format!("\"{path}\"")) {
            problems.push(format!(
                "{probe} GETs {path:?}, which the gateway does not serve"
            ));
        }
    }
    if text(&container["readinessProbe"]["httpGet"]["path"]) != "/readyz" {
        problems.push("readiness is /readyz (store and broker reachable)".into());
    }

    // Selectors, the PodDisruptionBudget, KEDA.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (what, selector) in [
        ("Deployment", &deployment["spec"]["selector"]["matchLabels"]),
        (
            "Service",
            &named(&docs, "Service", "clw-gateway")["spec"]["selector"],
        ),
        (
            "PodDisruptionBudget",
            &named(&docs, "PodDisruptionBudget", "clw-gateway")["spec"]["selector"]["matchLabels"],
        ),
    ] {
        let selects = selector
            .as_object()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v));
        if !selects {
            problems.push(format!(
                "the {what}'s selector {selector} does not select the gateway's pods {labels}"
            ));
        }
    }
    let scaled = named(&docs, "ScaledObject", "clw-gateway");
    if scaled["spec"]["scaleTargetRef"]["name"] != deployment["metadata"]["name"] {
        problems.push("the ScaledObject scales something else".into());
    }
    let prefix = get_str(&config, &["broker", "prefix"]).unwrap_or("clw");
    let mut queues = vec![format!("{prefix}.referral")];
    if config.contains_key("message_back") {
        queues.push(format!("{prefix}.event"));
    }
    let triggers: Vec<&Value> = scaled["spec"]["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    for queue in &queues {
        if !triggers
            .iter()
            .any(|t| t["metadata"]["queueName"] == queue.as_str())
        {
            problems.push(format!("KEDA does not scale on {queue}"));
        }
    }
    for t in &triggers {
        let auth = named(
            &docs,
            "TriggerAuthentication",
            text(&t["authenticationRef"]["name"]),
        );
        let host = auth["spec"]["secretTargetRef"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["parameter"] == "host");
        match host {
            Some(r) if r["name"] == "clw-gateway-secrets" && text(&r["key"]) == broker_key => {}
            other => problems.push(format!(
                "TriggerAuthentication {}: host {other:?} is not the gateways' own broker URL (key {broker_key})",
                auth["metadata"]["name"]
            )),
        }
    }
    assert!(problems.is_empty(), "{K8S}:\n  {}", problems.join("\n  "));
}

#[test]
fn the_systemd_unit_runs_the_image_layout_hardened_with_every_secret_a_credential() {
    let image = Image::load();
    let config = image.config();
    let service = unit_service();
    let env = unit_env(&service);
    let mut problems = Vec::new();

    let exec = unit_one(&service, "ExecStart");
    let words: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    if words[0] != image.binary() || words[1..] != image.cmd()[..] {
        problems.push(format!(
            "ExecStart={exec}: the image runs {} {:?}",
            image.binary(),
            image.cmd()
        ));
    }
    if env.get("CLW_CONFIG") != Some(&image.config_path()) {
        problems.push(format!(
            "CLW_CONFIG {:?}, the image's is {}",
            env.get("CLW_CONFIG"),
            image.config_path()
        ));
    }
    if unit_one(&service, "WorkingDirectory") != image.workdir() {
        problems.push(format!(
            "WorkingDirectory is not the image's {}",
            image.workdir()
        ));
    }
    let state = format!("/var/lib/{}", unit_one(&service, "StateDirectory"));
    let data = data_dir(&config);
    if state != data {
        problems.push(format!(
            "StateDirectory {state} is not [gateway] data_dir {data}"
        ));
    }
    let writable: Vec<String> = unit_values(&service, "ReadWritePaths")
        .iter()
        .flat_map(|v| {
            v.split_whitespace()
                .map(|p| p.trim_start_matches('-').to_string())
        })
        .chain([state])
        .collect();
    for path in absolute_paths(&config) {
        if !writable.iter().any(|w| is_under(&path, w)) && !image.holds(&path) {
            problems.push(format!(
                "the configuration names {path}: not writable and not installed"
            ));
        }
    }
    for (key, want) in [
        ("UMask", "0077"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        let got = unit_values(&service, key);
        if got != [want] {
            problems.push(format!("{key}={want} (found {got:?})"));
        }
    }
    let families = unit_one(&service, "RestrictAddressFamilies");
    if !families.contains("AF_INET") || !families.contains("AF_INET6") {
        problems.push(format!(
            "RestrictAddressFamilies={families}: the gateway needs TCP/IP"
        ));
    }
    if !unit_values(&service, "SystemCallFilter")
        .iter()
        .any(|v| v == "@system-service")
    {
        problems.push("SystemCallFilter=@system-service".into());
    }

    // Every secret of the configuration is read from a credential file.
    let credentials: BTreeSet<String> = unit_values(&service, "LoadCredential")
        .iter()
        .map(|v| v.split(':').next().unwrap().to_string())
        .collect();
    let mut covered = BTreeSet::new();
    for (var, value) in &env {
        if !(var.starts_with("CLW_") && var.contains("__")) {
            continue;
        }
        match override_target(&config, var) {
            None => problems.push(format!("{var} sets no key of the configuration")),
            Some((path, old)) => {
                let secret = old.as_table().is_some_and(|t| t.contains_key("env"));
                let id = value
                    .strip_prefix("{file='%d/")
                    .and_then(|v| v.strip_suffix("'}"))
                    .filter(|id| credentials.contains(*id));
                match (secret, id) {
                    (true, Some(_)) => {
                        covered.insert(path);
                    }
                    (true, None) => problems.push(format!(
                        "{var}={value}: not {{file='%d/ID'}} of a LoadCredential ID"
                    )),
                    (false, _) => {}
                }
            }
        }
    }
    for (path, var) in env_secrets(&config) {
        if !covered.contains(&path) {
            problems.push(format!("{path} (env {var}) is not read from a credential"));
        }
    }

    // The user the unit runs as is the image's.
    let user = unit_one(&service, "User");
    let sysusers = read(SYSUSERS);
    let entry = sysusers
        .lines()
        .map(str::split_whitespace)
        .filter_map(|mut w| Some((w.next()?, w.next()?, w.next()?)))
        .find(|(kind, name, _)| *kind == "u" && *name == user);
    match entry {
        Some((_, _, id)) if id.split(':').next() == Some(image.uid().to_string().as_str()) => {}
        other => problems.push(format!(
            "{SYSUSERS}: user {user} {other:?} does not have the image's uid {}",
            image.uid()
        )),
    }
    assert!(problems.is_empty(), "{UNIT}:\n  {}", problems.join("\n  "));
}

// ------------------------------------------------------------------------- (c) metrics

/// Every `clw_gateway_*` metric name in a text (recording rules' `clw_gateway:...` are not).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("clw_gateway_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let glued = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if !glued {
            out.insert(name.clone());
        }
        rest = &rest[i + name.len()..];
    }
    out
}

/// Whether `name`, as a query names it, is a sample of a metric `# TYPE`d at /metrics.
fn exported(name: &str, types: &BTreeMap<String, String>) -> Result<(), String> {
    match types.get(name).map(String::as_str) {
        Some("gauge" | "unknown") => return Ok(()),
        Some(kind) => {
            return Err(format!(
                "is a {kind}: its samples are {name}_total, or _bucket/_sum/_count"
            ));
        }
        None => {}
    }
    for (suffix, kind) in [
        ("_total", "counter"),
        ("_bucket", "histogram"),
        ("_sum", "histogram"),
        ("_count", "histogram"),
    ] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).map(String::as_str) == Some(kind)
        {
            return Ok(());
        }
    }
    Err("is not exported at /metrics".into())
}

#[tokio::test]
async fn every_metric_the_alerts_and_the_dashboard_name_is_exported() {
    let running = Running::start().await;
    let exposition = reqwest::get(format!("http://{}/metrics", running.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    running.stop().await;
    let types: BTreeMap<String, String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect();
    let mut problems = Vec::new();
    for file in [ALERTS, DASHBOARD] {
        let names = metric_names(&read(file));
        assert!(names.len() >= 8, "{file} names only {names:?}");
        for name in names {
            if let Err(why) = exported(&name, &types) {
                problems.push(format!("{file}: {name} {why}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "\n  {}\n/metrics:\n{exposition}",
        problems.join("\n  ")
    );
}

#[test]
fn metric_names_are_read_as_prometheus_reads_them() {
    let names = metric_names(
        "sum(rate(clw_gateway_messages_parked_total[5m])) / clw_gateway:delivery_failed:rate15m + x_clw_gateway_y",
    );
    assert_eq!(
        names,
        BTreeSet::from(["clw_gateway_messages_parked_total".to_string()])
    );
    let types = BTreeMap::from([
        (
            "clw_gateway_messages_parked".to_string(),
            "counter".to_string(),
        ),
        (
            "clw_gateway_processing_seconds".to_string(),
            "histogram".to_string(),
        ),
        ("clw_gateway_store_up".to_string(), "gauge".to_string()),
    ]);
    assert!(exported("clw_gateway_messages_parked_total", &types).is_ok());
    assert!(exported("clw_gateway_processing_seconds_bucket", &types).is_ok());
    assert!(exported("clw_gateway_store_up", &types).is_ok());
    assert!(
        exported("clw_gateway_messages_parked", &types).is_err(),
        "a counter's samples end in _total"
    );
    assert!(exported("clw_gateway_store_up_total", &types).is_err());
    assert!(exported("clw_gateway_nothing", &types).is_err());
}

// ------------------------------------------------------------------------- (d) the safety case

/// Every `tests/<file>.rs::<fn>` in a text.
fn test_refs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("tests/") {
        let tail = &rest[i..];
        let path: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | '.'))
            .collect();
        let after = &tail[path.len()..];
        if path.ends_with(".rs")
            && let Some(item) = after.strip_prefix("::")
        {
            let item: String = item
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':'))
                .collect();
            if let Some(name) = item
                .trim_end_matches(':')
                .rsplit("::")
                .next()
                .filter(|n| !n.is_empty())
            {
                out.push((path.clone(), name.to_string()));
            }
        }
        rest = &tail[path.len().max(1)..];
    }
    out
}

#[test]
fn every_test_the_clinical_safety_case_names_exists() {
    let dir = repo_path(CLINICAL_SAFETY);
    let mut problems = Vec::new();
    let mut named = 0;
    if dir.is_dir() {
        for rel in files_below(&dir)
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "md"))
        {
            let doc = format!("{CLINICAL_SAFETY}/{}", rel.display());
            for (file, name) in test_refs(&read(&doc)) {
                named += 1;
                let found = std::fs::read_to_string(repo_path(&file)).map(|t| {
                    t.contains(&format!("fn {name}(")) || t.contains(&format!("fn {name}<"))
                });
                match found {
                    Ok(true) => {}
                    Ok(false) => {
                        problems.push(format!("{doc}: {file}::{name}: no fn {name} in {file}"))
                    }
                    Err(_) => {
                        problems.push(format!("{doc}: {file}::{name}: {file} does not exist"))
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{named} tests named, these are missing:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn test_references_are_read_from_prose() {
    let refs = test_refs(
        "Control: `tests/intake.rs::errors_name_the_fhir_path` and tests/common/mod.rs::unique, \
         not tests/<file>.rs::<function> nor tests/intake.rs alone.",
    );
    assert_eq!(
        refs,
        vec![
            (
                "tests/intake.rs".to_string(),
                "errors_name_the_fhir_path".to_string()
            ),
            ("tests/common/mod.rs".to_string(), "unique".to_string()),
        ]
    );
}
