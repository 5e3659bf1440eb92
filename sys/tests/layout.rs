//! The Rust view of the DVB ABI equals the C view: a C program compiled with
//! `cc` against the same `linux/dvb` headers, for the same target, prints
//! sizes, alignments, offsets, constants and every ioctl request number; each
//! must equal the Rust value. This is what replaces bindgen's layout tests
//! (disabled because they hard-code the generating host's sizes).
//! Skips (loudly) only when no C compiler is found.

use capbox_sys::request::{self, Request};
use capbox_sys::*;
use core::mem::{align_of, offset_of, size_of};
use std::collections::HashMap;
use std::process::Command;

/// (C expression, Rust value). The C expression is also the report key.
type Check = (String, u64);

macro_rules! size {
    ($t:ident) => {
        (
            format!("sizeof(struct {})", stringify!($t)),
            size_of::<$t>() as u64,
        )
    };
}
macro_rules! align {
    ($t:ident) => {
        (
            format!("_Alignof(struct {})", stringify!($t)),
            align_of::<$t>() as u64,
        )
    };
}
/// C field name and Rust field name differ for `type` (`type_`) and for
/// anonymous unions (`__bindgen_anon_1`).
macro_rules! off {
    ($t:ident, $f:ident) => {
        off!($t, $f, $f)
    };
    ($t:ident, $cf:ident, $rf:ident) => {
        (
            format!("offsetof(struct {}, {})", stringify!($t), stringify!($cf)),
            offset_of!($t, $rf) as u64,
        )
    };
}
macro_rules! konst {
    ($c:ident) => {
        (stringify!($c).to_string(), $c as u64)
    };
}

/// All Linux ioctl numbers are 32 bits: `_IOC` builds an `unsigned int`.
fn req(r: Request) -> u64 {
    u64::from(r as u32)
}

fn checks() -> Vec<Check> {
    let mut v: Vec<Check> =
        vec![
        // frontend.h
        size!(dvb_frontend_info),
        align!(dvb_frontend_info),
        off!(dvb_frontend_info, name),
        off!(dvb_frontend_info, type, type_),
        off!(dvb_frontend_info, frequency_min),
        off!(dvb_frontend_info, symbol_rate_min),
        off!(dvb_frontend_info, notifier_delay),
        off!(dvb_frontend_info, caps),
        size!(dvb_diseqc_master_cmd),
        off!(dvb_diseqc_master_cmd, msg_len),
        size!(dvb_diseqc_slave_reply),
        off!(dvb_diseqc_slave_reply, msg_len),
        off!(dvb_diseqc_slave_reply, timeout),
        size!(dtv_stats),
        align!(dtv_stats),
        off!(dtv_stats, uvalue, __bindgen_anon_1),
        size!(dtv_fe_stats),
        align!(dtv_fe_stats),
        off!(dtv_fe_stats, stat),
        size!(dtv_property),
        align!(dtv_property),
        off!(dtv_property, reserved),
        off!(dtv_property, u),
        off!(dtv_property, result),
        (
            "sizeof(((struct dtv_property *)0)->u)".to_string(),
            size_of::<dtv_property__bindgen_ty_1>() as u64,
        ),
        (
            "sizeof(((struct dtv_property *)0)->u.buffer)".to_string(),
            size_of::<dtv_property__bindgen_ty_1__bindgen_ty_1>() as u64,
        ),
        (
            "offsetof(struct dtv_property, u.buffer.reserved2) - offsetof(struct dtv_property, u)"
                .to_string(),
            offset_of!(dtv_property__bindgen_ty_1__bindgen_ty_1, reserved2) as u64,
        ),
        size!(dtv_properties),
        align!(dtv_properties),
        off!(dtv_properties, props),
        size!(dvb_frontend_parameters),
        off!(dvb_frontend_parameters, u),
        size!(dvb_frontend_event),
        off!(dvb_frontend_event, parameters),
        ("sizeof(fe_status_t)".to_string(), size_of::<fe_status_t>() as u64),
        // dmx.h
        size!(dmx_filter),
        off!(dmx_filter, mode),
        size!(dmx_sct_filter_params),
        off!(dmx_sct_filter_params, filter),
        off!(dmx_sct_filter_params, timeout),
        off!(dmx_sct_filter_params, flags),
        size!(dmx_pes_filter_params),
        off!(dmx_pes_filter_params, input),
        off!(dmx_pes_filter_params, output),
        off!(dmx_pes_filter_params, pes_type),
        off!(dmx_pes_filter_params, flags),
        size!(dmx_stc),
        align!(dmx_stc),
        off!(dmx_stc, stc),
        // ca.h
        size!(ca_slot_info),
        size!(ca_descr_info),
        size!(ca_caps),
        size!(ca_msg),
        off!(ca_msg, msg),
        size!(ca_descr),
        off!(ca_descr, parity),
        off!(ca_descr, cw),
        // A few constants capbox relies on (bindgen copies them; this checks
        // the copy and the enum style).
        konst!(DTV_IOCTL_MAX_MSGS),
        konst!(MAX_DTV_STATS),
        konst!(DTV_FREQUENCY),
        konst!(DTV_DELIVERY_SYSTEM),
        konst!(DTV_ENUM_DELSYS),
        konst!(DTV_STAT_SIGNAL_STRENGTH),
        konst!(DTV_STAT_CNR),
        konst!(DTV_STAT_ERROR_BLOCK_COUNT),
        konst!(FE_HAS_LOCK),
        konst!(FE_TIMEDOUT),
        konst!(SYS_DVBT2),
        konst!(SYS_DVBS2),
        konst!(SEC_VOLTAGE_18),
        konst!(SEC_TONE_OFF),
        konst!(FE_SCALE_DECIBEL),
        konst!(FE_TUNE_MODE_ONESHOT),
        konst!(DMX_OUT_TS_TAP),
        konst!(DMX_PES_OTHER),
        konst!(DMX_CHECK_CRC),
        konst!(DMX_IMMEDIATE_START),
        konst!(DMX_FILTER_SIZE),
    ];
    // Every request number, by its C macro name.
    v.extend(request::ALL.iter().map(|(n, r)| (n.to_string(), req(*r))));
    v
}

