//! The only modules that import `proxy_wasm`: the root context (configuration,
//! background fetches, parked requests) and the HTTP context (one request);
//! the VM's state (`vm_state`) and what it lends a journey (`host_view`); the
//! step loop (`step_loop`); the callouts the VMs share (`cross_vm`); the
//! request's I/O (`io`, `callout_answer`); `abi` declares the host calls the
//! SDK offers only with text header values.

mod abi;
mod callout_answer;
mod cross_vm;
mod decision;
mod decision_log;
mod host_view;
pub mod http;
mod io;
mod metrics;
pub mod root;
mod step_loop;
mod vm_state;
