//! Tests of the schema walk: every error class with its line and key path,
//! defaults, reload diff, the shipped example and the demo config.

// Compiled only under #[cfg(test)] (see the parent module).
#[cfg(test)]
use super::*;
use crate::dvb::diseqc::Switch;
use crate::dvb::lnb::Lnb;
use crate::dvb::tuning::{PlsStyle, Tuning};
use std::net::IpAddr;

const GOOD: &str = r#"# a small but complete config
[server]
listen = "127.0.0.1:9000"
write_timeout_ms = 5000
max_clients = 64

[access]
stream = ["10.0.0.0/8", "2001:db8::/32"]
token = "s3cret-token_0123"

[buffers]
ring_bytes = 2097152
chunk_bytes = 65536
flush_ms = 20

[[channel]]
name = "france2"
tvg_id = "France2.fr"
tvg_name = "France 2"
group = "News"

[[channel.source]]
file = "samples/mux.ts"
program = 0x1f4
loop = false

[[channel.source]]
file = "/srv/ts/backup.ts"

[[channel]]
name = "arte"

[[channel.source]]
file = "arte.ts"
program = 2
"#;

fn parse_ok(text: &str) -> Config {
    match parse(text, "capbox.toml", Path::new("/etc/capbox")) {
        Ok(c) => c,
        Err(errs) => {
            let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            panic!("unexpected errors:\n{}", all.join("\n"))
        }
    }
}

fn parse_err(text: &str) -> Vec<Diagnostic> {
    match parse(text, "capbox.toml", Path::new("/etc/capbox")) {
        Ok(c) => panic!("accepted bad config:\n{}\n{:?}", text, c),
        Err(errs) => errs,
    }
}

/// A minimal valid channel, appended to snippets that test other tables.
const CH: &str = "\n[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\n";

#[test]
fn config_good_file_parses() {
    let c = parse_ok(GOOD);
    assert_eq!(c.server.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.server.write_timeout_ms, 5000);
    assert_eq!(c.server.max_clients, 64);
    assert_eq!(c.access.stream.len(), 2);
    let per_address = parse_ok(&format!("[server]\nmax_clients_per_address = 16\n{}", CH));
    assert_eq!(per_address.server.max_clients_per_address, 16);
    assert!(c.access.stream[1].contains("2001:db8::5".parse().unwrap()));
    assert_eq!(c.access.token.as_deref(), Some("s3cret-token_0123"));
    // Unset lists keep their defaults.
    assert_eq!(c.access.playlist, AccessConfig::default().playlist);
    assert_eq!(c.buffers.ring_bytes, 2 * 1024 * 1024);
    assert_eq!(c.buffers.chunk_bytes, 65536);
    assert_eq!(c.buffers.flush_ms, 20);
    assert_eq!(c.channels.len(), 2);
    let f2 = &c.channels[0];
    assert_eq!(f2.name, "france2");
    assert_eq!(f2.tvg_id, "France2.fr");
    assert_eq!(f2.tvg_name.as_deref(), Some("France 2"));
    assert_eq!(f2.group.as_deref(), Some("News"));
    assert_eq!((f2.key.as_str(), f2.line), ("channel[0]", 16));
    assert_eq!(f2.sources.len(), 2);
    let s0 = &f2.sources[0];
    assert_eq!(s0.file, Path::new("/etc/capbox/samples/mux.ts"));
    assert_eq!(s0.file_as_written, "samples/mux.ts");
    assert_eq!(s0.program, 0x1f4);
    assert!(!s0.looping);
    assert_eq!((s0.key.as_str(), s0.line), ("channel[0].source[0]", 22));
    // Absolute paths stay as written; program and loop default.
    let s1 = &f2.sources[1];
    assert_eq!(s1.file, Path::new("/srv/ts/backup.ts"));
    assert_eq!((s1.program, s1.looping), (1, true));
    let arte = &c.channels[1];
    assert_eq!(arte.tvg_id, "arte");
    assert_eq!((arte.tvg_name.as_ref(), arte.group.as_ref()), (None, None));
    assert_eq!(arte.sources[0].file, Path::new("/etc/capbox/arte.ts"));
}

#[test]
fn server_tcp_settings() {
    let c = parse_ok(&format!(
        "[server]\ntcp_congestion = \"bbr\"\nsend_buffer_bytes = 600_000\n{}",
        CH
    ));
    assert_eq!(c.server.tcp_congestion.as_deref(), Some("bbr"));
    assert_eq!(c.server.send_buffer_bytes, Some(600_000));
    assert_eq!(c.line_of("server.tcp_congestion"), 2);
    // Any spelling the kernel could have passes the walk: whether this
    // kernel has it is for check-config.
    let c = parse_ok(&format!(
        "[server]\ntcp_congestion = \"nosuchcc_2\"\n{}",
        CH
    ));
    assert_eq!(c.server.tcp_congestion.as_deref(), Some("nosuchcc_2"));
    // A change is a server change for reload.
    let old = parse_ok(CH);
    assert!(Config::diff(&old, &c).server_changed);
}

