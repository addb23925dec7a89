//! A bus against doorsim for the `bus*` modules: doorsim started on a listener, bus options
//! with a test timeout, and [`Bus`], a running bus task with its metrics that answers every
//! call within a bound.

use std::{sync::Arc, time::Duration};

use fieldgate::{
    bus::{self, BusError, BusHandle, BusOptions, Op, Priority, Reply, Transport},
    metrics::Metrics,
};
use fieldhub::doorsim::{self, DoorSim, DoorSimConfig, Listen};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

/// Bound on every await in these tests; generous so a loaded CI machine does not flake.
pub const LIMIT: Duration = Duration::from_secs(20);

pub async fn sim(listen: Listen, units: Vec<u8>) -> DoorSim {
    let config = DoorSimConfig {
        listen,
        units,
        line_baud: None,
    };
    timeout(LIMIT, doorsim::start(config))
        .await
        .unwrap()
        .unwrap()
}

pub fn options(transport: Transport, op_timeout: Duration) -> BusOptions {
    let mut opts = BusOptions::new("test-bus", transport);
    opts.timeout = op_timeout;
    opts
}

pub struct Bus {
    pub handle: BusHandle,
    pub metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

impl Bus {
    pub async fn start(opts: BusOptions) -> Bus {
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let (handle, join) = bus::spawn(opts, Arc::clone(&metrics), shutdown.clone());
        let mut up = handle.connected();
        timeout(LIMIT, up.wait_for(|&c| c))
            .await
            .expect("bus connects")
            .unwrap();
        Bus {
            handle,
            metrics,
            shutdown,
            join,
        }
    }

    pub async fn call(&self, unit: u8, op: Op, priority: Priority) -> Result<Reply, BusError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        timeout(LIMIT, self.handle.call(unit, op, priority, deadline))
            .await
            .expect("bus answers by the deadline")
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        timeout(LIMIT, self.join).await.unwrap().unwrap();
    }
}

pub fn tcp(sim: &DoorSim) -> Transport {
    Transport::Tcp {
        addr: sim.local_addr.unwrap().to_string(),
    }
}
