//! Property tests of the config file parser: no input makes it panic.
//! Long run: `PROPTEST_CASES=100000 cargo test --release -p fluxd --test
//! fuzz`.

use proptest::prelude::*;

proptest! {
    #[test]
    fn config_text_never_panics_the_parser(text in ".{0,300}") {
        let _ = toml::from_str::<fluxd::config::FileConfig>(&text);
    }
}