#[test]
fn config_defaults() {
    let c = parse_ok(CH);
    // Pins are kept beside the config unless told otherwise.
    assert_eq!(
        c.server.state_file.as_deref(),
        Some(Path::new("/etc/capbox/capbox-state.json"))
    );
    assert_eq!(
        ServerConfig {
            state_file: None,
            ..c.server.clone()
        },
        ServerConfig::default()
    );
    let c2 = parse_ok(&format!("[server]\nstate_file = \"\"\n{CH}"));
    assert_eq!(c2.server.state_file, None);
    let c3 = parse_ok(&format!("[server]\nstate_file = \"/data/pins.json\"\n{CH}"));
    assert_eq!(
        c3.server.state_file.as_deref(),
        Some(Path::new("/data/pins.json"))
    );
    assert_eq!(c.server.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(c.server.write_timeout_ms, 10_000);
    assert_eq!(c.server.max_clients, 512);
    assert_eq!(c.server.max_clients_per_address, 400);
    assert_eq!(c.server.tcp_congestion, None);
    assert_eq!(c.server.send_buffer_bytes, None);
    assert_eq!(c.buffers.ring_bytes, 8_388_608);
    assert_eq!(c.buffers.chunk_bytes, 32_768);
    assert_eq!(c.buffers.flush_ms, 50);
    assert_eq!(c.access.token, None);
    let lan: Vec<String> = c.access.stream.iter().map(|c| c.to_string()).collect();
    assert_eq!(lan, DEFAULT_LAN);
    for list in [&c.access.playlist, &c.access.metrics, &c.access.status] {
        assert_eq!(list, &c.access.stream);
    }
    let local: Vec<String> = c.access.control.iter().map(|c| c.to_string()).collect();
    assert_eq!(local, DEFAULT_LOCAL);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(c.access.control.iter().any(|n| n.contains(ip("127.0.0.1"))));
    assert!(!c.access.control.iter().any(|n| n.contains(ip("10.0.0.1"))));
    assert!(c
        .access
        .stream
        .iter()
        .any(|n| n.contains(ip("192.168.1.2"))));
    assert!(!c.access.stream.iter().any(|n| n.contains(ip("8.8.8.8"))));
    // An empty token means none.
    let c = parse_ok(&format!("[access]\ntoken = \"\"\n{}", CH));
    assert_eq!(c.access.token, None);
}

/// A snippet and the (line, key, message substring) of each error.
type Case<'a> = (&'a str, &'a [(usize, &'a str, &'a str)]);

/// snippet → (line, key, message substring) for each expected error, all of
/// them, in order.
#[test]
fn config_errors_name_line_and_key() {
    let cases: &[Case] = &[
        // Syntax errors come from toml, with their line.
        ("[server\nlisten = 1\n", &[(1, "", "")]),
        (
            "[[channel]]\nname = \"a\"\nname = \"b\"\n",
            &[(3, "", "duplicate key")],
        ),
        // Unknown keys, top level and nested.
        (
            &format!("bogus = 1\n{}", CH),
            &[(1, "bogus", "unknown key; expected one of: server, access, buffers, adapter, channel")],
        ),
        (
            &format!("[server]\nlisten = \"0.0.0.0:1\"\nlisen = \"x\"\n{}", CH),
            &[(3, "server.lisen", "unknown key; expected one of: listen, write_timeout_ms")],
        ),
        (
            "[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nprogramme = 3\n",
            &[(5, "channel[0].source[0].programme", "expected one of: file, adapter, tune, program, loop")],
        ),
        (
            &format!("[buffers]\n[buffers.extra]\nx = 1\n{}", CH),
            &[(2, "buffers.extra", "unknown key")],
        ),
        // Failover controls.
        (
            "[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nstandby = \"cold\"\n",
            &[(5, "channel[0].source[0].standby", "only a remote source (url) has a standby mode")],
        ),
        (
            "[[channel]]\nname = \"a\"\n[[channel.source]]\nurl = \"http://b:8080/stream/a\"\nstandby = \"warm\"\n",
            &[(5, "channel[0].source[0].standby", "\"warm\" is not a standby mode; expected \"hot\"")],
        ),
        (
            "[[channel]]\nname = \"a\"\nclose_after_ms = -1\n[[channel.source]]\nfile = \"a.ts\"\n",
            &[(3, "channel[0].close_after_ms", "out of range")],
        ),
        (
            &format!("[access]\ncontrol_token = \"short\"\n{}", CH),
            &[(2, "access.control_token", "refused (value not shown)")],
        ),
        (
            &format!("[server]\nstate_file = \"/var/lib/\"\n{}", CH),
            &[(2, "server.state_file", "not a file path")],
        ),
        // Wrong types.
        (
            &format!("[server]\nmax_clients = \"many\"\n{}", CH),
            &[(2, "server.max_clients", "found string \"many\"; expected a number of connections 1..=65536")],
        ),
        (
            "[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nprogram = \"0x1f4\"\n",
            &[(5, "channel[0].source[0].program", "write it without quotes")],
        ),
        (
            "[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nloop = \"yes\"\n",
            &[(5, "channel[0].source[0].loop", "found string \"yes\"; expected true or false")],
        ),
        (
            "[[channel]]\nname = 7\n[[channel.source]]\nfile = \"a.ts\"\n",
            &[(2, "channel[0].name", "found integer 7; expected a channel name")],
        ),
        (
            "server = 5\n[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = 1.5\n",
            &[
                (1, "server", "found integer 5; expected a table"),
                (5, "channel[0].source[0].file", "found float 1.5; expected a path"),
            ],
        ),
        (
            "[channel]\nname = \"a\"\n",
            &[(1, "channel", "expected an array of tables: write [[channel]], not [channel]")],
        ),
        (
            &format!("[access]\nstream = \"10.0.0.0/8\"\n{}", CH),
            &[(2, "access.stream", "expected an array of networks")],
        ),
        // Ranges.
        (
            "[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nprogram = 0\n",
            &[(5, "channel[0].source[0].program", "0 is out of range; expected a program_number 1..=65535")],
        ),
        (
            "[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nprogram = 65536\n",
            &[(5, "channel[0].source[0].program", "65536 is out of range")],
        ),
        (
            &format!("[server]\nwrite_timeout_ms = 0\nmax_clients = 0\n{}", CH),
            &[
                (2, "server.write_timeout_ms", "0 is out of range; expected milliseconds 100..=600000"),
                (3, "server.max_clients", "0 is out of range"),
            ],
        ),
        (
            &format!("[server]\nmax_clients_per_address = 0\n{}", CH),
            &[(2, "server.max_clients_per_address", "0 is out of range; expected a number of connections from one address 1..=65536")],
        ),
        (
            &format!("[server]\nlisten = \"0.0.0.0:1\"\nmax_clients_per_address = \"400\"\n{}", CH),
            &[(3, "server.max_clients_per_address", "found string \"400\"; expected a number of connections from one address 1..=65536 (an integer: write it without quotes)")],
        ),
        (
            &format!("[buffers]\nring_bytes = 1000\nchunk_bytes = 2000000\nflush_ms = -1\n{}", CH),
            &[
                (2, "buffers.ring_bytes", "1000 is out of range; expected bytes 1048576..=1073741824"),
                (3, "buffers.chunk_bytes", "2000000 is out of range; expected bytes 16384..=1048576"),
                (4, "buffers.flush_ms", "-1 is out of range"),
            ],
        ),
        (
            &format!("[buffers]\nring_bytes = 1048576\nchunk_bytes = 1048576\n{}", CH),
            &[(3, "buffers.chunk_bytes", "more than a quarter of ring_bytes (1048576); expected at most 262144")],
        ),
        // TCP settings of the listener: the name's spelling here, whether
        // the kernel has it at check-config (daemon::check_tcp).
        (
            &format!("[server]\ntcp_congestion = \"BBR\"\nsend_buffer_bytes = 1000\n{}", CH),
            &[
                (2, "server.tcp_congestion", "\"BBR\": congestion control names are lower case (\"bbr\")"),
                (3, "server.send_buffer_bytes", "1000 is out of range; expected bytes 16384..=268435456"),
            ],
        ),
        (
            &format!("[server]\ntcp_congestion = \"bbr v2\"\nsend_buffer_bytes = \"4M\"\n{}", CH),
            &[
                (2, "server.tcp_congestion", "holds a character other than a-z 0-9 _"),
                (3, "server.send_buffer_bytes", "found string \"4M\""),
            ],
        ),
        (
            &format!("[server]\ntcp_congestion = \"\"\n\n\ntcp_congestion_x = 1\n{}", CH),
            &[
                (2, "server.tcp_congestion", "\"\" is not 1..=15 characters"),
                (5, "server.tcp_congestion_x", "unknown key"),
            ],
        ),
        (
            &format!("[server]\ntcp_congestion = 1\n{}", CH),
            &[(2, "server.tcp_congestion", "found integer 1; expected the name of a TCP congestion control")],
        ),
        // Address and network syntax.
        (
            &format!("[server]\nlisten = \"0.0.0.0\"\n{}", CH),
            &[(2, "server.listen", "\"0.0.0.0\" is not an address:port")],
        ),
        (
            &format!(
                "[access]\nstream = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n  \"1.2.3\",\n]\ncontrol = [\"::1/129\", 5]\n{}",
                CH
            ),
            &[
                (4, "access.stream[1]", "\"10.0.0.0/33\": prefix /33 is longer than 32 bits"),
                (5, "access.stream[2]", "\"1.2.3\": missing /prefix"),
                (7, "access.control[0]", "prefix /129 is longer than 128 bits"),
                (7, "access.control[1]", "found integer 5; expected a network string"),
            ],
        ),
        (
            &format!("[access]\ntoken = \"short\"\n{}", CH),
            &[(2, "access.token", "refused (value not shown)")],
        ),
        // Channels: names, duplicates, sources.
        (
            concat!(
                "[[channel]]\nname = \"news\"\n[[channel.source]]\nfile = \"a.ts\"\n",
                "[[channel]]\nname = \"News 24\"\n[[channel.source]]\nfile = \"a.ts\"\n",
                "[[channel]]\nname = \"news\"\n[[channel.source]]\nfile = \"a.ts\"\n",
                "[[channel]]\nname = \"..\"\n[[channel.source]]\nfile = \"a.ts\"\n",
            ),
            &[
                (6, "channel[1].name", "\"News 24\" contains 'N'"),
                (10, "channel[2].name", "duplicate channel name \"news\" (first at line 2)"),
                (14, "channel[3].name", "only dots"),
            ],
        ),
        (
            "[[channel]]\ntvg_id = \"x\"\n[[channel.source]]\nfile = \"a.ts\"\n",
            &[(1, "channel[0].name", "missing; expected a channel name")],
        ),
        (
            "[[channel]]\nname = \"a\"\n\n[[channel]]\nname = \"b\"\nsource = []\n",
            &[
                (1, "channel[0].source", "no sources"),
                (6, "channel[1].source", "no sources"),
            ],
        ),
        (
            "[[channel]]\nname = \"a\"\n[[channel.source]]\nprogram = 2\n",
            &[(3, "channel[0].source[0].file", "missing; expected a path")],
        ),
        (
            "[[channel]]\nname = \"a\"\ntvg_name = \"A\\nB\"\ngroup = \"\"\n[[channel.source]]\nfile = \"a.ts\"\n",
            &[
                (3, "channel[0].tvg_name", "contains '\\n'"),
                (4, "channel[0].group", "empty"),
            ],
        ),
        ("", &[(0, "channel", "missing; expected at least one [[channel]]")]),
        ("channel = []\n", &[(1, "channel", "empty; expected at least one")]),
        // Dotted keys have no span in toml; the walk still finds a line.
        (
            &format!("server.listen = \"nope\"\n{}", CH),
            &[(1, "server.listen", "is not an address:port")],
        ),
        (
            "channel = [{ name = \"a\", source = [{ file = \"a.ts\", program = 99999 }] }]\n",
            &[(1, "channel[0].source[0].program", "99999 is out of range")],
        ),
        (
            &format!("# c\n\nserver.listen = \"nope\"\naccess.bogus = 1\n{}", CH),
            &[
                (3, "server.listen", "is not an address:port"),
                (4, "access.bogus", "unknown key"),
            ],
        ),
        // A datetime is a TOML type too.
        (
            &format!("[server]\nmax_clients = 1979-05-27\n{}", CH),
            &[(2, "server.max_clients", "found datetime 1979-05-27")],
        ),
    ];
    for (text, want) in cases {
        let got = parse_err(text);
        let show: Vec<String> = got.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "snippet:\n{}\ngot:\n{}",
            text,
            show.join("\n")
        );
        for (d, (line, key, msg)) in got.iter().zip(want.iter()) {
            assert_eq!(d.file, "capbox.toml");
            assert_eq!(
                (d.line, d.key.as_str()),
                (*line, *key),
                "snippet:\n{}\ngot: {}",
                text,
                d
            );
            assert!(
                d.message.contains(msg),
                "snippet:\n{}\ngot: {}\nwant: {}",
                text,
                d,
                msg
            );
        }
    }
}

