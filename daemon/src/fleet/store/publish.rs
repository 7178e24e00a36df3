//! The host list: what this host holds ([`FleetStore::head`]), publishing
//! the next version the operator signed ([`FleetStore::publish_hosts`]),
//! and founding a fleet.

use super::*;

impl FleetStore {
    /// The signed envelopes of the held host list and fleet id (empty
    /// when none), for `fluxctl` to check against the operator key and
    /// sign the next version over.
    pub fn head(&self) -> (Vec<u8>, Vec<u8>) {
        let cache = self.cache();
        (
            cache
                .hosts
                .as_ref()
                .map(|(_, r)| r.clone())
                .unwrap_or_default(),
            cache.id.clone().unwrap_or_default(),
        )
    }

    /// Publishes host list `raw`, signed by the operator key: the next
    /// version after the one held, or — with the fleet id envelope `id` —
    /// version 1 of a new fleet in an etcd that holds none (this host
    /// pins that fleet). Returns the list now held.
    pub fn publish_hosts(&self, raw: &[u8], id: &[u8]) -> Result<crate::fleet::cache::HostList> {
        let version = flux_vault::membership::Envelope::peek_version(raw)
            .map_err(|e| Error::BadRequest(format!("not a signed host list: {e}")))?;
        let republished = self
            .cache()
            .hosts
            .as_ref()
            .is_some_and(|(l, held)| l.version == version && held == raw);
        if republished {
            // The version held, again: nothing to write; the caller finishes
            // what that version asked for.
        } else if !id.is_empty() {
            self.found(raw, id, version)?;
        } else {
            if self.cache().pin.is_none() {
                return Err(Error::BadRequest(
                    "this host holds no fleet yet: found one with `fluxctl fleet init`, or start fluxd with the fleet's id".into(),
                ));
            }
            self.cache()
                .check_next_hosts(version, raw)
                .map_err(Error::BadRequest)?;
            let key = FleetKey::Hosts(version);
            // A refused object in that slot (a forged list) is written over; a
            // version not seen yet, or accepted, is not.
            let base = self.refused_revision(&key);
            let (ok, revision) = self.txn(
                vec![Compare::mod_revision(&key.to_string(), base)],
                vec![Op::put(&key.to_string(), raw)],
            )?;
            // Not written: unless etcd holds this very list already (an
            // earlier try whose answer was lost), another one came first.
            let landed = !ok
                && self
                    .range_prefix(&key.to_string())?
                    .1
                    .iter()
                    .any(|kv| kv.key == key.to_string() && kv.value == raw);
            if !ok && !landed {
                return Err(Error::Unavailable(Unavailable::Store(format!(
                    "the host list changed (version {version} was written first) at the same moment: run the command again"
                ))));
            }
            let mut applied = Applied::default();
            self.cache().apply(&key, raw, revision, &mut applied);
            self.absorb(applied);
            self.flush();
            // The versions this one retires leave etcd (every host forgets
            // them as it takes this one).
            let oldest = self.host_list().map_or(0, |l| l.oldest);
            if oldest > 1 {
                let retire = Op::delete_range(
                    &FleetKey::Hosts(0).to_string(),
                    &FleetKey::Hosts(oldest).to_string(),
                );
                if let Err(e) = self.txn(vec![], vec![retire]) {
                    warn!(error = %e, oldest, "cannot delete the retired host list versions from etcd; the next list tries again");
                }
            }
        }
        self.host_list()
            .filter(|l| l.version >= version)
            .ok_or_else(|| Error::Internal("the published host list was not held".into()))
    }

    /// Founds the fleet whose operator signed `id` and host list version 1
    /// (`raw`) in an etcd that holds no fleet.
    pub(super) fn found(&self, raw: &[u8], id: &[u8], version: u64) -> Result<()> {
        let env = envelope::parse(id, Kind::Fleet, &FleetKey::Id)
            .map_err(|e| Error::BadRequest(format!("not a signed fleet id: {e}")))?;
        let pin = parse_fleet_id(&String::from_utf8_lossy(&env.payload))
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        if env.signer != OPERATOR || !env.signed_by(&pin) || env.fleet != fleet_id(&pin) {
            return Err(Error::BadRequest(
                "the fleet id is not signed by the operator key it names".into(),
            ));
        }
        {
            let c = self.cache();
            if let Some(held) = c.pin
                && held != pin
            {
                return Err(Error::BadRequest(format!(
                    "this host belongs to fleet {}, not {}",
                    fleet_id(&held),
                    fleet_id(&pin)
                )));
            }
            if c.hosts.is_some() {
                return Err(Error::BadRequest(format!(
                    "this host already holds host list version {}: a fleet is founded once",
                    c.hosts_version()
                )));
            }
        }
        let doc =
            flux_vault::membership::open_hosts(raw, version, &pin).map_err(Error::BadRequest)?;
        if version != 1 || !doc.previous.is_empty() || !doc.contains(&self.me) {
            return Err(Error::BadRequest(
                "a fleet is founded with host list version 1, naming no predecessor and listing this host".into(),
            ));
        }
        // Host lists left by an older fleet go: this one starts at 1. (etcd
        // refuses a txn that deletes a range it also writes into.)
        let (ok, _) = self.txn(
            vec![Compare::mod_revision(&FleetKey::Id.to_string(), 0)],
            vec![
                Op::delete_prefix(HOSTS),
                Op::put(&FleetKey::Id.to_string(), id),
            ],
        )?;
        if !ok {
            return Err(Error::Unavailable(Unavailable::Store(
                "etcd holds a fleet already (founded at the same moment, or the endpoints name another fleet's etcd): nothing was founded".into(),
            )));
        }
        let revision = self.put_all(vec![Op::put(&FleetKey::Hosts(1).to_string(), raw)])?;
        let mut applied = Applied::default();
        {
            let mut cache = self.cache();
            cache.pin = Some(pin);
            cache.problem = None;
            cache.apply(&FleetKey::Id, id, revision, &mut applied);
            cache.apply(&FleetKey::Hosts(1), raw, revision, &mut applied);
            cache.revision = revision;
        }
        self.absorb(applied);
        self.flush();
        info!(fleet = %fleet_id(&pin), recipient = %self.me, "founded a new fleet: this host is its first host");
        Ok(())
    }
}
