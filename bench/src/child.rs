//! Child processes of a benchmark (the gateway, the reference bridge, socat): started with
//! their output in a log file, stopped with SIGTERM and a bounded wait, killed if they linger
//! or when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, ChildStdin, Command};

/// How long a child gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
    child: Child,
    /// Held open for peers that exit when their stdin closes (so none outlives the harness).
    _stdin: Option<ChildStdin>,
}

/// How to start a child beyond its program and arguments.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    /// Extra environment (e.g. `LD_PRELOAD` of another allocator for an A/B).
    pub env: Vec<(String, String)>,
    /// Give the child a pipe as stdin, held open while the `Proc` lives.
    pub stdin_pipe: bool,
}

impl Proc {
    /// Starts `program args…` with stdin closed and stdout+stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[&str], log: PathBuf) -> anyhow::Result<Proc> {
        Proc::spawn_with(name, program, args, log, &SpawnOptions::default())
    }

    /// [`Proc::spawn`] with `opts`.
    pub fn spawn_with(
        name: &str,
        program: &Path,
        args: &[&str],
        log: PathBuf,
        opts: &SpawnOptions,
    ) -> anyhow::Result<Proc> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let mut child = Command::new(program)
            .args(args)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(if opts.stdin_pipe {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let pid = child.id().context("child has no pid")?;
        let stdin = child.stdin.take();
        Ok(Proc {
            name: name.to_string(),
            pid,
            log,
            child,
            _stdin: stdin,
        })
    }

    /// Fails if the process has already exited (with the tail of its log).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "{} exited early ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(20)
            );
        }
        Ok(())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then wait up to [`STOP_GRACE`]; SIGKILL if it is still there.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            // std has no signal API and the workspace has no libc binding: use kill(1).
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(STOP_GRACE, self.child.wait())
                .await
                .is_err()
            {
                tracing::warn!(name = %self.name, "did not stop on SIGTERM; killing");
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for a benchmark on one machine).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits until `path` exists (socat creates its pty links asynchronously).
pub async fn wait_for_path(path: &Path, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while !path.exists() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{} did not appear within {limit:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
