//! Postgres specifics: where its data and socket live (outside the taskserv dir when run as
//! `nobody` under root) and `initdb`.

use super::*;

impl LocalProvider {
    /// Where postgres keeps its data and as whom it runs.
    pub(super) fn pg_layout(
        &self,
        tsdir: &Path,
        as_root: bool,
    ) -> ProviderResult<(PgLayout, Option<PathBuf>)> {
        if !as_root {
            let layout = PgLayout {
                data: tsdir.join("data"),
                socket: tsdir.join("run"),
                run_as: Vec::new(),
            };
            for d in [&layout.data, &layout.socket] {
                std::fs::create_dir_all(d).map_err(|e| io_err("create", d, e))?;
            }
            return Ok((layout, None));
        }
        let (base, aux) = if procs::reachable_by_others(tsdir) {
            (tsdir.to_path_buf(), None)
        } else {
            let tmp = std::env::temp_dir();
            if !procs::reachable_by_others(&tmp) {
                return Err(permanent(format!(
                    "postgres must run as `nobody`, who can reach neither {} nor {}",
                    tsdir.display(),
                    tmp.display()
                )));
            }
            let aux = tmp.join(format!(
                "provisioning-local-{:016x}",
                hash64(path_str(tsdir)?)
            ));
            (aux.clone(), Some(aux))
        };
        let (uid, gid) = procs::nobody();
        let layout = PgLayout {
            data: base.join("data"),
            socket: base.join("run"),
            run_as: if let Some(setpriv) = services::which("setpriv") {
                vec![
                    path_str(&setpriv)?.to_string(),
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".into(),
                    "--".into(),
                ]
            } else if let Some(runuser) = services::which("runuser") {
                vec![
                    path_str(&runuser)?.to_string(),
                    "-u".into(),
                    "nobody".into(),
                    "--".into(),
                ]
            } else {
                return Err(permanent(
                    "postgres refuses to run as root and neither `setpriv` nor `runuser` is \
                     installed to run it as `nobody`",
                ));
            },
        };
        std::fs::create_dir_all(&base).map_err(|e| io_err("create", &base, e))?;
        for d in [&layout.data, &layout.socket] {
            std::fs::create_dir_all(d).map_err(|e| io_err("create", d, e))?;
            std::os::unix::fs::chown(d, Some(uid), Some(gid)).map_err(|e| io_err("chown", d, e))?;
        }
        Ok((layout, aux))
    }

    /// `initdb` unless the data dir already holds a cluster.
    pub(super) async fn initdb(
        &self,
        tsdir: &Path,
        bin: &Binaries,
        layout: &PgLayout,
        installed: &str,
    ) -> ProviderResult<()> {
        let pg_version = layout.data.join("PG_VERSION");
        if let Ok(existing) = std::fs::read_to_string(&pg_version) {
            let existing = existing.trim();
            let major = installed.split('.').next().unwrap_or("");
            if !major.is_empty() && existing != major {
                return Err(permanent(format!(
                    "{} holds a postgres {existing} cluster but the installed postgres is {installed}; \
                     remove the taskserv to start afresh",
                    layout.data.display()
                )));
            }
            return Ok(());
        }
        let initdb = bin
            .initdb
            .as_ref()
            .ok_or_else(|| permanent("`initdb` not found"))?;
        // A half-done earlier attempt: start again from an empty directory.
        if std::fs::read_dir(&layout.data)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
        {
            let meta =
                std::fs::metadata(&layout.data).map_err(|e| io_err("read", &layout.data, e))?;
            std::fs::remove_dir_all(&layout.data).map_err(|e| io_err("clear", &layout.data, e))?;
            std::fs::create_dir_all(&layout.data).map_err(|e| io_err("create", &layout.data, e))?;
            use std::os::unix::fs::MetadataExt;
            let _ = std::os::unix::fs::chown(&layout.data, Some(meta.uid()), Some(meta.gid()));
        }
        let mut argv = layout.run_as.clone();
        argv.extend([
            path_str(initdb)?.to_string(),
            "-D".into(),
            path_str(&layout.data)?.to_string(),
            "-U".into(),
            "postgres".into(),
            "--auth=trust".into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C".into(),
            "--no-sync".into(),
        ]);
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| permanent("empty initdb command"))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(&layout.data)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = match tokio::time::timeout(INITDB_TIMEOUT, cmd.output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(permanent(format!("cannot run {program}: {e}"))),
            Err(_) => {
                return Err(transient(format!(
                    "initdb did not finish within {INITDB_TIMEOUT:?}"
                )));
            }
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log_path = tsdir.join(LOG_FILE);
        if let Ok(mut log) = OpenOptions::new().create(true).append(true).open(&log_path) {
            use std::io::Write;
            let _ = writeln!(log, "$ {}\n{text}", argv.join(" "));
        }
        if !out.status.success() {
            let tail: Vec<&str> = text
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(permanent(format!(
                "initdb failed ({}):\n{}",
                out.status,
                tail.join("\n")
            )));
        }
        Ok(())
    }
}
