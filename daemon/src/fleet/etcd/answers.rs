//! What etcd's error answers mean: the body and etcd's own reason in it,
//! the cause and remedy of the two answers of the JSON gateway over TLS
//! that hide a certificate problem ([`known_cause`]), and which answers
//! are a member restarting (try another) or an expired token (log in
//! again).

use super::json::num;
use serde_json::Value;
use std::io::Read;

/// An error answer's body. etcd sends it chunked with gRPC trailers, which
/// the HTTP client's chunked reader stops at with an error: what was read
/// before that is the body.
pub(super) fn error_body(resp: ureq::Response) -> String {
    let mut buf = Vec::new();
    let _ = resp.into_reader().take(64 * 1024).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// etcd's reason in an error body (`message` or `error`), else the body.
pub(super) fn reason_in(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            [&v["message"], &v["error"]]
                .into_iter()
                .filter_map(Value::as_str)
                .find(|s| !s.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.trim().to_owned())
}

/// What an answer means when etcd's own reason does not say: etcd's JSON
/// gateway forwards each request over gRPC to etcd itself, presenting
/// etcd's *server* certificate as its client certificate. With
/// `--client-cert-auth`, a server certificate without the `clientAuth`
/// extended key usage is refused, and every call then gets HTTP 503 with
/// gRPC code 14 (unavailable) and the gateway's own connection error:
/// from etcd 3.4, "connection closed" or "… failed to write client
/// preface: … connection reset by peer" (etcd refused the certificate
/// after the TLS 1.3 handshake, before gRPC's first bytes); from later
/// releases, "… error reading server preface: remote error: tls: bad
/// certificate".
const GATEWAY_CANNOT_DIAL_ETCD: &str = "etcd's JSON gateway could not reach etcd itself: \
     with --client-cert-auth, etcd's server certificate must carry the clientAuth extended \
     key usage as well as serverAuth (the gateway presents it to etcd as its client certificate)";

/// With `--client-cert-auth` and authentication enabled (`etcdctl auth
/// enable`), etcd's JSON gateway answers HTTP 400 to any request whose
/// client certificate carries a CommonName — whatever user, password or
/// token comes with it — since it cannot pass the name on as the etcd user
/// (only etcd's gRPC port can).
const GATEWAY_REFUSES_COMMON_NAME: &str = "with authentication enabled, etcd's JSON gateway \
     refuses every request made with a client certificate that carries a CommonName, with or \
     without a password: issue fluxd's client certificate without a CommonName and log in with \
     [store] username and password_file";

/// The likely cause and remedy of an error answer from `endpoint` that
/// etcd's reason leaves out, recognized from the answer (`code`, `body`)
/// etcd gives in that case and no other.
pub(super) fn known_cause(endpoint: &str, code: u16, body: &str) -> Option<&'static str> {
    if !endpoint.starts_with("https://") {
        return None;
    }
    match code {
        503 => {
            let v: Value = serde_json::from_str(body).ok()?;
            let reason = reason_in(body);
            // The gateway's connection to etcd failed as it opened, not a
            // member without a leader or shutting down.
            let refused = reason == "connection closed"
                || reason.contains("client preface")
                || reason.contains("server preface")
                || reason.contains("authentication handshake failed")
                || reason.contains("tls: bad certificate");
            (num(&v["code"]) == 14 && refused).then_some(GATEWAY_CANNOT_DIAL_ETCD)
        }
        400 => body
            .trim()
            .starts_with("CommonName of client sending a request against gateway will be ignored")
            .then_some(GATEWAY_REFUSES_COMMON_NAME),
        _ => None,
    }
}

/// A member that is restarting, or overloaded: try another.
pub(super) fn is_transient(code: u16, reason: &str) -> bool {
    matches!(code, 408 | 429 | 502 | 503 | 504)
        || reason.contains("the client connection is closing")
        || reason.contains("leader changed")
        || reason.contains("no leader")
}

pub(super) fn is_expired_token(reason: &str) -> bool {
    reason.contains("(HTTP 401)")
        || reason.contains("invalid auth token")
        || reason.contains("token") && reason.contains("expired")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_passed_through_and_restarts_retried() {
        assert_eq!(
            reason_in(r#"{"error":"etcdserver: request is too large","code":3}"#),
            "etcdserver: request is too large"
        );
        assert_eq!(reason_in("plain text\n"), "plain text");
        assert!(is_transient(503, ""));
        assert!(is_transient(500, "grpc: the client connection is closing"));
        assert!(!is_transient(
            400,
            "etcdserver: too many operations in txn request"
        ));
        assert!(is_expired_token("etcdserver: invalid auth token"));
    }

    #[test]
    fn a_gateway_that_cannot_reach_etcd_names_the_server_certificate() {
        let tls = "https://10.0.0.1:2379";
        // etcd 3.4.23's answers, its server certificate serverAuth only
        // (either, at random).
        let closed = r#"{"error":"connection closed","message":"connection closed","code":14}"#;
        let reset = r#"{"error":"connection error: desc = \"transport: failed to write client preface: write tcp 127.0.0.1:47574-\u003e127.0.0.1:37049: write: connection reset by peer\"","message":"connection error: desc = \"transport: failed to write client preface: write tcp 127.0.0.1:47574-\u003e127.0.0.1:37049: write: connection reset by peer\"","code":14}"#;
        // Later releases' wording of the same refusal.
        let bad_certificate = r#"{"error":"connection error: desc = \"error reading server preface: remote error: tls: bad certificate\"","message":"connection error: desc = \"error reading server preface: remote error: tls: bad certificate\"","code":14}"#;
        for body in [closed, reset, bad_certificate] {
            let cause = known_cause(tls, 503, body).expect(body);
            assert!(cause.contains("clientAuth extended key usage"), "{cause}");
            assert!(cause.contains("--client-cert-auth"), "{cause}");
            assert_eq!(known_cause("http://10.0.0.1:2379", 503, body), None);
            assert_eq!(known_cause(tls, 500, body), None);
        }
        // A member restarting or without a leader is no certificate problem.
        for body in [
            r#"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#,
            r#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#,
            r#"{"error":"grpc: the client connection is closing","code":1}"#,
            r#"{"error":"connection closed","message":"connection closed","code":1}"#,
            "",
            "connection closed",
        ] {
            assert_eq!(known_cause(tls, 503, body), None, "{body}");
        }
    }

    #[test]
    fn a_common_name_refused_on_the_gateway_says_to_issue_one_without() {
        let tls = "https://10.0.0.1:2379";
        // etcd's answer, a plain-text body.
        let body = "CommonName of client sending a request against gateway will be ignored and not used as expected\n";
        let cause = known_cause(tls, 400, body).unwrap();
        assert!(
            cause.contains("without a CommonName") && cause.contains("[store] username"),
            "{cause}"
        );
        assert_eq!(known_cause("http://10.0.0.1:2379", 400, body), None);
        assert_eq!(
            known_cause(
                tls,
                400,
                r#"{"error":"etcdserver: user name is empty","code":3}"#
            ),
            None
        );
    }
}
