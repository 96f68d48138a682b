// Fencing for an object store: each term writes under a key of its own, ordered by its
// fencing token, and never over an existing one (`If-None-Match: *`); a reader takes
// the highest token. A deposed leader's late write lands under its lower token and is
// never read as current. (Used by docs/fencing.md and lock-s3's tests.)

use aws_sdk_s3::{Client, primitives::ByteStream};

/// The key of `name` written by the term with `token`: zero-padded, so keys sort as tokens do.
pub fn key_for(prefix: &str, name: &str, token: u64) -> String {
    format!("{prefix}{name}/{token:020}")
}

/// Writes `body` as `name` for the term with `token`; refuses to replace what that
/// term (or anyone) already wrote under the same token.
pub async fn write(client: &Client, bucket: &str, prefix: &str, name: &str, token: u64, body: Vec<u8>) -> Result<(), String> {
    client
        .put_object()
        .bucket(bucket)
        .key(key_for(prefix, name, token))
        .if_none_match("*")
        .body(ByteStream::from(body))
        .send()
        .await
        .map(drop)
        .map_err(|e| format!("write of token {token}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))
}

/// The current `name`: what the highest token wrote, with that token.
pub async fn read_current(client: &Client, bucket: &str, prefix: &str, name: &str) -> Result<Option<(u64, Vec<u8>)>, String> {
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{prefix}{name}/"))
        .send()
        .await
        .map_err(|e| format!("list: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
    let newest = listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter_map(|k| k.rsplit('/').next()?.parse::<u64>().ok().map(|t| (t, k.to_string())))
        .max();
    let Some((token, key)) = newest else { return Ok(None) };
    let object = client.get_object().bucket(bucket).key(key).send().await.map_err(|e| format!("get: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
    let body = object.body.collect().await.map_err(|e| format!("read: {e}"))?.into_bytes().to_vec();
    Ok(Some((token, body)))
}
