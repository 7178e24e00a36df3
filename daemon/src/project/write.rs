//! Writes: every mutation — set, set many, delete, rollback, restore —
//! goes through one validator ([`validate_entry`]), one capacity check
//! ([`Capacity`]) and one write path ([`Project::write`]).
//!
//! Writes and reloads of one project are serialized by an async mutex. A
//! write reads back the vault served (fluxd serves current values from
//! memory; the earlier versions stay in the vault, and the vault just
//! written is kept whole for [`KEEP_WRITTEN`]), builds the new secrets
//! — each set a new version, recorded with who asked ([`Writer`]) —
//! checks them, seals and encrypts them, stores them durably (on a blocking
//! thread) with the key that decrypts them, records the file's fingerprint
//! and revision, and only then swaps the snapshot and answers — so an
//! acknowledged write is on disk and every later read sees it.
//!
//! What a write starts from is in `base.rs`, what it may hold in
//! `capacity.rs`; `restore` and `rekey`, which re-seal the stored vault
//! rather than change it, in `reseal.rs`.

use super::base::{Base, Written, write_base};
use super::capacity::{Capacity, Held, validate_entry};
use super::disk::{DiskRead, Keep, changed_names, fingerprint, read_disk, record_floor};
use super::{Project, Snapshot};
use crate::config::Limits;
use crate::error::{Error, Result, Unavailable};
use flux_protocol::SecretValue;
use flux_protocol::limits::validate_secret_name;
use flux_protocol::message::{
    Deleted, EventKind, NamedValue, RolledBack as RolledBackReply, Stored, StoredMany,
    WriteOutcome, Written as WrittenReply, WrittenMany,
};
use flux_vault::time::now_ms;
use flux_vault::vault::{self, Opened, RollbackError, Secrets, SetBy, SetOutcome};
use std::sync::Arc;
use std::time::Instant;
use tracing::info;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes tried before giving up when other writers keep winning.
const WRITE_TRIES: usize = 50;

/// Who writes, and within what: what every write goes by.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    pub limits: &'a Limits,
    /// Earlier values kept per secret (`[vaults] keep_versions`).
    pub keep_versions: usize,
    /// Who asks, recorded with each new version.
    pub by: Option<SetBy>,
}

impl Project {
    /// Sets a secret as a new version; answers once the vault holding it is
    /// durable. A value equal to the current one is no new version
    /// (`created` false, as for an updated one: [`Project::write_one`]
    /// tells them apart).
    pub async fn set(&self, name: &str, value: SecretValue, w: &Writer<'_>) -> Result<Stored> {
        let (outcome, generation) = self.set_one(name, value, w).await?;
        Ok(Stored {
            created: outcome == SetOutcome::Created,
            generation,
        })
    }

    /// [`Project::set`], answering what the write did: created, updated, or
    /// unchanged (the value was already current: no new version).
    pub async fn write_one(
        &self,
        name: &str,
        value: SecretValue,
        w: &Writer<'_>,
    ) -> Result<WrittenReply> {
        let (outcome, generation) = self.set_one(name, value, w).await?;
        Ok(WrittenReply {
            outcome: match outcome {
                SetOutcome::Created => WriteOutcome::Created,
                SetOutcome::Updated => WriteOutcome::Updated,
                SetOutcome::Unchanged => WriteOutcome::Unchanged,
            },
            generation,
        })
    }

    async fn set_one(
        &self,
        name: &str,
        value: SecretValue,
        w: &Writer<'_>,
    ) -> Result<(SetOutcome, u64)> {
        validate_entry(name, &value, w.limits)?;
        let (owned, keep, by) = (name.to_owned(), w.keep_versions, w.by.clone());
        self.write(EventKind::Set, vec![name.to_owned()], w, move |secrets| {
            Ok(secrets.set(&owned, value.clone(), now_ms(), by.clone(), keep))
        })
        .await
    }

    /// Sets several secrets in one vault write, each as a new version: all
    /// of them, or none when any name, value or limit is refused. Every
    /// name already set is answered `updated`, its value changed or not
    /// ([`Project::write_many`] tells them apart).
    pub async fn set_many(&self, entries: Vec<NamedValue>, w: &Writer<'_>) -> Result<StoredMany> {
        let written = self.write_many(entries, w).await?;
        let mut updated = written.updated;
        updated.extend(written.unchanged);
        updated.sort();
        Ok(StoredMany {
            created: written.created,
            updated,
            generation: written.generation,
        })
    }

