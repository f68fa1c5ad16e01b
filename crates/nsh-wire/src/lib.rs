//! Every byte format nsh speaks across a process boundary: Nix's hook protocol and wire
//! framing, NAR, the `nix-store --export` format, `.drv` files, store paths, and the
//! agent protocol. No network I/O and no processes here.

pub mod agent_protocol;
pub mod codec;
pub mod compression;
pub mod derivation;
pub mod export;
pub mod fixed_output;
pub mod framing;
pub mod hash;
pub mod hook;
pub mod ids;
pub mod log_message;
pub mod nar;
pub mod nixbase32;
pub mod store_path;
pub mod worker_protocol;
pub mod worker_query;
