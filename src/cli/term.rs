//! What the console commands may print on this terminal: its size, whether
//! it takes UTF-8, whether it takes colour. Owns the last step of every
//! console line: control characters out, non-ASCII folded when the
//! terminal cannot show it, cut (tables) or wrapped (prose) to the width.
//!
//! The technician's terminal is often a serial line at 115200 baud: TERM
//! unset, `dumb` or `vt100`, no locale, a size the kernel does not know
//! (0 x 0). There the output is plain ASCII, 80 columns, 24 rows, no colour
//! and no cursor movement. Colour only when stdout is a terminal, TERM names
//! one that has it and NO_COLOR is unset (<https://no-color.org>); capbox
//! never moves the cursor or redraws. Text from outside (service names from
//! the SDT, a remote peer's error, a file name) never reaches the terminal
//! with its control characters: an ESC in a service name would drive it.

use std::io::{IsTerminal, Write};

/// The facts about one output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    /// Columns a line may take.
    pub cols: usize,
    /// Rows of one screen; `None` when the output is not a terminal (a
    /// pipe, a file: everything is printed).
    pub rows: Option<usize>,
    /// Only ASCII reaches it (non-ASCII is folded: `é` -> `e`, `…` -> `~`).
    pub ascii: bool,
    /// It takes ANSI colour (SGR) sequences.
    pub color: bool,
}

/// The console's width when nothing says otherwise.
pub const COLS: usize = 80;
/// The console's height when nothing says otherwise.
pub const ROWS: usize = 24;

impl Term {
    /// The facts for stdout.
    pub fn stdout() -> Term {
        let out = std::io::stdout();
        let tty = out.is_terminal();
        let size = if tty {
            capbox_sys::tty_size(std::os::fd::AsFd::as_fd(&out))
        } else {
            None
        };
        Term::from_env(&|k| std::env::var(k).ok(), tty, size)
    }

    /// The facts for stderr (errors and progress lines).
    pub fn stderr() -> Term {
        let err = std::io::stderr();
        let tty = err.is_terminal();
        let size = if tty {
            capbox_sys::tty_size(std::os::fd::AsFd::as_fd(&err))
        } else {
            None
        };
        Term::from_env(&|k| std::env::var(k).ok(), tty, size)
    }

    /// Pure: the facts from the environment, whether the stream is a
    /// terminal and the size the kernel reports for it.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Term {
        let num = |k: &str| {
            env(k)
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
        };
        // The kernel's size first (it follows a resize); else $COLUMNS and
        // $LINES (a serial login can set them); else 80 x 24.
        let cols = size
            .map(|(_, c)| c as usize)
            .or_else(|| num("COLUMNS"))
            .unwrap_or(COLS)
            .clamp(20, 1000);
        let rows = if tty {
            Some(
                size.map(|(r, _)| r as usize)
                    .or_else(|| num("LINES"))
                    .unwrap_or(ROWS)
                    .clamp(5, 1000),
            )
        } else {
            num("LINES")
        };
        let term = env("TERM").unwrap_or_default();
        let plain = is_plain_term(&term);
        // The locale decides the encoding: LC_ALL, then LC_CTYPE, then LANG.
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
            .iter()
            .filter_map(|k| env(k))
            .find(|v| !v.is_empty())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let utf8 = locale.contains("utf-8") || locale.contains("utf8");
        let no_color = env("NO_COLOR").is_some_and(|v| !v.is_empty());
        Term {
            cols,
            rows,
            ascii: plain || !utf8,
            color: tty && !plain && !no_color && has_color(&term),
        }
    }

    /// A line made safe for this terminal and cut to its width (tables).
    pub fn fit(&self, line: &str) -> String {
        cut_width(&clean(line, self.ascii), self.cols)
    }

    /// Prose made safe and wrapped to the width; continuation lines start
    /// with `indent` spaces.
    pub fn wrap(&self, text: &str, indent: usize) -> Vec<String> {
        let text = clean(text, self.ascii);
        wrap_width(&text, self.cols, indent)
    }

    /// `fit` every line of `text`, colour the alarm words when the
    /// terminal takes colour.
    pub fn render(&self, text: &str) -> String {
        let mut o = String::with_capacity(text.len() + 16);
        for l in text.lines() {
            let l = self.fit(l);
            if self.color {
                o.push_str(&paint(&l));
            } else {
                o.push_str(&l);
            }
            o.push('\n');
        }
        o
    }
}

