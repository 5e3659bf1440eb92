//! Subcommands. `main.rs` only calls `main()`.

pub mod probe;

pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("probe") {
        return probe::run(&args[1..]);
    }
    eprintln!("capbox: not wired yet");
    2
}
