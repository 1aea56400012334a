//! The integration tests: real plugins built to wasm by `build.rs`, loaded by the real host,
//! writing into real databases. One binary, one module per theme; data in `tests/data/`.

mod support;

mod backfill;
mod cli;
mod end_to_end;
mod fetch;
mod golden;
mod hostile;
mod kit;
mod lambda;
mod lambda_deadline;
mod loading;
mod ministack;
mod network_faults;
mod old_job_behaviour;
mod plugin_faults;
mod projection;
mod replay;
mod resilience;
mod sandbox;
mod secrets;
mod sink_faults;
mod sinks;
mod status;
mod tidy;
mod windows;
