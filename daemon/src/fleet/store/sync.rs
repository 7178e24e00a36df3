//! Keeping up with etcd: the first read at start ([`FleetStore::start`]),
//! full reads in pages ([`FleetStore::resync`]), the watch's events
//! ([`FleetStore::apply`]), and reading again what waited for a host list.

use super::*;

/// Vaults read again one request each, at most; more are read in pages.
const REREAD_ONE_BY_ONE: usize = 32;

/// The order a full read is applied in: the fleet id, the host lists by
/// version, then the rest.
fn apply_order(kvs: &mut [(FleetKey, Kv)]) {
    kvs.sort_by_key(|(k, _)| match k {
        FleetKey::Id => (0, 0),
        FleetKey::Hosts(v) => (1, *v),
        FleetKey::Deleted(_) => (2, 0),
        FleetKey::Vault(_) => (3, 0),
        FleetKey::Key { .. } => (4, 0),
    });
}

impl FleetStore {
    /// Joins the fleet as etcd holds it, founds a new one, or reports why
    /// it does neither; then reads everything. Returns whether the cache is
    /// in step with etcd (else the watch starts with a full read).
    ///
    /// Local sealed copies are never wiped because etcd is empty: a host
    /// holding fleet data that finds no fleet in etcd serves its copies and
    /// says so, until restarted with `publish` (`--publish-fleet`), which
    /// writes its fleet (the same fleet id, host lists and projects) back.
    pub fn start(&self, publish: bool) -> Result<bool> {
        let (_, kvs) = match self.etcd.range_prefix(&FleetKey::Id.to_string()) {
            Ok(answer) => answer,
            Err(e) => {
                warn!(error = %e, "etcd is unreachable at start; serving the local sealed copies until it is back");
                self.set_outage(Some(e.to_string()));
                return Ok(false);
            }
        };
        let in_etcd = !kvs.is_empty();
        let (pinned, holds_data, holds_id) = {
            let c = self.cache();
            (
                c.pin.is_some(),
                !c.vaults.is_empty() || !c.keys.is_empty() || c.hosts.is_some(),
                c.id.is_some(),
            )
        };
        match (in_etcd, pinned) {
            (false, false) if !holds_data => {
                self.cache().problem = Some(format!(
                    "etcd at {} holds no fleet yet: found one on this host with `fluxctl fleet init --operator-key FILE` (the operator key it creates signs the host list; keep it off the hosts)",
                    self.etcd.endpoints()
                ));
                info!("etcd holds no fleet yet: waiting for `fluxctl fleet init`");
                Ok(false)
            }
            (false, true) if publish && holds_id => {
                // Announced: the projects may be served already (a slow
                // etcd is read after start-up).
                let (applied, _) = self.resync().map_err(|e| self.fail(e))?;
                self.absorb(applied);
                self.repair(true)?;
                info!(
                    fleet = self.fleet_id().as_deref().unwrap_or(""),
                    "wrote this host's fleet back to an etcd that held none"
                );
                Ok(true)
            }
            (false, _) => {
                let advice = if holds_id {
                    "if this is the fleet's etcd and it lost its data, restart one host of the fleet with --publish-fleet to write the fleet back"
                } else {
                    "check [store] endpoints; this host was told to join a fleet it has never seen there"
                };
                self.cache().problem = Some(format!(
                    "etcd at {} holds no fleet (a typo in the endpoints, or a rebuilt or restored cluster?): serving this host's sealed copies, which are never wiped for it; {advice}",
                    self.etcd.endpoints()
                ));
                warn!("etcd holds no fleet; serving this host's sealed copies");
                Ok(false)
            }
            (true, false) => {
                self.cache().problem = Some(format!(
                    "etcd holds a fleet this host has not joined: start fluxd with --fleet-id (or [store] fleet_id) set to the fleet id `fluxctl hosts list` shows on a host of the fleet, then add it with the operator key: `fluxctl hosts add {} --operator-key FILE` on a host of the fleet",
                    self.identity.record().join_token()
                ));
                warn!("etcd holds a fleet and this host has no fleet id: serving nothing from it");
                Ok(false)
            }
            (true, true) => {
                // Announced: the projects may be served already (a slow
                // etcd is read after start-up).
                let (applied, _) = self.resync().map_err(|e| self.fail(e))?;
                self.absorb(applied);
                self.repair(false)?;
                Ok(true)
            }
        }
    }