#[test]
fn config_diagnostic_display() {
    let d = Diagnostic {
        file: "capbox.toml".into(),
        line: 12,
        key: "channel[3].source[0].program".into(),
        message: "no such service 0x1f4".into(),
    };
    assert_eq!(
        d.to_string(),
        "capbox.toml:12: channel[3].source[0].program: no such service 0x1f4"
    );
    let errs =
        parse_err("[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nprogram = 0\n");
    assert_eq!(
        errs[0].to_string(),
        "capbox.toml:5: channel[0].source[0].program: 0 is out of range; expected a program_number 1..=65535"
    );
    let syntax = parse_err("[server\n");
    assert!(
        syntax[0].to_string().starts_with("capbox.toml:1: "),
        "{}",
        syntax[0]
    );
}

#[test]
fn config_token_never_shown() {
    let text = format!("[access]\ntoken = \"bad token with spaces\"\n{}", CH);
    let errs = parse_err(&text);
    assert!(!errs[0].to_string().contains("spaces"), "{}", errs[0]);
    let c = parse_ok(&format!("[access]\ntoken = \"Zm9vYmFyYmF6\"\n{}", CH));
    assert!(!format!("{:?}", c).contains("Zm9vYmFyYmF6"));
}

#[test]
fn config_diag_at_and_sources() {
    let c = parse_ok(GOOD);
    let srcs: Vec<(&str, &str, u16)> = c
        .sources()
        .map(|(ch, s)| (ch.name.as_str(), s.key.as_str(), s.program))
        .collect();
    assert_eq!(
        srcs,
        [
            ("france2", "channel[0].source[0]", 0x1f4),
            ("france2", "channel[0].source[1]", 1),
            ("arte", "channel[1].source[0]", 2),
        ]
    );
    let d = c.diag_at(
        "channel[0].source[0].program",
        "no such service 0x1f4 in samples/mux.ts (services: 1, 2, 3)",
    );
    assert_eq!(
        d.to_string(),
        "capbox.toml:24: channel[0].source[0].program: no such service 0x1f4 in samples/mux.ts (services: 1, 2, 3)"
    );
    // A defaulted key reports at its table's header.
    assert_eq!(c.line_of("channel[0].source[1].program"), 27);
    assert_eq!(c.line_of("channel[1].source[0].file"), 34);
    assert_eq!(c.line_of("channel[1]"), 30);
    assert_eq!(c.line_of("access.stream[1]"), 8);
    assert_eq!(c.line_of("server.listen"), 3);
    assert_eq!(c.line_of("nothing.here"), 0);
}

