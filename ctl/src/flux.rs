//! `flux`: the operator CLI under the product page's name
//! (`flux secrets set`, `flux dev`); the same program as `fluxctl` (see
//! [`fluxctl::entry`]).

fn main() -> std::process::ExitCode {
    fluxctl::entry::main("flux")
}