    /// [`Project::set_many`], answering which names were created, updated,
    /// and unchanged (already holding the value given: no new version).
    pub async fn write_many(
        &self,
        entries: Vec<NamedValue>,
        w: &Writer<'_>,
    ) -> Result<WrittenMany> {
        if entries.is_empty() {
            return Err(Error::BadRequest(
                "set_many needs at least one secret".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for e in &entries {
            validate_entry(&e.name, &e.value, w.limits)?;
            if !seen.insert(e.name.clone()) {
                return Err(Error::BadRequest(format!(
                    "secret {} appears twice",
                    e.name
                )));
            }
        }
        let names: Vec<String> = seen.into_iter().collect();
        let (keep, by) = (w.keep_versions, w.by.clone());
        let ((created, updated, unchanged), generation) = self
            .write(EventKind::Set, names, w, move |secrets| {
                let now = now_ms();
                let (mut created, mut updated, mut unchanged) =
                    (Vec::new(), Vec::new(), Vec::new());
                for e in &entries {
                    match secrets.set(&e.name, e.value.clone(), now, by.clone(), keep) {
                        SetOutcome::Created => created.push(e.name.clone()),
                        SetOutcome::Updated => updated.push(e.name.clone()),
                        SetOutcome::Unchanged => unchanged.push(e.name.clone()),
                    }
                }
                created.sort();
                updated.sort();
                unchanged.sort();
                Ok((created, updated, unchanged))
            })
            .await?;
        Ok(WrittenMany {
            created,
            updated,
            unchanged,
            generation,
        })
    }

    /// Deletes a secret with every version kept of it; answers once the
    /// vault without it is durable.
    pub async fn delete(&self, name: &str, w: &Writer<'_>) -> Result<Deleted> {
        validate_secret_name(name)?;
        let (project, owned, hint) = (
            self.name.clone(),
            name.to_owned(),
            self.store.not_found_hint(),
        );
        let ((), generation) = self
            .write(
                EventKind::Deleted,
                vec![name.to_owned()],
                w,
                move |secrets| match secrets.remove(&owned) {
                    Some(_) => Ok(()),
                    None => Err(Error::NotFound {
                        project: project.clone(),
                        name: owned.clone(),
                        hint: hint.clone(),
                    }),
                },
            )
            .await?;
        Ok(Deleted { generation })
    }

    /// Makes earlier version `to` of a secret (the newest earlier one when
    /// `None`) current again, as a new version; answers once it is durable
    /// and served.
    pub async fn rollback(
        &self,
        name: &str,
        to: Option<u64>,
        w: &Writer<'_>,
    ) -> Result<RolledBackReply> {
        validate_secret_name(name)?;
        if to == Some(0) {
            return Err(Error::BadRequest(format!(
                "secret {name}: version numbers start at 1"
            )));
        }
        let (project, owned, keep, by, hint) = (
            self.name.clone(),
            name.to_owned(),
            w.keep_versions,
            w.by.clone(),
            self.store.not_found_hint(),
        );
        let (rolled, generation) = self
            .write(EventKind::Set, vec![name.to_owned()], w, move |secrets| {
                secrets
                    .rollback(&owned, to, now_ms(), by.clone(), keep)
                    .map_err(|e| match e {
                        RollbackError::NotSet => Error::NotFound {
                            project: project.clone(),
                            name: owned.clone(),
                            hint: hint.clone(),
                        },
                        other => Error::BadRequest(format!("secret {owned}: {other}")),
                    })
            })
            .await?;
        info!(project = %self.name, name, from = rolled.from, version = rolled.version, "secret rolled back");
        Ok(RolledBackReply {
            from: rolled.from,
            version: rolled.version,
            generation,
        })
    }

    /// The write path: under the project's writer lock, read back the vault
    /// served for its earlier versions ([`write_base`]), apply `change` to
    /// it, keep at most `keep_versions` earlier values per secret, check the
    /// result against the limits ([`Capacity`]), seal, encrypt and store it,
    /// then swap in its current values and announce `kind` for `names`.
    /// Returns `change`'s result and the new generation.
    ///
    /// The store compares the vault it replaces with the one the change was
    /// applied to ([`Store::store_vault_if`]); when another host wrote
    /// first (fleet mode), the newer vault (and key) is read and the change
    /// applied again.
    async fn write<T: Send + 'static>(
        &self,
        kind: EventKind,
        names: Vec<String>,
        w: &Writer<'_>,
        mut change: impl FnMut(&mut Secrets) -> Result<T> + Send + 'static,
    ) -> Result<(T, u64)> {
        let started = Instant::now();
        let (capacity, keep) = (Capacity::of(w.limits), w.keep_versions);
        let _writer = self.writer.lock().await;
        let current = Arc::clone(&*self.readable()?);
        let (served_fp, floor) = {
            let disk = self.disk();
            (disk.vault, disk.floor.max(current.revision))
        };
        let (key, store, project) = (self.key.load_full(), self.store.clone(), self.name.clone());
        let served = Arc::clone(&current);
        let last_written = lock(&self.written).take();
        let written = tokio::task::spawn_blocking(move || {
            let Base {
                secrets: mut base,
                fingerprint: mut base_fp,
                mut merged,
                mut new_key,
                mut floor,
            } = write_base(
                &*store,
                &project,
                &key,
                &served,
                served_fp,
                floor,
                last_written,
            )?;
            drop(served);
            let mut key = new_key.as_ref().map_or(key, |(k, _)| k.clone());
            for _ in 0..WRITE_TRIES {
                let before = Held::of(&base);
                // Applied to the base itself: a retry reads a new one.
                let mut secrets = std::mem::take(&mut base);
                let out = change(&mut secrets)?;
                secrets.keep_versions(keep);
                let dropped = capacity.fit(&project, before, &mut secrets)?;
                if dropped > 0 {
                    info!(project = %project, dropped, "earlier versions dropped to stay within [limits] max_project_bytes");
                }
                store.ensure_key(&project, &key)?;
                let revision = floor + 1;
                let bytes =
                    vault::seal(&project, &secrets, revision, &key).map_err(|e| Error::Vault {
                        location: store.vault_location(&project),
                        reason: e.to_string(),
                    })?;
                if store.store_vault_if(&project, base_fp.as_ref(), &bytes)? {
                    record_floor(&*store, &project, revision);
                    // Served from memory without the earlier versions.
                    let current = secrets.current_only();
                    let opened = Opened {
                        revision,
                        secrets: current,
                    };
                    return Ok((out, fingerprint(&bytes), opened, new_key, merged, secrets));
                }
                match read_disk(
                    &*store,
                    &project,
                    Some(key.clone()),
                    (None, None),
                    floor,
                    Keep::Versions,
                ) {
                    Ok(DiskRead::New {
                        key: k,
                        vault,
                        opened,
                    }) => {
                        if let Some((k, fp)) = k {
                            key = k.clone();
                            new_key = Some((k, fp));
                        }
                        floor = floor.max(opened.revision);
                        (base, base_fp, merged) = (opened.secrets, Some(vault), true);
                    }
                    Ok(DiskRead::Same) => unreachable!("no fingerprint was known"),
                    Err(e) => return Err(e),
                }
            }
            Err(Error::Unavailable(Unavailable::Contended { project }))
        })
        .await
        .map_err(|e| Error::Internal(format!("vault writer task failed: {e}")))?;
        let (out, vault_fp, opened, new_key, merged, whole) = written?;
        let secrets = opened.secrets;
        // Built on another writer's vault: its changes are announced too.
        let names = if merged {
            let mut all: std::collections::BTreeSet<String> = names.into_iter().collect();
            all.extend(changed_names(&current.secrets, &secrets));
            all.into_iter().collect()
        } else {
            names
        };
        {
            let mut disk = self.disk();
            disk.vault = Some(vault_fp);
            disk.floor = opened.revision;
            disk.last_error = None;
            if let Some((key, key_fp)) = new_key {
                self.key.store(key);
                disk.key = Some(key_fp);
            }
        }
        let generation = current.generation + 1;
        self.snapshot.store(Arc::new(Snapshot {
            generation,
            loaded_at_ms: now_ms(),
            revision: opened.revision,
            secrets,
            unreadable: None,
        }));
        self.keep_written(Written {
            fingerprint: vault_fp,
            secrets: whole,
            generation,
        });
        self.metrics.apply_write.observe(started.elapsed());
        self.announce(generation, kind, names);
        Ok((out, generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Limit;
    use crate::project::base::KEEP_WRITTEN;
    use crate::store::{LocalStore, Store};
    use tokio_util::sync::CancellationToken;

    fn project(dir: &std::path::Path) -> Project {
        let store: Arc<dyn Store> = Arc::new(LocalStore::open(dir).unwrap());
        Project::create("app", dir.join("app.sock"), store, CancellationToken::new()).unwrap()
    }

    fn writer(limits: &Limits, keep: usize, uid: u32) -> Writer<'_> {
        Writer {
            limits,
            keep_versions: keep,
            by: Some(SetBy::new(uid, Some("/usr/bin/fluxctl"))),
        }
    }

    fn numbers(h: &flux_protocol::message::SecretHistory) -> Vec<u64> {
        h.versions.iter().map(|v| v.version).collect()
    }

    #[tokio::test]
    async fn sets_keep_versions_in_the_vault_not_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let limits = Limits::default();
        for (i, v) in ["one", "two", "three", "four"].iter().enumerate() {
            p.set("K", (*v).into(), &writer(&limits, 2, 1000 + i as u32))
                .await
                .unwrap();
        }
        assert!(
            !p.snapshot().secrets.has_versions(),
            "nothing earlier in memory"
        );
        let h = p.history("K").await.unwrap();
        assert_eq!(numbers(&h), [4, 3, 2]);
        assert_eq!(h.versions[0].uid, Some(1003));
        assert_eq!(h.versions[1].uid, Some(1002));
        assert_eq!(h.versions[0].exe.as_deref(), Some("/usr/bin/fluxctl"));
        let key = p.key.load();
        assert_eq!(h.versions[0].digest, key.digest("four"));
        assert_eq!(h.versions[2].digest, key.digest("two"));

        // The same value again is no new version.
        let stored = p
            .set("K", "four".into(), &writer(&limits, 2, 1))
            .await
            .unwrap();
        assert!(!stored.created);
        assert_eq!(numbers(&p.history("K").await.unwrap()), [4, 3, 2]);

        // keep_versions 0 keeps none, from the next write on.
        p.set("OTHER", "x".into(), &writer(&limits, 0, 1))
            .await
            .unwrap();
        assert_eq!(numbers(&p.history("K").await.unwrap()), [4]);
    }

    #[tokio::test]
    async fn rollback_is_a_new_version_served_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let limits = Limits::default();
        let w = writer(&limits, 5, 1000);
        for v in ["good", "bad"] {
            p.set("K", v.into(), &w).await.unwrap();
        }
        let (mut events, _) = p.subscribe().unwrap();
        let r = p
            .rollback("K", None, &writer(&limits, 5, 42))
            .await
            .unwrap();
        assert_eq!((r.from, r.version), (1, 3));
        p.read_value("K", |v| assert_eq!(v, "good")).unwrap();
        let event = events.try_recv().unwrap();
        assert_eq!(
            (event.kind, event.names),
            (EventKind::Set, vec!["K".to_owned()])
        );
        assert_eq!(event.generation, r.generation);
        let h = p.history("K").await.unwrap();
        assert_eq!(numbers(&h), [3, 2, 1]);
        assert_eq!(h.versions[0].uid, Some(42));
        assert_eq!(h.versions[0].digest, h.versions[2].digest);

        let err = p.rollback("K", Some(3), &w).await.unwrap_err();
        assert!(err.to_string().contains("already the current one"), "{err}");
        let err = p.rollback("K", Some(1), &w).await.unwrap_err();
        assert!(err.to_string().contains("same value"), "{err}");
        let err = p.rollback("K", Some(7), &w).await.unwrap_err();
        assert!(err.to_string().contains("not kept"), "{err}");
        let err = p.rollback("NOPE", None, &w).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");

        // Delete takes the history with it.
        p.delete("K", &w).await.unwrap();
        p.set("K", "again".into(), &w).await.unwrap();
        assert_eq!(numbers(&p.history("K").await.unwrap()), [1]);
    }

    #[tokio::test]
    async fn history_counts_toward_project_bytes_and_the_oldest_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let limits = Limits {
            max_project_bytes: 100,
            max_value_bytes: 40,
            ..Limits::default()
        };
        let w = writer(&limits, 5, 1);
        let value = |c: char| SecretValue::from(c.to_string().repeat(40));
        // 1 + 40 bytes current; each rotation keeps 40 more.
        p.set("A", value('a'), &w).await.unwrap();
        p.set("A", value('b'), &w).await.unwrap();
        p.set("A", value('c'), &w).await.unwrap();
        // 41 + 40 + 40 > 100: the oldest earlier value was dropped.
        assert_eq!(numbers(&p.history("A").await.unwrap()), [3, 2]);
        // A new secret that fits once the earlier values are dropped.
        p.set("B", value('x'), &w).await.unwrap();
        assert_eq!(numbers(&p.history("A").await.unwrap()), [3]);
        // Current values alone over the bound are still refused.
        let err = p.set("C", value('y'), &w).await.unwrap_err();
        assert!(
            matches!(err, Error::LimitReached(Limit::ProjectBytes { .. })),
            "{err}"
        );
        // What was written reads back whole.
        let store = LocalStore::open(dir.path()).unwrap();
        let bytes = store.load_vault("app").unwrap().unwrap();
        let opened = vault::open(&bytes, "app", &p.key.load()).unwrap();
        assert!(opened.secrets.stored_bytes() <= 100);
    }

    #[tokio::test]
    async fn the_vault_just_written_is_kept_whole_for_a_few_seconds_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let limits = Limits::default();
        let w = writer(&limits, 5, 1);
        p.set("A", "1".into(), &w).await.unwrap();
        p.set("A", "2".into(), &w).await.unwrap();
        assert!(lock(&p.written).is_some(), "kept after a write");
        // Not the vault in the store (replaced outside, not loaded yet):
        // the kept copy is not built on.
        p.disk().vault = Some([0; 32]);
        p.set("B", "3".into(), &w).await.unwrap();
        p.read_value("A", |v| assert_eq!(v, "2")).unwrap();
        tokio::time::sleep(KEEP_WRITTEN * 2).await;
        assert!(lock(&p.written).is_none(), "dropped after KEEP_WRITTEN");
        // And the history is read back from the vault.
        assert_eq!(numbers(&p.history("A").await.unwrap()), [2, 1]);
    }