#[test]
fn config_diff_by_channel() {
    let old = parse_ok(GOOD);
    assert!(Config::diff(&old, &old).is_empty());
    // Moving lines around (a comment on top) changes nothing.
    let shifted = parse_ok(&format!("# header\n\n{}", GOOD));
    assert!(
        Config::diff(&old, &shifted).is_empty(),
        "{:?}",
        Config::diff(&old, &shifted)
    );
    let new_text = GOOD
        .replace("program = 2", "program = 3")
        .replace("name = \"france2\"", "name = \"france3\"")
        + "\n[[channel]]\nname = \"extra\"\n[[channel.source]]\nfile = \"x.ts\"\n";
    let new = parse_ok(&new_text);
    let d = Config::diff(&old, &new);
    assert_eq!(d.added, ["france3", "extra"]);
    assert_eq!(d.removed, ["france2"]);
    assert_eq!(d.changed, ["arte"]);
    assert!(!d.server_changed);
    let d = Config::diff(
        &old,
        &parse_ok(&GOOD.replace("max_clients = 64", "max_clients = 65")),
    );
    assert!(d.server_changed && d.added.is_empty() && d.changed.is_empty());
    let d = Config::diff(
        &old,
        &parse_ok(&GOOD.replace("flush_ms = 20", "flush_ms = 21")),
    );
    assert!(d.server_changed);
    // Any source setting counts.
    let swapped = parse_ok(&GOOD.replace("loop = false", "loop = true"));
    assert_eq!(Config::diff(&old, &swapped).changed, ["france2"]);
}