fn c_program(checks: &[Check]) -> String {
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <sys/ioctl.h>\n\
         #include <linux/dvb/frontend.h>\n#include <linux/dvb/dmx.h>\n\
         #include <linux/dvb/ca.h>\n#include <linux/usbdevice_fs.h>\nint main(void) {\n",
    );
    for (expr, _) in checks {
        c.push_str(&format!(
            "    printf(\"%s\\t%lu\\n\", \"{expr}\", (unsigned long)({expr}));\n"
        ));
    }
    c.push_str("    return 0;\n}\n");
    c
}

/// Compiles and runs the C program; None when no C compiler is present.
fn c_values(checks: &[Check]) -> Option<HashMap<String, u64>> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    if Command::new(&cc).arg("--version").output().is_err() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("capbox-sys-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, c_program(checks)).unwrap();
    let out = Command::new(&cc)
        .args(["-std=gnu11", "-Wall", "-Werror", "-o"])
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
    let map = text
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once('\t').unwrap();
            (k.to_string(), v.parse::<u64>().unwrap())
        })
        .collect();
    Some(map)
}

#[test]
fn layout_constants_and_requests_match_c() {
    let checks = checks();
    let Some(c) = c_values(&checks) else {
        eprintln!("SKIPPED layout_constants_and_requests_match_c: no C compiler (cc / $CC)");
        return;
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

/// The brief's numbers, independent of C: a packed `dtv_property` is 76 bytes
/// on 64-bit targets (72 on 32-bit, where `void *reserved2` is 4 bytes).
#[test]
fn dtv_property_is_packed() {
    assert_eq!(align_of::<dtv_property>(), 1);
    assert_eq!(size_of::<dtv_stats>(), 9);
    assert_eq!(size_of::<dtv_fe_stats>(), 37);
    #[cfg(target_pointer_width = "64")]
    assert_eq!(size_of::<dtv_property>(), 76);
    #[cfg(target_pointer_width = "32")]
    assert_eq!(size_of::<dtv_property>(), 72);
}

/// `request::ALL` must list every request constant, or the C cross-check
/// above silently misses one: count the `pub const X: Request` in lib.rs.
#[test]
fn request_all_lists_every_request() {
    let src = include_str!("../src/lib.rs");
    let declared: Vec<&str> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split_once(": Request"))
        .map(|(name, _)| name)
        .collect();
    let listed: Vec<&str> = request::ALL.iter().map(|(n, _)| *n).collect();
    for name in &declared {
        assert!(listed.contains(name), "{name} is missing from request::ALL");
    }
    assert_eq!(
        declared.len(),
        listed.len(),
        "request::ALL has extra entries"
    );
    assert!(declared.len() >= 33);
}
