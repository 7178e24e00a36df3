//! The rules of the module docs' table, enforced: what etcd holds under a
//! key is applied ([`Cache::apply`]) only once its envelope is checked —
//! fleet, signer, version, and for a wrapped key that it opens with this
//! host's identity — and a refusal is kept for `fluxctl status`.

use super::held::{Applied, Held, Persist};
use super::host_list::HostList;
use super::{Cache, MAX_REFUSED, MAX_STEP, MAX_WAITING, kind_of};
use crate::fleet::envelope::{self, Envelope};
use crate::fleet::identity::fleet_id;
use crate::fleet::layout::FleetKey;
use flux_vault::layout::fleet_copy;
use flux_vault::membership::{HostsDoc, digest_hex, open_hosts};

impl Cache {
    /// Applies what etcd holds under `key`. Deletions are not applied:
    /// see the module docs.
    pub fn apply(&mut self, key: &FleetKey, raw: &[u8], mod_revision: i64, out: &mut Applied) {
        let name = key.to_string();
        if mod_revision != 0 {
            self.seen.insert(name.clone(), mod_revision);
        }
        match self.accept(key, raw, mod_revision, out) {
            Ok(()) => {
                self.refused.remove(&name);
                self.waiting.remove(&name);
            }
            Err(Refusal::Ignore) => {
                self.refused.remove(&name);
            }
            Err(Refusal::Waiting(reason)) => {
                // The object is dropped: an etcd writer could fill etcd
                // with objects signed by strangers. Its key (bounded) is
                // what is read again.
                if self.waiting.len() < MAX_WAITING || self.waiting.contains_key(&name) {
                    self.waiting.insert(name.clone(), key.clone());
                }
                self.note_refused(name, reason);
            }
            Err(Refusal::Final(reason)) => {
                self.waiting.remove(&name);
                self.note_refused(name, reason);
            }
        }
    }

    /// Applies a key-value pair read from etcd: [`Self::apply`], or the
    /// refusal of a value over the envelope cap, which was not read.
    pub fn apply_kv(&mut self, key: &FleetKey, kv: &crate::fleet::kv::Kv, out: &mut Applied) {
        let Some(size) = kv.oversize else {
            return self.apply(key, &kv.value, kv.mod_revision, out);
        };
        let name = key.to_string();
        if kv.mod_revision != 0 {
            self.seen.insert(name.clone(), kv.mod_revision);
        }
        self.waiting.remove(&name);
        self.note_refused(
            name,
            format!(
                "an envelope of about {size} bytes, over this host's [store] max_envelope_bytes: refused unread"
            ),
        );
    }

    /// Checks an envelope's fleet and signer against the held list.
    fn check_signer(&self, env: &Envelope) -> Result<(), Refusal> {
        self.check_fleet(env)?;
        let Some(list) = self.host_list() else {
            return Err(Refusal::Waiting(
                "this host holds no verified host list yet".into(),
            ));
        };
        let Some(key) = list.key_of(&env.signer) else {
            return Err(Refusal::Waiting(format!(
                "signed by {}, which is not a host of the fleet (host list version {})",
                env.signer, list.version
            )));
        };
        if !env.signed_by(&key) {
            return Err(Refusal::Final(format!(
                "the signature does not match {}'s key: forged or altered",
                env.signer
            )));
        }
        Ok(())
    }

    fn check_fleet(&self, env: &Envelope) -> Result<(), Refusal> {
        match self.fleet() {
            Some(fleet) if fleet == env.fleet => Ok(()),
            Some(fleet) => Err(Refusal::Final(format!(
                "signed for fleet {}, not this host's fleet {fleet}",
                env.fleet
            ))),
            None => Err(Refusal::Final(
                "this host pinned no fleet: start it with the fleet id".into(),
            )),
        }
    }

    /// Checks that `raw` is the next host list version this host may
    /// accept (see the module docs).
    pub fn check_next_hosts(&self, version: u64, raw: &[u8]) -> Result<HostsDoc, String> {
        self.next_hosts(version, raw).map_err(|r| match r {
            Refusal::Ignore => format!("host list version {version} is held already"),
            Refusal::Waiting(reason) | Refusal::Final(reason) => reason,
        })
    }