    /// Replaces what is held with a full read of etcd (verified), page by
    /// page ([`Etcd::range_paged`]), all at the revision of its first
    /// answer: the fleet id, the host lists, deletions, vaults, then this
    /// host's wrapped keys — the order they are applied in. Each page is
    /// applied (and written to the local copy) as it arrives, so memory
    /// holds one page beyond what the host serves. A read that cannot
    /// finish is reported ([`Self::note_unsynced`]) and leaves what was
    /// applied so far — each object verified on its own. Returns what
    /// changed and the revision read at.
    pub fn resync(&self) -> std::result::Result<(Applied, i64), KvError> {
        let mut applied = Applied::default();
        let mut tries = 0;
        let revision = loop {
            match self.read_everything(&mut applied) {
                // Compacted between two pages: read again, now.
                Err(KvError::Failed(reason)) if reason.contains("compacted") && tries < 3 => {
                    tries += 1;
                }
                Err(e) => {
                    self.note_unsynced(Some(&e));
                    let applied = self.reread(applied);
                    self.absorb(applied);
                    return Err(e);
                }
                Ok(revision) => break revision,
            }
        };
        self.cache().revision = revision;
        self.note_applied(revision);
        self.set_outage(None);
        self.note_unsynced(None);
        let mut applied = self.reread(applied);
        self.queue(std::mem::take(&mut applied.persist));
        self.flush();
        Ok((applied, revision))
    }

    /// One full read (see [`Self::resync`]); returns its revision.
    pub(super) fn read_everything(
        &self,
        applied: &mut Applied,
    ) -> std::result::Result<i64, KvError> {
        let mut apply = |page: Vec<Kv>| {
            {
                let mut cache = self.cache();
                for kv in &page {
                    if let Some(key) = FleetKey::parse(&kv.key) {
                        cache.apply_kv(&key, kv, applied);
                    }
                }
            }
            drop(page);
            self.queue(std::mem::take(&mut applied.persist));
            self.flush();
        };
        let revision = self.etcd.range_paged(ID, 0, &mut apply)?;
        for prefix in [HOSTS, DELETED] {
            self.etcd.range_paged(prefix, revision, &mut apply)?;
        }
        if self
            .cache()
            .host_list()
            .is_some_and(|l| !l.assigned.is_empty())
        {
            // Projects are assigned: only the vaults this host serves are
            // read (their names first), not every project's.
            let mut page = Vec::new();
            for (key, _) in self.etcd.keys_at(VAULTS, revision)? {
                let serves = match FleetKey::parse(&key) {
                    Some(FleetKey::Vault(p)) => self.cache().serves_here(&p),
                    _ => false,
                };
                if serves && let Some(kv) = self.etcd.get_at(&key, revision)? {
                    page.push(kv);
                    if page.len() >= etcd::DEFAULT_PAGE_KEYS {
                        apply(std::mem::take(&mut page));
                    }
                }
            }
            apply(page);
        } else {
            self.etcd.range_paged(VAULTS, revision, &mut apply)?;
        }
        self.etcd
            .range_paged(&keys_of(&self.me), revision, &mut apply)?;
        Ok(revision)
    }

    /// Records why a full read of etcd did not finish (`None`: one did).
    pub fn note_unsynced(&self, error: Option<&KvError>) {
        let mut cache = self.cache();
        match (&cache.unsynced, error) {
            (None, Some(e)) => {
                warn!(error = %e, "cannot finish reading etcd; serving this host's copies and trying again")
            }
            (Some(_), None) => info!("read etcd in full again"),
            _ => {}
        }
        cache.unsynced = error.map(|e| {
            format!(
                "this host could not finish reading etcd ({e}): it serves the copies it holds and keeps trying"
            )
        });
    }

