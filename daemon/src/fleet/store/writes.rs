//! [`Store`] for the etcd store: reads from what this host holds, writes
//! signed and compared in etcd (a project's key wrapped for the hosts
//! that serve it, its vault, its deletion).

use super::*;

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Store for FleetStore {
    fn projects(&self) -> Result<Vec<String>> {
        Ok(self.cache().projects())
    }

    fn load_key(&self, project: &str) -> Result<Zeroizing<String>> {
        self.plain_key(project)
    }

    fn create_key(&self, project: &str, key: &ProjectKey) -> Result<()> {
        let list = self.my_host_list()?;
        if !list.serves(&self.me, project) {
            let on: Vec<String> = list
                .serving(project)
                .into_iter()
                .map(|h| h.recipient)
                .collect();
            return Err(Error::BadRequest(format!(
                "project {project} is assigned to {} by host list version {}, not to this host ({}): create it on one of them",
                on.join(", "),
                list.version,
                self.me
            )));
        }
        let (vault_key, my_key) = (FleetKey::vault(project), FleetKey::key(&self.me, project));
        let (generation, vault_revision, key_revision) = {
            let cache = self.cache();
            if cache.keys.contains_key(project) {
                return Err(Error::AlreadyExists(project.to_owned()));
            }
            if cache.vaults.contains_key(project) {
                return Err(Error::BadRequest(format!(
                    "project {project} exists in the fleet, but this host holds no key for it: run `fluxctl hosts add` for this host on a host that serves it"
                )));
            }
            // Anything etcd holds there was refused (a forgery): written over.
            (
                cache.next_version(project),
                cache.etcd_revision(&vault_key, 0),
                cache.etcd_revision(&my_key, 0),
            )
        };
        let created = flux_vault::time::created_stamp();
        let plain = key.to_file_contents(&created);
        let (mut ops, mine) = self.key_puts(
            project,
            plain.as_bytes(),
            generation,
            list.version,
            &list.serving(project),
        )?;
        let mine = mine.expect("this host is listed");
        let rest = ops.split_off(ops.len().min(MAX_TXN_OPS - 2));
        let (ok, revision) = self.txn(
            vec![
                Compare::mod_revision(&vault_key.to_string(), vault_revision),
                Compare::mod_revision(&my_key.to_string(), key_revision),
            ],
            ops,
        )?;
        if !ok {
            return Err(Error::AlreadyExists(project.to_owned()));
        }
        self.put_all(rest)?;
        self.held(&FleetKey::key(&self.me, project), mine, revision);
        self.flush();
        Ok(())
    }

    fn delete_key(&self, project: &str) -> Result<()> {
        let list = self.my_host_list()?;
        let version = self.cache().next_version(project);
        let tomb_key = FleetKey::Deleted(project.to_owned());
        let tomb = self.sign(Kind::Deleted, &tomb_key, version, b"");
        let mut ops = vec![
            Op::put(&tomb_key.to_string(), &tomb),
            Op::delete(&FleetKey::vault(project).to_string()),
        ];
        ops.extend(
            list.hosts
                .iter()
                .map(|h| Op::delete(&FleetKey::key(&h.recipient, project).to_string())),
        );
        ops.extend(Self::notice_deletes(
            &list,
            list.hosts.iter().map(|h| h.recipient.as_str()),
            project,
        ));
        let revision = self.put_all(ops)?;
        self.held(&tomb_key, tomb, revision);
        self.queue(vec![
            Persist::Remove(fleet_copy::file(fleet_copy::VAULTS, project)),
            Persist::Remove(fleet_copy::file(fleet_copy::KEYS, project)),
        ]);
        self.flush();
        if let Some(note) = self.compact(revision) {
            warn!(project, "{note}");
            self.remains
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(project.to_owned(), (revision, note));
        }
        Ok(())
    }

    fn load_vault(&self, project: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.cache().vaults.get(project).map(|h| h.payload.clone()))
    }

    fn vault_exists(&self, project: &str) -> bool {
        self.cache().vaults.contains_key(project)
    }

    fn store_vault(&self, project: &str, ciphertext: &[u8]) -> Result<()> {
        if self.store_vault_if(project, None, ciphertext)? {
            Ok(())
        } else {
            Err(Error::Unavailable(Unavailable::Contended {
                project: project.to_owned(),
            }))
        }
    }

    fn store_vault_if(
        &self,
        project: &str,
        expected: Option<&[u8; 32]>,
        ciphertext: &[u8],
    ) -> Result<bool> {
        let list = self.my_host_list()?;
        let key = FleetKey::vault(project);
        let (matches, held, base, version) = {
            let cache = self.cache();
            let held = cache.vaults.get(project);
            let matches = match (held, expected) {
                (Some(h), Some(fp)) => sha(&h.payload) == *fp,
                (None, None) => true,
                _ => false,
            };
            let base = cache.etcd_revision(&key, held.map_or(0, |h| h.mod_revision));
            (matches, held.is_some(), base, cache.next_version(project))
        };
        if !matches {
            // The vault moved on: read etcd and let the caller apply its
            // change again.
            self.refresh(project)?;
            return Ok(false);
        }
        if held && base == 0 {
            // etcd lost the vault this host serves.
            return self.restore_to_etcd(project, ciphertext);
        }
        // Compared with what etcd holds, accepted or not: a forgery or a
        // replayed old version there is written over.
        // The project's other hosts are told in the same transaction
        // (once the list turned notices on); a list newer than the one
        // they were chosen by fails it, and the write is decided again.
        let env = self.sign(Kind::Vault, &key, version, ciphertext);
        let mut ops = vec![Op::put(&key.to_string(), &env)];
        ops.extend(self.notice_puts(&list, project, version));
        let rest = ops.split_off(ops.len().min(MAX_TXN_OPS));
        let compare = [Compare::mod_revision(&key.to_string(), base)]
            .into_iter()
            .chain(self.no_newer_list(&list))
            .collect();
        let (ok, revision) = self.txn(compare, ops)?;
        if ok {
            self.put_all(rest)?;
            self.held(&key, env, revision);
            self.flush();
            return Ok(true);
        }
        self.refresh(project)?;
        if self.cache().deleted.contains_key(project) && !self.cache().keys.contains_key(project) {
            return Err(Error::UnknownProject(project.to_owned()));
        }
        Ok(false)
    }

    fn replace_key(&self, project: &str, key: &ProjectKey, ciphertext: &[u8]) -> Result<()> {
        let list = self.my_host_list()?;
        let vault_key = FleetKey::vault(project);
        let (version, base) = {
            let cache = self.cache();
            let held = cache.vaults.get(project).map_or(0, |h| h.mod_revision);
            (
                cache.next_version(project),
                cache.etcd_revision(&vault_key, held),
            )
        };
        let env = self.sign(Kind::Vault, &vault_key, version, ciphertext);
        let created = flux_vault::time::created_stamp();
        let plain = key.to_file_contents(&created);
        // This host first: its new key lands in the transaction with the
        // vault it opens; every host serving the project gets it, at this
        // list's epoch.
        let mut hosts = list.serving(project);
        hosts.sort_by_key(|h| h.recipient != self.me);
        let (keys, mine) =
            self.key_puts(project, plain.as_bytes(), version, list.version, &hosts)?;
        let mine = mine.expect("this host is listed");
        let mut ops = vec![Op::put(&vault_key.to_string(), &env)];
        ops.extend(keys);
        ops.extend(self.notice_puts(&list, project, version));
        let rest = ops.split_off(ops.len().min(MAX_TXN_OPS));
        let mut compare: Vec<Compare> = self.no_newer_list(&list).into_iter().collect();
        if base != 0 {
            compare.push(Compare::mod_revision(&vault_key.to_string(), base));
        }
        let (ok, revision) = self.txn(compare, ops)?;
        if !ok {
            self.refresh(project)?;
            return Err(Error::Unavailable(Unavailable::Contended {
                project: project.to_owned(),
            }));
        }
        self.put_all(rest)?;
        self.held(&FleetKey::key(&self.me, project), mine, revision);
        self.held(&vault_key, env, revision);
        self.flush();
        Ok(())
    }

    fn delete_vault(&self, _project: &str) -> Result<()> {
        // The signed deletion (`delete_key`) removed the vault too.
        Ok(())
    }

    fn vault_location(&self, project: &str) -> Location {
        Location::Etcd(FleetKey::vault(project).to_string())
    }

    fn key_location(&self, project: &str) -> Location {
        Location::Etcd(FleetKey::key(&self.me, project).to_string())
    }

    fn check_key_private(&self, _project: &str) -> Result<()> {
        Ok(())
    }

    fn finish(&self) {
        self.flush();
    }

    fn serves_before_loading(&self) -> bool {
        self.holds_much()
    }

    fn health(&self, project: &str) -> Option<String> {
        let cache = self.cache();
        cache
            .outage
            .clone()
            .or_else(|| cache.unsynced.clone())
            .or_else(|| cache.problem.clone())
            .or_else(|| cache.refusal(project))
    }
}
