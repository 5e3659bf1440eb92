//! The shipped monitoring files (monitoring/): the Prometheus rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`,
//! one series that fires and one that must not per alert); every alert
//! has its severity, its plain-words annotations and a README entry; the
//! Grafana dashboards are dashboards Grafana imports (schemaVersion, a
//! datasource and an `instance` variable, panels on the 24-column grid),
//! every panel expression is PromQL promtool accepts, and every metric
//! name a rule or a panel uses is one capbox exports (read from a live
//! `capbox serve`'s /metrics and from the family names in src/), so a
//! renamed metric breaks this test, not a dashboard in the field.

mod e2e_common;
use e2e_common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Metrics the rules or dashboards may use before capbox exports them (a
/// branch that adds a metric and its rule separately). Empty: everything
/// used is exported. The test fails for any name listed here that capbox
/// exports already (so the list can only shrink) or that nothing uses.
const NOT_YET_EXPORTED: &[(&str, &[&str])] = &[];

fn not_yet(name: &str) -> Option<&'static [&'static str]> {
    NOT_YET_EXPORTED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, l)| *l)
}

/// Series Prometheus makes itself (not capbox's).
const PROMETHEUS_OWN: &[&str] = &["up", "ALERTS", "ALERTS_FOR_STATE"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn have_promtool() -> bool {
    let ok = have("promtool");
    if !ok {
        eprintln!("\n\n*** SKIPPED: promtool missing: apt-get install -y prometheus ***\n");
    }
    ok
}

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

// ------------------------------------------------------------ rules file

/// One rule of capbox.rules.yml, read by the few line shapes the file uses
/// (this crate has no YAML parser; a shape it does not know is a failure
/// here, not a silent skip).
#[derive(Debug, Default)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    /// `labels:` and `annotations:` entries, by key.
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    line: usize,
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

fn parse_rules(text: &str) -> Vec<Rule> {
    let lines: Vec<&str> = text.lines().collect();
    let mut rules: Vec<Rule> = Vec::new();
    let mut section = "";
    let mut in_rule = false;
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let t = l.trim();
        let n = i + 1;
        i += 1;
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(v) = t.strip_prefix("- alert: ") {
            rules.push(Rule {
                alert: Some(v.trim().to_string()),
                line: n,
                ..Rule::default()
            });
            in_rule = true;
            section = "";
            continue;
        }
        if let Some(v) = t.strip_prefix("- record: ") {
            rules.push(Rule {
                record: Some(v.trim().to_string()),
                line: n,
                ..Rule::default()
            });
            in_rule = true;
            section = "";
            continue;
        }
        // A group: its name, interval and `rules:` belong to no rule.
        if t.starts_with("- name: ") || t == "groups:" {
            in_rule = false;
            continue;
        }
        if !in_rule {
            if t == "rules:" || t.starts_with("interval: ") {
                continue;
            }
            panic!("capbox.rules.yml:{n}: a line this test does not read: {l:?}");
        }
        let r = rules.last_mut().unwrap();
        if t == "labels:" || t == "annotations:" {
            section = if t == "labels:" {
                "labels"
            } else {
                "annotations"
            };
            continue;
        }
        let Some((k, v)) = t.split_once(':') else {
            panic!("capbox.rules.yml:{n}: a line this test does not read: {l:?}");
        };
        let (k, v) = (k.trim(), v.trim());
        // A folded (`>`) or literal (`|`) block: the more indented lines
        // that follow.
        let value = if v == ">" || v == "|" {
            let base = indent(l);
            let mut s = String::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > base) {
                s += lines[i].trim();
                s += if v == ">" { " " } else { "\n" };
                i += 1;
            }
            s.trim().to_string()
        } else {
            v.trim_matches('"').to_string()
        };
        match (k, section) {
            ("expr", _) => {
                r.expr = value;
                section = "";
            }
            ("for", _) => section = "",
            (_, "labels") => {
                r.labels.insert(k.to_string(), value);
            }
            (_, "annotations") => {
                r.annotations.insert(k.to_string(), value);
            }
            _ => panic!("capbox.rules.yml:{n}: unexpected key {k:?}"),
        }
    }
    rules
}

fn rules() -> Vec<Rule> {
    let text = std::fs::read_to_string(root().join("monitoring/capbox.rules.yml")).unwrap();
    parse_rules(&text)
}

// ------------------------------------------------------- PromQL names

