//! Property tests of the vault parser: no input makes it panic, and
//! sealing then opening returns what was sealed. Long run:
//! `PROPTEST_CASES=100000 cargo test --release -p flux-vault --test fuzz`.

use flux_protocol::SecretValue;
use flux_vault::keys::ProjectKey;
use flux_vault::vault::{Entry, Secrets, open, open_document, seal};
use proptest::prelude::*;
use std::sync::OnceLock;

fn key() -> &'static ProjectKey {
    static KEY: OnceLock<ProjectKey> = OnceLock::new();
    KEY.get_or_init(ProjectKey::generate)
}

fn secrets() -> impl Strategy<Value = Secrets> {
    proptest::collection::btree_map(
        "[A-Za-z_][A-Za-z0-9_]{0,30}",
        (".{0,64}", 0u64..4_000_000_000_000),
        0..8,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(n, (v, at))| {
                (
                    n,
                    Entry {
                        value: SecretValue::new(v),
                        set_at_ms: at,
                    },
                )
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn documents_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = open_document(&bytes, "app", Some(key()));
        let _ = open_document(&bytes, "app", None);
    }

    #[test]
    fn json_shaped_documents_never_panic_the_parser(doc in r#"\{"format":"flux-secrets-vault","version":[0-9],"project":"app","secrets":\{("[A-Z]{1,3}":\{"value":"[a-z]{0,5}","set_at":"[0-9TZ:.-]{0,25}"\},?){0,3}\}(,"seal":"[a-z0-9:]{0,80}")?\}"#) {
        let _ = open_document(doc.as_bytes(), "app", Some(key()));
    }

    #[test]
    fn ciphertexts_never_panic_the_opener(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = open(&bytes, "app", key());
        let mut framed = b"age-encryption.org/v1\n".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = open(&framed, "app", key());
    }

    #[test]
    fn sealed_vaults_open_to_what_was_sealed(s in secrets()) {
        let file = seal("app", &s, 1, key()).unwrap();
        prop_assert_eq!(open(&file, "app", key()).unwrap().secrets, s);
    }
}