    fn next_hosts(&self, version: u64, raw: &[u8]) -> Result<HostsDoc, Refusal> {
        let Some(pin) = self.pin else {
            return Err(Refusal::Final(
                "this host pinned no fleet: start it with the fleet id".into(),
            ));
        };
        let doc = open_hosts(raw, version, &pin).map_err(Refusal::Final)?;
        let held = self.hosts_version();
        if version <= held {
            if self.chain.get(&version).is_some_and(|r| r == raw) {
                return Err(Refusal::Ignore);
            }
            if version < held && !self.chain.contains_key(&version) {
                // Retired, or passed over from a starting point: older than
                // the list held, it decides nothing.
                return Err(Refusal::Ignore);
            }
            return Err(Refusal::Final(format!(
                "a second host list version {version}, different from the one this host holds: a fork of the host list, refused"
            )));
        }
        if Some(version) != held.checked_add(1) {
            if doc.oldest > held.saturating_add(1) {
                // The operator retired the version this host needs next: a
                // list naming that is a starting point, as version 1 is.
                return Ok(doc);
            }
            return Err(Refusal::Waiting(format!(
                "host list version {version} follows {held} with versions missing"
            )));
        }
        let expected = match &self.hosts {
            None => String::new(),
            Some((_, raw)) => digest_hex(raw),
        };
        if doc.previous != expected {
            return Err(Refusal::Final(format!(
                "host list version {version} does not follow version {held}, which this host holds: a fork of the host list, refused"
            )));
        }
        Ok(doc)
    }

    /// A version above `floor` by at most [`MAX_STEP`], or why not.
    fn check_step(version: u64, floor: u64, what: &str) -> Result<(), Refusal> {
        if version > floor.saturating_add(MAX_STEP) {
            return Err(Refusal::Final(format!(
                "{what} version {version} jumps more than {MAX_STEP} past version {floor}, which this host holds: refused (it would leave later writes no version to take)"
            )));
        }
        Ok(())
    }

    fn accept(
        &mut self,
        key: &FleetKey,
        raw: &[u8],
        mod_revision: i64,
        out: &mut Applied,
    ) -> Result<(), Refusal> {
        let kind = kind_of(key);
        let env = envelope::parse(raw, kind, key).map_err(Refusal::Final)?;
        match key {
            FleetKey::Id => {
                let Some(pin) = self.pin else {
                    return Err(Refusal::Final(
                        "this host pinned no fleet: start it with the fleet id".into(),
                    ));
                };
                let named = String::from_utf8_lossy(&env.payload).into_owned();
                if named != fleet_id(&pin) || !env.signed_by(&pin) || env.fleet != named {
                    let problem = format!(
                        "etcd holds fleet {named}, but this host belongs to fleet {}: check [store] endpoints",
                        fleet_id(&pin)
                    );
                    self.problem = Some(problem.clone());
                    return Err(Refusal::Final(problem));
                }
                if self.problem.as_deref().is_some_and(|p| {
                    p.starts_with("etcd holds fleet") || p.starts_with("etcd holds no fleet")
                }) {
                    self.problem = None;
                }
                if self.id.as_deref() != Some(raw) {
                    out.persist
                        .push(Persist::Write(fleet_copy::ID.into(), raw.to_vec()));
                    self.id = Some(raw.to_vec());
                }
                Ok(())
            }
            FleetKey::Hosts(version) => {
                let doc = self.next_hosts(*version, raw)?;
                let list = HostList::from_doc(doc);
                let prev = self.host_list().cloned();
                self.note_list(prev.as_ref(), &list);
                out.persist
                    .push(Persist::Write(fleet_copy::hosts(*version), raw.to_vec()));
                self.chain.insert(*version, raw.to_vec());
                self.hosts = Some((list, raw.to_vec()));
                // Versions passed over decide nothing: what was refused of
                // them while they looked missing goes at once.
                let passed_over = |key: &str| {
                    matches!(FleetKey::parse(key), Some(FleetKey::Hosts(v))
                        if v < *version && !self.chain.contains_key(&v))
                };
                self.refused.retain(|key, _| !passed_over(key));
                self.waiting.retain(|key, _| !passed_over(key));
                self.retire_lists(out);
                self.drop_unserved(out);
                self.retry_waiting(out);
                Ok(())
            }
            FleetKey::Vault(p) => {
                self.check_signer(&env)?;
                if !self.serves_here(p) {
                    // Not this host's project: nothing of it is held (the
                    // key, when one is wrapped for this host, fetches it).
                    return Err(Refusal::Ignore);
                }
                let floor = self.next_version(p) - 1;
                if let Some(h) = self.vaults.get_mut(p)
                    && h.version == env.version
                    && h.payload == env.payload
                {
                    h.mod_revision = mod_revision;
                    return Ok(());
                }
                if env.version <= floor {
                    return Err(Refusal::Final(format!(
                        "version {} is not newer than version {floor}, which this host already served: refused as a rollback",
                        env.version
                    )));
                }
                Self::check_step(env.version, floor, "vault")?;
                out.changed.insert(p.clone());
                out.persist.push(Persist::Write(
                    fleet_copy::file(fleet_copy::VAULTS, p),
                    raw.to_vec(),
                ));
                self.vaults
                    .insert(p.clone(), Held::from(key, env, raw, mod_revision));
                Ok(())
            }
            FleetKey::Deleted(p) => {
                self.check_signer(&env)?;
                let vault = self.vaults.get(p).map_or(0, |h| h.version);
                let known = self.deleted.get(p).map_or(0, |h| h.version);
                if env.version <= vault || env.version <= known {
                    return Err(Refusal::Ignore);
                }
                Self::check_step(env.version, vault.max(known), "deletion")?;
                self.vaults.remove(p);
                if self.keys.remove(p).is_some() {
                    out.gone.insert(p.clone());
                }
                out.persist
                    .push(Persist::Remove(fleet_copy::file(fleet_copy::VAULTS, p)));
                out.persist
                    .push(Persist::Remove(fleet_copy::file(fleet_copy::KEYS, p)));
                out.persist.push(Persist::Write(
                    fleet_copy::file(fleet_copy::DELETED, p),
                    raw.to_vec(),
                ));
                self.deleted
                    .insert(p.clone(), Held::from(key, env, raw, mod_revision));
                Ok(())
            }
            FleetKey::Key { host, project } => {
                if *host != self.me {
                    return Err(Refusal::Ignore);
                }
                self.check_signer(&env)?;
                if !self.serves_here(project) {
                    // The list that assigns it may be on its way.
                    return Err(Refusal::Waiting(format!(
                        "project {project} is not assigned to this host by host list version {}: its key is not held",
                        self.hosts_version()
                    )));
                }
                let deleted = self.deleted.get(project).map_or(0, |h| h.version);
                if env.version <= deleted {
                    return Err(Refusal::Final(format!(
                        "generation {} is from before project {project} was deleted",
                        env.version
                    )));
                }
                if env.epoch > self.hosts_version() {
                    // The list it names may be on its way (another watch).
                    return Err(Refusal::Waiting(format!(
                        "generation {} claims host list version {}, which does not exist yet",
                        env.version, env.epoch
                    )));
                }
                let plain = self.unwrap(&env.payload).map_err(Refusal::Final)?;
                let held = self
                    .keys
                    .get(project)
                    .map(|h| (h.version, h.payload.clone()));
                match held {
                    Some((version, _)) if version > env.version => {
                        return Err(Refusal::Final(format!(
                            "generation {} is older than generation {version}, which this host holds: refused as a rollback",
                            env.version
                        )));
                    }
                    Some((version, payload)) if version == env.version => {
                        let same = payload == env.payload
                            || match (self.unwrap(&payload), &plain) {
                                (Ok(Some(a)), Some(b)) => a.as_str() == b.as_str(),
                                _ => false,
                            };
                        if !same {
                            return Err(Refusal::Final(format!(
                                "a different key at generation {}, which this host already holds: refused",
                                env.version
                            )));
                        }
                        // The same key (wrapped again): nothing changes.
                        if let Some(h) = self.keys.get_mut(project) {
                            h.mod_revision = mod_revision;
                        }
                        return Ok(());
                    }
                    Some(_) => {}
                    None => Self::check_step(env.version, deleted, "key")?,
                }
                out.changed.insert(project.clone());
                out.persist.push(Persist::Write(
                    fleet_copy::file(fleet_copy::KEYS, project),
                    raw.to_vec(),
                ));
                self.keys
                    .insert(project.clone(), Held::from(key, env, raw, mod_revision));
                if !self.vaults.contains_key(project) {
                    // Newly assigned: its vault was not held until now.
                    out.reread.push(FleetKey::vault(project));
                }
                Ok(())
            }
        }
    }