/// The metric names a PromQL expression selects (function names, label
/// names in `by (…)`/`on (…)`, label values, ranges and keywords left
/// out). Names with `:` are recording rules.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop string literals, label matchers and ranges/subqueries.
    let mut s = String::new();
    let mut chars = expr.chars().peekable();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let q = c;
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == q {
                        break;
                    }
                }
                s.push(' ');
            }
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => s.push(c),
        }
    }
    // Label lists after grouping keywords.
    let mut out = String::new();
    let toks: Vec<char> = s.chars().collect();
    let mut i = 0;
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let mut names = BTreeSet::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < toks.len() {
        let c = toks[i];
        let prev_ok = i == 0 || !(ident(toks[i - 1]) || toks[i - 1] == '.' || toks[i - 1] == '$');
        if (c.is_ascii_alphabetic() || c == '_' || c == ':') && prev_ok {
            let start = i;
            while i < toks.len() && ident(toks[i]) {
                i += 1;
            }
            let word: String = toks[start..i].iter().collect();
            let mut j = i;
            while j < toks.len() && toks[j].is_whitespace() {
                j += 1;
            }
            let call = j < toks.len() && toks[j] == '(';
            if GROUPING.contains(&word.as_str()) {
                if call {
                    // Skip the label list.
                    while j < toks.len() && toks[j] != ')' {
                        j += 1;
                    }
                    i = j + 1;
                }
                continue;
            }
            // Operators, and the aggregations (`sum by (x) (…)` is no call).
            const KEYWORDS: &[&str] = &[
                "and",
                "or",
                "unless",
                "bool",
                "offset",
                "inf",
                "nan",
                "sum",
                "min",
                "max",
                "avg",
                "group",
                "count",
                "stddev",
                "stdvar",
                "topk",
                "bottomk",
                "quantile",
                "count_values",
            ];
            if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word);
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    names
}

#[test]
fn metric_names_of_promql() {
    let n = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        n("sum by (instance, job) (rate(capbox_a_total{x=\"y\",channel=~\"b|c\"}[5m])) > 0"),
        ["capbox_a_total"]
    );
    assert_eq!(
        n("capbox_b > 40 and on (instance, channel) (rate(capbox_c[2m]) > 0 or on (x) sum by (x) (capbox_d[1m])) unless capbox_e offset 5m"),
        ["capbox_b", "capbox_c", "capbox_d", "capbox_e"]
    );
    assert_eq!(
        n("instance:capbox_x:sum{instance=~\"$instance\"} * 1e3 + capbox_y[$__rate_interval]"),
        ["capbox_y", "instance:capbox_x:sum"]
    );
    assert_eq!(n("x * on (a) group_left (b) capbox_z"), ["capbox_z", "x"]);
    assert_eq!(
        selector_labels("sum(capbox_a{x=\"1,}\", y!~'2'}) + capbox_b{z=\"\"}"),
        [
            ("capbox_a".to_string(), "x".to_string()),
            ("capbox_a".to_string(), "y".to_string()),
            ("capbox_b".to_string(), "z".to_string())
        ]
    );
}

// ------------------------------------------------------- exported names

/// A box with one of everything /metrics reports on (as in
/// tests/prometheus.rs): plain, BISS, card, absent DVB adapter, a
/// failover channel with a refused remote source.
fn everything_toml() -> String {
    let m = sample_mux();
    let m = m.display();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    format!(
        "{}[cards]\nenabled = true\n\n\
         [[adapter]]\nname = \"ter1\"\ndevice = \"adapter57\"\n\n\
         [[channel]]\nname = \"biss\"\n[[channel.source]]\nfile = \"{m}\"\nprogram = 1\nbiss = \"1122334455667788\"\n\n\
         [[channel]]\nname = \"card\"\n[[channel.source]]\nfile = \"{m}\"\nprogram = 3\nca = \"card\"\n\n\
         [[channel]]\nname = \"dvb\"\n[[channel.source]]\nadapter = \"ter1\"\ntune = \"dvbt 474000000 8MHz\"\n\n\
         [[channel]]\nname = \"relay\"\n[[channel.source]]\nurl = \"http://{closed}/stream/news\"\n\
         [[channel.source]]\nfile = \"{m}\"\nprogram = 1\n\n",
        server_toml(),
    )
}

