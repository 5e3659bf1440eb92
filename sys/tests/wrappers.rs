//! The wrappers reach the kernel and map its errno: every DVB ioctl on a
//! non-DVB fd (/dev/null) fails with ENOTTY, and nothing is written through
//! the pointer. Real DVB devices are exercised by hw-tests/ (vidtv VM).

use capbox_sys::*;
use nix::errno::Errno;
use std::os::fd::AsRawFd;

#[test]
fn dvb_ioctls_on_dev_null_fail_with_enotty() {
    let f = std::fs::File::open("/dev/null").unwrap();
    let fd = f.as_raw_fd();
    let mut info = dvb_frontend_info::default();
    let mut status: fe_status_t = 0xdead;
    let mut props = [dtv_property::default(); 2];
    let mut cmd = dtv_properties {
        num: props.len() as u32,
        props: props.as_mut_ptr(),
    };
    let mut pids = [0u16; 5];
    let mut stc = dmx_stc::default();
    let sct = dmx_sct_filter_params::default();
    let descr = ca_descr::default();
    let pid: u16 = 0x100;
    // SAFETY: every pointer is to a live local of the right type; /dev/null
    // rejects the requests before touching them.
    let results = unsafe {
        [
            fe_get_info(fd, &mut info),
            fe_read_status(fd, &mut status),
            fe_get_property(fd, &mut cmd),
            fe_set_property(fd, &cmd),
            fe_set_tone(fd, SEC_TONE_OFF as _),
            fe_set_voltage(fd, SEC_VOLTAGE_13 as _),
            fe_diseqc_reset_overload(fd),
            dmx_start(fd),
            dmx_set_filter(fd, &sct),
            dmx_set_buffer_size(fd, 1 << 20),
            dmx_get_pes_pids(fd, &mut pids),
            dmx_get_stc(fd, &mut stc),
            dmx_add_pid(fd, &pid),
            ca_reset(fd),
            ca_set_descr(fd, &descr),
            usbdevfs_reset(fd),
        ]
    };
    for (i, r) in results.iter().enumerate() {
        assert_eq!(*r, Err(Errno::ENOTTY), "call #{i}");
    }
    assert_eq!(status, 0xdead);
    assert_eq!(info.frequency_max, 0);
}

#[test]
fn debug_of_packed_types_reads_fields() {
    let mut p = dtv_property {
        cmd: DTV_FREQUENCY,
        ..Default::default()
    };
    p.u.data = 474_000_000;
    let s = format!("{p:?}");
    assert!(s.contains("cmd: 3") && s.contains("474000000"), "{s}");
    let mut st = dtv_fe_stats {
        len: 1,
        ..Default::default()
    };
    st.stat[0].scale = FE_SCALE_DECIBEL as u8;
    st.stat[0].__bindgen_anon_1.svalue = -34_000;
    let s = format!("{st:?}");
    assert!(s.contains("svalue: -34000") && s.contains("len: 1"), "{s}");
}
