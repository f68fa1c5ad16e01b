//! The outputs of an accepted build: fetched and checked one by one, then renamed into
//! place and registered together once every check passed.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

use super::Build;
use crate::agent_channel::AgentChannel;
use crate::local_store::PathRegistration;
use crate::output_fetch::{self, FetchedOutput, Wanted};

impl Build<'_> {
    pub(super) async fn fetch_and_register(
        &self,
        chan: &mut AgentChannel,
        host: &str,
        already: &BTreeSet<String>,
    ) -> Result<()> {
        let wanted = self.output_paths();
        let mut fetched = Vec::new();
        let t = Instant::now();
        let result = self
            .fetch_and_register_inner(chan, host, &wanted, already, &mut fetched)
            .await;
        if result.is_err() {
            // Outputs already moved into place were not registered: remove them. The others
            // are still temporary trees, removed when `fetched` is dropped.
            for f in fetched.iter().filter(|f| f.staged.is_none()) {
                let _ = self.store.remove_stale(&f.info.path);
            }
        }
        result?;
        self.phases.mark(crate::phases::REGISTERED);
        let bytes: u64 = fetched.iter().map(|f| f.nar_size).sum();
        self.ui.info(&format!(
            "nsh: received {} output(s) ({bytes} bytes) from {host} in {:.2}s",
            fetched.len(),
            t.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Fetches the outputs not valid here into `fetched`, checks them, moves them into
    /// place and registers them; on error the caller removes what was moved.
    async fn fetch_and_register_inner(
        &self,
        chan: &mut AgentChannel,
        host: &str,
        wanted: &[String],
        already: &BTreeSet<String>,
        fetched: &mut Vec<FetchedOutput>,
    ) -> Result<()> {
        for path in wanted.iter().filter(|p| !already.contains(*p)) {
            let output = self
                .drv
                .outputs
                .iter()
                .find(|(_, o)| &o.path == path)
                .map_or("out", |(name, _)| name.as_str());
            let fixed = self
                .drv
                .fixed_output(output)
                .with_context(|| format!("{}: output '{output}'", self.drv_path))?;
            let want = Wanted {
                path,
                output,
                drv_path: &self.drv_path,
                fixed: fixed.as_ref(),
            };
            let out = output_fetch::fetch_output(chan, &self.store, self.ui, want)
                .await
                .with_context(|| format!("job {} on {host}", self.job))?;
            fetched.push(out);
        }
        self.phases.mark("output fetch");
        self.check_references(host, fetched)?;
        // Every check passed: into place (a stale invalid copy goes first), then register.
        // nix-store and SQLite block: off the runtime's worker (the agent keepalive runs on).
        tokio::task::block_in_place(|| self.commit_and_register(fetched))
    }

    fn commit_and_register(&self, fetched: &mut [FetchedOutput]) -> Result<()> {
        for f in fetched.iter_mut() {
            if let Some(staged) = f.staged.take() {
                self.store.remove_stale(&f.info.path)?;
                staged.commit(&self.store.real_path(&f.info.path)?)?;
            }
        }
        let regs: Vec<PathRegistration> = fetched
            .iter()
            .map(|f| PathRegistration {
                path: f.info.path.clone(),
                nar_sha256_hex: f.nar_sha256_hex.clone(),
                nar_size: f.nar_size,
                // We know the deriver; the remote's word is not needed.
                deriver: Some(self.drv_path.clone()),
                references: f.info.references.clone(),
            })
            .collect();
        if !regs.is_empty() {
            self.store.register_valid(&regs)?;
            self.registered
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let cas: Vec<(String, String)> = fetched
            .iter()
            .filter_map(|f| Some((f.info.path.clone(), f.ca.clone()?)))
            .collect();
        if let Err(e) = crate::ca_db::set_content_addresses(&self.store.state_dir, &cas) {
            self.ui.warn(&format!(
                "nsh: the outputs of {} are valid and match their fixed output hash, but \
                 their content address (ca) could not be recorded: {e:#}",
                self.drv_path
            ));
        }
        Ok(())
    }

    /// References must be store paths that are valid here or registered together; a
    /// fixed output has none (Nix's rule).
    fn check_references(&self, host: &str, fetched: &[FetchedOutput]) -> Result<()> {
        let registering: BTreeSet<&str> = fetched.iter().map(|f| f.info.path.as_str()).collect();
        let mut outside = Vec::new();
        for f in fetched {
            if f.ca.is_some() && !f.info.references.is_empty() {
                bail!(
                    "fixed-output derivations must not reference store paths: output '{}' \
                     of '{}' (from the agent on {host}) refers to {} paths, e.g. '{}'; \
                     refused, nothing registered",
                    f.info.path,
                    self.drv_path,
                    f.info.references.len(),
                    f.info.references.first().map_or("", String::as_str)
                );
            }
            for r in &f.info.references {
                nsh_wire::store_path::StorePath::parse(r, &self.store.store_dir).map_err(|e| {
                    anyhow!(
                        "output '{}' has an invalid reference '{r}' (from the agent on \
                         {host}): {e}; refused, nothing registered",
                        f.info.path
                    )
                })?;
                if !registering.contains(r.as_str()) {
                    outside.push(r.clone());
                }
            }
        }
        outside.sort();
        outside.dedup();
        let valid = self.store.valid_subset(&outside)?;
        if let Some(bad) = outside.iter().find(|r| !valid.contains(*r)) {
            let of = fetched
                .iter()
                .find(|f| f.info.references.contains(bad))
                .map_or(self.drv_path.as_str(), |f| f.info.path.as_str());
            bail!(
                "output '{of}' of '{}' refers to '{bad}', which is neither an output nor \
                 valid locally; refused, nothing registered",
                self.drv_path
            );
        }
        Ok(())
    }
}
