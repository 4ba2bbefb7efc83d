//! A provisioning server without sockets, for the daemon's unit tests: fetches answered
//! by file name (404 for any other), uploads taken or refused as the test scripts, and
//! a gate that holds every fetch and upload while the test keeps it locked (a server
//! that stalls, exactly as long as the test wants).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::worker::{Server, Source};
use super::{FailureKind, FetchError, FetchOutcome};
use crate::config::ServerUrl;

/// What the fake server answers, and what it was asked.
#[derive(Default)]
pub(crate) struct Script {
    /// Answers to fetches by file name; any other name is absent (404).
    pub(crate) answers: Mutex<BTreeMap<String, FetchOutcome>>,
    /// An upload fails with this kind; `None`: it is taken.
    pub(crate) upload_failure: Mutex<Option<FailureKind>>,
    /// Held by a test: every fetch and upload waits for it.
    pub(crate) gate: Mutex<()>,
    /// The names fetched, in order.
    pub(crate) fetches: Mutex<Vec<String>>,
    /// The uploads taken: name and bytes.
    pub(crate) uploads: Mutex<Vec<(String, Vec<u8>)>>,
}

/// A server at `base` answering from `script`.
pub(crate) fn server(script: &Arc<Script>, base: &str) -> Arc<dyn Server> {
    Arc::new(FakeServer(script.clone(), vec![ServerUrl::test(base)]))
}

struct FakeServer(Arc<Script>, Vec<ServerUrl>);
struct FakeSource(Arc<Script>);

impl Server for FakeServer {
    fn bases(&self) -> &[ServerUrl] {
        &self.1
    }

    fn open(&self, _: usize) -> Result<Box<dyn Source>, FetchError> {
        Ok(Box::new(FakeSource(self.0.clone())))
    }
}

impl Source for FakeSource {
    fn fetch(&self, name: &str) -> FetchOutcome {
        let _pass = self.0.gate.lock();
        self.0.fetches.lock().unwrap().push(name.to_string());
        let answers = self.0.answers.lock().unwrap();
        answers.get(name).cloned().unwrap_or(FetchOutcome::Absent {
            answer: "404".into(),
        })
    }

    fn upload(&self, name: &str, bytes: &[u8]) -> Result<Option<String>, FetchError> {
        let _pass = self.0.gate.lock();
        match *self.0.upload_failure.lock().unwrap() {
            Some(kind) => Err(FetchError::new(name, kind, "scripted")),
            None => {
                let taken = (name.to_string(), bytes.to_vec());
                self.0.uploads.lock().unwrap().push(taken);
                Ok(None)
            }
        }
    }
}
