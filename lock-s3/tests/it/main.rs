//! lock-s3 against a real S3 API: the conformance suite and the fencing recipe of docs/fencing.md.

mod conformance;
mod fencing_recipe;

mod support;