/// Metric family names capbox exports: the `# TYPE` lines of a live
/// /metrics, and the `"capbox_…"` family names written in src/ (families
/// that only a device or a card brings). Names to where they were seen,
/// and the label names of each family that has samples on the live box.
fn exported_names() -> (
    BTreeMap<String, &'static str>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let mut names = BTreeMap::new();
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let srv = Server::start("monitoring-names", &everything_toml());
    srv.wait_up(&["biss", "relay"]);
    let text = srv.get("/metrics").text();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            if let Some(n) = rest.split_whitespace().next() {
                names.insert(n.to_string(), "/metrics");
            }
        }
    }
    for s in parse_metrics(&text).unwrap_or_else(|e| panic!("/metrics: {e}")) {
        labels
            .entry(s.name.clone())
            .or_default()
            .extend(s.labels.keys().cloned());
    }
    fn walk(dir: &Path, names: &mut BTreeMap<String, &'static str>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, names);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                // `family(out, "capbox_x", …)` and the tables of names
                // passed to it: a quoted name followed by `"`.
                let mut rest = text.as_str();
                while let Some(i) = rest.find("\"capbox_") {
                    let s = &rest[i + 1..];
                    let end = s
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(s.len());
                    if s[end..].starts_with('"') {
                        names.entry(s[..end].to_string()).or_insert("src/");
                    }
                    rest = &s[end..];
                }
            }
        }
    }
    walk(&root().join("src"), &mut names);
    (names, labels)
}

/// (metric, label name) of every label matcher of an expression:
/// `capbox_x{a="1",b=~"2"}` gives (capbox_x, a), (capbox_x, b).
fn selector_labels(expr: &str) -> Vec<(String, String)> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'{' {
            i += 1;
            continue;
        }
        let mut j = i;
        while j > 0 && (b[j - 1].is_ascii_alphanumeric() || b[j - 1] == b'_' || b[j - 1] == b':') {
            j -= 1;
        }
        let metric = &expr[j..i];
        // The matchers up to the closing brace, commas outside quotes.
        let mut k = i + 1;
        let mut cur = String::new();
        let mut parts = Vec::new();
        while k < b.len() && b[k] != b'}' {
            if b[k] == b'"' || b[k] == b'\'' {
                let q = b[k];
                k += 1;
                while k < b.len() && b[k] != q {
                    if b[k] == b'\\' {
                        k += 1;
                    }
                    k += 1;
                }
                cur.push('"');
            } else if b[k] == b',' {
                parts.push(std::mem::take(&mut cur));
            } else {
                cur.push(b[k] as char);
            }
            k += 1;
        }
        parts.push(cur);
        for p in parts {
            let name = p.split(['=', '!']).next().unwrap_or_default().trim();
            if !name.is_empty() && !metric.is_empty() {
                out.push((metric.to_string(), name.to_string()));
            }
        }
        i = k;
    }
    out
}

// ------------------------------------------------------------ dashboards

fn dashboard(name: &str) -> serde_json::Value {
    let p = root().join("monitoring/grafana").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()))
}

/// Every panel (rows' nested panels too).
fn panels(d: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels[]") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter());
        }
    }
    out
}

/// (where, PromQL) of every query of a dashboard: panel targets and
/// `label_values(metric, label)` variables (as the selector `metric`).
fn dashboard_exprs(name: &str, d: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let e = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: panel {:?}: a target without expr", p["title"]));
            out.push((format!("{name}: panel {}", p["title"]), e.to_string()));
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap_or_default();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| {
                    panic!("{name}: variable {}: not label_values(…): {q}", v["name"])
                });
            let metric = inner.rsplit_once(',').map_or(inner, |(m, _)| m).trim();
            out.push((
                format!("{name}: variable {}", v["name"]),
                metric.to_string(),
            ));
        }
    }
    out
}

/// A dashboard expression as plain PromQL (Grafana's variables filled in).
fn as_promql(e: &str) -> String {
    e.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("${datasource}", "x")
        .replace("$instance", "box1:8080")
}

