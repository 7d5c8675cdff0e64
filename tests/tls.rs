//! MQTT over TLS against a real mosquitto TLS listener, with a CA and certificates made by
//! `openssl` at test time: the right CA connects, a wrong CA or a certificate for another name is
//! refused with a clear logged error, and a client certificate (mutual TLS) works.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(60);

/// Runs `openssl` with `args` in `dir`; panics with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA `name.crt` / `name.key` in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
    dir.join(format!("{name}.crt"))
}

/// A key and a certificate `name.crt` signed by `ca`, with `ext` (subjectAltName, usage).
fn make_cert(dir: &Path, ca: &str, name: &str, ext: &str) -> (PathBuf, PathBuf) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-days",
            "2",
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

/// mosquitto with a plain loopback listener (for the test's subscriber) and a TLS listener.
struct TlsBroker {
    broker: Broker,
    tls: u16,
}

impl TlsBroker {
    fn plain(&self) -> u16 {
        self.broker.port
    }
}

/// Certificates for one test: CA `ca`, a broker certificate for `localhost` / 127.0.0.1, a
/// client certificate, and an unrelated CA `other-ca`.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new(server_names: &str) -> Option<Pki> {
        if which("mosquitto").is_none() || which("openssl").is_none() {
            eprintln!(
                "skipped: mosquitto and openssl are needed for the TLS tests (CI installs them)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        make_ca(p, "ca");
        make_ca(p, "other-ca");
        make_cert(
            p,
            "ca",
            "server",
            &format!("subjectAltName={server_names}\n"),
        );
        make_cert(
            p,
            "ca",
            "client",
            "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n",
        );
        Some(Pki { dir })
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn broker(&self, require_client_cert: bool) -> TlsBroker {
        let tls = free_port();
        let extra = format!(
            "listener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_client_cert}\n",
            self.path("ca.crt").display(),
            self.path("server.crt").display(),
            self.path("server.key").display()
        );
        let broker =
            Broker::mosquitto("allow_anonymous true\n", &extra).expect("checked in Pki::new");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", tls)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "TLS listener :{tls}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        TlsBroker { broker, tls }
    }

    /// A daemon config for the TLS port; `tls` is the body of `[mqtt.tls]`.
    fn config(&self, broker: &TlsBroker, tls: &str) -> PathBuf {
        let run = self.dir.path().join(format!("run-{}", free_port()));
        std::fs::create_dir(&run).unwrap();
        write_config(
            &run,
            broker.tls,
            &root().join("samples/frames"),
            &format!("\n[mqtt.tls]\nenabled = true\n{tls}\n"),
        )
    }
}

fn online(broker: &TlsBroker) -> Subscriber {
    Subscriber::start(broker.plain(), "emonet/test/availability")
}

fn stop(mut daemon: Daemon) {
    daemon.signal("TERM");
    let status = daemon.wait(Duration::from_secs(15));
    assert!(status.success(), "exit {status:?}:\n{}", daemon.log());
}

#[test]
fn right_ca_connects_over_tls() {
    let Some(pki) = Pki::new("DNS:localhost,IP:127.0.0.1") else {
        return;
    };
    let broker = pki.broker(false);
    let sub = online(&broker);
    let cfg = pki.config(&broker, &format!("ca_file = {:?}", pki.path("ca.crt")));
    // By name and by address: both are in the broker certificate.
    for host in ["localhost", "127.0.0.1"] {
        let daemon = Daemon::start(&cfg, &[("EMONET__MQTT__HOST", host)]);
        sub.wait_for("online over TLS", WAIT, |m| m.payload == "online");
        daemon.wait_log("connected to", WAIT);
        stop(daemon);
        sub.msgs.lock().unwrap().clear();
    }
}

#[test]
fn wrong_ca_is_refused_with_a_clear_error() {
    let Some(pki) = Pki::new("DNS:localhost,IP:127.0.0.1") else {
        return;
    };
    let broker = pki.broker(false);
    let sub = online(&broker);
    let cfg = pki.config(
        &broker,
        &format!("ca_file = {:?}", pki.path("other-ca.crt")),
    );
    let daemon = Daemon::start(&cfg, &[("EMONET__MQTT__HOST", "localhost")]);
    let log = daemon.wait_log("UnknownIssuer", WAIT);
    let line = log.lines().find(|l| l.contains("UnknownIssuer")).unwrap();
    assert!(line.contains("WARN") || line.contains("ERROR"), "{line}");
    assert!(
        line.contains("mqtt.tls.ca_file"),
        "names the setting: {line}"
    );
    assert!(
        !sub.all().iter().any(|m| m.payload == "online"),
        "published through an untrusted broker"
    );
    stop(daemon);
}

#[test]
fn certificate_for_another_name_is_refused() {
    let Some(pki) = Pki::new("DNS:broker.example.org") else {
        return;
    };
    let broker = pki.broker(false);
    let sub = online(&broker);
    let cfg = pki.config(&broker, &format!("ca_file = {:?}", pki.path("ca.crt")));
    let daemon = Daemon::start(&cfg, &[("EMONET__MQTT__HOST", "localhost")]);
    let log = daemon.wait_log("not valid for name", WAIT);
    let line = log
        .lines()
        .find(|l| l.contains("not valid for name"))
        .unwrap();
    assert!(line.contains("localhost"), "names the host: {line}");
    assert!(!sub.all().iter().any(|m| m.payload == "online"));
    stop(daemon);
}

#[test]
fn client_certificate_mutual_tls() {
    let Some(pki) = Pki::new("DNS:localhost,IP:127.0.0.1") else {
        return;
    };
    let broker = pki.broker(true);
    let sub = online(&broker);
    let cfg = pki.config(
        &broker,
        &format!(
            "ca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}",
            pki.path("ca.crt"),
            pki.path("client.crt"),
            pki.path("client.key")
        ),
    );
    let daemon = Daemon::start(&cfg, &[("EMONET__MQTT__HOST", "localhost")]);
    sub.wait_for("online with a client certificate", WAIT, |m| {
        m.payload == "online"
    });
    stop(daemon);
    // Without one, the broker refuses the handshake and the daemon says so.
    let cfg = pki.config(&broker, &format!("ca_file = {:?}", pki.path("ca.crt")));
    sub.msgs.lock().unwrap().clear();
    let daemon = Daemon::start(&cfg, &[("EMONET__MQTT__HOST", "localhost")]);
    daemon.wait_log("cannot connect to localhost", WAIT);
    assert!(!sub.all().iter().any(|m| m.payload == "online"));
    stop(daemon);
}

#[test]
fn tls_files_are_checked_by_check() {
    let Some(pki) = Pki::new("DNS:localhost") else {
        return;
    };
    let broker = pki.broker(false);
    for (tls, key) in [
        ("ca_file = \"/nonexistent/ca.pem\"", "mqtt.tls.ca_file"),
        (
            &format!(
                "ca_file = {:?}\nclient_cert = {:?}",
                pki.path("ca.crt"),
                pki.path("client.crt")
            ) as &str,
            "mqtt.tls.client_key",
        ),
        (
            &format!("ca_file = {:?}", pki.path("server.ext")) as &str,
            "mqtt.tls.ca_file",
        ),
    ] {
        let cfg = pki.config(&broker, tls);
        let (code, err) = emonet_check(&cfg, &[]);
        assert_ne!(code, Some(0), "{tls}: accepted");
        assert!(err.contains(key), "{tls}: error does not name {key}: {err}");
    }
}
