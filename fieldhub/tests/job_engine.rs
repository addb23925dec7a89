//! Job engine end to end over a fake hub (in-memory twins, scripted device behaviour), in paused
//! tokio time: statistics, pacing, offline retries, schedules, cancel, restart, limits, pruning.

use chrono::{DateTime, Utc};
use fieldhub::jobs::{
    Clock, CloudToDeviceMethod, DeviceJobStatus, DeviceOpError, DeviceOps, JobEngine, JobError,
    JobLimits, JobRequest, JobResponse, JobStatus, JobStore, MemoryJobStore, MethodOutcome,
    TokioClock,
};
use fieldhub::query::{parse_query, ItemType};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    OfflineForever,
    /// Offline for this many attempts, then answers.
    OfflineFor(u32),
    Status(i32),
    NotFound,
    /// Never answers (the engine's own deadline ends the call).
    Silent,
}

#[derive(Debug, Clone)]
struct Call {
    device: String,
    what: String,
    at: DateTime<Utc>,
    instant: tokio::time::Instant,
}

struct FakeHub {
    clock: Arc<TokioClock>,
    twins: Mutex<BTreeMap<String, Value>>,
    behaviour: Mutex<HashMap<String, Behaviour>>,
    calls: Mutex<Vec<Call>>,
}

