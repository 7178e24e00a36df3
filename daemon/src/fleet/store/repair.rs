//! Writing back what etcd lost: the fleet id, host lists, deletions, this
//! host's wrapped keys and the vaults it holds ([`FleetStore::repair`]), and
//! a deleted project's vault put back deleted again.

use super::*;

impl FleetStore {
    /// Writes back what etcd lost and this host holds — the fleet id, host
    /// list versions, deletions, its own wrapped keys, and vaults (re-signed
    /// as a new version, with every listed host's key) — each only where
    /// etcd holds nothing. Runs after a full read and whenever the watch
    /// sees a deletion no signed deletion explains. Without `publish`, only
    /// while etcd holds this fleet's id or this host saw it deleted (never
    /// into an etcd that simply holds no fleet). Returns how many objects
    /// were written back.
    pub fn repair(&self, publish: bool) -> Result<usize> {
        // The newest host list first: a host removed a moment ago (its key
        // deleted in the same breath) writes nothing back.
        let lists = self.read_host_lists()?;
        self.absorb(lists);
        if self.my_host_list().is_err() {
            return Ok(0);
        }
        let present: std::collections::BTreeMap<String, i64> = self
            .etcd
            .keys_prefix(FLEET)
            .and_then(|mut fleet| {
                fleet.extend(self.etcd.keys_prefix(&keys_of(&self.me))?);
                Ok(fleet)
            })
            .map_err(|e| self.fail(e))?
            .into_iter()
            .collect();
        let id = FleetKey::Id.to_string();
        let (objects, lost_vaults, resurrected) = {
            let cache = self.cache();
            let saw_id_go = cache.seen.get(&id) == Some(&0);
            if !publish && !present.contains_key(&id) && !saw_id_go {
                return Ok(0);
            }
            let mut objects: Vec<(FleetKey, Vec<u8>)> = Vec::new();
            if let Some(raw) = &cache.id {
                objects.push((FleetKey::Id, raw.clone()));
            }
            for (v, raw) in &cache.chain {
                objects.push((FleetKey::Hosts(*v), raw.clone()));
            }
            for (p, held) in &cache.deleted {
                objects.push((FleetKey::Deleted(p.clone()), held.raw.clone()));
            }
            for (p, held) in &cache.keys {
                // Not a key whose project etcd shows deleted: this host's
                // own deletion may be applied here a moment after etcd's.
                if !present.contains_key(&FleetKey::Deleted(p.clone()).to_string()) {
                    objects.push((FleetKey::key(&self.me, p), held.raw.clone()));
                }
            }
            let lost_vaults: Vec<(String, Vec<u8>)> = cache
                .vaults
                .iter()
                .filter(|(p, _)| {
                    !present.contains_key(&FleetKey::vault(p).to_string())
                        && !present.contains_key(&FleetKey::Deleted((*p).clone()).to_string())
                })
                .map(|(p, h)| (p.clone(), h.payload.clone()))
                .collect();
            // What etcd holds but this host refused for good where it holds
            // the real thing: a forged host list version (a fork), written
            // back over with the version this host accepted.
            let mut overwrite: Vec<(FleetKey, Vec<u8>, i64)> = Vec::new();
            for (v, raw) in &cache.chain {
                let key = FleetKey::Hosts(*v);
                let name = key.to_string();
                if let Some(revision) = present.get(&name)
                    && cache.refused.contains_key(&name)
                    && !cache.is_waiting(&name)
                {
                    overwrite.push((key, raw.clone(), *revision));
                }
            }
            // A deleted project whose vault is back in etcd (a restore from
            // an older snapshot): its deletion is applied again.
            let resurrected: Vec<(String, i64)> = cache
                .deleted
                .keys()
                .filter_map(|p| {
                    present
                        .get(&FleetKey::vault(p).to_string())
                        .map(|r| (p.clone(), *r))
                })
                .collect();
            let objects = objects
                .into_iter()
                .filter(|(k, _)| !present.contains_key(&k.to_string()))
                .map(|(k, raw)| (k, raw, 0))
                .chain(overwrite)
                .collect::<Vec<_>>();
            (objects, lost_vaults, resurrected)
        };
        let mut written = 0;
        for (key, raw, base) in objects {
            let name = key.to_string();
            let (ok, revision) = self.txn(
                vec![Compare::mod_revision(&name, base)],
                vec![Op::put(&name, &raw)],
            )?;
            if ok {
                if base == 0 {
                    warn!(key = %name, "etcd had lost it: written back from this host's copy");
                } else {
                    warn!(key = %name, "etcd held a refused object: written over with this host's copy");
                }
                let mut cache = self.cache();
                cache.seen.insert(name.clone(), revision);
                cache.refused.remove(&name);
                written += 1;
            }
        }
        let list = self.host_list();
        let hosts = list.as_ref().map(|l| l.hosts.clone()).unwrap_or_default();
        for (project, revision) in resurrected {
            let vault = FleetKey::vault(&project).to_string();
            let mut ops = vec![Op::delete(&vault)];
            ops.extend(
                hosts
                    .iter()
                    .map(|h| Op::delete(&FleetKey::key(&h.recipient, &project).to_string())),
            );
            if let Some(list) = &list {
                ops.extend(Self::notice_deletes(
                    list,
                    hosts.iter().map(|h| h.recipient.as_str()),
                    &project,
                ));
            }
            ops.truncate(MAX_TXN_OPS);
            let (ok, _) = self.txn(vec![Compare::mod_revision(&vault, revision)], ops)?;
            if ok {
                warn!(
                    project,
                    "etcd held a deleted project's vault again (restored from an older snapshot?): its deletion is applied again"
                );
                written += 1;
            }
        }
        for (project, ciphertext) in lost_vaults {
            if self.restore_to_etcd(&project, &ciphertext)? {
                written += 1;
            }
        }
        self.flush();
        Ok(written)
    }

