//! `Get`: one secret's value. The hot path: the value goes from the
//! snapshot straight into the connection's write buffer, as one frame,
//! with no copy between.

use super::{Ctx, Reply};
use crate::access::{Effect, Need, Rule};
use crate::error::Result;
use flux_protocol::codec::put_value_frame;
use flux_protocol::message::Get;

pub const RULE: Rule = Rule::project(Need::Reader, Effect::Read);

pub fn handle(ctx: &mut Ctx<'_>, req: Get) -> Result<Reply> {
    let project = ctx.project()?.clone();
    let out = &mut *ctx.out;
    project.read_value(&req.name, |v| put_value_frame(out, v))?;
    Ok(Reply::Written)
}
