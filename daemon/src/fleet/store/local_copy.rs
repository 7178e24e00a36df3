//! The sealed local copy (`<state>/fleet/`): changes queued as they are
//! accepted and written, durably and in order, off the request path
//! ([`FleetStore::flush`]).

use super::*;

impl FleetStore {
    pub(super) fn queue(&self, persist: Vec<Persist>) {
        if !persist.is_empty() {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(persist);
        }
    }

    /// Writes the queued changes to the local copy, durably, in order. The
    /// watcher calls it after the new vaults are swapped in, so the disk
    /// adds no latency to propagation.
    pub fn flush(&self) {
        // One flush at a time, so writes land in the order they were queued.
        let _flushing = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for change in pending {
            let result = match change {
                Persist::Write(name, bytes) => write_atomic(&self.dir.join(name), &bytes, 0o600),
                // A wrapped key opens with host.key, which stays: its
                // blocks are overwritten before they are freed.
                Persist::Remove(name)
                    if name.starts_with(&fleet_copy::file(fleet_copy::KEYS, "")) =>
                {
                    shred_durably(&self.dir.join(name))
                }
                Persist::Remove(name) => remove_durably(&self.dir.join(name)),
            };
            if let Err(e) = result {
                warn!(error = %e, "cannot update the local sealed copy");
            }
        }
    }
}
