//! The fixed versions: edges that point back (to a parent, to the owner of
//! a task) are `Weak`, so every cycle has one link that does not own.

use std::cell::RefCell;
use std::fmt;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use tokio_util::task::AbortOnDropHandle;

use crate::{DropCounter, DropToken, POLL_INTERVAL, PollerState};

// ANCHOR: node
/// The seed's `Node` with ownership pointing one way only: a parent owns its
/// children; a child and its callback merely *refer* to the parent.
pub struct Node {
    pub id: usize,
    pub data: Vec<u8>,
    pub parent: RefCell<Weak<Node>>,
    pub children: RefCell<Vec<Rc<Node>>>,
    pub callback: RefCell<Option<Callback>>,
    _dropped: DropToken, // tells a test when this node is dropped
}

/// A node's callback: `None` once a node it names is gone.
pub type Callback = Box<dyn Fn() -> Option<String>>;

/// `AddChild` with `Weak` back-pointers.
pub fn add_child(parent: &Rc<Node>, child: &Rc<Node>) {
    *child.parent.borrow_mut() = Rc::downgrade(parent);
    parent.children.borrow_mut().push(Rc::clone(child)); // the only owning edge

    // The callback captures `Weak`s: it works while the nodes exist and
    // returns `None` once they are gone.
    let (this, parent) = (Rc::downgrade(child), Rc::downgrade(parent));
    *child.callback.borrow_mut() = Some(Box::new(move || {
        let (this, parent) = (this.upgrade()?, parent.upgrade()?);
        Some(format!("Node {} callback, parent: {}", this.id, parent.id))
    }));
}
// ANCHOR_END: node

impl Node {
    /// A node with `data_bytes` of data whose drop `counter` will see.
    pub fn new(id: usize, data_bytes: usize, counter: &DropCounter) -> Rc<Self> {
        Rc::new(Self {
            id,
            data: vec![0; data_bytes],
            parent: RefCell::new(Weak::new()),
            children: RefCell::new(Vec::new()),
            callback: RefCell::new(None),
            _dropped: counter.token(),
        })
    }

    /// Runs the node's callback, if it has one and the nodes it names still
    /// exist.
    pub fn call_back(&self) -> Option<String> {
        self.callback
            .borrow()
            .as_ref()
            .and_then(|callback| callback())
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not recursive: children point back, and a tree prints 11 001 nodes.
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Builds the seed's 11 001-node tree with `Weak` back-pointers.
pub fn build_tree(counter: &DropCounter) -> Rc<Node> {
    crate::build_seed_tree(|id, bytes| Node::new(id, bytes, counter), add_child)
}

/// Builds the seed's 101-node cleanup tree with `Weak` back-pointers: it
/// needs no cleanup walk.
pub fn build_cleanup_tree(counter: &DropCounter) -> Rc<Node> {
    crate::build_cleanup_tree(|id, bytes| Node::new(id, bytes, counter), add_child)
}

// ANCHOR: poller
/// The same poller, with the task referring to it through a `Weak`: the
/// poller is owned only by its users, and when the last one drops it, its
/// `AbortOnDropHandle` stops the task.
#[derive(Debug)]
pub struct Poller {
    pub state: PollerState,
    _task: AbortOnDropHandle<()>,
}

impl Poller {
    /// Starts polling every [`POLL_INTERVAL`] until the poller is dropped.
    pub fn start(counter: &DropCounter) -> Arc<Self> {
        Arc::new_cyclic(|poller: &std::sync::Weak<Self>| {
            let poller = poller.clone(); // the task → the poller, not owning
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(POLL_INTERVAL).await;
                    // Owns the poller only for one poll; stops if it is gone.
                    let Some(poller) = poller.upgrade() else {
                        break;
                    };
                    poller.state.poll_once();
                }
            });
            Self {
                state: PollerState::new(counter),
                _task: AbortOnDropHandle::new(task),
            }
        })
    }
}
// ANCHOR_END: poller