/// TERM values (and none) that take neither colour nor UTF-8: the serial
/// consoles' defaults (busybox getty's `vt100`, agetty's `vt102`).
fn is_plain_term(term: &str) -> bool {
    matches!(
        term,
        "" | "dumb" | "unknown" | "vt52" | "vt100" | "vt102" | "vt220" | "vt320" | "ansi-mono"
    ) || term.ends_with("-mono")
        || term.ends_with("-m")
}

/// TERM values that take the 8 ANSI colours.
fn has_color(term: &str) -> bool {
    [
        "xterm",
        "screen",
        "tmux",
        "rxvt",
        "linux",
        "vt220-color",
        "putty",
        "konsole",
        "alacritty",
        "kitty",
        "foot",
        "st-",
    ]
    .iter()
    .any(|p| term.starts_with(p))
        || term.contains("color")
        || term == "ansi"
}

/// Words that mean "look here", in red when the terminal takes colour.
const ALARMS: &[&str] = &[
    "FAILED", "ALARM", "STALLED", "NO LOCK", "REFUSED", "DOWN", "down",
];

/// The line with its alarm words in red (SGR 31, reset with 0). Applied
/// after `fit`, so the width is that of the plain line.
fn paint(line: &str) -> String {
    let mut out = line.to_string();
    for w in ALARMS {
        let mut res = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(w) {
            let before = &rest[..i];
            let after = &rest[i + w.len()..];
            let word_start = before.chars().last().is_none_or(|c| !c.is_alphanumeric());
            let word_end = after.chars().next().is_none_or(|c| !c.is_alphanumeric());
            res.push_str(before);
            if word_start && word_end {
                res.push_str("\x1b[31m");
                res.push_str(w);
                res.push_str("\x1b[0m");
            } else {
                res.push_str(w);
            }
            rest = after;
        }
        res.push_str(rest);
        out = res;
    }
    out
}

/// Control characters (C0, DEL, C1) become `?`, a tab a space; with
/// `ascii`, non-ASCII characters are folded to one ASCII character each
/// (`é` -> `e`, `…` -> `~`, `→` -> `>`, else `?`), so column widths hold.
pub fn clean(s: &str, ascii: bool) -> String {
    s.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '?',
            c if ascii && !c.is_ascii() => fold(c),
            c => c,
        })
        .collect()
}

/// One ASCII character for a non-ASCII one.
fn fold(c: char) -> char {
    match c {
        'à'..='å' | 'ā' | 'ă' | 'ą' => 'a',
        'À'..='Å' | 'Ā' | 'Ă' | 'Ą' => 'A',
        'ç' | 'ć' | 'č' => 'c',
        'Ç' | 'Ć' | 'Č' => 'C',
        'è'..='ë' | 'ē' | 'ę' | 'ě' => 'e',
        'È'..='Ë' | 'Ē' | 'Ę' | 'Ě' => 'E',
        'ì'..='ï' | 'ı' => 'i',
        'Ì'..='Ï' | 'İ' => 'I',
        'ñ' | 'ń' | 'ň' => 'n',
        'Ñ' | 'Ń' | 'Ň' => 'N',
        'ò'..='ö' | 'ø' | 'ő' => 'o',
        'Ò'..='Ö' | 'Ø' | 'Ő' => 'O',
        'ù'..='ü' | 'ů' | 'ű' => 'u',
        'Ù'..='Ü' | 'Ů' | 'Ű' => 'U',
        'ý' | 'ÿ' => 'y',
        'Ý' | 'Ÿ' => 'Y',
        'ß' => 's',
        'ś' | 'š' | 'ş' => 's',
        'Ś' | 'Š' | 'Ş' => 'S',
        'ź' | 'ż' | 'ž' => 'z',
        'Ź' | 'Ż' | 'Ž' => 'Z',
        'ł' => 'l',
        'Ł' => 'L',
        'ř' => 'r',
        'Ř' => 'R',
        'ť' => 't',
        'Ť' => 'T',
        'ď' => 'd',
        'Ď' => 'D',
        '…' | '≈' | '∼' => '~',
        '→' | '⇒' | '›' | '»' => '>',
        '←' | '‹' | '«' => '<',
        '—' | '–' | '−' | '‐' => '-',
        '‘' | '’' | '′' => '\'',
        '“' | '”' | '″' => '"',
        '×' => 'x',
        '·' | '•' => '*',
        '°' => 'o',
        'µ' => 'u',
        '\u{a0}' => ' ',
        _ => '?',
    }
}

