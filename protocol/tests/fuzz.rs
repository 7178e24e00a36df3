//! Property tests: the decoders never panic, whatever the bytes, and every
//! message survives a round trip. CI runs proptest's default 256 cases per
//! property; a long run is `PROPTEST_CASES=1000000 cargo test --release -p
//! flux-protocol --test fuzz`.

use flux_protocol::SecretValue;
use flux_protocol::codec::{decode, encode, read_frame};
use flux_protocol::message::*;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,20}"
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u32>(), ".{0,20}")
            .prop_map(|(version, client)| Request::Hello(Hello { version, client })),
        name().prop_map(|name| Request::Get(Get { name })),
        Just(Request::List),
        (name(), ".{0,200}").prop_map(|(name, v)| Request::Set(Set {
            name,
            value: SecretValue::new(v)
        })),
        name().prop_map(|name| Request::Delete(Delete { name })),
        Just(Request::GetAll),
        Just(Request::Subscribe),
        (proptest::option::of(name()), any::<u64>(), any::<u32>()).prop_map(
            |(project, since_ms, limit)| {
                Request::Audit(AuditQuery {
                    project,
                    since_ms,
                    limit,
                })
            }
        ),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<Request>(&bytes);
        let _ = decode::<Response>(&bytes);
        let _ = read_frame(&mut &bytes[..], 1024);
    }

    #[test]
    fn mutated_messages_never_panic_the_decoders(req in request(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = encode(&req).unwrap();
        for (at, byte) in flips {
            let i = at % bytes.len();
            bytes[i] ^= byte;
        }
        let _ = decode::<Request>(&bytes);
    }

    #[test]
    fn requests_round_trip(req in request()) {
        let bytes = encode(&req).unwrap();
        prop_assert_eq!(decode::<Request>(&bytes).unwrap(), req);
    }
}
