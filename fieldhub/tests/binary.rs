//! The `fieldhub serve` binary: first start creates the data dir contents (secrets owner-only), prints the ready
//! line with the bound ports, and SIGTERM stops it cleanly.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

#[test]
fn serve_prints_ready_line_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fieldhub"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--mqtt", "127.0.0.1:0", "--https", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A reader thread with a bounded wait, so a hung binary fails the test instead of hanging.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(std::time::Duration::from_secs(20));
    let line = match line {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            panic!("no ready line");
        }
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..2], ["fieldhub", "ready"], "line: {line}");
    let mqtt: std::net::SocketAddr = words[2].strip_prefix("mqtt=").unwrap().parse().unwrap();
    let https: std::net::SocketAddr = words[3].strip_prefix("https=").unwrap().parse().unwrap();
    assert_ne!(mqtt.port(), 0);
    std::net::TcpStream::connect(mqtt).unwrap();
    std::net::TcpStream::connect(https).unwrap();

    for f in ["ca.pem", "service.connstr", "fieldhub.redb"] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let connstr = std::fs::read_to_string(dir.path().join("service.connstr")).unwrap();
    let cs = iothub_proto::ConnectionString::parse(connstr.trim()).unwrap();
    assert_eq!(cs.host_name, format!("localhost:{}", https.port()));
    assert_eq!(cs.key_name.as_deref(), Some("iothubowner"));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Bounded wait for exit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st}");
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("fieldhub did not stop on SIGTERM");
        }
        std::thread::park_timeout(std::time::Duration::from_millis(50));
    }
}

/// The data directory's secrets (CA key, `iothubowner` connection string, database with the
/// device keys) are owner-only: files `0600` in a directory created `0700`; files left
/// world-readable by older versions are tightened on the next start.
#[cfg(unix)]
#[tokio::test]
async fn data_dir_secrets_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("hub");
    let hub = tokio::time::timeout(
        crate::support::T,
        fieldhub::start(fieldhub::HubConfig::for_tests(&dir)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(mode(&dir), 0o700, "data dir");
    let secrets = ["ca-key.pem", "service.connstr", "fieldhub.redb"];
    for f in secrets {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    tokio::time::timeout(crate::support::T, hub.shutdown())
        .await
        .unwrap();

    for f in secrets {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let hub = tokio::time::timeout(
        crate::support::T,
        fieldhub::start(fieldhub::HubConfig::for_tests(&dir)),
    )
    .await
    .unwrap()
    .unwrap();
    for f in secrets {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f} after restart");
    }
    tokio::time::timeout(crate::support::T, hub.shutdown())
        .await
        .unwrap();
}