#[test]
fn config_example_file_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/capbox.toml");
    let c = load(&path).unwrap_or_else(|errs| {
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        panic!("{}", all.join("\n"))
    });
    assert!(!c.channels.is_empty());
    // Relative files resolve against examples/, not the working directory.
    let examples = path.parent().unwrap();
    assert!(c
        .sources()
        .all(|(_, s)| s.file.is_absolute() || s.file.starts_with(examples)));
}

#[test]
fn config_load_errors() {
    let errs = load(Path::new("/nonexistent/capbox.toml")).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .to_string()
            .starts_with("/nonexistent/capbox.toml: cannot read: "),
        "{}",
        errs[0]
    );
    let errs = load(Path::new("/")).unwrap_err();
    assert!(errs[0].message.contains("not a regular file"));
    let dir = std::env::temp_dir().join(format!("capbox-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.toml");
    std::fs::write(&p, b"# ok\n# \xff\n").unwrap();
    let errs = load(&p).unwrap_err();
    assert_eq!((errs[0].line, errs[0].message.contains("UTF-8")), (2, true));
    std::fs::write(&p, CH).unwrap();
    let c = load(&p).unwrap();
    assert_eq!(c.channels[0].sources[0].file, dir.join("a.ts"));
    assert_eq!(c.file, p.display().to_string());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_demo() {
    let c = demo_config(Path::new("samples"), "127.0.0.1:8080".parse().unwrap());
    let got: Vec<(&str, Option<&str>, Option<&str>, u16)> = c
        .channels
        .iter()
        .map(|ch| {
            (
                ch.name.as_str(),
                ch.tvg_name.as_deref(),
                ch.group.as_deref(),
                ch.sources[0].program,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("news", Some("Demo News"), Some("News"), 1),
            ("sport", Some("Demo Sport"), Some("Sport"), 2),
            ("music", Some("Demo Music"), Some("Music"), 3),
        ]
    );
    assert!(c
        .sources()
        .all(|(_, s)| s.file == Path::new("samples/mux.ts") && s.looping));
    assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
    // The demo obeys the same rules as a file: names and labels pass the walk.
    let mut text = String::from("[server]\nlisten = \"127.0.0.1:8080\"\n");
    for ch in &c.channels {
        text += &format!(
            "[[channel]]\nname = {:?}\ntvg_id = {:?}\ntvg_name = {:?}\ngroup = {:?}\n[[channel.source]]\nfile = \"mux.ts\"\nprogram = {}\n",
            ch.name, ch.tvg_id, ch.tvg_name.as_deref().unwrap(), ch.group.as_deref().unwrap(), ch.sources[0].program
        );
    }
    let parsed = parse(&text, "demo.toml", Path::new("samples")).unwrap();
    assert!(Config::diff(&c, &parsed).is_empty());
}

const DVB: &str = r#"[[adapter]]
name = "ter1"
device = "adapter0"

[[adapter]]
name = "sat1"
device = "usb-path-1-1.4"
frontend = 1
lnb = "universal"
switch = "committed:2"
pls_style = "tbs"
dvr_buffer_bytes = 8388608

[[channel]]
name = "beethoven"
[[channel.source]]
adapter = "ter1"
tune = "dvbt 474000000 8MHz"
program = 0x880

[[channel]]
name = "other"
[[channel.source]]
adapter = "ter1"
tune = "dvbt 474MHz 8MHz"
program = 0x881
"#;

#[test]
fn config_dvb_adapters_and_sources() {
    let c = parse_ok(DVB);
    assert_eq!(c.adapters.len(), 2);
    let sat = c.adapter("sat1").unwrap();
    assert_eq!(sat.device, "usb-path-1-1.4");
    assert_eq!(sat.frontend, 1);
    assert_eq!(sat.lnb, Some(Lnb::UNIVERSAL));
    assert_eq!(sat.switch, Switch::Committed { port: 2 });
    assert_eq!(sat.pls_style, PlsStyle::Tbs);
    assert_eq!(sat.dvr_buffer_bytes, Some(8 << 20));
    let ter = c.adapter("ter1").unwrap();
    assert_eq!(
        (ter.frontend, ter.lnb, ter.pls_style),
        (0, None, PlsStyle::Mainline)
    );
    let s = &c.channels[0].sources[0];
    let d = s.dvb.as_ref().unwrap();
    assert_eq!(d.adapter, "ter1");
    assert_eq!(s.program, 0x880);
    // Two spellings of one mux are the same mux.
    assert_eq!(d.mux, c.channels[1].sources[0].dvb.as_ref().unwrap().mux);
    assert!(s.describe().starts_with("ter1 dvbt"), "{}", s.describe());
}

#[test]
fn config_dvb_errors_name_key_and_line() {
    // Bad tune string: the Tuning parser's words, on the tune line.
    let errs = parse_err(
        "[[adapter]]\nname = \"t\"\ndevice = \"adapter0\"\n[[channel]]\nname = \"a\"\n[[channel.source]]\nadapter = \"t\"\ntune = \"dvbt 474000000 9MHz\"\n",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, 8);
    assert_eq!(errs[0].key, "channel[0].source[0].tune");
    let tuning_msg = Tuning::from_args("dvbt 474000000 9MHz")
        .unwrap_err()
        .to_string();
    assert!(errs[0].message.contains(&tuning_msg), "{}", errs[0]);

    // file and adapter together; unknown adapter; bad lnb and switch.
    let errs = parse_err(
        "[[adapter]]\nname = \"s\"\ndevice = \"adapter0\"\nlnb = \"quad\"\nswitch = \"committed:7\"\npls_style = \"x\"\n[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nadapter = \"nope\"\ntune = \"dvbt 474MHz\"\n",
    );
    let keys: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert!(keys.contains(&(4, "adapter[0].lnb")), "{keys:?}");
    assert!(keys.contains(&(5, "adapter[0].switch")), "{keys:?}");
    assert!(keys.contains(&(6, "adapter[0].pls_style")), "{keys:?}");
    assert!(
        keys.contains(&(10, "channel[0].source[0].file")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&(11, "channel[0].source[0].adapter")),
        "{keys:?}"
    );
    let adapter_err = errs.iter().find(|e| e.key.ends_with(".adapter")).unwrap();
    assert!(adapter_err.message.contains("defined: s"), "{adapter_err}");
}

#[test]
fn config_dvb_two_muxes_on_one_adapter_refused() {
    let text = DVB.replace("tune = \"dvbt 474MHz 8MHz\"", "tune = \"dvbt 482MHz 8MHz\"");
    let errs = parse_err(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert_eq!(e.key, "channel[1].source[0].tune");
    assert_eq!(e.line, 25);
    for word in [
        "\"ter1\"",
        "2 muxes",
        "beethoven",
        "other",
        "474000000",
        "482000000",
    ] {
        assert!(e.message.contains(word), "{word} not in {e}");
    }
}

#[test]
fn config_switch_strings() {
    use crate::dvb::diseqc::{Burst, Scr, ScrStandard};
    assert_eq!(
        parse_switch("burst:a").unwrap(),
        Switch::ToneBurst(Burst::A)
    );
    assert_eq!(
        parse_switch("uncommitted:12").unwrap(),
        Switch::Uncommitted { port: 12 }
    );
    assert_eq!(
        parse_switch("unicable:en50494:ub=1:freq=1210").unwrap(),
        Switch::Unicable(Scr {
            standard: ScrStandard::En50494,
            user_band: 1,
            ub_freq_mhz: 1210,
            position: 0,
            pin: None
        })
    );
    assert!(parse_switch("unicable:en50494:ub=9:freq=1210").is_err());
    assert!(parse_switch("unicable:en50494:freq=1210").is_err());
    assert!(parse_switch("committed:4").is_err());
}

#[test]
fn config_dvb_example_file_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/capbox-dvb.toml");
    let c = match load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{:?}", e),
    };
    assert_eq!(c.adapters.len(), 2);
    assert!(c.sources().all(|(_, s)| s.dvb.is_some()));
}

#[test]
fn config_diff_adapter_change_restarts_its_channels() {
    let old = parse_ok(DVB);
    let new = parse_ok(&DVB.replace("device = \"adapter0\"", "device = \"adapter1\""));
    let d = Config::diff(&old, &new);
    assert_eq!(
        d.changed,
        vec!["beethoven".to_string(), "other".to_string()]
    );
    assert!(d.added.is_empty() && d.removed.is_empty() && !d.server_changed);
    // A change on the other adapter touches no channel of ter1.
    let new = parse_ok(&DVB.replace("committed:2", "committed:3"));
    assert!(Config::diff(&old, &new).is_empty());
}

#[test]
fn biss_key_parsed_and_never_echoed() {
    let ok = "\n[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\nbiss = \"0011223344556677\"\n";
    let c = parse_ok(ok);
    let k = c.channels[0].sources[0].biss.as_ref().unwrap();
    assert_eq!(
        k.control_word(),
        [0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]
    );
    assert!(!format!("{c:?}").contains("0011223344556677"));
    let short = ok.replace("\"0011223344556677\"", "\"AABBCC DDEEFF\"");
    assert!(parse_ok(&short).channels[0].sources[0].biss.is_some());
    for (bad, msg) in [
        ("\"0011223344556677ab\"", "more than 16 hex digits"),
        ("\"00112233445566\"", "14 hex digits"),
        ("\"00112233445566zz\"", "not a hex digit"),
        ("1234567", "not a string"),
    ] {
        let text = ok.replace("\"0011223344556677\"", bad);
        let errs = parse_err(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, 6);
        assert_eq!(errs[0].key, "channel[0].source[0].biss");
        let shown = errs[0].to_string();
        assert!(shown.contains(msg), "{shown}");
        let value = bad.trim_matches('"');
        assert!(!shown.contains(value), "{shown} echoes the key");
    }
}

#[test]
fn biss_mode_e_keys_checked_by_name_and_line() {
    let base = "\n[[channel]]\nname = \"a\"\n[[channel.source]]\nfile = \"a.ts\"\n";
    // ESW = DES(key from ID 00…00) of 0 — whatever the word, it parses.
    let ok = format!("{base}biss_esw = \"8CA64DE9C1B123A7\"\nbiss_id = \"00000000000000\"\n");
    let c = parse_ok(&ok);
    assert!(c.channels[0].sources[0].biss.is_some());
    assert!(!format!("{c:?}").contains("8CA64DE9C1B123A7"));
    for (extra, line, key, msg) in [
        ("biss_esw = \"8CA64DE9C1B123A7\"\n", 6, "biss_id", "missing; BISS mode E"),
        ("biss_id = \"00000000000000\"\n", 6, "biss_esw", "missing; `biss_id`"),
        (
            "biss_esw = \"8CA64DE9C1B123A7\"\nbiss_id = \"000000000000\"\n",
            7,
            "biss_id",
            "ID: 12 hex digits",
        ),
        (
            "biss_esw = \"8CA64DE9C1B1\"\nbiss_id = \"00000000000000\"\n",
            6,
            "biss_esw",
            "ESW: 12 hex digits",
        ),
        (
            "biss = \"0011223344556677\"\nbiss_esw = \"8CA64DE9C1B123A7\"\nbiss_id = \"00000000000000\"\n",
            6,
            "biss",
            "set together with `biss_esw`",
        ),
        ("biss_esw = 12\nbiss_id = \"00000000000000\"\n", 6, "biss_esw", "not a string"),
    ] {
        let errs = parse_err(&format!("{base}{extra}"));
        assert_eq!(errs.len(), 1, "{extra}: {errs:?}");
        assert_eq!(errs[0].line, line, "{extra}: {errs:?}");
        assert_eq!(errs[0].key, format!("channel[0].source[0].{key}"));
        let shown = errs[0].to_string();
        assert!(shown.contains(msg), "{shown}");
        assert!(!shown.contains("8CA64DE9") && !shown.contains("000000000000"), "{shown}");
    }
}

#[test]
fn supervisor_defaults_and_keys() {
    let c = parse_ok(GOOD);
    assert_eq!(
        c.supervisor,
        SupervisorConfig {
            reset_log: PathBuf::from("/etc/capbox/capbox-resets.json"),
            ..SupervisorConfig::default()
        }
    );
    assert_eq!(c.supervisor.watchdog, None);
    assert_eq!(c.supervisor.watchdog_timeout_s, 20);
    assert_eq!(c.supervisor.stall_after_s, 10);
    assert_eq!(c.supervisor.reboot_guard_resets, 3);
    assert!(!c.supervisor.fault_injection);
    let c = parse_ok(&format!(
        "{GOOD}\n[supervisor]\nwatchdog = \"/dev/watchdog\"\nwatchdog_timeout_s = 30\n\
         stall_after_s = 5\nreboot_guard_resets = 0\nreset_log = \"/data/r.json\"\nfault_injection = true\n"
    ));
    let s = &c.supervisor;
    assert_eq!(s.watchdog.as_deref(), Some(Path::new("/dev/watchdog")));
    assert_eq!(
        (s.watchdog_timeout_s, s.stall_after_s, s.reboot_guard_resets),
        (30, 5, 0)
    );
    assert_eq!(s.reset_log, PathBuf::from("/data/r.json"));
    assert!(s.fault_injection);
    // "" is the default for both paths.
    let c = parse_ok(&format!(
        "{GOOD}\n[supervisor]\nwatchdog = \"\"\nreset_log = \"\"\n"
    ));
    assert_eq!(c.supervisor.watchdog, None);
    assert_eq!(
        c.supervisor.reset_log,
        PathBuf::from("/etc/capbox/capbox-resets.json")
    );
    // Feeding: a quarter of the timeout, at most a second apart.
    assert_eq!(SupervisorConfig::default().feed_every_ms(Some(20)), 1000);
    assert_eq!(SupervisorConfig::default().feed_every_ms(Some(2)), 500);
}

#[test]
fn supervisor_errors_name_key_and_line() {
    let base = GOOD.lines().count();
    let errs = parse_err(&format!(
        "{GOOD}\n[supervisor]\nwatchdog = \"watchdog\"\nwatchdog_timeout_s = 1\nstall_after_s = \"5\"\n\
         reboot_guard_resets = 101\nreset_log = \"/data/\"\nfault_injection = 1\nfeed = true\n"
    ));
    let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let all = shown.join("\n");
    let l = |n: usize| base + 1 + n;
    for want in [
        format!("capbox.toml:{}: supervisor.watchdog: \"watchdog\" is not an absolute device path", l(2)),
        format!("capbox.toml:{}: supervisor.watchdog_timeout_s: 1 is out of range; expected seconds 2..=600", l(3)),
        format!("capbox.toml:{}: supervisor.stall_after_s: found string \"5\"", l(4)),
        format!("capbox.toml:{}: supervisor.reboot_guard_resets: 101 is out of range", l(5)),
        format!("capbox.toml:{}: supervisor.reset_log: not a file path", l(6)),
        format!("capbox.toml:{}: supervisor.fault_injection:", l(7)),
        format!("capbox.toml:{}: supervisor.feed: unknown key; expected one of: watchdog,", l(8)),
    ] {
        assert!(all.contains(&want), "missing {want:?} in:\n{all}");
    }
    // A stall must be seen before the watchdog fires.
    let errs = parse_err(&format!(
        "{GOOD}\n[supervisor]\nwatchdog = \"/dev/watchdog\"\nwatchdog_timeout_s = 10\nstall_after_s = 10\n"
    ));
    let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        all.iter().any(|e| e.contains(
            "supervisor.stall_after_s: 10 s is not shorter than watchdog_timeout_s (10 s)"
        )),
        "{all:?}"
    );
}

