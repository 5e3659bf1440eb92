//! PASS/FAIL lines for the in-guest test programs of hw-tests/ (included
//! with `#[path]`): each check prints one line the host's cargo test shows.

#[derive(Default)]
pub struct Suite {
    pub failures: u32,
    pub passes: u32,
}

impl Suite {
    pub fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            self.passes += 1;
            println!("PASS {name}: {detail}");
        } else {
            self.failures += 1;
            println!("FAIL {name}: {detail}");
        }
    }
}