#[test]
fn dashboards_are_grafana_dashboards() {
    for name in ["capbox-box.json", "capbox-fleet.json"] {
        let d = dashboard(name);
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 30),
            "{name}: schemaVersion {:?}",
            d["schemaVersion"]
        );
        assert!(
            d["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty() && u.len() <= 40),
            "{name}: uid"
        );
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{name}: title"
        );
        let vars = d["templating"]["list"].as_array().expect("templating.list");
        let ds = vars.iter().find(|v| v["name"] == "datasource");
        assert!(
            ds.is_some_and(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            "{name}: no Prometheus datasource variable"
        );
        let inst = vars.iter().find(|v| v["name"] == "instance");
        assert!(
            inst.is_some_and(|v| v["type"] == "query" && v["datasource"]["uid"] == "${datasource}"),
            "{name}: no `instance` query variable on ${{datasource}}"
        );
        let mut ids = BTreeSet::new();
        let mut queries = 0;
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{name}: a panel without a title: {p}");
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: {title}: no id"));
            assert!(ids.insert(id), "{name}: panel id {id} twice");
            let g = &p["gridPos"];
            let (x, w, h) = (g["x"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
            assert!(
                x.zip(w).is_some_and(|(x, w)| w > 0 && x + w <= 24) && h.is_some_and(|h| h > 0),
                "{name}: {title}: gridPos {g}"
            );
            assert!(g["y"].as_u64().is_some(), "{name}: {title}: gridPos.y");
            if p["type"] == "row" {
                continue;
            }
            assert!(
                p["datasource"]["uid"] == "${datasource}",
                "{name}: {title}: the datasource is not the ${{datasource}} variable"
            );
            let targets = p["targets"].as_array().map_or(0, |t| t.len());
            assert!(targets > 0, "{name}: {title}: no query");
            for t in p["targets"].as_array().unwrap() {
                assert!(
                    t["refId"].as_str().is_some(),
                    "{name}: {title}: a target without refId"
                );
                let e = t["expr"].as_str().unwrap_or_default();
                assert!(
                    e.contains("$instance"),
                    "{name}: {title}: the query is not limited to $instance: {e}"
                );
            }
            queries += targets;
        }
        assert!(queries >= 8, "{name}: only {queries} queries");
    }
}

#[test]
fn rules_and_dashboards_pass_promtool() {
    if !have_promtool() {
        return;
    }
    let dir = root().join("monitoring");
    let (ok, said) = promtool(&["check", "rules", "capbox.rules.yml"], &dir);
    assert!(ok, "promtool check rules:\n{said}");
    let (ok, said) = promtool(&["test", "rules", "capbox.rules.test.yml"], &dir);
    assert!(ok, "promtool test rules:\n{said}");
    assert!(said.contains("SUCCESS"), "promtool test rules:\n{said}");

    // Every dashboard query is PromQL promtool parses: each becomes a
    // recording rule of a scratch rules file.
    let tmp = TempDir::new("dashboards-promql");
    let mut y = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut n = 0;
    for name in ["capbox-box.json", "capbox-fleet.json"] {
        for (what, e) in dashboard_exprs(name, &dashboard(name)) {
            n += 1;
            let e = as_promql(&e);
            let quoted = serde_json::to_string(&e).unwrap();
            y += &format!(
                "      # {what}\n      - record: dashboard_query_{n}\n        expr: {quoted}\n"
            );
        }
    }
    std::fs::write(tmp.join("q.yml"), &y).unwrap();
    let (ok, said) = promtool(&["check", "rules", "q.yml"], tmp.path());
    assert!(ok, "a dashboard query is not PromQL:\n{said}\n{y}");
}

#[test]
fn every_alert_says_what_and_where() {
    let rules = rules();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let tests = std::fs::read_to_string(root().join("monitoring/capbox.rules.test.yml")).unwrap();
    let alerts: BTreeSet<&str> = rules.iter().filter_map(|r| r.alert.as_deref()).collect();
    for want in [
        "CapboxDown",
        "CapboxNoVideo",
        "CapboxNoAudio",
        "CapboxSilent",
        "CapboxFrozen",
        "CapboxFailoverActive",
        "CapboxSlateOnAir",
        "CapboxAdapterFailed",
        "CapboxCardError",
        "CapboxControlWordLate",
        "CapboxClockDrift",
        "CapboxWatchdogDisarmed",
        "CapboxTR101290Priority1",
    ] {
        assert!(alerts.contains(want), "no alert {want} in capbox.rules.yml");
    }
    for r in &rules {
        assert!(!r.expr.is_empty(), "capbox.rules.yml:{}: no expr", r.line);
        let Some(a) = &r.alert else { continue };
        let at = format!("capbox.rules.yml:{} ({a})", r.line);
        assert!(
            matches!(
                r.labels.get("severity").map(String::as_str),
                Some("critical" | "warning")
            ),
            "{at}: severity must be critical or warning: {:?}",
            r.labels
        );
        for k in ["summary", "description", "runbook"] {
            assert!(
                r.annotations.get(k).is_some_and(|v| v.len() > 10),
                "{at}: no {k} annotation"
            );
        }
        let rb = &r.annotations["runbook"];
        let entry = rb
            .strip_prefix("README.md, Alerts and dashboards: ")
            .unwrap_or_else(|| {
                panic!("{at}: runbook {rb:?} is not `README.md, Alerts and dashboards: <Alert>`")
            });
        assert!(
            readme.contains(&format!("**{entry}**")),
            "{at}: README.md has no entry **{entry}** (section Alerts and dashboards)"
        );
        // Every alert has a promtool test that expects it to fire.
        assert!(
            tests.contains(&format!("alertname: {a}\n        exp_alerts:")),
            "{at}: capbox.rules.test.yml never expects {a} to fire"
        );
    }
}