#[test]
fn config_recovery_defaults_values_and_errors() {
    let d = parse_ok(CH);
    assert_eq!(d.recovery, crate::dvb::recovery::RecoveryConfig::default());
    let c = parse_ok(&format!(
        "[recovery]\nsilent_ms = 1000\nretunes = 1\nreopens = 0\nusb_reset_wait_ms = 4000\nhealed_after_s = 5\nfailed_retry_s = 30\n{CH}"
    ));
    let r = c.recovery;
    assert_eq!(
        (r.silent_ms, r.retunes, r.reopens, r.usb_reset_wait_ms),
        (1000, 1, 0, 4000)
    );
    assert_eq!((r.healed_after_ms, r.failed_retry_ms), (5000, 30_000));
    let errs: Vec<String> = parse_err(&format!(
        "[recovery]\nsilent_ms = 50\nretunes = \"2\"\nfailed_retry = 30\n{CH}"
    ))
    .iter()
    .map(|d| d.to_string())
    .collect();
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[0].starts_with("capbox.toml:2: recovery.silent_ms: 50 is out of range; expected milliseconds (locked with no dvr data this long is a fault) 200..=600000"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with("capbox.toml:3: recovery.retunes: found string \"2\""),
        "{errs:#?}"
    );
    assert!(
        errs[2].starts_with("capbox.toml:4: recovery.failed_retry: ")
            && errs[2].contains("failed_retry_s"),
        "{errs:#?}"
    );
}

