//! `fluxctl`: the operator CLI (see [`fluxctl::entry`]; `flux` is the same
//! program under the product page's name).

fn main() -> std::process::ExitCode {
    fluxctl::entry::main("fluxctl")
}
