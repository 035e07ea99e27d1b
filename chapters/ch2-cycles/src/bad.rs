//! The leaking versions: the seed's tree with strong back-pointers, the
//! seed's hand-written cleanup walk, and a struct whose task owns it.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use tokio_util::task::AbortOnDropHandle;

use crate::{DropCounter, DropToken, POLL_INTERVAL, PollerState};

// ANCHOR: node
/// The seed's `Node`, with every pointer an `Rc`: a child owns its parent,
/// and its callback owns both the child and the parent.
pub struct Node {
    pub id: usize,
    pub data: RefCell<Vec<u8>>,
    pub parent: RefCell<Option<Rc<Node>>>,
    pub children: RefCell<Vec<Rc<Node>>>,
    pub callback: RefCell<Option<Callback>>,
    _dropped: DropToken, // tells a test when this node is dropped
}

/// A node's callback (the seed's `func()`, returning what it prints).
pub type Callback = Box<dyn Fn() -> String>;

/// The seed's `AddChild`.
pub fn add_child(parent: &Rc<Node>, child: &Rc<Node>) {
    *child.parent.borrow_mut() = Some(Rc::clone(parent)); // child → parent
    parent.children.borrow_mut().push(Rc::clone(child)); // parent → child

    // Go's closure captures `child` and `n`; here that means two more owners.
    let (this, parent) = (Rc::clone(child), Rc::clone(parent));
    *child.callback.borrow_mut() = Some(Box::new(move || {
        format!("Node {} callback, parent: {}", this.id, parent.id)
    }));
}
// ANCHOR_END: node

impl Node {
    /// A node with `data_bytes` of data whose drop `counter` will see.
    pub fn new(id: usize, data_bytes: usize, counter: &DropCounter) -> Rc<Self> {
        Rc::new(Self {
            id,
            data: RefCell::new(vec![0; data_bytes]),
            parent: RefCell::new(None),
            children: RefCell::new(Vec::new()),
            callback: RefCell::new(None),
            _dropped: counter.token(),
        })
    }

    /// Runs the node's callback, if it has one.
    pub fn call_back(&self) -> Option<String> {
        self.callback.borrow().as_ref().map(|callback| callback())
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

/// Builds the seed's 11 001-node tree with strong back-pointers.
pub fn build_tree(counter: &DropCounter) -> Rc<Node> {
    crate::build_seed_tree(|id, bytes| Node::new(id, bytes, counter), add_child)
}

/// Builds the seed's 101-node cleanup tree with strong back-pointers.
pub fn build_cleanup_tree(counter: &DropCounter) -> Rc<Node> {
    crate::build_cleanup_tree(|id, bytes| Node::new(id, bytes, counter), add_child)
}

// ANCHOR: cleanup_tree
/// The seed's remedy, `cleanupTree`: walk the tree and clear every edge by
/// hand before letting go of the root.
pub fn cleanup_tree(node: &Rc<Node>) {
    clear_edges(node, Edges::All);
}

/// Which edges a cleanup walk clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edges {
    /// `parent`, `children`, `callback` and `data`, as the seed does.
    All,
    /// The same, but the callback is forgotten (say, it was added to `Node`
    /// after the walk was written).
    AllButCallback,
}

/// Clears `node`'s edges, and its descendants' first.
pub fn clear_edges(node: &Rc<Node>, edges: Edges) {
    // Take the children out first, so no borrow is held while recursing.
    let children = std::mem::take(&mut *node.children.borrow_mut());
    for child in &children {
        clear_edges(child, edges);
    }
    *node.parent.borrow_mut() = None;
    if edges == Edges::All {
        *node.callback.borrow_mut() = None;
    }
    *node.data.borrow_mut() = Vec::new();
}
// ANCHOR_END: cleanup_tree

// ANCHOR: poller
/// A background poller that owns its task, and whose task owns it.
///
/// It even holds its task through an `AbortOnDropHandle`, so dropping the
/// poller would stop the task — but the task holds an `Arc<Poller>`, so the
/// poller is never dropped.
#[derive(Debug)]
pub struct Poller {
    pub state: PollerState,
    task: OnceLock<AbortOnDropHandle<()>>,
}

impl Poller {
    /// Starts polling every [`POLL_INTERVAL`].
    pub fn start(counter: &DropCounter) -> Arc<Self> {
        let poller = Arc::new(Self {
            state: PollerState::new(counter),
            task: OnceLock::new(),
        });
        let for_task = Arc::clone(&poller); // the task → the poller
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL_INTERVAL).await;
                for_task.state.poll_once();
            }
        });
        let _ = poller.task.set(AbortOnDropHandle::new(task)); // the poller → the task
        poller
    }
}
// ANCHOR_END: poller
