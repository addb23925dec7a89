//! The gateway end to end against Modbus peers other than doorsim-over-TCP: an independent
//! Modbus server (pymodbus) as the door controller, and doorsim behind a real serial line
//! emulation (a socat pty pair carrying RTU frames through tokio-serial).

use fieldhub::doorsim::{self, DoorSimConfig, Listen, Table};
use serde_json::json;

use crate::support::harness::{bounded, tcp_bus, Env};
use crate::support::peers::{has_pymodbus, has_socat, pty_pair, pymodbus};

#[tokio::test]
async fn lock_door_over_rtu_on_a_socat_pty_pair() {
    if !has_socat() {
        return;
    }
    let pty = pty_pair().await;
    let mut env = Env::start(2).await;
    let rtu_sim = bounded(
        "doorsim on the pty",
        doorsim::start(DoorSimConfig {
            listen: Listen::RtuSerial {
                path: pty.b.clone(),
                baud: 19200,
            },
            units: vec![1, 2],
            line_baud: None,
        }),
    )
    .await
    .unwrap();
    env.bus_toml = format!(
        "[[bus]]\nname = \"tcp\"\nserial = \"{}\"\nbaud = 19200\nparity = \"none\"\ntimeout = \"500ms\"\n",
        pty.a
    );
    rtu_sim.handle.set_coil(2, 0, false);
    let gw = env.gateway().await;
    let svc = env.service();
    let (_, body) = svc.invoke("door-2", "lockDoor", json!(null)).await;
    assert_eq!(body["status"], 200, "{body}");
    assert_eq!(body["payload"]["state"]["locked"], true);
    let log = rtu_sim.handle.write_log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        (log[0].unit, log[0].table, log[0].addr),
        (2, Table::Coil, 0)
    );

    svc.set_desired("door-1", json!({"Floor": -3})).await;
    svc.wait_reported("door-1", "Floor ack over RTU", |r| {
        r["Floor"]["ac"] == json!(200)
    })
    .await;
    assert_eq!(rtu_sim.handle.holding(1, 1) as i16, -3);
    assert!(
        env.sim.handle.write_log().is_empty(),
        "the TCP doorsim was not used"
    );
    gw.shutdown().await;
    rtu_sim.shutdown().await;
}

#[tokio::test]
async fn lock_door_and_desired_on_a_pymodbus_controller() {
    if !has_pymodbus() {
        return;
    }
    let server = pymodbus(&["tcp", "127.0.0.1:0"]).await;
    let mut env = Env::start(2).await;
    env.bus_toml = tcp_bus(&server.ready, "timeout = \"1s\"");
    let gw = env.gateway().await;
    let svc = env.service();

    let (_, body) = svc.invoke("door-1", "lockDoor", json!(null)).await;
    assert_eq!(body["status"], 200, "{body}");
    assert_eq!(
        body["payload"]["state"]["locked"], true,
        "read back from pymodbus"
    );

    svc.set_desired("door-2", json!({"Building": 43, "Floor": 3}))
        .await;
    let reported = svc
        .wait_reported("door-2", "acks from pymodbus", |r| {
            r["Building"]["ac"] == json!(200) && r["Floor"]["ac"] == json!(200)
        })
        .await;
    assert_eq!(reported["Building"]["value"], 43);
    // pymodbus input register i of unit u holds 100*u + i: the poller read unit 2's map.
    svc.wait_reported("door-2", "polled battery", |r| {
        r["batteryVoltage"] == json!(2.01)
    })
    .await;
    assert!(
        env.sim.handle.write_log().is_empty(),
        "doorsim was not used"
    );
    gw.shutdown().await;
}

/// The at-rest poll cycles against an independent controller: pymodbus's coil flips with a
/// lock, stays put through the cycles of an unlock pulse (the poller settles on it), and flips
/// back to the value it had settled on before — each reported.
#[tokio::test]
async fn a_pymodbus_door_at_rest_reports_its_lock_flipping_and_flipping_back() {
    if !has_pymodbus() {
        return;
    }
    let server = pymodbus(&["tcp", "127.0.0.1:0"]).await;
    let mut env = Env::start(1).await;
    env.bus_toml = tcp_bus(&server.ready, "timeout = \"1s\"");
    let gw = env.gateway().await;
    let svc = env.service();
    svc.wait_reported("door-1", "unlocked at start", |r| {
        r["locked"] == json!(false)
    })
    .await;
    let (_, body) = svc.invoke("door-1", "lockDoor", json!(null)).await;
    assert_eq!(body["status"], 200, "{body}");
    svc.wait_reported("door-1", "locked", |r| r["locked"] == json!(true))
        .await;
    // Ten poll cycles (200 ms) at rest on `false`, then back to `true`.
    let (_, body) = svc
        .invoke("door-1", "unlockDoor", json!({"seconds": 2}))
        .await;
    assert_eq!(body["status"], 200, "{body}");
    svc.wait_reported("door-1", "unlocked by the pulse", |r| {
        r["locked"] == json!(false)
    })
    .await;
    svc.wait_reported("door-1", "locked again after the pulse", |r| {
        r["locked"] == json!(true)
    })
    .await;
    gw.shutdown().await;
}