    /// A wrapped key opened with this host's identity (`None` when the
    /// cache has none, as in unit tests that check signatures only).
    fn unwrap(&self, wrapped: &[u8]) -> Result<Option<zeroize::Zeroizing<String>>, String> {
        let Some(identity) = &self.identity else {
            return Ok(None);
        };
        let plain = flux_vault::vault::decrypt(wrapped, identity.age()).map_err(|e| {
            format!("the key does not open with this host's identity ({e}): refused, serving the key held")
        })?;
        String::from_utf8(plain.to_vec())
            .map(|s| Some(zeroize::Zeroizing::new(s)))
            .map_err(|_| "the key is not text: refused".to_owned())
    }

    fn note_refused(&mut self, name: String, reason: String) {
        self.refused_total += 1;
        if self.refused.len() < MAX_REFUSED || self.refused.contains_key(&name) {
            self.refused.insert(name, reason);
        }
    }

    /// The host list changed: what waited for it is to be read again.
    fn retry_waiting(&mut self, out: &mut Applied) {
        let waiting = std::mem::take(&mut self.waiting);
        out.reread.extend(waiting.into_values());
    }
}

/// Why something was not accepted.
enum Refusal {
    /// Nothing to do (already held, or older than a deletion).
    Ignore,
    /// Not acceptable now; may be once the host list changes.
    Waiting(String),
    /// Not acceptable.
    Final(String),
}
