//! The suite checked on itself: the memory store with notifications passes it, deliberately
//! broken stores fail it (the memory stores without are run whole by the report's own test).

mod broken;
mod guide;
mod memory_watch;