#[test]
fn every_metric_used_is_exported() {
    let rules = rules();
    let records: BTreeSet<String> = rules.iter().filter_map(|r| r.record.clone()).collect();
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    let mut exprs: Vec<(String, String)> = Vec::new();
    for r in &rules {
        let what = format!(
            "capbox.rules.yml:{} ({})",
            r.line,
            r.alert.as_ref().or(r.record.as_ref()).unwrap()
        );
        exprs.push((what.clone(), r.expr.clone()));
        for n in metric_names(&r.expr) {
            used.entry(n).or_insert_with(|| what.clone());
        }
        // Template queries in annotations (`query "capbox_x{…}"`).
        for v in r.annotations.values() {
            for part in v.split("printf \"").skip(1) {
                let q = part.split('"').next().unwrap_or_default();
                for n in metric_names(q) {
                    used.entry(n)
                        .or_insert_with(|| format!("{what} annotation"));
                }
            }
        }
    }
    for name in ["capbox-box.json", "capbox-fleet.json"] {
        for (what, e) in dashboard_exprs(name, &dashboard(name)) {
            for n in metric_names(&as_promql(&e)) {
                used.entry(n).or_insert_with(|| what.clone());
            }
            exprs.push((what, e));
        }
    }
    // The extractor sees what it must (else this test proves nothing).
    for must in [
        "capbox_channel_on_slate",
        "capbox_adapter_failed",
        "capbox_frontend_cnr_db",
        "instance:capbox_channels_not_ok:sum",
    ] {
        assert!(
            used.contains_key(must),
            "{must} not found in the rules/dashboards"
        );
    }

    let (exported, labels) = exported_names();
    let mut problems = Vec::new();
    // Label names in matchers: the family's labels on a live box (or the
    // contract's, for a metric not merged yet), plus the target's.
    for (what, e) in &exprs {
        for (m, l) in selector_labels(e) {
            if l == "instance" || l == "job" || PROMETHEUS_OWN.contains(&m.as_str()) {
                continue;
            }
            let known: Option<BTreeSet<String>> = labels
                .get(&m)
                .cloned()
                .or_else(|| not_yet(&m).map(|l| l.iter().map(|s| s.to_string()).collect()));
            if let Some(k) = known {
                if !k.contains(&l) {
                    problems.push(format!("{what}: {m} has no label {l:?} (it has {k:?})"));
                }
            }
        }
    }
    for (n, what) in &used {
        if n.contains(':') {
            if !records.contains(n) {
                problems.push(format!(
                    "{what}: {n} is recorded by no rule of capbox.rules.yml"
                ));
            }
        } else if PROMETHEUS_OWN.contains(&n.as_str()) {
        } else if let Some(src) = exported.get(n) {
            if not_yet(n).is_some() {
                problems.push(format!(
                    "{n} is exported now (seen in {src}): remove it from NOT_YET_EXPORTED in tests/monitoring_rules.rs"
                ));
            }
        } else if not_yet(n).is_none() {
            problems.push(format!(
                "{what}: {n} is not a metric capbox exports (renamed? not in /metrics nor in src/)"
            ));
        }
    }
    for (n, _) in NOT_YET_EXPORTED {
        if !used.contains_key(*n) {
            problems.push(format!(
                "{n} is in NOT_YET_EXPORTED but no rule or panel uses it: remove it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n(exported: {} names)",
        problems.join("\n"),
        exported.len()
    );
}
