//! The Prometheus text exposition format (version 0.0.4), written in one
//! place: every `/metrics` family of capbox goes through `family`.
//!
//! Owns: HELP and TYPE once per family, before its samples; label values
//! escaped (`\\`, `\"`, `\n`) and HELP text escaped (`\\`, `\n`) as the
//! format says; values as Prometheus reads them (integers exact, floats
//! shortest round-trip, `NaN`, `+Inf`, `-Inf`).
//!
//! Why not a crate: for the /metrics of 200 channels (10 200 samples,
//! 680 kB; `examples/bench_metrics`) this encoder takes 0.40 ms a scrape,
//! the same as the hand-written `writeln!` it replaced; prometheus-client
//! 0.22 took 1.31 ms (0.72 setting its registry from the status, 0.58
//! encoding) and would be a second copy of every value, kept in step with
//! the status structs the values already live in. Both are far below a
//! scrape interval; the encoder wins on no registry and no dependency.
//!
//! Promises: never panics; any label value (a channel name from the
//! config, an adapter name) gives one valid sample line.

use std::fmt::Write;

/// A metric family's TYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A sample value.
pub trait Value {
    fn write_to(&self, out: &mut String);
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            #[inline]
            fn write_to(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
int_value!(u8, u16, u32, u64, usize, i32, i64);

impl Value for bool {
    #[inline]
    fn write_to(&self, out: &mut String) {
        out.push(if *self { '1' } else { '0' });
    }
}

impl Value for f64 {
    fn write_to(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// One family being written: its samples follow its HELP and TYPE.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

/// Start a family: writes `# HELP` and `# TYPE`; add its samples with
/// `sample`. A family without samples is valid (nothing to report yet).
pub fn family<'a>(out: &'a mut String, name: &'a str, kind: Kind, help: &str) -> Family<'a> {
    out.reserve(name.len() * 2 + help.len() + 24);
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
    Family { out, name }
}

impl Family<'_> {
    /// One sample with these labels (name, value), in this order.
    pub fn sample(&mut self, labels: &[(&str, &str)], v: impl Value) -> &mut Self {
        let out = &mut *self.out;
        out.push_str(self.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                escape_label_into(val, out);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        v.write_to(out);
        out.push('\n');
        self
    }

    /// The one sample of a family without labels.
    pub fn value(&mut self, v: impl Value) -> &mut Self {
        self.sample(&[], v)
    }
}

/// A label value escaped per the exposition format.
pub fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_label_into(s, &mut out);
    out
}

fn escape_label_into(s: &str, out: &mut String) {
    // Copy the runs between the three characters to escape (all ASCII, so
    // every cut is on a char boundary).
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let e = match b {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            b'\n' => "\\n",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(e);
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// Check a whole /metrics text the way capbox writes it: every sample's
/// family has HELP and TYPE once, before its samples, and its samples are
/// together. For tests; says the first fault in words.
pub fn lint(text: &str) -> Result<(), String> {
    use std::collections::HashSet;
    let mut done: HashSet<&str> = HashSet::new();
    let (mut help, mut typ): (Option<&str>, Option<&str>) = (None, None);
    let mut current: Option<&str> = None;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if let Some(r) = line.strip_prefix("# HELP ") {
            let name = r.split(' ').next().unwrap_or("");
            if let Some(c) = current.take() {
                done.insert(c);
            }
            if done.contains(name) || help == Some(name) {
                return Err(format!("line {n}: a second HELP for {name}"));
            }
            help = Some(name);
            typ = None;
        } else if let Some(r) = line.strip_prefix("# TYPE ") {
            let name = r.split(' ').next().unwrap_or("");
            if help != Some(name) || typ.is_some() {
                return Err(format!("line {n}: TYPE of {name} not right after its HELP"));
            }
            typ = Some(name);
            current = Some(name);
        } else if !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            if current != Some(name) {
                return Err(format!(
                    "line {n}: sample of {name} outside its family (HELP/TYPE missing or family split)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_type_once_labels_escaped_values_as_prometheus_reads_them() {
        let mut m = String::new();
        family(&mut m, "x_total", Kind::Counter, "Things.\nMore \\ text.")
            .sample(&[("channel", "a\"b\\c\nd"), ("reason", "r")], 3u64)
            .sample(&[("channel", "plain"), ("reason", "r")], 0u64);
        family(&mut m, "y", Kind::Gauge, "Y.")
            .value(f64::INFINITY)
            .value(f64::NAN);
        family(&mut m, "z", Kind::Gauge, "Z.")
            .value(0.25)
            .value(true);
        assert_eq!(
            m,
            "# HELP x_total Things.\\nMore \\\\ text.\n# TYPE x_total counter\n\
             x_total{channel=\"a\\\"b\\\\c\\nd\",reason=\"r\"} 3\n\
             x_total{channel=\"plain\",reason=\"r\"} 0\n\
             # HELP y Y.\n# TYPE y gauge\ny +Inf\ny NaN\n\
             # HELP z Z.\n# TYPE z gauge\nz 0.25\nz 1\n"
        );
        assert_eq!(lint(&m), Ok(()));
        assert_eq!(escape_label("é\"x"), "é\\\"x");
    }

    #[test]
    fn lint_finds_a_second_family_and_a_lost_sample() {
        let mut m = String::new();
        family(&mut m, "a", Kind::Gauge, "A.").value(1u8);
        family(&mut m, "b", Kind::Gauge, "B.").value(1u8);
        let twice = format!("{m}{m}");
        assert!(lint(&twice).unwrap_err().contains("second HELP for a"));
        assert!(lint(&format!("{m}a 2\n"))
            .unwrap_err()
            .contains("outside its family"));
        assert!(lint("c 1\n").is_err());
    }
}
