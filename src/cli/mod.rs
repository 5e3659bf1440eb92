//! Subcommands. `main.rs` only calls `main()`.

pub fn main() -> i32 {
    eprintln!("capbox: not wired yet");
    2
}
