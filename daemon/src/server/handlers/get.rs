//! `Get`: one secret's value. The hot path: the value goes from the
//! snapshot straight into the connection's write buffer, as one frame,
//! with no copy between. A secret whose own readers leave this peer out is
//! answered as not set (and audited as denied).

use super::{Ctx, Reply};
use crate::access::{Effect, Need, Rule};
use crate::error::{Error, Result};
use flux_protocol::codec::put_value_frame;
use flux_protocol::message::Get;

pub const RULE: Rule = Rule::project(Need::Reader, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>, req: Get) -> Result<Reply> {
    let project = ctx.project()?;
    if ctx.hidden.contains(&req.name) {
        // Not this reader's: answered exactly as a name that is not set,
        // after the same checks (so the same errors come first).
        return match project.read_value(&req.name, |_| ()) {
            Ok(()) | Err(Error::NotFound { .. }) => Err(Error::Hidden {
                project: project.name().to_owned(),
                name: req.name,
            }),
            Err(e) => Err(e),
        };
    }
    let out = &mut *ctx.out;
    project.read_value(&req.name, |v| put_value_frame(out, v))?;
    Ok(Reply::Written)
}
