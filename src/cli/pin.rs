//! `capbox pin`: the operator's hand on a channel's failover, from the
//! console. Asks the running capbox (`POST /control/pin`), which logs it,
//! shows it in /status and `capbox_channel_pinned`, and keeps it in its
//! state file across restarts.

use std::path::PathBuf;
use std::time::Duration;

const HELP: &str = "\
usage: capbox pin <channel> <source|auto> [--for DURATION]
                  [--config FILE | --url http://127.0.0.1:8080] [--token T]

Keeps <channel> on one of its sources whatever its health says, until
`capbox pin <channel> auto` (or for DURATION: 90s, 30m, 2h, 1h30m, 1d).
<source> is its number in `capbox status` (0 = the first), `local` (the
first tuner or file) or `remote` (the first other site).

The address and the control token come from the config (default
/etc/capbox/capbox.toml: [server] listen, [access] control_token), else
from --url and --token (or $CAPBOX_CONTROL_TOKEN).

examples:
  capbox pin france2 remote --for 2h   # take the other site's feed
  capbox pin france2 auto              # back to the failover rules
";

fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

pub fn run(args: &[String]) -> i32 {
    let mut url: Option<String> = None;
    let mut token: Option<String> = std::env::var("CAPBOX_CONTROL_TOKEN").ok();
    let mut config: Option<PathBuf> = None;
    let mut dur: Option<String> = None;
    let mut pos: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |what: &str| match it.next() {
            Some(v) => Ok(v.clone()),
            None => {
                super::term::warn(&format!("capbox pin: {what} needs a value"));
                Err(2)
            }
        };
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return 0;
            }
            "--url" => match val("--url") {
                Ok(v) => url = Some(v),
                Err(c) => return c,
            },
            "--token" => match val("--token") {
                Ok(v) => token = Some(v),
                Err(c) => return c,
            },
            "--for" => match val("--for") {
                Ok(v) => dur = Some(v),
                Err(c) => return c,
            },
            "-c" | "--config" => match val("--config") {
                Ok(v) => config = Some(PathBuf::from(v)),
                Err(c) => return c,
            },
            o if o.starts_with('-') => {
                eprintln!("capbox pin: unknown option '{o}'\n\n{HELP}");
                return 2;
            }
            p => pos.push(p.to_string()),
        }
    }
    let [channel, source] = pos.as_slice() else {
        eprintln!("capbox pin: expected <channel> <source|auto>\n\n{HELP}");
        return 2;
    };
    if let Some(d) = &dur {
        if let Err(e) = crate::channel::pin::parse_duration(d) {
            super::term::warn(&format!("capbox pin: --for {e}"));
            return 2;
        }
    }
    // The address and token from the config, unless given.
    let cfg_path = config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_PATH));
    if url.is_none() || token.is_none() {
        match crate::config::load(&cfg_path) {
            Ok(c) => {
                if url.is_none() {
                    let mut a = c.server.listen;
                    if a.ip().is_unspecified() {
                        a.set_ip(if a.is_ipv4() {
                            std::net::Ipv4Addr::LOCALHOST.into()
                        } else {
                            std::net::Ipv6Addr::LOCALHOST.into()
                        });
                    }
                    url = Some(format!("http://{a}"));
                }
                if token.is_none() {
                    token = c.access.control_token.clone();
                }
            }
            Err(errs) if config.is_some() => {
                for e in errs {
                    super::term::warn(&format!("{e}"));
                }
                return 1;
            }
            Err(_) => {}
        }
    }
    let url = url.unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let mut path = format!(
        "/control/pin?channel={}&source={}",
        enc(channel),
        enc(source)
    );
    if let Some(d) = &dur {
        path.push_str(&format!("&for={}", enc(d)));
    }
    let answer = super::status::http_request(
        &url,
        "POST",
        &path,
        token.as_deref(),
        Duration::from_secs(5),
    )
    .map(|(code, _, body)| (code, body.trim().to_string()));
    match answer {
        Ok((200, body)) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            super::term::say(v["message"].as_str().unwrap_or(&body));
            if let Some(w) = v["warning"].as_str() {
                super::term::say(&format!("warning: {w}"));
            }
            if let Some(e) = v["save_error"].as_str() {
                super::term::say(&format!("warning: {e}"));
            }
            0
        }
        Ok((403, _)) => {
            super::term::warn("capbox pin: refused (403): this address is not in [access] control, or the control token is missing or wrong (--token, $CAPBOX_CONTROL_TOKEN or --config)");
            1
        }
        Ok((code, body)) => {
            super::term::warn(&format!("capbox pin: {code}: {body}"));
            1
        }
        Err(e) => {
            super::term::warn(&format!("capbox pin: {e}"));
            1
        }
    }
}
