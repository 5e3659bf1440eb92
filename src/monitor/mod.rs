//! Per-packet analysis, in one place: what `capbox probe`, the input muxes
//! (remux) and each channel's sources measure on the packets they see.
//!
//! Owns: the continuity-count rule (`cc`), the per-PID analyser and the
//! whole-stream probe (`probe`), the Prometheus text encoder (`metrics`),
//! the elementary-stream analysers (`es`: PES flow, frozen video, silent
//! audio, the channel verdict), the last hour for the status page
//! (`history`: C/N and bitrate rings), and the active check of an http://
//! URL (`check`: `capbox check` and the `[[probe]]` poller — the one part
//! here that does I/O, on its own thread).
//! Stream classification (stream_type + descriptors → kind and codec) is
//! `ts::pmt::PmtStream::classify`, next to the PMT it reads.
//!
//! Promises: pure logic on bytes, no I/O, no clock of its own (except
//! `check`, which owns its socket and thread); untrusted
//! input never panics, every packet refused is counted.

pub mod cc;
pub mod channel;
pub mod check;
pub mod clock;
pub mod es;
pub mod history;
pub mod metrics;
pub mod pid;
pub mod probe;
pub mod tr101290;
