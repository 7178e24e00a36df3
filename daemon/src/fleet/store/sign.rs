//! What this host signs and opens: envelopes signed as this host
//! ([`FleetStore::sign`]), a project key wrapped for every host that
//! serves it ([`FleetStore::key_puts`]) and this host's copy unwrapped
//! ([`FleetStore::unwrap_key`]).

use super::*;

impl FleetStore {
    /// Signs `payload` for `key` as this host, at the held host list's
    /// version as its epoch.
    pub(in crate::fleet) fn sign(
        &self,
        kind: Kind,
        key: &FleetKey,
        version: u64,
        payload: &[u8],
    ) -> Vec<u8> {
        let epoch = self.cache().hosts_version();
        self.sign_at(kind, key, version, epoch, payload)
    }

    /// Signs `payload` for `key` as this host, at `epoch`.
    pub(in crate::fleet) fn sign_at(
        &self,
        kind: Kind,
        key: &FleetKey,
        version: u64,
        epoch: u64,
        payload: &[u8],
    ) -> Vec<u8> {
        let fleet = self.fleet_id().unwrap_or_default();
        let s = Signing {
            fleet: &fleet,
            kind,
            version,
            epoch,
        };
        envelope::seal(s, key, payload, &self.identity)
    }

    /// Unwraps this host's copy of a project key.
    pub fn unwrap_key(&self, name: &str, wrapped: &[u8]) -> Result<Zeroizing<String>> {
        let plain =
            flux_vault::vault::decrypt(wrapped, self.identity.age()).map_err(|e| Error::Key {
                location: self.key_location(name),
                reason: format!("cannot unwrap with this host's identity: {e}"),
            })?;
        let text = std::str::from_utf8(&plain).map_err(|_| Error::Key {
            location: self.key_location(name),
            reason: "not a text key".into(),
        })?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    /// This host's plain copy of `project`'s key, as held.
    pub(in crate::fleet) fn plain_key(&self, project: &str) -> Result<Zeroizing<String>> {
        let wrapped = self
            .cache()
            .keys
            .get(project)
            .map(|h| h.payload.clone())
            .ok_or_else(|| Error::Key {
                location: self.key_location(project),
                reason: format!(
                    "this host ({}) holds no key for the project; add it with `fluxctl hosts add` on a host that serves it",
                    self.me
                ),
            })?;
        self.unwrap_key(project, &wrapped)
    }

    /// The signed key envelopes that give `plain` (generation `generation`)
    /// to every host of the held list.
    pub(in crate::fleet) fn key_puts(
        &self,
        project: &str,
        plain: &[u8],
        generation: u64,
        epoch: u64,
        hosts: &[crate::fleet::identity::HostRecord],
    ) -> Result<(Vec<Op>, Option<Vec<u8>>)> {
        let mut ops = Vec::new();
        let mut mine = None;
        for h in hosts {
            let recipient = match parse_recipient(&h.recipient) {
                Ok(r) => r,
                Err(_) => {
                    warn!(host = %h.recipient, "skipping a listed host that is not an age recipient");
                    continue;
                }
            };
            let key = FleetKey::key(&h.recipient, project);
            let env = self.sign_at(
                Kind::Key,
                &key,
                generation,
                epoch,
                &wrap_for(plain, &recipient)?,
            );
            if h.recipient == self.me {
                mine = Some(env.clone());
            }
            ops.push(Op::put(&key.to_string(), &env));
        }
        Ok((ops, mine))
    }
}
