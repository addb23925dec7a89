//! fieldctl's command line: every command, flag and help text (clap derive; the doc comments
//! are the help). Raw values only; [`super::run()`] turns them into requests.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::args::{parse_duration, StartSpec};

const EXIT_CODES: &str = "\
Connection:
  The hub is named by a service connection string
  (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…), taken from --hub, else
  --hub-file, else the IOTHUB_CONNECTION_STRING environment variable. A HostName may
  carry a port (HostName=localhost:8443). Tokens are signed locally from the policy key.

Output:
  Tables for people on stdout; with --json, one JSON document on stdout instead.
  Progress, notices and errors go to stderr. Colour is off with --no-color, when
  NO_COLOR is set, or when the output is not a terminal.

Exit status:
  0  success
  1  the job failed or was cancelled, a device failed (including a method that answered
     with a status of 400 or more), or --wait / --watch timed out
  2  usage error, bad input (connection string, payload, query), unknown job or device,
     or the hub could not be reached or refused the request";

/// Schedule and watch IoT Hub jobs, invoke methods, edit twins and provision devices.
///
/// fieldctl talks to IoT Hub's service REST API: a real Azure IoT Hub, or fieldhub.
#[derive(Debug, Parser)]
#[command(name = "fieldctl", version, after_long_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Hub and output")]
pub struct GlobalArgs {
    /// Service connection string of the hub [default: $IOTHUB_CONNECTION_STRING]
    #[arg(
        long,
        global = true,
        value_name = "CONNSTR",
        conflicts_with = "hub_file"
    )]
    pub hub: Option<String>,
    /// File holding the service connection string
    #[arg(long, global = true, value_name = "PATH")]
    pub hub_file: Option<PathBuf>,
    /// Also trust the CA certificates in this PEM file (e.g. fieldhub's)
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// HTTP proxy for the hub's service API, http://[USER:PASSWORD@]HOST[:PORT]
    /// [default: $HTTPS_PROXY, except for hosts in $NO_PROXY]
    #[arg(long, global = true, value_name = "URL")]
    pub proxy: Option<String>,
    /// Print one JSON document on stdout instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// Never use colour (NO_COLOR is honoured too)
    #[arg(long, global = true)]
    pub no_color: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Schedule, watch, list and cancel jobs
    #[command(subcommand)]
    Job(JobCommand),
    /// Invoke a direct method on one device
    Invoke(InvokeArgs),
    /// Show or change a device twin
    #[command(subcommand)]
    Twin(TwinCommand),
    /// List devices, or provision them from the gateway's device map
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Enrollment groups, individual enrollments and registrations of a Device Provisioning
    /// Service
    ///
    /// Give the provisioning service's connection string with --hub or --hub-file (on Azure:
    /// HostName=NAME.azure-devices-provisioning.net;SharedAccessKeyName=provisioningserviceowner;…);
    /// fieldhub serves the same API on its hub host.
    #[command(subcommand)]
    Dps(DpsCommand),
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Schedule a direct method call on every device a query matches
    Method(MethodJobArgs),
    /// Schedule a twin update (desired properties and/or tags) on every device a query matches
    Twin(TwinJobArgs),
    /// Show a job: status, device statistics and failed devices
    Show {
        /// The job id
        id: String,
        /// Follow the job until it ends, with live progress
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List jobs
    List {
        /// Only jobs of this type
        #[arg(long = "type", value_name = "TYPE")]
        job_type: Option<JobTypeArg>,
        /// Only jobs in this status
        #[arg(long)]
        status: Option<JobStatusArg>,
    },
    /// Cancel a scheduled or running job
    Cancel {
        /// The job id
        id: String,
    },
    /// Show each device's result in a job
    Devices {
        /// The job id
        id: String,
        /// Only devices in this status
        #[arg(long)]
        status: Option<DeviceJobStatusArg>,
    },
}

