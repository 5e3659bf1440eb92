//! The services of a mux at a glance: the PAT's programs with their names
//! from the SDT actual, collected from a run of packets. The one PAT+SDT
//! scan behind `capbox tune` (packets from a tuned adapter) and the
//! daemon's start-up check of a source file (`daemon::scan_services`).
//!
//! Rules: PAT sections with current_next_indicator = 0 are ignored; a PAT
//! of several sections is merged (`PatTable`); names come from SDT actual
//! only (an SDT other names another mux's services).
//!
//! Bounded: at most `MAX_PAT_ENTRIES` programs and as many names, whatever
//! the mux sends. Never panics on any input: packets and sections that fail
//! their checks are skipped.

use std::collections::BTreeMap;

use super::packet::Packet;
use super::pat::{PatRepr, PatTable, MAX_PAT_ENTRIES};
use super::pid;
use super::sdt::SdtRepr;
use super::section::{Assembler, Section};

/// PAT programs with their SDT names, from a run of packets.
#[derive(Default)]
pub struct Services {
    pat: Option<PatTable>,
    names: BTreeMap<u16, String>,
    pat_asm: Assembler,
    sdt_asm: Assembler,
}

impl Services {
    /// Takes whole 188-byte packets; a trailing partial packet is ignored.
    pub fn push(&mut self, packets: &[u8]) {
        for raw in packets.chunks_exact(188) {
            let Ok(p) = Packet::new_checked(raw) else {
                continue;
            };
            let (pat, names) = (&mut self.pat, &mut self.names);
            match p.pid() {
                pid::PAT => self.pat_asm.push(&p, |s| {
                    let Ok(sec) = Section::new_checked(s) else {
                        return;
                    };
                    if !sec.current_next() {
                        return;
                    }
                    if let Ok(r) = PatRepr::parse(&sec) {
                        match pat.as_mut() {
                            Some(t) => {
                                t.push(r);
                            }
                            None => *pat = Some(PatTable::new(r, MAX_PAT_ENTRIES)),
                        }
                    }
                }),
                pid::SDT => self.sdt_asm.push(&p, |s| {
                    let Ok(sec) = Section::new_checked(s) else {
                        return;
                    };
                    let Ok(sdt) = SdtRepr::parse(&sec) else {
                        return;
                    };
                    if !sdt.is_actual() {
                        return;
                    }
                    for svc in &sdt.services {
                        // As bounded as the PAT the names go with.
                        if names.len() >= MAX_PAT_ENTRIES && !names.contains_key(&svc.service_id) {
                            continue;
                        }
                        if let Some(n) = svc.service_name() {
                            names.insert(svc.service_id, n);
                        }
                    }
                }),
                _ => {}
            }
        }
    }

    /// A PAT has been seen.
    pub fn has_pat(&self) -> bool {
        self.pat.is_some()
    }

    /// At least one SDT name has been seen.
    pub fn has_names(&self) -> bool {
        !self.names.is_empty()
    }

    /// (program_number, PMT PID, name) for each PAT program (not the NIT
    /// entry, program 0), in the PAT's order; empty before a PAT.
    pub fn list(&self) -> Vec<(u16, u16, Option<String>)> {
        self.pat
            .iter()
            .flat_map(|p| p.programs())
            .map(|e| {
                (
                    e.program_number,
                    e.pid,
                    self.names.get(&e.program_number).cloned(),
                )
            })
            .collect()
    }

    /// A PAT is in and every one of its programs has a name.
    pub fn complete(&self) -> bool {
        let l = self.list();
        !l.is_empty() && l.iter().all(|(_, _, n)| n.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::descriptor::ServiceDescriptor;
    use crate::ts::pat::PatEntry;
    use crate::ts::sdt::SdtService;
    use crate::ts::section::packetize;
    use crate::ts::table_id;

    fn pat(version: u8, progs: &[(u16, u16)]) -> Vec<u8> {
        PatRepr {
            transport_stream_id: 1,
            version,
            section_number: 0,
            last_section_number: 0,
            entries: progs
                .iter()
                .map(|&(program_number, pid)| PatEntry {
                    program_number,
                    pid,
                })
                .collect(),
        }
        .emit()
    }

    fn sdt(tid: u8, names: &[(u16, &str)]) -> Vec<u8> {
        SdtRepr {
            table_id: tid,
            transport_stream_id: 1,
            version: 0,
            section_number: 0,
            last_section_number: 0,
            original_network_id: 2,
            services: names
                .iter()
                .map(|&(service_id, name)| {
                    let mut d = Vec::new();
                    ServiceDescriptor {
                        service_type: 1,
                        service_provider_name: b"P",
                        service_name: name.as_bytes(),
                    }
                    .emit(&mut d);
                    SdtService {
                        service_id,
                        eit_schedule_flag: false,
                        eit_present_following_flag: false,
                        running_status: 4,
                        free_ca_mode: false,
                        descriptors: d,
                    }
                })
                .collect(),
        }
        .emit()
        .unwrap()
    }

    #[test]
    fn services_pat_and_sdt_actual_names() {
        let (mut cc_pat, mut cc_sdt) = (0u8, 0u8);
        let mut ts = Vec::new();
        packetize(
            &pat(0, &[(0, 0x10), (1, 0x100), (2, 0x200)]),
            0,
            &mut cc_pat,
            &mut ts,
        );
        packetize(
            &sdt(table_id::SDT_OTHER, &[(2, "Other")]),
            0x11,
            &mut cc_sdt,
            &mut ts,
        );
        let mut s = Services::default();
        s.push(&ts);
        assert!(s.has_pat());
        assert!(!s.has_names(), "SDT other names no service of this mux");
        assert_eq!(s.list(), [(1, 0x100, None), (2, 0x200, None)]);
        assert!(!s.complete());
        ts.clear();
        packetize(
            &sdt(table_id::SDT_ACTUAL, &[(1, "One")]),
            0x11,
            &mut cc_sdt,
            &mut ts,
        );
        s.push(&ts);
        assert!(s.has_names());
        assert!(!s.complete());
        ts.clear();
        packetize(
            &sdt(table_id::SDT_ACTUAL, &[(2, "Two")]),
            0x11,
            &mut cc_sdt,
            &mut ts,
        );
        // A new PAT version replaces the programs.
        packetize(&pat(1, &[(2, 0x210)]), 0, &mut cc_pat, &mut ts);
        s.push(&ts);
        assert_eq!(s.list(), [(2, 0x210, Some("Two".to_string()))]);
        assert!(s.complete());
    }

    #[test]
    fn services_empty_and_garbage() {
        let mut s = Services::default();
        s.push(&[0xFFu8; 188 * 3 + 7]);
        assert!(!s.has_pat());
        assert!(s.list().is_empty());
        assert!(!s.complete());
    }
}
