//! Opening the store ([`FleetStore::open`]): this host's identity (a new
//! one adopted once the fleet lists it), the pinned fleet, and what the
//! sealed local copy holds, read back and checked before anything is
//! served.

use super::*;

/// Switches to `<state>/host.key.next` when the newest host list this host
/// keeps lists it (`fluxctl hosts rotate-key` published one that does):
/// the old `host.key` is linked aside, the new one renamed into place, and
/// the old one overwritten and removed — a stop anywhere in between is
/// finished at the next start. Until then the old key stays in use.
fn adopt_next_key(state_dir: &Path) -> Result<()> {
    let state = StateDir::new(state_dir);
    let (key, next) = (state.host_key(), state.next_host_key());
    let old = state.old_host_key();
    if !next.exists() {
        return Ok(shred_durably(&old)?);
    }
    let recipient = HostIdentity::load_or_create(&next)?.recipient();
    let hosts = state.fleet_dir().join(fleet_copy::HOSTS);
    let newest = names_in(&hosts, "")?
        .into_iter()
        .filter_map(|n| n.parse::<u64>().ok().map(|v| (v, n)))
        .max();
    let listed = newest.is_some_and(|(version, name)| {
        read_regular(&hosts.join(name), MAX_VAULT_FILE)
            .ok()
            .flatten()
            .and_then(|raw| envelope::parse(&raw, Kind::Hosts, &FleetKey::Hosts(version)).ok())
            .and_then(|env| {
                serde_json::from_slice::<flux_vault::membership::HostsDoc>(&env.payload).ok()
            })
            .is_some_and(|doc| doc.contains(&recipient))
    });
    if !listed {
        return Ok(());
    }
    if key.exists() && !old.exists() {
        std::fs::hard_link(&key, &old).map_err(|e| Error::io("keep", &old, e))?;
    }
    std::fs::rename(&next, &key).map_err(|e| Error::io("replace", &key, e))?;
    flux_vault::files::sync_dir(state_dir)?;
    shred_durably(&old)?;
    info!(recipient = %recipient, "switched to this host's new key (listed by the fleet); the old one is destroyed");
    Ok(())
}

/// A parsed envelope of the local copy, why it is not used, or nothing
/// (no such file); an error reading it fails the start.
type Parsed = Result<Option<std::result::Result<crate::fleet::cache::Held, String>>>;

