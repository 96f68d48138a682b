//! The suite checked on itself: the memory store passes it, deliberately broken stores fail it.

mod broken;
mod memory;
mod memory_last_writer_wins;
mod memory_watch;
