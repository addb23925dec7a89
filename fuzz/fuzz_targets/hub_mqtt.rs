//! fieldhub's device endpoint after TLS: random bytes from a "device" into the MQTT codec and
//! the connection's packet handling (CONNECT checks, SUBSCRIBE/UNSUBSCRIBE rules, twin GET and
//! reported PATCH, telemetry, method responses, Will), over an in-memory pipe.
//!
//! Input: byte 0 holds flags (bit 0 set: send the bytes as they are; clear: first a valid
//! CONNECT for device `fuzz-dev` with a good SAS token, bit 1 = persistent session, bit 2 =
//! with a Will on the telemetry topic); the rest is the byte stream the device sends before
//! closing.
//!
//! Checks: no panic; the connection ends once the device closes its side (no hang); every
//! byte the hub writes back decodes as MQTT; an authenticated session starts with CONNACK 0.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::v4::{Codec, ConnAck, Connect, ConnectReturnCode, LastWill, Packet};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::codec::{Decoder as _, Encoder as _};

const HOST: &str = "fuzz.hub";
const DEVICE: &str = "fuzz-dev";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct Env {
    rt: tokio::runtime::Runtime,
    hub: fieldhub::Hub,
    _dir: tempfile::TempDir,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        // tmpfs when there is one: the store syncs on every identity write.
        let dir = tempfile::Builder::new()
            .prefix("fieldhub-fuzz")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("temp dir");
        // One hub for the whole run (opening a database per input is slow); each input
        // starts from a freshly created device with no session (see `fresh_device`).
        let hub = fieldhub::Hub::open_offline(dir.path(), HOST).expect("hub");
        Env {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            hub,
            _dir: dir,
        }
    })
}

fn connect_packet(clean: bool, will: bool) -> BytesMut {
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = iothub_proto::sas::generate(
        &iothub_proto::sas::device_resource(HOST, DEVICE),
        KEY,
        None,
        expiry,
    )
    .unwrap();
    let mut c = Connect::new(DEVICE);
    c.keep_alive = 60;
    c.clean_session = clean;
    c.set_login(format!("{HOST}/{DEVICE}/?api-version=2021-04-12"), token);
    if will {
        c.last_will = Some(LastWill::new(
            format!("devices/{DEVICE}/messages/events/k=v"),
            "gone",
            QoS::AtMostOnce,
            false,
        ));
    }
    let mut buf = BytesMut::new();
    codec().encode(Packet::Connect(c), &mut buf).unwrap();
    buf
}

fn codec() -> Codec {
    Codec {
        max_incoming_size: 1 << 20,
        max_outgoing_size: 1 << 20,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let raw = flags & 1 == 1;
    let mut input = if raw {
        BytesMut::new()
    } else {
        connect_packet(flags & 2 == 0, flags & 4 != 0)
    };
    input.extend_from_slice(rest);

    let env = env();
    let hub = &env.hub;
    // Deleting the device drops its twin, session and telemetry: inputs do not see each
    // other's state.
    let _ = hub.delete_device(DEVICE, None);
    hub.upsert_device(
        DEVICE,
        fieldhub::hub::DeviceUpdate {
            primary_key: Some(KEY.into()),
            secondary_key: Some(KEY.into()),
            ..Default::default()
        },
        None,
    )
    .expect("device");

    let output = env.rt.block_on(async {
        let (device, server) = tokio::io::duplex(64 * 1024);
        let (mut rx, mut tx) = tokio::io::split(device);
        let serve = fieldhub::mqtt::serve_stream(hub.clone(), server);
        let client = async {
            let send = async {
                // The hub may stop reading (violation); a failed write is fine.
                let _ = tx.write_all(&input).await;
                let _ = tx.shutdown().await;
            };
            let mut out = Vec::new();
            let recv = rx.read_to_end(&mut out);
            let (_, r) = tokio::join!(send, recv);
            r.expect("read hub output");
            out
        };
        let (out, ()) = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(client, serve)
        })
        .await
        .expect("the connection must end once the device closes its side");
        out
    });

    let mut buf = BytesMut::from(&output[..]);
    let mut packets = Vec::new();
    while !buf.is_empty() {
        match codec().decode(&mut buf) {
            Ok(Some(p)) => packets.push(p),
            other => panic!("hub wrote undecodable bytes: {other:?}"),
        }
    }
    if !raw {
        if let Some(first) = packets.first() {
            assert!(
                matches!(
                    first,
                    Packet::ConnAck(ConnAck {
                        code: ConnectReturnCode::Success,
                        ..
                    })
                ),
                "valid CONNECT answered {first:?}"
            );
        }
    }
    assert!(
        !hub.is_connected(DEVICE),
        "the link stays registered after its connection ended"
    );
});
