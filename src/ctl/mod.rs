//! The IoT Hub service REST client used by `fieldctl`: SAS signing, registry, twins, methods, queries, jobs.