/// Columns a character takes: 0 for combining marks, 2 for East Asian
/// wide and emoji, else 1 (enough for service names; not a full wcwidth).
pub fn char_width(c: char) -> usize {
    let u = c as u32;
    match u {
        0x0300..=0x036F | 0x200B..=0x200F | 0xFE00..=0xFE0F => 0,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x1F900..=0x1F9FF
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

/// Columns a string takes.
pub fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// At most `cols` columns; a cut line ends in `~` (ASCII, one column: the
/// reader sees something was cut).
pub fn cut_width(s: &str, cols: usize) -> String {
    if width(s) <= cols {
        return s.to_string();
    }
    let mut o = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = char_width(c);
        if w + cw > cols.saturating_sub(1) {
            break;
        }
        o.push(c);
        w += cw;
    }
    o.push('~');
    o
}

/// `text` broken at spaces into lines of at most `cols` columns, the
/// continuation lines indented; a word longer than a line is split.
pub fn wrap_width(text: &str, cols: usize, indent: usize) -> Vec<String> {
    let cols = cols.max(1);
    let pad = " ".repeat(indent.min(cols / 2));
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let first = lines.len();
        // The paragraph's own indentation is kept.
        let lead = para.len() - para.trim_start_matches(' ').len();
        let mut cur = " ".repeat(lead.min(cols / 2));
        // Columns taken by the line being filled, and whether it holds a word.
        let mut cur_w = cur.len();
        let mut has_word = false;
        for word in para.split(' ').filter(|w| !w.is_empty()) {
            let mut word = word.to_string();
            loop {
                let ww = width(&word);
                let sep = usize::from(has_word);
                if cur_w + sep + ww <= cols {
                    if has_word {
                        cur.push(' ');
                    }
                    cur.push_str(&word);
                    cur_w += sep + ww;
                    has_word = true;
                    break;
                }
                if has_word {
                    lines.push(std::mem::replace(&mut cur, pad.clone()));
                    cur_w = pad.len();
                    has_word = false;
                    continue;
                }
                // A word longer than a whole line: split it.
                let room = cols.saturating_sub(cur_w).max(1);
                let (mut head, mut hw) = (String::new(), 0);
                let mut chars = word.chars().peekable();
                while let Some(&c) = chars.peek() {
                    if hw + char_width(c) > room && hw > 0 {
                        break;
                    }
                    head.push(c);
                    hw += char_width(c);
                    chars.next();
                }
                let rest: String = chars.collect();
                cur.push_str(&head);
                if rest.is_empty() {
                    cur_w += hw;
                    has_word = true;
                    break;
                }
                lines.push(std::mem::replace(&mut cur, pad.clone()));
                cur_w = pad.len();
                word = rest;
            }
        }
        if has_word || lines.len() == first {
            lines.push(cur);
        }
    }
    lines
}

/// Print `text` (one or more lines) on stdout, fitted to the terminal.
pub fn print(text: &str) {
    let t = Term::stdout();
    let _ = std::io::stdout()
        .lock()
        .write_all(t.render(text).as_bytes());
}

/// Print a message on stdout, wrapped (continuation lines indented 2).
pub fn say(msg: &str) {
    let t = Term::stdout();
    let mut o = String::new();
    for l in t.wrap(msg, 2) {
        o.push_str(&l);
        o.push('\n');
    }
    let _ = std::io::stdout().lock().write_all(o.as_bytes());
}

/// Print a message on stderr, wrapped (continuation lines indented 2).
pub fn warn(msg: &str) {
    let t = Term::stderr();
    let mut o = String::new();
    for l in t.wrap(msg, 2) {
        o.push_str(&l);
        o.push('\n');
    }
    let _ = std::io::stderr().lock().write_all(o.as_bytes());
}

/// A writer that fits every line written through it to a terminal (the
/// progress lines of `capbox scan`).
pub struct LineWriter<W: Write> {
    inner: W,
    term: Term,
    buf: Vec<u8>,
}

impl<W: Write> LineWriter<W> {
    pub fn new(inner: W, term: Term) -> Self {
        LineWriter {
            inner,
            term,
            buf: Vec::new(),
        }
    }
}

