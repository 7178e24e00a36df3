//! Rotation of the audit log: `audit.log` → `audit.log.1` → … before a
//! line that would take the file past `[audit] max_bytes`; the oldest file
//! removed — loudly, and counted, when it holds entries younger than
//! `[audit] keep_for` — and the uid that wrote most of the file logged
//! (counted as driving rotation past half of it).

use super::log::{self, rotated};
use super::state::DRIVER_UIDS;
use super::writer::{Writer, open_log};
use flux_vault::time::{format_time_ms, now_ms};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::{error, info, warn};

impl Writer {
    /// `audit.log` → `audit.log.1` → … → `audit.log.<keep>`, removing the
    /// oldest (loudly when it is younger than `keep_for`); then a new,
    /// empty `audit.log`. False when the log could not be rotated (it keeps
    /// growing; the next batch tries again).
    pub(super) fn rotate(&mut self) -> bool {
        let now = now_ms();
        let top = self.top_writer(now);
        let victim = match self.keep {
            0 => self.path.clone(),
            n => rotated(&self.path, n),
        };
        let young = self.young(&victim, now);
        let result = (|| -> std::io::Result<()> {
            match std::fs::remove_file(&victim) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for n in (1..self.keep).rev() {
                match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            if self.keep > 0 {
                std::fs::rename(&self.path, rotated(&self.path, 1))?;
            }
            Ok(())
        })();
        if let Some(lost) = young.filter(|_| result.is_ok()) {
            self.report_young(&victim, &lost, top.as_ref());
        }
        if let Err(e) = result {
            if !self.rotate_failing {
                error!(path = %self.path.display(), error = %e, "cannot rotate the audit log; it keeps growing past [audit] max_bytes until it can");
            }
            self.rotate_failing = true;
            return false;
        }
        match open_log(&self.path) {
            Ok(file) => {
                self.file = file;
                self.size = 0;
                self.by_uid.clear();
                self.started_ms = Some(now);
                self.rotate_failing = false;
                self.shared
                    .rotation
                    .rotations
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(top) = &top {
                    self.report_top(top);
                }
                info!(path = %self.path.display(), keep = self.keep, "audit log rotated");
                true
            }
            Err(e) => {
                error!(error = %e, "cannot reopen the audit log after rotating it");
                false
            }
        }
    }

    /// Who wrote most of the file being rotated.
    fn top_writer(&self, now: u64) -> Option<TopWriter> {
        let (&uid, &bytes) = self.by_uid.iter().max_by_key(|(_, b)| **b)?;
        Some(TopWriter {
            uid,
            bytes,
            size: self.size.max(1),
            filled_in: self
                .started_ms
                .map(|s| Duration::from_millis(now.saturating_sub(s))),
        })
    }

    /// Logs the top writer of a rotated file; counts it as driving
    /// rotation when it wrote more than half of it.
    fn report_top(&self, top: &TopWriter) {
        let filled = match top.filled_in {
            Some(d) => format!(
                " in {}",
                humantime::format_duration(Duration::from_secs(d.as_secs()))
            ),
            None => String::new(),
        };
        if top.bytes * 2 <= top.size {
            info!(
                uid = top.uid,
                "the audit log filled{filled}; uid {} wrote the most of it ({}%)",
                top.uid,
                top.percent()
            );
            return;
        }
        warn!(
            uid = top.uid,
            "uid {} drives the audit log's rotation: it wrote {}% of the {} bytes rotated{filled} (fluxctl audit shows what it did)",
            top.uid,
            top.percent(),
            top.size
        );
        let mut d = self
            .shared
            .rotation
            .drivers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if d.by_uid.contains_key(&top.uid) || d.by_uid.len() < DRIVER_UIDS {
            *d.by_uid.entry(top.uid).or_default() += 1;
        } else {
            d.other += 1;
        }
    }

    /// When `victim` exists and its newest entry is younger than
    /// `keep_for`: what removing it loses.
    fn young(&self, victim: &Path, now: u64) -> Option<log::Span> {
        if self.keep_for.is_zero() {
            return None;
        }
        let meta = std::fs::metadata(victim).ok()?;
        let age = meta.modified().ok()?.elapsed().unwrap_or_default();
        if age >= self.keep_for {
            return None;
        }
        let since = now.saturating_sub(self.keep_for.as_millis() as u64);
        Some(log::span(victim, since).unwrap_or_default())
    }

    /// Says loudly that rotation removed entries younger than `keep_for`.
    fn report_young(&self, victim: &Path, lost: &log::Span, top: Option<&TopWriter>) {
        let r = &self.shared.rotation;
        r.dropped_files.fetch_add(1, Ordering::Relaxed);
        r.dropped_young_entries
            .fetch_add(lost.young, Ordering::Relaxed);
        let keep_for = humantime::format_duration(self.keep_for);
        let who = match top {
            Some(t) => format!(
                "uid {} wrote {}% of the file rotated now",
                t.uid,
                t.percent()
            ),
            None => "who wrote it is not known (it was written before fluxd started)".into(),
        };
        let span = match (lost.first_ms, lost.last_ms) {
            (Some(f), Some(l)) => format!(" ({} to {})", format_time_ms(f), format_time_ms(l)),
            _ => String::new(),
        };
        error!(
            file = %victim.display(),
            lost = lost.young,
            "audit entries younger than [audit] keep_for ({keep_for}) are lost: rotation removed {} with {} entries{span}, {} of them from the last {keep_for}; {who}. Raise [audit] max_bytes or keep, or stop what writes so much",
            victim.display(),
            lost.entries,
            lost.young
        );
    }
}

/// The uid that wrote the most of a file.
#[derive(Debug)]
struct TopWriter {
    uid: u32,
    bytes: u64,
    /// The file's size (its lines from before fluxd started included).
    size: u64,
    /// How long the file took to fill, when fluxd started it.
    filled_in: Option<Duration>,
}

impl TopWriter {
    fn percent(&self) -> u64 {
        self.bytes * 100 / self.size
    }
}
