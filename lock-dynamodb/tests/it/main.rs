//! lock-dynamodb against a real DynamoDB API: the conformance suite, fenced writes, foreign items.

mod conformance;
mod fencing;
mod items;

mod support;