    /// etcd lost a vault this host serves (deleted without a signed
    /// deletion, or etcd restored or rebuilt): writes `ciphertext` back,
    /// with every listed host's wrapped key, as a new version — only where
    /// etcd holds no vault and no newer deletion of the project.
    pub(super) fn restore_to_etcd(&self, project: &str, ciphertext: &[u8]) -> Result<bool> {
        let list = self.my_host_list()?;
        let plain = self.plain_key(project)?;
        let key = FleetKey::vault(project);
        let tomb = FleetKey::Deleted(project.to_owned());
        let (version, generation, epoch, tomb_revision) = {
            let cache = self.cache();
            (
                cache.next_version(project),
                cache.keys.get(project).map_or(1, |h| h.version),
                cache.keys.get(project).map_or(0, |h| h.epoch),
                cache.etcd_revision(
                    &tomb,
                    cache.deleted.get(project).map_or(0, |h| h.mod_revision),
                ),
            )
        };
        let env = self.sign(Kind::Vault, &key, version, ciphertext);
        let (mut ops, mine) = self.key_puts(
            project,
            plain.as_bytes(),
            generation,
            epoch,
            &list.serving(project),
        )?;
        ops.insert(0, Op::put(&key.to_string(), &env));
        ops.extend(self.notice_puts(&list, project, version));
        let rest = ops.split_off(ops.len().min(MAX_TXN_OPS));
        let compare = [
            Compare::mod_revision(&key.to_string(), 0),
            Compare::mod_revision(&tomb.to_string(), tomb_revision),
        ]
        .into_iter()
        .chain(self.no_newer_list(&list))
        .collect();
        let (ok, revision) = self.txn(compare, ops)?;
        if !ok {
            self.refresh(project)?;
            return Ok(false);
        }
        self.put_all(rest)?;
        warn!(
            project,
            "etcd had lost the project's vault: written back with every host's key"
        );
        self.held(&key, env, revision);
        if let Some(mine) = mine {
            self.held(&FleetKey::key(&self.me, project), mine, revision);
        }
        self.flush();
        Ok(true)
    }
}
