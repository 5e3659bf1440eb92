//! capbox's view of pcsc-lite's ABI (src/ca/cards/pcsclite.rs, which loads
//! libpcsclite.so.1 at run time and so gets no help from a header) equals
//! the C view: a C program compiled with `cc` against Debian's
//! `/usr/include/PCSC` headers prints the sizes, alignments and offsets of
//! the structures, the constants and result codes, and whether each SCard*
//! prototype is the one the Rust function-pointer type spells; each must
//! equal the Rust value.
//!
//! Needs: a C compiler and libpcsclite-dev (headers only, nothing is
//! linked). Skips loudly without them; CI has both (scripts/test).

#![cfg(feature = "pcsc")]

use capbox::ca::cards::pcsclite::ffi::*;
use capbox::ca::cards::pcsclite::{Error, PNP_NOTIFICATION};
use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::marker::PhantomData;
use std::mem::{align_of, offset_of, size_of};
use std::process::Command;

/// (C expression, Rust value). The C expression is also the report key.
type Check = (String, u64);

macro_rules! size {
    ($t:ident) => {
        (
            format!("sizeof({})", stringify!($t)),
            size_of::<$t>() as u64,
        )
    };
}
macro_rules! align {
    ($t:ident) => {
        (
            format!("_Alignof({})", stringify!($t)),
            align_of::<$t>() as u64,
        )
    };
}
macro_rules! off {
    ($t:ident, $f:ident) => {
        (
            format!("offsetof({}, {})", stringify!($t), stringify!($f)),
            offset_of!($t, $f) as u64,
        )
    };
}
macro_rules! konst {
    ($c:ident) => {
        (stringify!($c).to_string(), $c as u64)
    };
}

/// Compiles only if the two types are the same.
fn same<T>(_: PhantomData<T>, _: PhantomData<T>) {}

/// A Rust parameter type as C spells it with pcsc-lite's typedefs.
fn c_type(rust: &str) -> String {
    let t = rust.replace(' ', "");
    let (qual, base) = if let Some(b) = t.strip_prefix("*const") {
        ("const ", b)
    } else if let Some(b) = t.strip_prefix("*mut") {
        ("", b)
    } else {
        return t;
    };
    let base = match base {
        "c_char" => "char",
        "c_void" => "void",
        "u8" => "unsigned char",
        b => b,
    };
    format!("{qual}{base} *")
}

/// The Rust type `ffi::$t` must be `unsafe extern "C" fn($args) -> LONG`
/// (checked by the compiler), and C's `&$c` must have that type with the
/// parameters spelled in C (checked by the C compiler, value 1).
macro_rules! proto {
    ($t:ident, $c:ident, ($($a:ty),*)) => {{
        same(
            PhantomData::<$t>,
            PhantomData::<unsafe extern "C" fn($($a),*) -> LONG>,
        );
        let params: Vec<String> = [$(stringify!($a)),*].iter().map(|a| c_type(a)).collect();
        (
            format!(
                "__builtin_types_compatible_p(__typeof__(&{}), LONG (*)({}))",
                stringify!($c),
                params.join(", ")
            ),
            1,
        )
    }};
}