impl FakeHub {
    fn new(clock: Arc<TokioClock>, n: usize) -> Arc<Self> {
        let twins = (0..n)
            .map(|i| {
                let id = format!("door-{i:04}");
                let twin = json!({"deviceId": id, "status": "enabled", "connectionState": "Connected",
                    "tags": {"building": "43", "n": i}, "properties": {"desired": {}, "reported": {}}});
                (id, twin)
            })
            .collect();
        Arc::new(Self {
            clock,
            twins: Mutex::new(twins),
            behaviour: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn set(&self, device: &str, b: Behaviour) {
        self.behaviour.lock().unwrap().insert(device.to_owned(), b);
    }

    fn calls(&self, what: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.what == what)
            .cloned()
            .collect()
    }

    fn record(&self, device: &str, what: &str) -> Option<Behaviour> {
        self.calls.lock().unwrap().push(Call {
            device: device.to_owned(),
            what: what.to_owned(),
            at: self.clock.now(),
            instant: tokio::time::Instant::now(),
        });
        let mut behaviour = self.behaviour.lock().unwrap();
        let b = behaviour.get(device).copied();
        if let Some(Behaviour::OfflineFor(n)) = b {
            if n == 0 {
                behaviour.remove(device);
                return None;
            }
            behaviour.insert(device.to_owned(), Behaviour::OfflineFor(n - 1));
        }
        b
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl DeviceOps for FakeHub {
    fn twins(&self) -> Vec<Value> {
        self.twins.lock().unwrap().values().cloned().collect()
    }

    async fn invoke_method(
        &self,
        device_id: &str,
        method: &CloudToDeviceMethod,
    ) -> Result<MethodOutcome, DeviceOpError> {
        let b = self.record(device_id, &method.method_name);
        // Devices take a moment to answer, so observers see `running` devices.
        sleep(Duration::from_millis(150)).await;
        if let Some(Behaviour::Silent) = b {
            std::future::pending::<()>().await;
        }
        match b {
            Some(Behaviour::Silent) => unreachable!("never answers"),
            Some(Behaviour::OfflineForever | Behaviour::OfflineFor(_)) => {
                Err(DeviceOpError::not_online(device_id))
            }
            Some(Behaviour::NotFound) => Err(DeviceOpError {
                code: "DeviceNotFound".into(),
                description: format!("no device '{device_id}'"),
                retryable: false,
            }),
            Some(Behaviour::Status(s)) => Ok(MethodOutcome {
                status: s,
                payload: json!({"error": "jammed"}),
            }),
            None => Ok(MethodOutcome {
                status: 200,
                payload: json!({"result": "locked", "device": device_id}),
            }),
        }
    }

    async fn update_twin(&self, device_id: &str, patch: &Value) -> Result<(), DeviceOpError> {
        if let Some(Behaviour::OfflineForever) = self.record(device_id, "updateTwin") {
            return Err(DeviceOpError::not_online(device_id));
        }
        let mut twins = self.twins.lock().unwrap();
        let twin = twins.get_mut(device_id).ok_or_else(|| DeviceOpError {
            code: "DeviceNotFound".into(),
            description: device_id.into(),
            retryable: false,
        })?;
        merge(twin, patch);
        Ok(())
    }
}

type Engine = JobEngine<FakeHub, Arc<MemoryJobStore>>;

struct Running {
    engine: Engine,
    token: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.token.cancel();
        timeout(Duration::from_secs(60), self.task)
            .await
            .expect("engine stops")
            .unwrap();
    }
}

fn start(
    hub: &Arc<FakeHub>,
    store: &Arc<MemoryJobStore>,
    clock: &Arc<TokioClock>,
    limits: JobLimits,
) -> Running {
    let engine = JobEngine::with_clock(hub.clone(), store.clone(), limits, clock.clone());
    engine.resume().unwrap();
    let token = CancellationToken::new();
    let task = tokio::spawn({
        let (engine, token) = (engine.clone(), token.clone());
        async move { engine.run(token).await }
    });
    Running {
        engine,
        token,
        task,
    }
}

fn setup(n: usize) -> (Arc<TokioClock>, Arc<FakeHub>, Arc<MemoryJobStore>) {
    let clock = Arc::new(TokioClock::new(
        DateTime::from_timestamp(1_780_000_000, 0).unwrap(),
    ));
    let hub = FakeHub::new(clock.clone(), n);
    (clock, hub, Arc::new(MemoryJobStore::new()))
}

fn method_job(
    id: &str,
    method: &str,
    cond: &str,
    start: Option<DateTime<Utc>>,
    max_secs: u64,
) -> JobRequest {
    serde_json::from_value(json!({"jobId": id, "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": method, "payload": {"x": 1}, "responseTimeoutInSeconds": 30},
        "queryCondition": cond, "startTime": start, "maxExecutionTimeInSeconds": max_secs}))
    .unwrap()
}

fn check_invariant(r: &JobResponse) {
    let s = r.device_job_statistics.expect("statistics always present");
    assert_eq!(
        s.device_count,
        s.failed_count + s.succeeded_count + s.running_count + s.pending_count,
        "statistics must add up: {s:?}"
    );
    assert!(
        r.end_time.is_some() == r.status.is_terminal(),
        "endTime only when terminal: {r:?}"
    );
}

/// Polls the job (in paused time) until `done`, checking the statistics invariant every time.
async fn wait_for(
    engine: &Engine,
    id: &str,
    mut done: impl FnMut(&JobResponse) -> bool,
) -> (JobResponse, usize) {
    let mut observations = 0;
    timeout(Duration::from_secs(24 * 3600), async {
        loop {
            let r = engine.get(id).unwrap();
            check_invariant(&r);
            observations += 1;
            if done(&r) {
                return (r, observations);
            }
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("job reaches the awaited state")
}

#[tokio::test(start_paused = true)]
async fn method_job_over_1000_devices_with_offline_devices_has_exact_statistics() {
    let (clock, hub, store) = setup(1000);
    for i in 0..1000 {
        let id = format!("door-{i:04}");
        match i % 50 {
            0 => hub.set(&id, Behaviour::OfflineForever),
            1 => hub.set(&id, Behaviour::OfflineFor(2)),
            2 if i % 100 == 2 => hub.set(&id, Behaviour::Status(500)),
            3 if i % 250 == 3 => hub.set(&id, Behaviour::NotFound),
            _ => {}
        }
    }
    let run = start(&hub, &store, &clock, JobLimits::default());
    let created = run
        .engine
        .create(method_job(
            "lock-all",
            "lockDoor",
            "tags.building = '43'",
            None,
            600,
        ))
        .await
        .unwrap();
    assert_eq!(created.status, JobStatus::Queued);
    let t0 = clock.now();

    let mut saw_running_devices = false;
    let (r, observations) = wait_for(&run.engine, "lock-all", |r| {
        saw_running_devices |= r.device_job_statistics.unwrap().running_count > 0;
        r.status.is_terminal()
    })
    .await;
    assert!(observations > 100 && saw_running_devices);
    assert_eq!(r.status, JobStatus::Completed);
    let s = r.device_job_statistics.unwrap();
    assert_eq!(
        (
            s.device_count,
            s.succeeded_count,
            s.failed_count,
            s.running_count,
            s.pending_count
        ),
        (1000, 976, 24, 0, 0)
    );
    // Offline devices are retried until the job's time runs out.
    let end = r.end_time.unwrap();
    assert!(end >= t0 + chrono::Duration::seconds(600), "{end} vs {t0}");

    let state = run.engine.state("lock-all").unwrap();
    for (i, (id, d)) in state.devices.iter().enumerate() {
        assert_eq!(id, &format!("door-{i:04}"));
        let err = d.error.as_ref().map(|e| e.code.as_str());
        match i % 50 {
            0 => {
                assert_eq!(
                    (d.status, err),
                    (DeviceJobStatus::Failed, Some("DeviceNotOnline"))
                );
                assert!(
                    hub.calls("lockDoor")
                        .iter()
                        .filter(|c| &c.device == id)
                        .count()
                        > 5,
                    "retried"
                );
            }
            3 if i % 250 == 3 => assert_eq!(
                (d.status, err),
                (DeviceJobStatus::Failed, Some("DeviceNotFound"))
            ),
            2 if i % 100 == 2 => {
                assert_eq!(d.status, DeviceJobStatus::Completed);
                assert_eq!(
                    d.outcome
                        .as_ref()
                        .unwrap()
                        .device_method_response
                        .as_ref()
                        .unwrap()
                        .status,
                    500
                );
            }
            _ => {
                assert_eq!((d.status, err), (DeviceJobStatus::Completed, None), "{id}");
                let resp = d
                    .outcome
                    .as_ref()
                    .unwrap()
                    .device_method_response
                    .as_ref()
                    .unwrap();
                assert_eq!((resp.status, &resp.payload["device"]), (200, &json!(id)));
            }
        }
        assert!(d.start_time_utc >= t0 && d.end_time_utc >= d.start_time_utc);
    }

    // Pacing: never more than 10 device operations per second.
    let calls = hub.calls("lockDoor");
    assert!(calls.len() > 1000);
    for w in calls.windows(2) {
        assert!(
            w[1].instant - w[0].instant >= Duration::from_millis(99),
            "{:?}",
            w
        );
    }

    // devices.jobs lists every device's result.
    let records = run.engine.device_jobs();
    let q =
        parse_query("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'lock-all'").unwrap();
    let all = q.execute(records.iter());
    assert_eq!(
        (all.items.len(), all.item_type),
        (1000, ItemType::DeviceJob)
    );
    let q = parse_query("SELECT * FROM devices.jobs WHERE devices.jobs.status = 'failed' AND devices.jobs.jobType = 'scheduleDeviceMethod'").unwrap();
    let failed = q.execute(records.iter()).items;
    assert_eq!(failed.len(), 24);
    assert!(failed
        .iter()
        .all(|f| f["error"]["code"].is_string() && f["endTimeUtc"] != "0001-01-01T00:00:00Z"));
    // The store holds the same final state.
    let stored = store.load_jobs().unwrap();
    assert_eq!(stored[0], state);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn future_start_time_stays_scheduled_then_runs_on_time() {
    let (clock, hub, store) = setup(5);
    let run = start(&hub, &store, &clock, JobLimits::default());
    let at = clock.now() + chrono::Duration::seconds(60);
    let r = run
        .engine
        .create(method_job("later", "lockDoor", "*", Some(at), 300))
        .await
        .unwrap();
    assert_eq!(
        r.status,
        JobStatus::Queued,
        "the hub answers queued even for a future start"
    );
    let (r, _) = wait_for(&run.engine, "later", |r| r.status != JobStatus::Queued).await;
    assert_eq!(r.status, JobStatus::Scheduled);
    sleep(Duration::from_secs(59)).await;
    assert_eq!(
        run.engine.get("later").unwrap().status,
        JobStatus::Scheduled
    );
    assert!(hub.calls("lockDoor").is_empty());
    let (r, _) = wait_for(&run.engine, "later", |r| r.status == JobStatus::Completed).await;
    assert_eq!(r.device_job_statistics.unwrap().succeeded_count, 5);
    let first = hub.calls("lockDoor")[0].at;
    assert!(
        first >= at && first < at + chrono::Duration::seconds(1),
        "{first} vs {at}"
    );
    run.stop().await;
}

/// A scheduled job's devices are chosen when it is scheduled: they show as `scheduled` in
/// `devices.jobs` and count in `deviceCount`/`pendingCount` until the start, and the job runs
/// on exactly them. Microsoft's pages show scheduled jobs in `devices.jobs`
/// (https://learn.microsoft.com/azure/iot-hub/query-jobs) but do not say whether
/// `queryCondition` is evaluated again at the start; it is not (the stricter reading: code
/// cannot come to rely on devices added after scheduling being included).
#[tokio::test(start_paused = true)]
async fn scheduled_job_runs_on_the_devices_chosen_when_it_was_scheduled() {
    let (clock, hub, store) = setup(4);
    let run = start(&hub, &store, &clock, JobLimits::default());
    let at = clock.now() + chrono::Duration::seconds(60);
    run.engine
        .create(method_job(
            "later",
            "lockDoor",
            "tags.building = '43'",
            Some(at),
            300,
        ))
        .await
        .unwrap();
    let (r, _) = wait_for(&run.engine, "later", |r| r.status == JobStatus::Scheduled).await;
    let s = r.device_job_statistics.unwrap();
    assert_eq!((s.device_count, s.pending_count), (4, 4));
    let records = run.engine.device_jobs();
    let q =
        parse_query("SELECT * FROM devices.jobs WHERE devices.jobs.status = 'scheduled'").unwrap();
    assert_eq!(q.execute(records.iter()).items.len(), 4);
    assert_eq!(store.load_jobs().unwrap()[0].devices.len(), 4, "persisted");

    // A device that matches only after scheduling is not part of the job.
    hub.twins.lock().unwrap().insert(
        "door-late".into(),
        json!({"deviceId": "door-late", "tags": {"building": "43"}}),
    );
    let (r, _) = wait_for(&run.engine, "later", |r| r.status == JobStatus::Completed).await;
    let s = r.device_job_statistics.unwrap();
    assert_eq!((s.device_count, s.succeeded_count), (4, 4));
    assert!(hub
        .calls("lockDoor")
        .iter()
        .all(|c| c.device != "door-late"));
    let state = run.engine.state("later").unwrap();
    assert!(state.devices.values().all(|d| d.start_time_utc >= at));
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cancelled_scheduled_job_never_runs() {
    let (clock, hub, store) = setup(5);
    let run = start(&hub, &store, &clock, JobLimits::default());
    let at = clock.now() + chrono::Duration::seconds(30);
    run.engine
        .create(method_job("never", "lockDoor", "*", Some(at), 300))
        .await
        .unwrap();
    wait_for(&run.engine, "never", |r| r.status == JobStatus::Scheduled).await;
    let r = run.engine.cancel("never").unwrap();
    assert_eq!(r.status, JobStatus::Cancelled);
    sleep(Duration::from_secs(120)).await;
    assert!(hub.calls("lockDoor").is_empty());
    let r = run.engine.get("never").unwrap();
    let stats = r.device_job_statistics.unwrap();
    // The devices chosen when it was scheduled are canceled with it.
    assert_eq!(
        (r.status, stats.device_count, stats.failed_count),
        (JobStatus::Cancelled, 5, 5)
    );
    assert!(run
        .engine
        .state("never")
        .unwrap()
        .devices
        .values()
        .all(|d| d.status == DeviceJobStatus::Canceled));
    assert_eq!(store.load_jobs().unwrap()[0].status, JobStatus::Cancelled);
    // A cancelled job no longer counts as active.
    run.engine
        .create(method_job("next", "lockDoor", "*", None, 300))
        .await
        .unwrap();
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cancel_of_running_job_cancels_pending_devices() {
    let (clock, hub, store) = setup(100);
    let run = start(&hub, &store, &clock, JobLimits::default());
    run.engine
        .create(method_job("stopme", "lockDoor", "*", None, 300))
        .await
        .unwrap();
    wait_for(&run.engine, "stopme", |r| {
        r.device_job_statistics.unwrap().succeeded_count >= 10
    })
    .await;
    let r = run.engine.cancel("stopme").unwrap();
    check_invariant(&r);
    let calls = hub.calls("lockDoor").len();
    sleep(Duration::from_secs(60)).await;
    assert_eq!(
        hub.calls("lockDoor").len(),
        calls,
        "no operations after cancel"
    );
    let state = run.engine.state("stopme").unwrap();
    let canceled = state
        .devices
        .values()
        .filter(|d| d.status == DeviceJobStatus::Canceled)
        .count();
    let s = run
        .engine
        .get("stopme")
        .unwrap()
        .device_job_statistics
        .unwrap();
    assert_eq!(s.succeeded_count as usize + canceled, 100);
    assert_eq!((s.pending_count, s.running_count), (0, 0));
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn restart_resumes_running_job_and_starts_scheduled_one_on_time() {
    let (clock, hub, store) = setup(200);
    let limits = JobLimits {
        max_active_jobs: 2,
        ..JobLimits::default()
    };
    let run = start(&hub, &store, &clock, limits.clone());
    run.engine
        .create(method_job("now", "lockDoor", "*", None, 3600))
        .await
        .unwrap();
    let at = clock.now() + chrono::Duration::seconds(60);
    run.engine
        .create(method_job(
            "later",
            "unlockDoor",
            "tags.n < 10",
            Some(at),
            3600,
        ))
        .await
        .unwrap();
    wait_for(&run.engine, "now", |r| {
        r.device_job_statistics.unwrap().succeeded_count >= 50
    })
    .await;
    run.stop().await;

    let before = store.load_jobs().unwrap();
    let done_before: Vec<String> = before
        .iter()
        .find(|j| j.id() == "now")
        .unwrap()
        .devices
        .values()
        .filter(|d| d.status == DeviceJobStatus::Completed)
        .map(|d| d.device_id.clone())
        .collect();
    assert!(done_before.len() >= 50 && done_before.len() < 200);
    let later = before.iter().find(|j| j.id() == "later").unwrap();
    assert_eq!(later.status, JobStatus::Scheduled);

    let run = start(&hub, &store, &clock, limits);
    let (r, _) = wait_for(&run.engine, "now", |r| r.status.is_terminal()).await;
    assert_eq!(r.device_job_statistics.unwrap().succeeded_count, 200);
    let calls = hub.calls("lockDoor");
    for id in &done_before {
        assert_eq!(
            calls.iter().filter(|c| &c.device == id).count(),
            1,
            "{id} ran again after restart"
        );
    }
    let (r, _) = wait_for(&run.engine, "later", |r| r.status.is_terminal()).await;
    assert_eq!(r.device_job_statistics.unwrap().succeeded_count, 10);
    let first = hub.calls("unlockDoor")[0].at;
    assert!(
        first >= at && first < at + chrono::Duration::seconds(2),
        "{first} vs {at}"
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn too_many_active_jobs_is_429004() {
    let (clock, hub, store) = setup(3);
    let run = start(&hub, &store, &clock, JobLimits::default());
    let at = clock.now() + chrono::Duration::seconds(600);
    run.engine
        .create(method_job("one", "lockDoor", "*", Some(at), 60))
        .await
        .unwrap();
    let err = run
        .engine
        .create(method_job("two", "lockDoor", "*", None, 60))
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::TooManyActiveJobs { max: 1 }));
    assert_eq!(
        (err.http_status(), err.error_code()),
        (429, (429004, "ThrottlingMaxActiveJobCountExceeded"))
    );
    let dup = run
        .engine
        .create(method_job("one", "lockDoor", "*", None, 60))
        .await
        .unwrap_err();
    assert!(matches!(dup, JobError::AlreadyExists(_)), "{dup:?}");
    let bad = run
        .engine
        .create(method_job(
            "three",
            "lockDoor",
            "deviceId IN ['a' 'b']",
            None,
            60,
        ))
        .await
        .unwrap_err();
    assert_eq!((bad.http_status(), bad.position()), (400, Some(17)));
    assert!(matches!(run.engine.get("two"), Err(JobError::NotFound(_))));
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn twin_update_job_sets_desired_and_tags() {
    let (clock, hub, store) = setup(4);
    let run = start(&hub, &store, &clock, JobLimits::default());
    let req: JobRequest = serde_json::from_value(json!({"jobId": "where", "type": "scheduleUpdateTwin",
        "updateTwin": {"etag": "*", "tags": {"zone": "B"}, "properties": {"desired": {"Building": 43, "Floor": 3}, "reported": {}}},
        "queryCondition": "deviceId IN ['door-0001', 'door-0002']", "startTime": null}))
    .unwrap();
    run.engine.create(req).await.unwrap();
    let (r, _) = wait_for(&run.engine, "where", |r| r.status.is_terminal()).await;
    let s = r.device_job_statistics.unwrap();
    assert_eq!(
        (r.status, s.device_count, s.succeeded_count),
        (JobStatus::Completed, 2, 2)
    );
    let twins = hub.twins();
    assert_eq!(
        twins[1]["properties"]["desired"],
        json!({"Building": 43, "Floor": 3})
    );
    assert_eq!(twins[2]["tags"]["zone"], "B");
    assert_eq!(twins[0]["properties"]["desired"], json!({}));
    assert_eq!(run.engine.list(None, Some(JobStatus::Completed)).len(), 1);
    assert!(run
        .engine
        .list(Some(fieldhub::jobs::JobType::ScheduleDeviceMethod), None)
        .is_empty());
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn devices_not_reached_in_time_fail_preempted() {
    let (clock, hub, store) = setup(100);
    let limits = JobLimits {
        device_ops_per_second: Some(1.0),
        ..JobLimits::default()
    };
    let run = start(&hub, &store, &clock, limits);
    run.engine
        .create(method_job("slow", "lockDoor", "*", None, 10))
        .await
        .unwrap();
    let (r, _) = wait_for(&run.engine, "slow", |r| r.status.is_terminal()).await;
    let s = r.device_job_statistics.unwrap();
    assert_eq!(r.status, JobStatus::Completed);
    assert!((9..=11).contains(&s.succeeded_count), "{s:?}");
    let state = run.engine.state("slow").unwrap();
    let preempted = state
        .devices
        .values()
        .filter(|d| {
            d.error
                .as_ref()
                .is_some_and(|e| e.code == "JobRunPreempted")
        })
        .count();
    assert_eq!(preempted as u64, s.failed_count);
    assert_eq!(s.succeeded_count + s.failed_count, 100);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn finished_jobs_are_pruned_after_retention() {
    let (clock, hub, store) = setup(2);
    let limits = JobLimits {
        retention: Duration::from_secs(3600),
        device_ops_per_second: None,
        ..JobLimits::default()
    };
    let run = start(&hub, &store, &clock, limits);
    run.engine
        .create(method_job("old", "lockDoor", "*", None, 60))
        .await
        .unwrap();
    wait_for(&run.engine, "old", |r| r.status.is_terminal()).await;
    sleep(Duration::from_secs(3500)).await;
    assert!(run.engine.get("old").is_ok());
    sleep(Duration::from_secs(200)).await;
    assert!(matches!(run.engine.get("old"), Err(JobError::NotFound(_))));
    assert!(store.load_jobs().unwrap().is_empty());
    assert!(run.engine.device_jobs().is_empty());
    run.stop().await;
}

/// A store whose device-record writes fail while `failing` is set.
struct FlakyStore {
    inner: MemoryJobStore,
    failing: std::sync::atomic::AtomicBool,
}

impl JobStore for FlakyStore {
    fn save_job(
        &self,
        job: &fieldhub::jobs::JobState,
    ) -> Result<(), fieldhub::jobs::JobStoreError> {
        self.inner.save_job(job)
    }
    fn save_devices(
        &self,
        job_id: &str,
        devices: &[&fieldhub::jobs::DeviceJob],
    ) -> Result<(), fieldhub::jobs::JobStoreError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(fieldhub::jobs::JobStoreError("disk full".into()));
        }
        self.inner.save_devices(job_id, devices)
    }
    fn delete_job(&self, job_id: &str) -> Result<(), fieldhub::jobs::JobStoreError> {
        self.inner.delete_job(job_id)
    }
    fn load_jobs(&self) -> Result<Vec<fieldhub::jobs::JobState>, fieldhub::jobs::JobStoreError> {
        self.inner.load_jobs()
    }
}

/// Issue 14, item 13: a device is called only once its `running` record is stored, so a
/// crash can never leave a called device without a trace. While the store refuses the record
/// no device is called; once it accepts, each device is called exactly once.
#[tokio::test(start_paused = true)]
async fn no_device_is_called_before_its_record_is_stored() {
    let clock = Arc::new(TokioClock::new(
        DateTime::from_timestamp(1_780_000_000, 0).unwrap(),
    ));
    let hub = FakeHub::new(clock.clone(), 5);
    let store = Arc::new(FlakyStore {
        inner: MemoryJobStore::new(),
        failing: true.into(),
    });
    let engine = JobEngine::with_clock(hub.clone(), store.clone(), JobLimits::default(), clock);
    engine.resume().unwrap();
    let token = CancellationToken::new();
    let task = tokio::spawn({
        let (engine, token) = (engine.clone(), token.clone());
        async move { engine.run(token).await }
    });
    engine
        .create(method_job("j", "unlockDoor", "*", None, 3600))
        .await
        .unwrap();
    sleep(Duration::from_secs(5)).await;
    assert!(
        hub.calls("unlockDoor").is_empty(),
        "called before being recorded"
    );
    let r = engine.get("j").unwrap();
    check_invariant(&r);
    assert_eq!(r.device_job_statistics.unwrap().running_count, 0);

    store
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    timeout(Duration::from_secs(3600), async {
        while !engine.get("j").unwrap().status.is_terminal() {
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap();
    let r = engine.get("j").unwrap();
    assert_eq!(r.device_job_statistics.unwrap().succeeded_count, 5);
    assert_eq!(hub.calls("unlockDoor").len(), 5, "each device called once");
    let stored = store.inner.load_jobs().unwrap();
    assert!(stored[0]
        .devices
        .values()
        .all(|d| d.status == DeviceJobStatus::Completed));
    token.cancel();
    task.await.unwrap();
}

/// Issue 14, item 13: while stopping, the engine records each answer as it arrives, so a
/// silent device (whose wait the hub cuts short at shutdown) does not cost the others' recorded
/// outcomes; only the silent one is left `running`, to be reported unknown after a restart.
#[tokio::test(start_paused = true)]
async fn stopping_records_answers_as_they_arrive() {
    let (clock, hub, store) = setup(3);
    hub.set("door-0000", Behaviour::Silent);
    let limits = JobLimits {
        device_ops_per_second: None,
        ..JobLimits::default()
    };
    let run = start(&hub, &store, &clock, limits);
    run.engine
        .create(method_job("j", "unlockDoor", "*", None, 3600))
        .await
        .unwrap();
    wait_for(&run.engine, "j", |r| {
        r.device_job_statistics.unwrap().running_count == 3
    })
    .await;
    run.token.cancel();
    // The others answer 150 ms after their call; the silent one would hold the driver 35 s.
    sleep(Duration::from_secs(2)).await;
    run.task.abort();
    let _ = run.task.await;
    let stored = store.load_jobs().unwrap();
    let status = |id: &str| stored[0].devices[id].status;
    assert_eq!(status("door-0000"), DeviceJobStatus::Running);
    assert_eq!(status("door-0001"), DeviceJobStatus::Completed);
    assert_eq!(status("door-0002"), DeviceJobStatus::Completed);

    // After a restart the silent device is reported, not called again.
    let run = start(&hub, &store, &clock, JobLimits::default());
    let (r, _) = wait_for(&run.engine, "j", |r| r.status.is_terminal()).await;
    let s = r.device_job_statistics.unwrap();
    assert_eq!((s.succeeded_count, s.failed_count), (2, 1));
    let state = run.engine.state("j").unwrap();
    let error = state.devices["door-0000"].error.clone().unwrap();
    assert_eq!(error.code, "DeviceJobOutcomeUnknown");
    assert_eq!(hub.calls("unlockDoor").len(), 3, "no device called twice");
    run.stop().await;
}
