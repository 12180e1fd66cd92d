//! ZooKeeper 3.8 as a client protocol (to be written: see issue 12).

use anyhow::{Result, bail};

use super::ProtocolEnv;
use crate::sut::{BoxFuture, Client, Protocol};

/// ZooKeeper's client protocol.
pub struct ZooKeeper;

impl ZooKeeper {
    /// Not built yet.
    pub fn new(_env: ProtocolEnv) -> Result<ZooKeeper> {
        bail!("the zookeeper client protocol is not built yet")
    }
}

impl Protocol for ZooKeeper {
    fn name(&self) -> &'static str {
        "zookeeper"
    }
    fn dedup(&self) -> bool {
        false
    }
    fn client<'a>(&'a self, _worker: usize) -> BoxFuture<'a, Result<Box<dyn Client>>> {
        Box::pin(async { bail!("not built yet") })
    }
}
