//! crew's integration tests, as one test binary: the real `crew` binary and library against the
//! embedded GitHub emulator.

mod support;

mod actions_runtime;
mod agent_side;
mod bench_smoke;
mod brief;
mod cache_loss;
mod cli_polish;
mod contract;
mod dashboard;
mod demo;
mod dispatch;
mod dispatch_crash;
mod doctor;
mod emulator_serve;
mod events;
mod fault_matrix;
mod gc;
mod github_client;
mod hostile;
mod init;
mod lease_writes;
mod leases;
mod life_crash;
mod lifecycle;
mod logs_cancel;
mod loop_crash;
mod read_side;
mod relations;
mod scale_out;
mod schedule;
mod supervise;
mod supervision_scale;
mod sync;
mod workspace;
