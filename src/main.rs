fn main() {
    std::process::exit(capbox::cli::main());
}
