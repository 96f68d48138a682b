//! The leader elector end to end, on a paused clock against in-memory and scripted stores.

mod elector;
