//! Central's uplink: the gRPC service every agent streams its events to (`ingest`), the group
//! commit that acks a batch only after PostgreSQL committed it (`writer`), events per second
//! per site (`limits`) and the agents' certificate renewals (`renewal`). Invariant: an ack never
//! precedes the commit of what it covers; knows no HTTP server or HTML.

pub mod ingest;
pub mod limits;
pub mod renewal;
pub mod writer;
