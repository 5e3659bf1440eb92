//! The hostile-input suite: every attack capbox has been shown to resist —
//! from clients (slow pipelining, slot exhaustion, header floods), from the
//! air (crafted SDT names, PAT section floods) and from the operator's own
//! hands (reload churn) — lives here, one module per attack family, and runs
//! with the README's test command so a new feature cannot bring one back.
//!
//! Each module drives the real `capbox serve` binary (tests/e2e_common) and
//! states what it measures; none asserts wall-clock speed.

#[path = "e2e_common/mod.rs"]
mod e2e_common;

// One `mod` line per attack family (tests/hostile/<family>.rs).
#[path = "hostile/crafted.rs"]
mod crafted;

#[path = "hostile/air_names.rs"]
mod air_names;
#[path = "hostile/pat_flood.rs"]
mod pat_flood;
#[path = "hostile/reload_churn.rs"]
mod reload_churn;

#[path = "hostile/net.rs"]
mod net;

#[path = "hostile/accept_errors.rs"]
mod accept_errors;
#[path = "hostile/header_flood.rs"]
mod header_flood;
#[path = "hostile/http_pipelining.rs"]
mod http_pipelining;
#[path = "hostile/slots.rs"]
mod slots;
