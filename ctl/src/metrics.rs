//! `fluxctl metrics`: the daemon's counters and gauges in the Prometheus
//! text format, read from the control socket (daemon admins), printed as
//! fluxd wrote them — for a look, or for node_exporter's textfile
//! collector (docs/DEPLOY.md). Project names and numbers, never a value.

use crate::failure::Result;
use crate::out;
use crate::target::Target;

pub(crate) fn run(target: &Target) -> Result<()> {
    let text = target.control()?.metrics()?;
    out(&text)
}