impl<W: Write> Write for LineWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.inner.write_all(self.term.render(&text).as_bytes())?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            self.buf.clear();
            self.inner.write_all(self.term.render(&text).as_bytes())?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for LineWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_serial_console_is_plain_ascii_80_by_24() {
        // busybox getty on ttyS0: TERM=vt100, no locale, size 0 x 0.
        let t = Term::from_env(&env(&[("TERM", "vt100")]), true, None);
        assert_eq!(
            t,
            Term {
                cols: 80,
                rows: Some(24),
                ascii: true,
                color: false
            }
        );
        // TERM unset, a UTF-8 locale: still plain.
        let t = Term::from_env(&env(&[("LANG", "C.UTF-8")]), true, None);
        assert!(t.ascii && !t.color);
        let t = Term::from_env(&env(&[("TERM", "dumb"), ("LANG", "C.UTF-8")]), true, None);
        assert!(t.ascii && !t.color);
    }

    #[test]
    fn colour_only_on_a_terminal_that_has_it_and_without_no_color() {
        let e = env(&[("TERM", "xterm-256color"), ("LANG", "en_US.UTF-8")]);
        let t = Term::from_env(&e, true, Some((50, 132)));
        assert_eq!(
            t,
            Term {
                cols: 132,
                rows: Some(50),
                ascii: false,
                color: true
            }
        );
        assert!(!Term::from_env(&e, false, None).color, "a pipe: no colour");
        assert_eq!(Term::from_env(&e, false, None).rows, None);
        let e = env(&[("TERM", "screen"), ("NO_COLOR", "1")]);
        assert!(!Term::from_env(&e, true, None).color);
        let e = env(&[("TERM", "screen"), ("NO_COLOR", "")]);
        assert!(
            Term::from_env(&e, true, None).color,
            "NO_COLOR empty is unset"
        );
        // $COLUMNS and $LINES when the kernel does not know the size.
        let e = env(&[("TERM", "vt100"), ("COLUMNS", "100"), ("LINES", "40")]);
        let t = Term::from_env(&e, true, None);
        assert_eq!((t.cols, t.rows), (100, Some(40)));
        let e = env(&[("COLUMNS", "x")]);
        assert_eq!(Term::from_env(&e, true, None).cols, 80);
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let s = "Bad\x1b[2J\x07Name\u{9b}31m\ttab";
        assert_eq!(clean(s, false), "Bad?[2J?Name?31m tab");
        assert_eq!(clean(s, true), "Bad?[2J?Name?31m tab");
        assert_eq!(clean("Télé → Ünï…", true), "Tele > Uni~");
        assert_eq!(clean("Télé → Ünï…", false), "Télé → Ünï…");
        assert_eq!(clean("日本", true), "??");
    }

    #[test]
    fn lines_are_cut_and_wrapped_by_columns() {
        assert_eq!(cut_width("abcdef", 6), "abcdef");
        assert_eq!(cut_width("abcdefg", 6), "abcde~");
        // Wide characters take two columns.
        assert_eq!(width("日本x"), 5);
        assert_eq!(cut_width("日本語テレビ", 7), "日本語~");
        let w = wrap_width(
            "capbox pin: refused (403): this address is not allowed",
            20,
            2,
        );
        assert!(w.iter().all(|l| width(l) <= 20), "{w:?}");
        assert_eq!(w[0], "capbox pin: refused");
        assert!(w[1].starts_with("  "), "{w:?}");
        let w = wrap_width(&"x".repeat(45), 20, 2);
        assert!(w.iter().all(|l| width(l) <= 20), "{w:?}");
        assert_eq!(w.concat().replace(' ', ""), "x".repeat(45));
        assert_eq!(wrap_width("", 20, 2), vec![String::new()]);
        assert_eq!(
            wrap_width("  01:02:03 warning: aaaa bbbb cccc dddd", 30, 11),
            ["  01:02:03 warning: aaaa bbbb", "           cccc dddd"]
        );
        let t = Term {
            cols: 10,
            rows: None,
            ascii: true,
            color: false,
        };
        assert_eq!(t.render("0123456789abc\nshort…"), "012345678~\nshort~\n");
    }

    #[test]
    fn alarm_words_are_painted_whole_words_only() {
        assert_eq!(
            paint("ter1 FAILED: x; FAILEDX"),
            "ter1 \x1b[31mFAILED\x1b[0m: x; FAILEDX"
        );
        assert_eq!(paint("downstream"), "downstream");
    }
}
