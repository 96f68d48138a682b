//! The leader elector end to end, on a paused clock against in-memory and scripted stores
//! (and priorities on the real clock).

mod elector;
mod priority;
