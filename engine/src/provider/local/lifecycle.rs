//! Starting and stopping a taskserv's processes: spawning it detached (under its supervisor),
//! stopping the whole family, removing its directory.

use super::*;

pub(super) fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Waits until `pid` is gone (zombies count as gone); false when `limit` ran out first.
pub(super) async fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while procs::alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

impl LocalProvider {
    /// Whether the process we started for the taskserv is still there.
    pub(super) fn running(&self, tsdir: &Path, rec: &TaskservRecord) -> bool {
        match rec.start {
            Some(start) => procs::same_process(rec.pgid, start),
            None => {
                procs::alive(rec.pgid)
                    && tsdir
                        .to_str()
                        .is_some_and(|t| procs::has_marker(rec.pgid, t))
            }
        }
    }

    /// Stops every process of the taskserv in `tsdir` (keeping its files): asks the process we
    /// started to stop (the supervisor stops the service), then kills whatever of the family is
    /// left.
    pub(super) async fn stop_processes(
        &self,
        tsdir: &Path,
        rec: Option<&TaskservRecord>,
    ) -> ProviderResult<()> {
        let tsdir_s = path_str(tsdir)?;
        let pgid = rec
            .map(|r| r.pgid)
            .or_else(|| read_pid(&tsdir.join(SUPERVISOR_PID)));
        let start = rec.and_then(|r| r.start);
        // Who is there now, descendants included: some leave the group and lose the marker.
        let before = procs::family(pgid, start, tsdir_s);
        let leader = match (rec, pgid) {
            (Some(r), _) if self.running(tsdir, r) => Some(r.pgid),
            (None, Some(pid)) if procs::alive(pid) && procs::has_marker(pid, tsdir_s) => Some(pid),
            _ => None,
        };
        if let Some(pid) = leader {
            let supervised = rec.is_none_or(|r| r.supervised);
            let (sig, wait) = if supervised {
                (Signal::SIGTERM, SUPERVISOR_STOP_WAIT)
            } else {
                let kind = rec.and_then(|r| Kind::parse(&r.spec.name));
                (
                    kind.map_or(Signal::SIGTERM, Kind::stop_signal),
                    DIRECT_STOP_WAIT,
                )
            };
            procs::signal(pid, sig);
            wait_gone(pid, wait).await;
        }
        let deadline = Instant::now() + KILL_WAIT;
        loop {
            let family = procs::family(pgid, start, tsdir_s);
            // `family` only counts group members when the group is ours.
            let group = pgid.filter(|g| family.iter().any(|p| p.pgrp == *g));
            let mut left: Vec<u32> = family.iter().map(|p| p.pid).collect();
            left.extend(
                before
                    .iter()
                    .filter(|p| procs::same_process(p.pid, p.start))
                    .map(|p| p.pid),
            );
            left.sort_unstable();
            left.dedup();
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(transient(format!(
                    "processes {left:?} of {} do not go away even after SIGKILL",
                    tsdir.display()
                )));
            }
            if let Some(g) = group {
                procs::signal_group(g, Signal::SIGKILL);
            }
            for pid in &left {
                procs::signal(*pid, Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = std::fs::remove_file(tsdir.join(SUPERVISOR_PID));
        let _ = std::fs::remove_file(tsdir.join(CHILD_PID));
        Ok(())
    }

    /// Stops the taskserv in `tsdir` and removes its files (and its aux dir).
    pub(super) async fn destroy_taskserv_dir(&self, tsdir: &Path) -> ProviderResult<()> {
        if !tsdir.exists() {
            return Ok(());
        }
        let mut rec: Option<TaskservRecord> = read_json(&tsdir.join(TASKSERV_FILE)).unwrap_or(None);
        let aux = rec.as_ref().and_then(|r| r.aux_dir.clone()).or_else(|| {
            let text = std::fs::read_to_string(tsdir.join(AUX_FILE)).ok()?;
            Some(PathBuf::from(text.trim())).filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("provisioning-local-"))
            })
        });
        if let Some(r) = rec.as_mut() {
            r.aux_dir = aux.clone();
        }
        self.stop_processes(tsdir, rec.as_ref()).await?;
        if let Some(aux) = &aux {
            match std::fs::remove_dir_all(aux) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err("remove", aux, e));
                }
                _ => {}
            }
        }
        match std::fs::remove_dir_all(tsdir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("remove", tsdir, e)),
            _ => {
                if let Some(parent) = tsdir.parent() {
                    let _ = std::fs::remove_dir(parent); // only when empty
                }
                Ok(())
            }
        }
    }

    /// Starts the detached process (the supervisor, or the service itself) and returns its pid.
    /// Returns its pid and start time.
    pub(super) fn spawn_detached(
        &self,
        tsdir: &Path,
        launch: &Launch,
    ) -> ProviderResult<(u32, Option<u64>)> {
        let log_path = tsdir.join(LOG_FILE);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_err("open", &log_path, e))?;
        let log2 = log.try_clone().map_err(|e| io_err("open", &log_path, e))?;
        let (program, args, cwd) = if self.supervisor.is_none() {
            let (program, args) = launch
                .argv
                .split_first()
                .ok_or_else(|| permanent("empty command line"))?;
            (PathBuf::from(program), args.to_vec(), launch.cwd.clone())
        } else {
            let opts = Opts {
                dir: tsdir.to_path_buf(),
                cwd: Some(launch.cwd.clone()),
                stop_signal: launch.stop_signal,
                backoff: Duration::from_millis(500),
                command: launch.argv.clone(),
            };
            let mut args = self.supervisor.args_prefix.clone();
            args.extend(opts.to_args());
            (self.supervisor.program.clone(), args, tsdir.to_path_buf())
        };
        let mut cmd = std::process::Command::new(&program);
        cmd.args(&args)
            .current_dir(&cwd)
            .env(MARKER_ENV, tsdir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| permanent(format!("cannot start {}: {e}", program.display())))?;
        let pid = child.id();
        // Read before the reaper thread can reap it, so that the pid is still ours.
        let start = procs::start_time(pid);
        // Reap it when it exits, so that it does not linger as a zombie of this process.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let _ = std::fs::write(tsdir.join(SUPERVISOR_PID), format!("{pid}\n"));
        if self.supervisor.is_none() {
            let _ = std::fs::write(tsdir.join(CHILD_PID), format!("{pid}\n"));
        }
        Ok((pid, start))
    }

    /// `nginx -t` on the generated config, so that mistakes come back as such.
    pub(super) async fn nginx_test(&self, launch: &Launch) -> ProviderResult<()> {
        let (program, args) = launch
            .argv
            .split_first()
            .ok_or_else(|| permanent("empty nginx command"))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .arg("-t")
            .arg("-q")
            .current_dir(&launch.cwd)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(Duration::from_secs(10), cmd.output()).await {
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => Err(permanent(format!(
                "nginx rejects the generated config: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
            Ok(Err(e)) => Err(permanent(format!("cannot run {program}: {e}"))),
            Err(_) => Err(transient("`nginx -t` did not finish within 10s")),
        }
    }

    /// Prepares the taskserv's files, starts it and waits until it is healthy.
    pub(super) async fn start_taskserv(
        &self,
        key: &IdempotencyKey,
        spec: &TaskservSpec,
        kind: Kind,
        server: &ServerRecord,
        tsdir: &Path,
    ) -> ProviderResult<TaskservRecord> {
        let port = server.port_base + kind.port_offset();
        let config = services::check_config(kind, &spec.config).map_err(permanent)?;
        let bin = Binaries::resolve(kind, &spec.version).map_err(permanent)?;
        let check = Check::for_kind(kind, port, &bin).map_err(permanent)?;
        if !port_free(port) {
            return Err(transient(format!(
                "port {port} on {ADDRESS}, which taskserv `{}` of server `{}` uses, is taken by \
                 another process",
                spec.name, spec.server
            )));
        }
        std::fs::create_dir_all(tsdir).map_err(|e| io_err("create", tsdir, e))?;
        let installed_version = bin.version(kind).await;
        let as_root = procs::is_root();
        let (launch, aux_dir) = match kind {
            Kind::Redis => (
                services::redis_launch(&bin, tsdir, port, &config).map_err(permanent)?,
                None,
            ),
            Kind::Nginx => {
                let launch = services::nginx_prepare(&bin, tsdir, port, &config, as_root)
                    .map_err(permanent)?;
                self.nginx_test(&launch).await?;
                (launch, None)
            }
            Kind::Postgres => {
                let (layout, aux) = self.pg_layout(tsdir, as_root)?;
                // Record the aux dir before initdb, so that a remove after a failure finds it.
                if let Some(aux) = &aux {
                    let _ = std::fs::write(tsdir.join(AUX_FILE), path_str(aux)?);
                }
                self.initdb(tsdir, &bin, &layout, &installed_version)
                    .await?;
                (
                    services::postgres_launch(&bin, &layout, port, &config).map_err(permanent)?,
                    aux,
                )
            }
        };
        let log_from = std::fs::metadata(tsdir.join(LOG_FILE)).map_or(0, |m| m.len());
        let (pgid, start) = self.spawn_detached(tsdir, &launch)?;
        let rec = TaskservRecord {
            spec: spec.clone(),
            port,
            pgid,
            start,
            supervised: !self.supervisor.is_none(),
            installed_version,
            aux_dir,
            health: check.describe(),
            key: key.0.clone(),
        };
        write_json(&tsdir.join(TASKSERV_FILE), &rec)?;
        if let Err(why) = self
            .wait_healthy(tsdir, &rec, &check, HEALTH_TIMEOUT, Some(log_from))
            .await
        {
            let tail = log_tail(tsdir, 20);
            self.stop_processes(tsdir, Some(&rec)).await?;
            return Err(transient(format!(
                "taskserv `{}` on local server `{}` did not become healthy ({}): {why}{tail}",
                spec.name,
                spec.server,
                check.describe()
            )));
        }
        Ok(rec)
    }
}