/// Reads and parses the local copy's files `names` of `sub` (vaults,
/// deletions) on one thread per CPU, in `names`' order: with a gigabyte of
/// vaults, decoding them is most of what a restart does before it serves.
fn parse_copies(
    dir: &Path,
    sub: &str,
    names: &[String],
    make: fn(&str) -> FleetKey,
) -> Vec<Parsed> {
    let parse = |name: &String| -> Parsed {
        let raw = read_regular(&dir.join(fleet_copy::file(sub, name)), MAX_VAULT_FILE)?;
        Ok(raw.map(|raw| Cache::parse_local(&make(name), &raw)))
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(names.len());
    if threads <= 1 {
        return names.iter().map(parse).collect();
    }
    let chunk = names.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = names
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(parse).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

impl FleetStore {
    /// Opens the store: this host's identity, the pinned fleet, and the
    /// local sealed copy under `state_dir`. Nothing is read from etcd yet
    /// ([`Self::start`]).
    pub fn open(state_dir: &Path, options: &FleetOptions) -> Result<Self> {
        let etcd = Etcd::new(options.etcd.clone()).map_err(|e| Error::Config(e.to_string()))?;
        Self::with_backend(state_dir, options, Box::new(etcd))
    }

    /// [`Self::open`] on any key-value store ([`Backend`]).
    pub fn with_backend(
        state_dir: &Path,
        options: &FleetOptions,
        etcd: Box<dyn Backend>,
    ) -> Result<Self> {
        adopt_next_key(state_dir)?;
        let state = StateDir::new(state_dir);
        let identity = HostIdentity::load_or_create(&state.host_key())?;
        let me = identity.recipient();
        let dir = state.fleet_dir();
        for sub in fleet_copy::DIRS {
            ensure_private_dir(&dir.join(sub))?;
        }
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            Ok(read_regular(&dir.join(name), MAX_VAULT_FILE)?)
        };
        let local_id = read(fleet_copy::ID)?;
        let local_pin = match &local_id {
            Some(raw) => {
                let env = envelope::parse(raw, Kind::Fleet, &FleetKey::Id).map_err(|e| {
                    Error::Config(format!(
                        "{}: {e} (a fleet founded by an earlier fluxd: see docs/FLEET.md, \"Upgrading\")",
                        dir.join(fleet_copy::ID).display()
                    ))
                })?;
                let pin = parse_fleet_id(&String::from_utf8_lossy(&env.payload))?;
                if env.signer != OPERATOR || !env.signed_by(&pin) {
                    return Err(Error::Config(format!(
                        "{}: not signed by the fleet it names",
                        dir.join(fleet_copy::ID).display()
                    )));
                }
                Some(pin)
            }
            None => None,
        };
        let pin = match (&options.fleet_id, local_pin) {
            (Some(id), Some(local)) => {
                let wanted = parse_fleet_id(id)?;
                if wanted != local {
                    return Err(Error::Config(format!(
                        "this host belongs to fleet {}, not {id}: remove [store] fleet_id (or --fleet-id), or move {} away to leave the old fleet",
                        fleet_id(&local),
                        dir.display()
                    )));
                }
                Some(local)
            }
            (Some(id), None) => Some(parse_fleet_id(id)?),
            (None, local) => local,
        };
        let identity = Arc::new(identity);
        let mut cache = Cache::new(me.clone(), pin).with_identity(identity.clone());
        if let Some(raw) = local_id {
            cache.load_local_id(raw);
        }
        for name in names_in(&dir.join(fleet_copy::HOSTS), "")? {
            let file = dir.join(fleet_copy::HOSTS).join(&name);
            let (Ok(version), Some(raw)) = (
                name.parse::<u64>(),
                read(&fleet_copy::file(fleet_copy::HOSTS, &name))?,
            ) else {
                continue;
            };
            cache
                .load_local_hosts(version, raw)
                .map_err(|e| Error::Config(format!("{}: {e}", file.display())))?;
        }
        for (sub, make) in [
            (fleet_copy::VAULTS, FleetKey::vault as fn(&str) -> FleetKey),
            (fleet_copy::DELETED, |p: &str| {
                FleetKey::Deleted(p.to_owned())
            }),
        ] {
            let names = names_in(&dir.join(sub), "")?;
            for (name, parsed) in names.iter().zip(parse_copies(&dir, sub, &names, make)) {
                let key = make(name);
                match parsed? {
                    Some(Ok(held)) => cache.insert_local(&key, held),
                    Some(Err(e)) => {
                        let file = fleet_copy::file(sub, name);
                        warn!(file = %file, error = %e, "local sealed copy not used");
                    }
                    None => {}
                }
            }
        }
        for name in names_in(&dir.join(fleet_copy::KEYS), "")? {
            let file = fleet_copy::file(fleet_copy::KEYS, &name);
            if let Some(raw) = read(&file)?
                && let Err(e) = cache.load_local(&FleetKey::key(&me, &name), raw)
            {
                warn!(file = %file, error = %e, "local sealed copy not used");
            }
        }
        // A list accepted just before a stop may have taken projects away
        // from this host: what it no longer serves goes now.
        let mut dropped = Applied::default();
        cache.retire_lists(&mut dropped);
        cache.drop_unserved(&mut dropped);
        let store = Self {
            etcd,
            identity,
            me,
            dir,
            cache: Mutex::new(cache),
            pending: Mutex::new(dropped.persist),
            flushing: Mutex::new(()),
            compact_on_delete: options.compact_on_delete,
            load_in_background_above: options
                .load_in_background_above
                .unwrap_or(super::super::LOAD_IN_BACKGROUND_ABOVE),
            feed: std::sync::OnceLock::new(),
            remains: Mutex::new(std::collections::BTreeMap::new()),
            applied: std::sync::atomic::AtomicI64::new(0),
            rekeying: Mutex::new(()),
        };
        store.flush();
        Ok(store)
    }

    /// `<state>/host.key.next`: this host's next identity, while a key
    /// rotation is under way ([`adopt_next_key`]).
    pub fn next_key_path(&self) -> PathBuf {
        StateDir::new(self.dir.parent().unwrap_or(Path::new(""))).next_host_key()
    }
}