/// When and how long a job runs.
#[derive(Debug, Args)]
#[command(next_help_heading = "Scheduling")]
pub struct ScheduleArgs {
    /// Which devices: the WHERE condition of a device query, e.g. "tags.building = '43'"
    #[arg(long, value_name = "Q")]
    pub query: String,
    /// When the job starts: now, an RFC 3339 time, or +DURATION (+10m)
    #[arg(long, value_name = "WHEN", default_value = "now", value_parser = StartSpec::parse)]
    pub start: StartSpec,
    /// How long the hub may spend on the job
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub max_time: Duration,
    /// Job id [default: fieldctl-UUID]
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Wait for the job to end, with live progress; exit 1 if any device failed
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub wait_args: WaitArgs,
}

/// How `--wait` / `--watch` follow a job.
#[derive(Debug, Args, Clone, Copy)]
#[command(next_help_heading = "Waiting")]
pub struct WaitArgs {
    /// Give up waiting after this long [default: until the job's start plus its maximum time, plus a minute]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait_timeout: Option<Duration>,
    /// How often to ask the hub for progress
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// After a twin job: how long to wait for the doors to acknowledge the desired values
    /// (reported `ac`/`av`); a door that refused or did not answer in time counts as failed
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub ack_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct MethodJobArgs {
    /// The method to call on each device
    #[arg(long, value_name = "NAME")]
    pub method: String,
    /// The method's payload: JSON, or @FILE holding JSON
    #[arg(long, value_name = "JSON|@FILE")]
    pub payload: Option<String>,
    /// How long the hub waits for each device's answer (5s–300s)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub response_timeout: Duration,
    /// How long the hub waits for an offline device to connect (0s–300s)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
}

#[derive(Debug, Args)]
pub struct TwinJobArgs {
    /// Desired properties to set: KEY=VALUE …; VALUE is JSON if it parses, else a string; a.b=1 nests
    #[arg(long, value_name = "KEY=VALUE", num_args = 1.., value_parser = kv_shape)]
    pub desired: Vec<String>,
    /// Tags to set: KEY=VALUE …, as for --desired
    #[arg(long, value_name = "KEY=VALUE", num_args = 1.., value_parser = kv_shape)]
    pub tag: Vec<String>,
    /// A twin patch {"tags":…,"properties":{"desired":…}}: JSON or @FILE; --desired/--tag apply on top
    #[arg(long, value_name = "JSON|@FILE")]
    pub patch: Option<String>,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The device id
    pub device: String,
    /// The method name
    pub method: String,
    /// The method's payload: JSON, or @FILE holding JSON
    #[arg(long, value_name = "JSON|@FILE")]
    pub payload: Option<String>,
    /// How long the hub waits for the device's answer (5s–300s)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long the hub waits for the device to connect if it is offline (0s–300s)
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum TwinCommand {
    /// Show a device's twin: tags, desired and reported properties
    Show {
        /// The device id
        device: String,
    },
    /// Change a device's tags and/or desired properties (merged into the twin)
    Set {
        /// The device id
        device: String,
        /// Desired properties to set: KEY=VALUE …; VALUE is JSON if it parses, else a string; null deletes
        #[arg(long, value_name = "KEY=VALUE", num_args = 1.., value_parser = kv_shape)]
        desired: Vec<String>,
        /// Tags to set: KEY=VALUE …, as for --desired
        #[arg(long, value_name = "KEY=VALUE", num_args = 1.., value_parser = kv_shape)]
        tag: Vec<String>,
        /// Wait for the door to acknowledge each desired value (reported `ac`/`av`); exit 1
        /// if it refuses one or does not answer within --ack-timeout
        #[arg(long)]
        wait: bool,
        /// How long --wait waits for the acknowledgement
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
        ack_timeout: Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List devices (all, or those a query matches)
    List {
        /// A WHERE condition ("tags.building = '43'") or a whole SELECT … FROM devices query
        #[arg(long, value_name = "Q")]
        query: Option<String>,
    },
    /// Create the device identities of a gateway device map, set their tags, save their keys
    ///
    /// Idempotent: existing identities are kept, tags are patched only where they differ,
    /// key files are rewritten only when their content differs.
    Provision {
        /// The gateway's device map (fieldgate.toml)
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
        /// Write each device's primary key (base64) to DIR/DEVICE-ID.key, mode 0600
        #[arg(long, value_name = "DIR")]
        keys_dir: Option<PathBuf>,
        /// Show what would change without changing anything
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DpsCommand {
    /// Create, list, show and delete enrollment groups (symmetric key or X.509)
    #[command(subcommand)]
    Group(DpsGroupCommand),
    /// Create, list, show and delete individual enrollments (one device, its own key)
    #[command(subcommand)]
    Enrollment(DpsEnrollmentCommand),
    /// Show one device's registration: status, assigned hub, device id, error
    Registration {
        /// The registration id (fieldgate: the door's device id)
        id: String,
    },
    /// List the registrations made through an enrollment group (all pages)
    Registrations {
        /// The enrollment group id
        group: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DpsGroupCommand {
    /// Create (or replace) a symmetric-key enrollment group; the service generates its keys
    Create {
        /// The enrollment group id
        id: String,
        /// Initial twin tags of its new devices: KEY=VALUE … (JSON values; building='"43"' for a string)
        #[arg(long, value_name = "K=V", value_parser = kv_shape, num_args = 1..)]
        tag: Vec<String>,
        /// Initial desired properties of its new devices: KEY=VALUE …
        #[arg(long, value_name = "K=V", value_parser = kv_shape, num_args = 1..)]
        desired: Vec<String>,
        /// Write the group's primary key here (mode 0600), for the gateway's [dps] group_key_file
        #[arg(long, value_name = "PATH", conflicts_with = "certificate")]
        key_file: Option<PathBuf>,
        /// An X.509 group instead: the CA (or intermediate) certificate (PEM) that signs the
        /// doors' certificates (CN = device id)
        #[arg(long, value_name = "PEM")]
        certificate: Option<PathBuf>,
        /// Create it disabled (its devices cannot register)
        #[arg(long)]
        disabled: bool,
    },
    /// List enrollment groups (all pages; never their keys)
    List,
    /// Show one enrollment group (never its keys)
    Show {
        /// The enrollment group id
        id: String,
    },
    /// Delete an enrollment group (its registered devices stay in the hub)
    Delete {
        /// The enrollment group id
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DpsEnrollmentCommand {
    /// Create a symmetric-key individual enrollment; the service generates its keys
    ///
    /// For a door that must not share an enrollment group's key: its own key goes to
    /// --key-file, which the door names in the gateway's map (key_file, not group_key).
    Create {
        /// The registration id (fieldgate: the door's device id): lowercase letters, digits,
        /// '-', '.', '_' or ':'
        id: String,
        /// The device id to create in the hub [default: the registration id]
        #[arg(long, value_name = "ID")]
        device_id: Option<String>,
        /// Initial twin tags of the device: KEY=VALUE … (JSON values; building='"43"' for a string)
        #[arg(long, value_name = "K=V", value_parser = kv_shape, num_args = 1..)]
        tag: Vec<String>,
        /// Initial desired properties of the device: KEY=VALUE …
        #[arg(long, value_name = "K=V", value_parser = kv_shape, num_args = 1..)]
        desired: Vec<String>,
        /// Write the enrollment's primary key here (mode 0600), for the door's key_file; the
        /// key is never printed
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        /// Create it disabled (the device cannot register)
        #[arg(long)]
        disabled: bool,
    },
    /// List individual enrollments (all pages; never their keys)
    List,
    /// Show one individual enrollment (never its keys)
    Show {
        /// The registration id
        id: String,
    },
    /// Delete an individual enrollment (its device stays in the hub)
    Delete {
        /// The registration id
        id: String,
    },
}

/// Only checks the shape, so a device id after `--desired a=1` is reported, not swallowed;
/// keys and values are parsed later (`args::parse_assignments`).
fn kv_shape(s: &str) -> Result<String, String> {
    if s.contains('=') {
        Ok(s.to_string())
    } else {
        Err(format!("'{s}' is not KEY=VALUE"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobTypeArg {
    /// scheduleDeviceMethod
    Method,
    /// scheduleUpdateTwin
    Twin,
}

impl JobTypeArg {
    pub fn wire(self) -> &'static str {
        match self {
            JobTypeArg::Method => "scheduleDeviceMethod",
            JobTypeArg::Twin => "scheduleUpdateTwin",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobStatusArg {
    Queued,
    Scheduled,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatusArg {
    pub fn wire(self) -> &'static str {
        match self {
            JobStatusArg::Queued => "queued",
            JobStatusArg::Scheduled => "scheduled",
            JobStatusArg::Running => "running",
            JobStatusArg::Completed => "completed",
            JobStatusArg::Failed => "failed",
            JobStatusArg::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceJobStatusArg {
    Pending,
    Scheduled,
    Running,
    Completed,
    Failed,
    Canceled,
}

impl DeviceJobStatusArg {
    pub fn wire(self) -> &'static str {
        match self {
            DeviceJobStatusArg::Pending => "pending",
            DeviceJobStatusArg::Scheduled => "scheduled",
            DeviceJobStatusArg::Running => "running",
            DeviceJobStatusArg::Completed => "completed",
            DeviceJobStatusArg::Failed => "failed",
            DeviceJobStatusArg::Canceled => "canceled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_seed_workflow() {
        let cli = Cli::try_parse_from([
            "fieldctl",
            "job",
            "method",
            "--query",
            "tags.building = '43'",
            "--method",
            "lockDoor",
            "--payload",
            "{}",
            "--start",
            "+10m",
            "--wait",
            "--json",
        ])
        .unwrap();
        assert!(cli.global.json);
        let Command::Job(JobCommand::Method(m)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(m.method, "lockDoor");
        assert_eq!(m.schedule.start, StartSpec::After(Duration::from_secs(600)));
        assert_eq!(m.schedule.max_time, Duration::from_secs(3600));
        assert!(m.schedule.wait);
    }

    #[test]
    fn several_assignments_follow_one_flag() {
        let cli = Cli::try_parse_from([
            "fieldctl",
            "job",
            "twin",
            "--query",
            "q",
            "--desired",
            "Building=43",
            "Floor=3",
            "--tag",
            "a=1",
            "--desired",
            "x=y",
        ])
        .unwrap();
        let Command::Job(JobCommand::Twin(t)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(t.desired, ["Building=43", "Floor=3", "x=y"]);
        assert_eq!(t.tag, ["a=1"]);
        let e = Cli::try_parse_from(["fieldctl", "twin", "set", "--desired", "a=1", "door-01"])
            .unwrap_err();
        assert!(e.to_string().contains("'door-01' is not KEY=VALUE"), "{e}");
    }

    #[test]
    fn usage_errors_exit_2() {
        for argv in [
            vec!["fieldctl", "job", "method", "--method", "x"],
            vec!["fieldctl", "job", "show"],
            vec![
                "fieldctl",
                "--hub",
                "a",
                "--hub-file",
                "b",
                "twin",
                "show",
                "d",
            ],
            vec![
                "fieldctl", "job", "method", "--query", "q", "--method", "m", "--start", "later",
            ],
            vec!["fieldctl", "job", "list", "--status", "sleeping"],
        ] {
            let e = Cli::try_parse_from(&argv).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{argv:?}");
        }
        let help = Cli::try_parse_from(["fieldctl", "--help"]).unwrap_err();
        assert_eq!(help.exit_code(), 0);
    }

    #[test]
    fn long_help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit status:"), "{help}");
        assert!(help.contains("IOTHUB_CONNECTION_STRING"));
        assert!(help.contains("NO_COLOR"));
    }
}
