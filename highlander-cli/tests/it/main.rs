//! The `highlander` binary run as users run it: the CLI, `run`, `elect` and `chaos` on Postgres, the fencing recipe, the image.

mod chaos;
mod cli;
mod container;
mod elect;
mod fencing_recipe;
mod run;

mod common;