#[test]
fn config_recovery_change_restarts_the_dvb_channels() {
    let base = "[[adapter]]\nname = \"t\"\ndevice = \"adapter0\"\n[[channel]]\nname = \"a\"\n[[channel.source]]\nadapter = \"t\"\ntune = \"dvbt 474000000 8MHz\"\nprogram = 1\n[[channel]]\nname = \"f\"\n[[channel.source]]\nfile = \"a.ts\"\n";
    let old = parse_ok(base);
    let new = parse_ok(&format!("[recovery]\nretunes = 5\n{base}"));
    let d = Config::diff(&old, &new);
    assert_eq!(d.changed, ["a"], "{d:?}");
}

#[test]
fn config_monitor_defaults_values_and_errors() {
    let d = parse_ok(CH);
    assert_eq!(d.monitor, MonitorConfig::default());
    assert_eq!(
        (
            d.monitor.silence_after_s,
            d.monitor.silence_dbfs,
            d.monitor.pes_after_s
        ),
        (10, -60, 5)
    );
    let c = parse_ok(&format!(
        "[monitor]\nenabled = false\ntr101290 = false\nsilence_after_s = 3\nsilence_dbfs = -70\nfrozen_after_s = 4\npes_after_s = 2\npts_pcr_min_ms = -100\npts_pcr_max_ms = 5000\nclock_drift_s = 9\n{CH}"
    ));
    let m = c.monitor;
    assert!(!m.enabled && !m.tr101290);
    assert_eq!(
        (
            m.silence_after_s,
            m.silence_dbfs,
            m.frozen_after_s,
            m.pes_after_s
        ),
        (3, -70, 4, 2)
    );
    assert_eq!(
        (m.pts_pcr_min_ms, m.pts_pcr_max_ms, m.clock_drift_s),
        (-100, 5000, 9)
    );
    let errs: Vec<String> = parse_err(&format!(
        "[monitor]\nsilence_dbfs = 3\nenabled = \"yes\"\npts_pcr_min_ms = 500\npts_pcr_max_ms = 400\nsilence_after = 3\n{CH}"
    ))
    .iter()
    .map(|d| d.to_string())
    .collect();
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(
        errs[0].starts_with("capbox.toml:3: monitor.enabled: found string"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with("capbox.toml:2: monitor.silence_dbfs: 3 is out of range"),
        "{errs:#?}"
    );
    assert!(
        errs[2].starts_with(
            "capbox.toml:5: monitor.pts_pcr_max_ms: 400 is not above pts_pcr_min_ms (500)"
        ),
        "{errs:#?}"
    );
    assert!(
        errs[3].starts_with("capbox.toml:6: monitor.silence_after: ")
            && errs[3].contains("silence_after_s"),
        "{errs:#?}"
    );
}

#[test]
fn update_defaults_and_keys() {
    let c = parse_ok(GOOD);
    assert_eq!(
        c.update,
        UpdateConfig {
            state_file: PathBuf::from("/etc/capbox/capbox-update.state"),
            ..UpdateConfig::default()
        }
    );
    assert_eq!(
        (c.update.mark_good_after_s, c.update.trial_timeout_s),
        (300, 900)
    );
    let c = parse_ok(&format!(
        "{GOOD}\n[update]\nmark_good_after_s = 10\ntrial_timeout_s = 60\nstate_file = \"/data/u.state\"\n"
    ));
    assert_eq!(
        (c.update.mark_good_after_s, c.update.trial_timeout_s),
        (10, 60)
    );
    assert_eq!(c.update.state_file, PathBuf::from("/data/u.state"));
}

#[test]
fn update_errors_name_key_and_line() {
    let base = GOOD.lines().count();
    let l = |n: usize| base + 1 + n;
    let errs = parse_err(&format!(
        "{GOOD}\n[update]\nmark_good_after_s = 1\ntrial_timeout_s = \"60\"\nstate_file = \"/data/\"\nmark_good = 5\n"
    ));
    let all = errs
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for want in [
        format!("capbox.toml:{}: update.mark_good_after_s: 1 is out of range; expected seconds 5..=86400", l(2)),
        format!("capbox.toml:{}: update.trial_timeout_s: found string \"60\"", l(3)),
        format!("capbox.toml:{}: update.state_file: not a file path", l(4)),
        format!("capbox.toml:{}: update.mark_good: unknown key; expected one of: mark_good_after_s,", l(5)),
    ] {
        assert!(all.contains(&want), "missing {want:?} in:\n{all}");
    }
    // The trial must leave time for the health to hold.
    let errs = parse_err(&format!(
        "{GOOD}\n[update]\nmark_good_after_s = 300\ntrial_timeout_s = 320\n"
    ));
    let all = errs
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        all.contains(&format!(
            "capbox.toml:{}: update.trial_timeout_s: 320 s is not more than mark_good_after_s (300 s) + 30 s",
            l(3)
        )),
        "{all}"
    );
}
