//! `Diff`: compare names and values a client holds (a `.env` file) with the
//! project's. The values come from the client; the answer says per name
//! same / changed / only in the request / only in the project, never a
//! value. It is a **reader's** request: an answer that says whether a guess
//! equals a value is a value oracle (a 4-digit PIN falls to 10,000 guesses
//! in well under a second), so only a peer that may read the values anyway
//! may compare them. Admins who are not readers do not get it.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{DiffState, NamedValue, Response};

pub const RULE: Rule = Rule::project(Need::Reader, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>, entries: Vec<NamedValue>) -> Result<Response> {
    let mut diff = ctx.project()?.diff(&entries)?;
    if !ctx.hidden.is_empty() {
        // A secret this reader may not read compares as one not set.
        diff.retain(|d| !(ctx.hidden.contains(&d.name) && d.state == DiffState::OnlyInProject));
        for d in diff.iter_mut().filter(|d| ctx.hidden.contains(&d.name)) {
            d.state = DiffState::OnlyInRequest;
        }
    }
    Ok(Response::Diff(diff))
}