    /// Reads again, from etcd, what waited for the host list that just
    /// changed ([`Applied::reread`]), one key at a time, until nothing is
    /// left to read.
    pub(super) fn reread(&self, mut applied: Applied) -> Applied {
        let mut rounds = 0;
        while !applied.reread.is_empty() && rounds < 8 {
            rounds += 1;
            let mut keys = std::mem::take(&mut applied.reread);
            // Many vaults at once (a host given many projects): a paged
            // read rather than a request each.
            let vaults: std::collections::BTreeSet<String> = keys
                .iter()
                .filter(|k| matches!(k, FleetKey::Vault(_)))
                .map(|k| k.to_string())
                .collect();
            if vaults.len() > REREAD_ONE_BY_ONE {
                match self.read_vault_pages(&vaults, &mut applied) {
                    Ok(()) => keys.retain(|k| !matches!(k, FleetKey::Vault(_))),
                    Err(e) => {
                        debug!(error = %e, "cannot read the vaults again in pages; one by one")
                    }
                }
            }
            for key in keys {
                match self.etcd.get(&key.to_string()) {
                    Ok(Some(kv)) => self.cache().apply_kv(&key, &kv, &mut applied),
                    Ok(None) => self.cache().gone_from_etcd(&key),
                    Err(e) => {
                        debug!(error = %e, key = %key, "cannot read again what waited for the host list");
                        self.cache().wait_again(key);
                    }
                }
            }
        }
        applied
    }

