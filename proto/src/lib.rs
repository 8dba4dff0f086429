//! Generated protocol types. Protobuf types stop at the adapters: `convert` turns them into
//! `onshi_domain` types (and back), and nothing past the gRPC handlers holds a prost struct.

pub mod fleet {
    pub mod v1 {
        tonic::include_proto!("onshi.fleet.v1");
    }
}

pub mod agent {
    pub mod v1 {
        tonic::include_proto!("onshi.agent.v1");
    }
}
pub mod chain;
pub mod convert;