fn checks() -> Vec<Check> {
    let mut v: Vec<Check> = vec![
        size!(DWORD),
        size!(LONG),
        size!(SCARDCONTEXT),
        size!(SCARDHANDLE),
        size!(SCARD_READERSTATE),
        align!(SCARD_READERSTATE),
        off!(SCARD_READERSTATE, szReader),
        off!(SCARD_READERSTATE, pvUserData),
        off!(SCARD_READERSTATE, dwCurrentState),
        off!(SCARD_READERSTATE, dwEventState),
        off!(SCARD_READERSTATE, cbAtr),
        off!(SCARD_READERSTATE, rgbAtr),
        size!(SCARD_IO_REQUEST),
        align!(SCARD_IO_REQUEST),
        off!(SCARD_IO_REQUEST, dwProtocol),
        off!(SCARD_IO_REQUEST, cbPciLength),
        konst!(MAX_ATR_SIZE),
        konst!(MAX_BUFFER_SIZE_EXTENDED),
        konst!(SCARD_S_SUCCESS),
        konst!(SCARD_SCOPE_USER),
        konst!(SCARD_SHARE_SHARED),
        konst!(SCARD_PROTOCOL_T0),
        konst!(SCARD_PROTOCOL_T1),
        konst!(SCARD_PROTOCOL_RAW),
        konst!(SCARD_LEAVE_CARD),
        konst!(SCARD_RESET_CARD),
        konst!(INFINITE),
        konst!(SCARD_STATE_UNAWARE),
        konst!(SCARD_STATE_IGNORE),
        konst!(SCARD_STATE_CHANGED),
        konst!(SCARD_STATE_UNKNOWN),
        konst!(SCARD_STATE_UNAVAILABLE),
        konst!(SCARD_STATE_EMPTY),
        konst!(SCARD_STATE_PRESENT),
        konst!(SCARD_STATE_MUTE),
        proto!(
            EstablishContext,
            SCardEstablishContext,
            (DWORD, *const c_void, *const c_void, *mut SCARDCONTEXT)
        ),
        proto!(ReleaseContext, SCardReleaseContext, (SCARDCONTEXT)),
        proto!(
            ListReaders,
            SCardListReaders,
            (SCARDCONTEXT, *const c_char, *mut c_char, *mut DWORD)
        ),
        proto!(
            GetStatusChange,
            SCardGetStatusChange,
            (SCARDCONTEXT, DWORD, *mut SCARD_READERSTATE, DWORD)
        ),
        proto!(
            Connect,
            SCardConnect,
            (
                SCARDCONTEXT,
                *const c_char,
                DWORD,
                DWORD,
                *mut SCARDHANDLE,
                *mut DWORD
            )
        ),
        proto!(
            Reconnect,
            SCardReconnect,
            (SCARDHANDLE, DWORD, DWORD, DWORD, *mut DWORD)
        ),
        proto!(Disconnect, SCardDisconnect, (SCARDHANDLE, DWORD)),
        proto!(BeginTransaction, SCardBeginTransaction, (SCARDHANDLE)),
        proto!(EndTransaction, SCardEndTransaction, (SCARDHANDLE, DWORD)),
        proto!(
            Status,
            SCardStatus,
            (
                SCARDHANDLE,
                *mut c_char,
                *mut DWORD,
                *mut DWORD,
                *mut DWORD,
                *mut u8,
                *mut DWORD
            )
        ),
        proto!(
            Transmit,
            SCardTransmit,
            (
                SCARDHANDLE,
                *const SCARD_IO_REQUEST,
                *const u8,
                DWORD,
                *mut SCARD_IO_REQUEST,
                *mut u8,
                *mut DWORD
            )
        ),
        // The PCI symbols are read as SCARD_IO_REQUEST.
        (
            "__builtin_types_compatible_p(__typeof__(g_rgSCardT0Pci), const SCARD_IO_REQUEST)"
                .into(),
            1,
        ),
    ];
    // Every result code capbox names, by its C macro name; a LONG printed
    // as unsigned long, like the Rust value.
    v.extend(Error::ALL.iter().map(|(n, e)| (n.to_string(), e.0 as u64)));
    v
}

fn c_program(checks: &[Check]) -> String {
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <PCSC/winscard.h>\n\
         int main(void) {\n",
    );
    for (expr, _) in checks {
        c.push_str(&format!(
            "    printf(\"%s\\t%lu\\n\", \"{}\", (unsigned long)({expr}));\n",
            expr.replace('"', "\\\"")
        ));
    }
    c.push_str("    return 0;\n}\n");
    c
}

/// Compiles and runs the C program; Err(why) when there is no C compiler
/// or no pcsc-lite header.
fn c_values(checks: &[Check]) -> Result<HashMap<String, u64>, String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    if Command::new(&cc).arg("--version").output().is_err() {
        return Err(format!("no C compiler ({cc})"));
    }
    let header = "/usr/include/PCSC/winscard.h";
    if !std::path::Path::new(header).exists() {
        return Err(format!("no {header} (Debian package libpcsclite-dev)"));
    }
    let dir = std::env::temp_dir().join(format!("capbox-pcsclite-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, c_program(checks)).unwrap();
    let out = Command::new(&cc)
        .args([
            "-std=gnu11",
            "-Wall",
            "-Werror",
            "-I/usr/include/PCSC",
            "-o",
        ])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cc} failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(run.status.success(), "layout program failed");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8(run.stdout).unwrap();
    Ok(text
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once('\t').unwrap();
            (k.to_string(), v.parse::<u64>().unwrap())
        })
        .collect())
}

#[test]
fn pcsclite_abi_matches_c_headers() {
    let checks = checks();
    let c = match c_values(&checks) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED pcsclite_abi_matches_c_headers: {why}");
            return;
        }
    };
    let mut bad = Vec::new();
    for (expr, rust) in &checks {
        match c.get(expr) {
            Some(cv) if cv == rust => {}
            Some(cv) => bad.push(format!("{expr}: C {cv:#x} ({cv}), Rust {rust:#x} ({rust})")),
            None => bad.push(format!("{expr}: missing from the C output")),
        }
    }
    assert!(bad.is_empty(), "Rust and C disagree:\n{}", bad.join("\n"));
    assert_eq!(c.len(), checks.len(), "duplicate keys in the check list");
}

/// pcsc-lite's PnP pseudo-reader name is not in its headers (it lives in
/// winscard_clnt.c); it is in the library, next to the other strings.
#[test]
fn pnp_name_is_the_librarys() {
    assert_eq!(PNP_NOTIFICATION.to_bytes(), br"\\?PnP?\Notification");
    let Some(lib) = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|d| std::path::Path::new(d).join("libpcsclite.so.1"))
    .find(|p| p.exists()) else {
        eprintln!("SKIPPED pnp_name_is_the_librarys: no libpcsclite.so.1");
        return;
    };
    let bytes = std::fs::read(&lib).unwrap();
    let needle = PNP_NOTIFICATION.to_bytes_with_nul();
    assert!(
        bytes.windows(needle.len()).any(|w| w == needle),
        "{} does not contain {:?}",
        lib.display(),
        PNP_NOTIFICATION
    );
}
