//! `Diff`: compare names and values a client holds (a `.env` file) with the
//! project's. The values come from the client; the answer says per name
//! same / changed / only in the request / only in the project, never a
//! value. An admin read: it changes nothing, and it is on the admin's side
//! of "roles never imply reads" — it confirms a value the admin already
//! holds, and reveals none.

use super::Ctx;
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::message::{NamedValue, Response};

pub const RULE: Rule = Rule::project(Need::Admin, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>, entries: Vec<NamedValue>) -> Result<Response> {
    Ok(Response::Diff(ctx.project()?.diff(&entries)?))
}