    #[tokio::test]
    async fn a_vault_gone_from_the_store_is_written_again_without_history() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let limits = Limits::default();
        let w = writer(&limits, 5, 1);
        p.set("A", "1".into(), &w).await.unwrap();
        p.set("A", "2".into(), &w).await.unwrap();
        std::fs::remove_file(flux_vault::layout::StateDir::new(dir.path()).vault("app")).unwrap();
        let err = p.history("A").await.unwrap_err();
        assert!(
            err.to_string().contains("no longer the one served"),
            "{err}"
        );
        p.set("B", "3".into(), &w).await.unwrap();
        // The values served are kept; the versions were in the file.
        let h = p.history("A").await.unwrap();
        assert_eq!(numbers(&h), [1]);
        p.read_value("A", |v| assert_eq!(v, "2")).unwrap();
    }

    #[test]
    fn diff_compares_without_showing_values() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let p = project(dir.path());
        let limits = Limits::default();
        let w = writer(&limits, 5, 1);
        rt.block_on(async {
            for (n, v) in [("SAME", "s"), ("CHANGED", "old"), ("PROJECT_ONLY", "p")] {
                p.set(n, v.into(), &w).await.unwrap();
            }
        });
        let given = |pairs: &[(&str, &str)]| -> Vec<NamedValue> {
            pairs
                .iter()
                .map(|(n, v)| NamedValue {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect()
        };
        use flux_protocol::message::DiffState::*;
        let d = p
            .diff(&given(&[
                ("SAME", "s"),
                ("CHANGED", "new"),
                ("FILE_ONLY", "f"),
            ]))
            .unwrap();
        let got: Vec<(&str, flux_protocol::message::DiffState)> =
            d.iter().map(|d| (d.name.as_str(), d.state)).collect();
        assert_eq!(
            got,
            [
                ("CHANGED", Changed),
                ("FILE_ONLY", OnlyInRequest),
                ("PROJECT_ONLY", OnlyInProject),
                ("SAME", Same)
            ]
        );
        assert!(p.diff(&given(&[("A", "1"), ("A", "2")])).is_err());
        assert!(matches!(
            p.diff(&given(&[("1BAD", "1")])),
            Err(Error::InvalidName(_))
        ));
        // Digests: equal values, equal digests.
        rt.block_on(p.set("COPY", "s".into(), &w)).unwrap();
        let digests = p.list_digests().unwrap();
        let of = |n: &str| digests.iter().find(|d| d.name == n).unwrap().digest.clone();
        assert_eq!(of("COPY"), of("SAME"));
        assert_ne!(of("COPY"), of("CHANGED"));
    }
}