    /// Reads the vaults `keys` names in pages, from the first to the last
    /// of them (a host is given projects in name order, so little else is
    /// read), and applies them.
    fn read_vault_pages(
        &self,
        keys: &BTreeSet<String>,
        applied: &mut Applied,
    ) -> std::result::Result<(), KvError> {
        let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
            return Ok(());
        };
        let mut end = last.as_bytes().to_vec();
        end.push(0);
        self.etcd
            .range_between(first.as_bytes(), &end, 0, &mut |page| {
                let mut cache = self.cache();
                for kv in page.iter().filter(|kv| keys.contains(&kv.key)) {
                    if let Some(key) = FleetKey::parse(&kv.key) {
                        cache.apply_kv(&key, kv, applied);
                    }
                }
            })
            .map(drop)
    }

    /// Reads the vaults that notices named (see [`Self::apply`]): one
    /// request each, or in pages when there are many.
    fn read_noticed(
        &self,
        projects: &BTreeSet<String>,
        applied: &mut Applied,
    ) -> std::result::Result<(), KvError> {
        if projects.len() > REREAD_ONE_BY_ONE {
            let keys = projects
                .iter()
                .map(|p| FleetKey::vault(p).to_string())
                .collect();
            return self.read_vault_pages(&keys, applied);
        }
        for project in projects {
            let key = FleetKey::vault(project);
            if let Some(kv) = self.etcd.get(&key.to_string())? {
                self.cache().apply_kv(&key, &kv, applied);
            }
        }
        Ok(())
    }

    /// Applies watch events. A deletion changes nothing held (see
    /// [`crate::fleet::cache`]); it is noted, and [`Applied::lost`] set so the
    /// caller runs [`Self::repair`]. A notice for this host of a project
    /// it serves, naming a version newer than the vault it holds, has that
    /// vault read and applied (verified like any other); when it cannot
    /// be read, [`Applied::unread`] sends the watch back to the notice.
    pub fn apply(&self, events: Vec<WatchEvent>) -> Applied {
        let mut applied = Applied::default();
        let mut noticed = BTreeSet::new();
        let mut cache = self.cache();
        for event in events {
            match event {
                WatchEvent::Put(kv) if FleetKey::parse(&kv.key).is_none() => {
                    if let Some(notice) = Notice::parse(&kv.key)
                        && notice.host == self.me
                        && cache.serves_here(&notice.project)
                    {
                        let held = cache.vaults.get(&notice.project).map_or(0, |h| h.version);
                        if Notice::version(&kv.value).is_none_or(|v| v > held) {
                            noticed.insert(notice.project);
                        }
                    }
                }
                WatchEvent::Put(kv) => {
                    if let Some(key) = FleetKey::parse(&kv.key) {
                        cache.apply_kv(&key, &kv, &mut applied);
                        // A forged host list where this host holds the real
                        // one, or a deleted project's vault put back: the
                        // repair writes over them.
                        let repairable = match &key {
                            FleetKey::Hosts(v) => cache.chain.contains_key(v),
                            FleetKey::Vault(p) => cache.deleted.contains_key(p),
                            _ => false,
                        };
                        if repairable && cache.refused.contains_key(&kv.key) {
                            applied.lost = true;
                        }
                    }
                }
                WatchEvent::Delete { key, .. } => {
                    if let Some(key) = FleetKey::parse(&key) {
                        cache.gone_from_etcd(&key);
                        applied.lost = true;
                    }
                }
            }
        }
        drop(cache);
        if let Err(e) = self.read_noticed(&noticed, &mut applied) {
            debug!(error = %e, "cannot read the vaults notices named; the watch goes back to them");
            applied.unread = true;
        }
        let mut applied = self.reread(applied);
        self.queue(std::mem::take(&mut applied.persist));
        applied
    }

    /// True (once) after etcd's history went backwards or its cluster
    /// changed: read everything again.
    pub fn take_reset(&self) -> bool {
        self.etcd.take_reset()
    }

    /// Follows `watched` from `start` (see [`Etcd::watch`]).
    pub(in crate::fleet) fn watch(
        &self,
        watched: &Watched,
        start: i64,
        on_message: impl FnMut(crate::fleet::kv::WatchMessage) -> bool,
    ) -> std::result::Result<(), KvError> {
        let mut on_message = on_message;
        self.etcd.watch(watched, start, &mut on_message)
    }

    /// Sets the change feed ([`super::watch`]).
    pub(in crate::fleet) fn set_feed(
        &self,
        tx: tokio::sync::mpsc::UnboundedSender<crate::store::Change>,
    ) {
        let _ = self.feed.set(tx);
    }

    /// Announces what a read outside the watch changed, and queues its
    /// local-copy writes.
    pub(super) fn absorb(&self, applied: Applied) {
        let mut applied = self.reread(applied);
        self.queue(std::mem::take(&mut applied.persist));
        if let Some(tx) = self.feed.get() {
            if !applied.gone.is_empty() {
                let _ = tx.send(crate::store::Change::Gone(applied.gone));
            }
            if !applied.changed.is_empty() {
                let _ = tx.send(crate::store::Change::Projects(applied.changed));
            }
        }
    }

    /// Reads the host lists, then `project`'s deletion, vault and this
    /// host's key from etcd into the cache (after a failed compare). Returns
    /// whether etcd holds a vault for it at all.
    pub(super) fn refresh(&self, project: &str) -> Result<bool> {
        let mut found = false;
        let mut applied = self.read_host_lists()?;
        for key in [
            FleetKey::Deleted(project.to_owned()),
            FleetKey::vault(project),
            FleetKey::key(&self.me, project),
        ] {
            let name = key.to_string();
            let (_, kvs) = self.range_prefix(&name)?;
            let mut cache = self.cache();
            match kvs.iter().find(|kv| kv.key == name) {
                Some(kv) => {
                    found |= matches!(key, FleetKey::Vault(_));
                    cache.apply_kv(&key, kv, &mut applied);
                }
                None => cache.gone_from_etcd(&key),
            }
        }
        self.absorb(applied);
        self.flush();
        Ok(found)
    }

    /// Reads and applies the host lists etcd holds.
    pub(super) fn read_host_lists(&self) -> Result<Applied> {
        let mut applied = Applied::default();
        let (_, lists) = self.range_prefix(HOSTS)?;
        let mut lists: Vec<(FleetKey, Kv)> = lists
            .into_iter()
            .filter_map(|kv| FleetKey::parse(&kv.key).map(|k| (k, kv)))
            .collect();
        apply_order(&mut lists);
        let mut cache = self.cache();
        for (key, kv) in &lists {
            cache.apply_kv(key, kv, &mut applied);
        }
        Ok(applied)
    }
}
