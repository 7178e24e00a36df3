//! Signing in: the one-time code in the printed link, and the session
//! secret the page trades it for.
//!
//! The link `fluxctl dashboard` prints (and hands to the browser, on the
//! launcher's command line, which every local user can read in
//! `/proc/PID/cmdline`) carries only a **code**: good once, for a short
//! time (`--link-ttl`, 60 s by default). The page, loaded from that link,
//! sends the code in a request header to `/api/session` and receives a
//! separate **session secret**, which it keeps in its own tab
//! (`sessionStorage`, bound to this origin, port included) and sends as
//! `Authorization: Bearer …` on every API request. The session secret is
//! never in a URL, on a command line or in a cookie: no other port of
//! 127.0.0.1 or localhost is ever sent it.
//!
//! A code presented again after it was used ends the session it opened
//! (as OAuth does with a reused authorization code): whoever raced the
//! browser to the code loses what it won when the browser arrives, and
//! both sides are told. One code is made per run, so one session at most.

use crate::failure::{Failure, Result};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The request header the page sends the code in.
pub const CODE_HEADER: &str = "flux-dashboard-code";

/// 32 random bytes, hex.
pub fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Failure::general(format!("cannot make a random secret: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Why a code is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not this run's code.
    Wrong,
    /// Used already. The session it opened has been ended, now
    /// (`ended`) or by an earlier second use.
    Used { ended: bool },
    /// Not used within its time.
    Expired,
}

/// The code and the session of one run.
#[derive(Debug)]
pub struct SignIn {
    ttl: Duration,
    issued: Instant,
    code: String,
    /// Made with the code, handed out when it is redeemed.
    session: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    redeemed: bool,
    /// The session secret, while the session lasts.
    session: Option<String>,
}

impl SignIn {
    /// A fresh code, good for `ttl` from now.
    pub fn new(ttl: Duration) -> Result<Self> {
        Ok(Self {
            ttl,
            issued: Instant::now(),
            code: random_hex()?,
            session: random_hex()?,
            state: Mutex::new(State {
                redeemed: false,
                session: None,
            }),
        })
    }

    /// The code, for the printed link.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// How long the code is good for.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The checks both [`SignIn::look`] and [`SignIn::redeem`] make: a
    /// used code presented again ends the session it opened.
    fn usable(&self, given: &str, state: &mut State) -> std::result::Result<(), Refused> {
        if !same(given, &self.code) {
            return Err(Refused::Wrong);
        }
        if state.redeemed {
            let ended = state.session.take().is_some();
            return Err(Refused::Used { ended });
        }
        if self.issued.elapsed() >= self.ttl {
            return Err(Refused::Expired);
        }
        Ok(())
    }

    /// The page is loaded from the link: the code is looked at, not used
    /// (a link preview that fetches the page spends nothing).
    pub fn look(&self, given: &str) -> std::result::Result<(), Refused> {
        self.usable(given, &mut self.state())
    }

    /// The page trades the code for the session secret.
    pub fn redeem(&self, given: &str) -> std::result::Result<String, Refused> {
        let mut state = self.state();
        self.usable(given, &mut state)?;
        state.redeemed = true;
        state.session = Some(self.session.clone());
        Ok(self.session.clone())
    }

    /// True when `given` is the live session's secret.
    pub fn session_matches(&self, given: &str) -> bool {
        self.state()
            .session
            .as_deref()
            .is_some_and(|s| same(given, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_and_new_each_time() {
        let (a, b) = (random_hex().unwrap(), random_hex().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn a_code_opens_one_session_once_and_a_second_use_ends_it() {
        let s = SignIn::new(Duration::from_secs(60)).unwrap();
        let code = s.code().to_owned();
        assert_eq!(s.look("nope"), Err(Refused::Wrong));
        assert_eq!(s.redeem("nope"), Err(Refused::Wrong));
        assert!(!s.session_matches(""));
        // Looking does not spend the code.
        assert_eq!(s.look(&code), Ok(()));
        let session = s.redeem(&code).unwrap();
        assert_ne!(session, code, "the session is not the code");
        assert!(s.session_matches(&session));
        assert!(!s.session_matches(&code));
        // A wrong code changes nothing.
        assert_eq!(s.look("nope"), Err(Refused::Wrong));
        assert!(s.session_matches(&session));
        // Used again: refused, and the session is over.
        assert_eq!(s.redeem(&code), Err(Refused::Used { ended: true }));
        assert!(!s.session_matches(&session));
        assert_eq!(s.look(&code), Err(Refused::Used { ended: false }));
        assert_eq!(s.redeem(&code), Err(Refused::Used { ended: false }));
    }

    #[test]
    fn looking_at_a_used_code_ends_its_session_too() {
        let s = SignIn::new(Duration::from_secs(60)).unwrap();
        let code = s.code().to_owned();
        let session = s.redeem(&code).unwrap();
        assert_eq!(s.look(&code), Err(Refused::Used { ended: true }));
        assert!(!s.session_matches(&session));
    }

    #[test]
    fn a_code_expires_unused() {
        let s = SignIn::new(Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let code = s.code().to_owned();
        assert_eq!(s.look(&code), Err(Refused::Expired));
        assert_eq!(s.redeem(&code), Err(Refused::Expired));
        assert!(!s.session_matches(""));
    }
}
