//! Flux Secrets benchmarks (not yet written).

fn main() {
    eprintln!("flux-bench: no benchmarks yet");
}
