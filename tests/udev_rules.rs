//! udev/60-capbox-dvb.rules checked without udevadm (Debian 12 has systemd
//! 252; `udevadm verify` came in 254, and `udevadm test` needs a DVB device
//! in sysfs): every line is parsed in udev's syntax (udev(7): comma-separated
//! `KEY[{attr}] OP "value"`), keys and operators checked against the match /
//! assignment tables of udev(7), GOTOs must have their LABEL, `$env{}`
//! substitutions must be closed; then the rules must say what udev/README.md
//! promises (group, mode, symlinks, CCID readers).

const RULES: &str = include_str!("../udev/60-capbox-dvb.rules");

const MATCH_KEYS: &[&str] = &[
    "ACTION",
    "DEVPATH",
    "KERNEL",
    "NAME",
    "SYMLINK",
    "SUBSYSTEM",
    "DRIVER",
    "ATTR",
    "SYSCTL",
    "KERNELS",
    "SUBSYSTEMS",
    "DRIVERS",
    "ATTRS",
    "TAGS",
    "ENV",
    "CONST",
    "TAG",
    "TEST",
    "PROGRAM",
    "RESULT",
];
const ASSIGN_KEYS: &[&str] = &[
    "NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "SECLABEL", "ATTR", "SYSCTL", "ENV", "TAG", "RUN",
    "LABEL", "GOTO", "IMPORT", "OPTIONS",
];
/// Keys that take `{attr}`.
const WITH_ATTR: &[&str] = &[
    "ATTR", "ATTRS", "ENV", "SYSCTL", "TEST", "IMPORT", "RUN", "SECLABEL", "CONST",
];

#[derive(Debug)]
struct Token {
    key: String,
    attr: Option<String>,
    op: String,
    value: String,
}

fn parse_line(line: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .ok_or("line ends in a key")?;
        let key = rest[..key_end].to_string();
        if key.is_empty() {
            return Err(format!("no key at {rest:?}"));
        }
        rest = &rest[key_end..];
        let mut attr = None;
        if let Some(r) = rest.strip_prefix('{') {
            let close = r.find('}').ok_or("unclosed {attr}")?;
            attr = Some(r[..close].to_string());
            rest = &r[close + 1..];
        }
        rest = rest.trim_start();
        let op = ["==", "!=", "+=", "-=", ":=", "="]
            .into_iter()
            .find(|o| rest.starts_with(o))
            .ok_or_else(|| format!("{key}: no operator"))?;
        rest = rest[op.len()..].trim_start();
        let r = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("{key}: value not quoted"))?;
        let close = r
            .find('"')
            .ok_or_else(|| format!("{key}: unbalanced quote"))?;
        let value = r[..close].to_string();
        rest = r[close + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
            if rest.is_empty() {
                return Err("trailing comma".into());
            }
        } else if !rest.is_empty() {
            return Err(format!("missing comma before {rest:?}"));
        }
        out.push(Token {
            key,
            attr,
            op: op.to_string(),
            value,
        });
    }
    Ok(out)
}

fn check_token(t: &Token) -> Result<(), String> {
    let is_match = t.op == "==" || t.op == "!=";
    let table = if is_match { MATCH_KEYS } else { ASSIGN_KEYS };
    if !table.contains(&t.key.as_str()) {
        return Err(format!("{} cannot be used with {}", t.key, t.op));
    }
    if t.attr.is_some() != WITH_ATTR.contains(&t.key.as_str()) && t.key != "TAG" {
        return Err(format!("{}: {{attr}} wrong", t.key));
    }
    // Every $env{...} / %x substitution closed.
    let mut v = t.value.as_str();
    while let Some(i) = v.find("$env{") {
        let r = &v[i + 5..];
        let close = r
            .find('}')
            .ok_or_else(|| format!("{}: unclosed $env{{", t.key))?;
        if !r[..close]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!("{}: bad $env name {:?}", t.key, &r[..close]));
        }
        v = &r[close + 1..];
    }
    if t.key == "MODE" && !(t.value.len() == 4 && t.value.chars().all(|c| ('0'..='7').contains(&c)))
    {
        return Err(format!("MODE {:?} is not octal", t.value));
    }
    Ok(())
}

fn rules() -> Vec<(usize, Vec<Token>)> {
    RULES
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            let toks = parse_line(l).unwrap_or_else(|e| panic!("line {}: {e}: {l}", i + 1));
            for t in &toks {
                check_token(t).unwrap_or_else(|e| panic!("line {}: {e}: {l}", i + 1));
            }
            (i + 1, toks)
        })
        .collect()
}

#[test]
fn rules_parse_in_udev_syntax() {
    let r = rules();
    assert!(r.len() > 10);
    let labels: Vec<&str> = r
        .iter()
        .flat_map(|(_, t)| t.iter())
        .filter(|t| t.key == "LABEL")
        .map(|t| t.value.as_str())
        .collect();
    for (line, toks) in &r {
        for t in toks.iter().filter(|t| t.key == "GOTO") {
            assert!(
                labels.contains(&t.value.as_str()),
                "line {line}: GOTO {} has no LABEL",
                t.value
            );
        }
    }
}

#[test]
fn checker_catches_mistakes() {
    // The parser must be able to fail: these are what a typo looks like.
    for bad in [
        r#"SUBSYSTEM=="dvb", GROUP="video"#,
        r#"SUBSYSTEM=="dvb" GROUP="video""#,
        r#"SUBSYSTEM=="dvb", GROUP=="video""#,
        r#"MODE="660""#,
        r#"SYMLINK+="dvb/$env{ID_PATH""#,
        r#"FOO="bar""#,
    ] {
        let r = parse_line(bad).and_then(|t| t.iter().try_for_each(check_token));
        assert!(r.is_err(), "accepted: {bad}");
    }
}

fn line_with(parts: &[&str]) -> bool {
    RULES
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .any(|l| parts.iter().all(|p| l.contains(p)))
}

#[test]
fn rules_say_what_the_readme_promises() {
    assert!(line_with(&[r#"SUBSYSTEM!="dvb""#]));
    assert!(line_with(&[r#"GROUP="video""#, r#"MODE="0660""#]));
    assert!(line_with(&[
        r#"SYMLINK+="dvb/by-path/$env{ID_PATH}-$env{DVB_DEVICE_TYPE}$env{DVB_DEVICE_NUM}""#
    ]));
    assert!(line_with(&[
        "SYMLINK+=\"dvb/by-id/usb-$env{ID_VENDOR}_$env{ID_MODEL}_$env{ID_SERIAL_SHORT}-adapter$env{DVB_ADAPTER_NUM}-"
    ]));
    assert!(line_with(&[r#"IMPORT{builtin}="path_id""#]));
    assert!(line_with(&[
        r#"ENV{ID_USB_INTERFACES}=="*:0b????:*""#,
        r#"GROUP="capbox""#,
        r#"MODE="0660""#
    ]));
}
